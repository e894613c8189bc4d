//! Optimisers over a tch `VarStore`: Adafactor (the T5/Flan recipe) and AdamW.
//!
//! Both step under `no_grad` on the named trainable parameters and keep their state per parameter
//! name, so that the state can be saved next to the weights and restored on resume.

pub mod adafactor;
pub mod adamw;

pub use adafactor::{Adafactor, AdafactorConfig};
pub use adamw::{AdamW, AdamWConfig};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

use crate::{Error, Result};

/// One trainable parameter with its checkpoint name (HF names for T5, e.g. `shared.weight`).
pub type NamedParam = (String, Tensor);

/// The trainable variables of `vs`, sorted by name so that every run visits them in one order.
pub fn trainable_params(vs: &VarStore) -> Vec<NamedParam> {
    let mut params: Vec<NamedParam> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// An optimiser whose whole state can be written to and read from named tensors.
pub trait Optimizer {
    /// Updates every parameter that has a gradient, with base learning rate `lr` (from the
    /// schedule; Adafactor with `relative_step` computes its own and ignores it).
    fn step(&mut self, params: &[NamedParam], lr: f64) -> Result<()>;

    /// The state as named tensors (moments and per-parameter step counts), for checkpoints.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;

    /// Restores a state written by [`Optimizer::state_tensors`]; fails on a name it does not know.
    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()>;
}

/// Which optimiser to use and its settings (`[optimizer]` in the config, `kind = "adafactor"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Adafactor, transformers semantics (the Flan default).
    Adafactor(AdafactorConfig),
    /// AdamW, PyTorch semantics (decoupled weight decay).
    AdamW(AdamWConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adafactor(AdafactorConfig::default())
    }
}

impl OptimizerConfig {
    /// Builds the optimiser this config describes.
    pub fn build(&self) -> Result<Box<dyn Optimizer>> {
        Ok(match self {
            OptimizerConfig::Adafactor(cfg) => Box::new(Adafactor::new(cfg.clone())?),
            OptimizerConfig::AdamW(cfg) => Box::new(AdamW::new(cfg.clone())?),
        })
    }
}

/// Half-precision parameters are updated in fp32 and copied back, as transformers does.
pub(crate) fn is_half(kind: Kind) -> bool {
    matches!(kind, Kind::Half | Kind::BFloat16)
}

/// `t` in fp32: an fp32 copy of a half-precision tensor, otherwise `t` itself (so updates of an
/// fp32 parameter land in place).
pub(crate) fn in_fp32(t: Tensor) -> Tensor {
    if is_half(t.kind()) {
        t.to_kind(Kind::Float)
    } else {
        t
    }
}

/// Copies the updated fp32 value of a half-precision parameter back into it (an fp32 parameter
/// was updated in place).
pub(crate) fn write_back(param: &Tensor, p32: &Tensor) -> Result<()> {
    if is_half(param.kind()) {
        let mut p = param.shallow_clone();
        p.f_copy_(p32)?;
    }
    Ok(())
}

/// Root mean square of all elements, as a 0-d tensor (no host sync).
pub(crate) fn rms(t: &Tensor) -> Tensor {
    t.norm() / (t.numel() as f64).sqrt()
}

/// Splits a state tensor name `param::slot` into its parts.
pub(crate) fn split_state_name(name: &str) -> Result<(&str, &str)> {
    name.rsplit_once("::").ok_or_else(|| Error::OptimizerState {
        message: format!("state tensor `{name}` is not named `<parameter>::<slot>`"),
    })
}

/// A per-parameter step count stored as a one-element int64 tensor.
pub(crate) fn step_tensor(step: i64) -> Tensor {
    Tensor::from_slice(&[step])
}

/// Reads a step count written by [`step_tensor`].
pub(crate) fn read_step(name: &str, t: &Tensor) -> Result<i64> {
    if t.numel() != 1 {
        return Err(Error::OptimizerState {
            message: format!(
                "state tensor `{name}` should hold one step count, has {} values",
                t.numel()
            ),
        });
    }
    Ok(t.to_kind(Kind::Int64).int64_value(&[0]))
}
