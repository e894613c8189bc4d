//! flan-model's T5 as a [`TrainModel`], and building the model a [`TrainConfig`] asks for: a
//! pretrained Hugging Face directory (weights loaded over a freshly built network, so the
//! training dropout can replace the checkpoint's) or a `config.json` initialised from `seed`.

use std::path::{Path, PathBuf};

use flan_model::{T5Config, T5ForConditionalGeneration, TargetLogits};
use tch::{nn, Device, Tensor};

use crate::batch::DeviceBatch;
use crate::config::TrainConfig;
use crate::model::TrainModel;
use crate::optim::NamedParam;
use crate::{Error, Result};

impl TrainModel for T5ForConditionalGeneration {
    fn parameters(&self) -> Vec<NamedParam> {
        let mut params: Vec<NamedParam> = self
            .named_parameters()
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    fn logits(&self, b: &DeviceBatch, train: bool) -> Result<Tensor> {
        Ok(self.forward_packed(&b.tensors, train))
    }

    fn target_logits(&self, b: &DeviceBatch, train: bool) -> Result<TargetLogits<'_>> {
        Ok(self.forward_packed_targets(&b.tensors, train))
    }

    fn save_pretrained(&self, dir: &Path) -> Result<()> {
        Ok(T5ForConditionalGeneration::save_pretrained(self, dir)?)
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        T5ForConditionalGeneration::load_weights(self, dir)?;
        Ok(())
    }

    fn device(&self) -> Device {
        T5ForConditionalGeneration::device(self)
    }
}

/// The model of `cfg` on its device and dtype, with `model.dropout` as its dropout rate and
/// `train.activation_checkpointing` applied, and the tokenizer file that goes with it.
pub fn build_model(cfg: &TrainConfig) -> Result<(T5ForConditionalGeneration, PathBuf)> {
    let device = cfg.tch_device()?;
    let kind = cfg.kind()?;
    let tokenizer = cfg.tokenizer_path()?;
    let (config_file, weights) = match (&cfg.model.pretrained, &cfg.model.config) {
        (Some(dir), _) => (dir.join("config.json"), Some(dir.clone())),
        (None, Some(file)) => (file.clone(), None),
        (None, None) => {
            return Err(Error::Config {
                message: "set model.pretrained or model.config".into(),
            })
        }
    };
    let mut config = T5Config::from_file(&config_file)?;
    config.dropout_rate = cfg.model.dropout;
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = T5ForConditionalGeneration::new(&vs.root(), &config)?;
    if let Some(dir) = weights {
        model.load_weights(&dir)?;
    }
    model.set_kind(kind)?;
    model
        .set_activation_checkpointing(cfg.train.activation_checkpointing)
        .map_err(|e| Error::Config {
            message: format!("train.activation_checkpointing = true: {e}"),
        })?;
    Ok((model, tokenizer))
}
