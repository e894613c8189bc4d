//! flan-model's T5 as a [`TrainModel`], and building the model a [`TrainConfig`] asks for: a
//! pretrained Hugging Face directory (weights loaded over a freshly built network, so the
//! training dropout can replace the checkpoint's) or a `config.json` initialised from `seed`.

use std::path::{Path, PathBuf};

use flan_model::{LoraInit, T5Config, T5ForConditionalGeneration, TargetLogits};
use tch::{nn, Device, Tensor};

use crate::batch::DeviceBatch;
use crate::config::TrainConfig;
use crate::model::TrainModel;
use crate::optim::NamedParam;
use crate::{Error, Result};

impl TrainModel for T5ForConditionalGeneration {
    /// With a LoRA adapter, the adapter's parameters (PEFT's names without the
    /// `base_model.model.` prefix) and those of `modules_to_save`; else every parameter.
    fn parameters(&self) -> Vec<NamedParam> {
        let mut params: Vec<NamedParam> = if self.lora_config().is_some() {
            self.adapter_parameters()
        } else {
            self.named_parameters()
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect()
        };
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    fn fixed_parameters(&self) -> Vec<NamedParam> {
        if self.lora_config().is_none() {
            return Vec::new();
        }
        let trained: std::collections::HashSet<String> = self
            .adapter_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut fixed: Vec<NamedParam> = self
            .named_parameters()
            .iter()
            .filter(|(n, _)| !trained.contains(n))
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        fixed.sort_by(|a, b| a.0.cmp(&b.0));
        fixed
    }

    fn logits(&self, b: &DeviceBatch, train: bool) -> Result<Tensor> {
        Ok(self.forward_packed(&b.tensors, train))
    }

    fn target_logits(&self, b: &DeviceBatch, train: bool) -> Result<TargetLogits<'_>> {
        Ok(self.forward_packed_targets(&b.tensors, train))
    }

    fn save_pretrained(&self, dir: &Path) -> Result<()> {
        if self.lora_config().is_some() {
            return Ok(self.save_adapter(dir, None)?);
        }
        Ok(T5ForConditionalGeneration::save_pretrained(self, dir)?)
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        if self.lora_config().is_some() {
            self.load_adapter_weights(dir)?;
        } else {
            T5ForConditionalGeneration::load_weights(self, dir)?;
        }
        Ok(())
    }

    fn device(&self) -> Device {
        T5ForConditionalGeneration::device(self)
    }
}

/// The model of `cfg` on its device and dtype, with `model.dropout` as its dropout rate, the
/// `[lora]` adapter when there is one (initialised as PEFT does, from `seed`) and
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
    if let Some(lora) = &cfg.lora {
        // An absolute path, so that the adapter finds its base from anywhere.
        let base = cfg.model.pretrained.as_ref().map(|dir| {
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string()
        });
        model.add_lora(&lora.peft_config(base), LoraInit::Peft)?;
    }
    model
        .set_activation_checkpointing(cfg.train.activation_checkpointing)
        .map_err(|e| Error::Config {
            message: format!("train.activation_checkpointing = true: {e}"),
        })?;
    Ok((model, tokenizer))
}
