//! What the loop needs from a model: named parameters, logits of a packed batch (all positions, or
//! only those the loss reads), and saving and
//! loading the weights in the Hugging Face layout. flan-model's T5 implements it (see
//! [`crate::t5`]); tests use small models of their own.

use std::path::Path;

use flan_model::TargetLogits;
use tch::{Device, Tensor};

use crate::batch::DeviceBatch;
use crate::optim::NamedParam;
use crate::Result;

/// A sequence-to-sequence model the trainer can finetune.
pub trait TrainModel {
    /// The trainable parameters with their checkpoint names.
    fn parameters(&self) -> Vec<NamedParam>;
    /// Parameters that never train whatever the config says: the base weights under an adapter
    /// (the trainer clears their `requires_grad` and counts them as frozen). None by default.
    fn fixed_parameters(&self) -> Vec<NamedParam> {
        Vec::new()
    }
    /// Logits `[rows, target_len, vocab]` of a packed batch; dropout on when `train`.
    fn logits(&self, batch: &DeviceBatch, train: bool) -> Result<Tensor>;
    /// What the training loss reads: logits with their targets and loss weights. By default
    /// every position of [`TrainModel::logits`]; a model may leave out positions of weight 0
    /// (flan-model's T5 runs its head on target positions only). The trainer backpropagates
    /// through [`TargetLogits::backward`], which finishes the job of a pass that checkpointed
    /// its activations.
    fn target_logits(&self, batch: &DeviceBatch, train: bool) -> Result<TargetLogits<'_>> {
        Ok(TargetLogits::all(
            self.logits(batch, train)?,
            &batch.tensors,
        ))
    }
    /// Writes the weights (and the model config) into `dir` so that the model loads from it:
    /// with an adapter, only the adapter (a PEFT adapter directory).
    fn save_pretrained(&self, dir: &Path) -> Result<()>;
    /// Overwrites the weights from a directory written by [`TrainModel::save_pretrained`].
    fn load_weights(&self, dir: &Path) -> Result<()>;
    /// Where the parameters live.
    fn device(&self) -> Device;
}
