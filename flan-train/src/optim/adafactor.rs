//! Adafactor (Shazeer & Stern, 2018) with the semantics of transformers' `Adafactor`, which is
//! what T5 and Flan-T5 finetuning recipes outside t5x use.
//!
//! Per parameter with gradient g at step t (from 1): β₂ = 1 − t^decay_rate, u = g² + ε₁. Matrices
//! (and higher-rank tensors, over their last two dimensions) keep only row and column means of the
//! second moment; vectors keep it whole. The update g/√v is divided by max(1, RMS(update)/clip),
//! scaled by the step size and optionally smoothed with β₁ momentum. Defaults follow the Flan
//! finetuning recipe: an external learning rate (no relative step), no parameter scaling, no
//! momentum.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{
    in_fp32, read_step, rms, split_state_name, step_tensor, write_back, NamedParam, Optimizer,
};
use crate::config::{check, Range};
use crate::{Error, Result};

/// Adafactor settings (`[optimizer] kind = "adafactor"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdafactorConfig {
    /// Added to g² before averaging (transformers `eps[0]`).
    pub eps1: f64,
    /// Lower bound of the parameter scale (transformers `eps[1]`).
    pub eps2: f64,
    /// Updates are scaled down to at most this RMS.
    pub clip_threshold: f64,
    /// Exponent of the second-moment decay: β₂ = 1 − t^decay_rate.
    pub decay_rate: f64,
    /// First-moment (momentum) coefficient; none by default, as in T5.
    pub beta1: Option<f64>,
    /// Weight decay, applied as p ← p − wd·lr·p.
    pub weight_decay: f64,
    /// Multiply the step size by max(eps2, RMS(parameter)).
    pub scale_parameter: bool,
    /// Ignore the schedule and use min(1e-2, 1/√t) as the step size.
    pub relative_step: bool,
    /// With `relative_step`, start the step size at 1e-6·t instead of 1e-2.
    pub warmup_init: bool,
}

impl Default for AdafactorConfig {
    fn default() -> Self {
        AdafactorConfig {
            eps1: 1e-30,
            eps2: 1e-3,
            clip_threshold: 1.0,
            decay_rate: -0.8,
            beta1: None,
            weight_decay: 0.0,
            scale_parameter: false,
            relative_step: false,
            warmup_init: false,
        }
    }
}

/// The state of one parameter.
struct Slot {
    step: i64,
    /// First moment, only with `beta1`.
    exp_avg: Option<Tensor>,
    /// Factored second moment: means over the last dimension (rows) and the second-to-last (columns).
    exp_avg_sq_row: Option<Tensor>,
    exp_avg_sq_col: Option<Tensor>,
    /// Unfactored second moment (vectors).
    exp_avg_sq: Option<Tensor>,
}

/// The Adafactor optimiser; see the module documentation.
pub struct Adafactor {
    cfg: AdafactorConfig,
    state: HashMap<String, Slot>,
}

impl Adafactor {
    /// Checks the settings (the same combinations transformers rejects) and makes an empty state.
    pub fn new(cfg: AdafactorConfig) -> Result<Self> {
        if cfg.warmup_init && !cfg.relative_step {
            return Err(Error::Config {
                message: "optimizer.warmup_init = true requires optimizer.relative_step = true"
                    .into(),
            });
        }
        check(
            "optimizer.clip_threshold",
            cfg.clip_threshold,
            Range::Positive,
        )?;
        if let Some(b1) = cfg.beta1 {
            check("optimizer.beta1", b1, Range::UnitOpen)?;
        }
        // ε₁ = 0 gives 0/0 on a parameter whose gradient is zero.
        check("optimizer.eps1", cfg.eps1, Range::Positive)?;
        check("optimizer.eps2", cfg.eps2, Range::NonNegative)?;
        // β₂ = 1 − t^decay_rate lies in [0, 1) only for a negative exponent.
        check("optimizer.decay_rate", cfg.decay_rate, Range::Negative)?;
        check(
            "optimizer.weight_decay",
            cfg.weight_decay,
            Range::NonNegative,
        )?;
        Ok(Adafactor {
            cfg,
            state: HashMap::new(),
        })
    }

    /// Step size for a parameter at its step `t`: the schedule's `lr`, or the relative step, times
    /// the parameter scale when enabled. A tensor when it depends on the parameter's RMS.
    fn step_size(cfg: &AdafactorConfig, lr: f64, t: i64, param_f32: &Tensor) -> StepSize {
        let base = if cfg.relative_step {
            let min_step = if cfg.warmup_init {
                1e-6 * t as f64
            } else {
                1e-2
            };
            min_step.min(1.0 / (t as f64).sqrt())
        } else {
            lr
        };
        if cfg.scale_parameter {
            StepSize::Tensor(rms(param_f32).clamp_min(cfg.eps2) * base)
        } else {
            StepSize::Scalar(base)
        }
    }
}

enum StepSize {
    Scalar(f64),
    Tensor(Tensor),
}

impl StepSize {
    fn scale(&self, t: &Tensor) -> Tensor {
        match self {
            StepSize::Scalar(s) => t * *s,
            StepSize::Tensor(s) => t * s,
        }
    }
}

impl Optimizer for Adafactor {
    fn step(&mut self, params: &[NamedParam], lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, param) in params {
            let grad = param.grad();
            if !grad.defined() {
                continue;
            }
            let grad = in_fp32(grad);
            let factored = grad.dim() >= 2;
            let use_momentum = self.cfg.beta1.is_some();
            let slot = self
                .state
                .entry(name.clone())
                .or_insert_with(|| Slot::zeros(&grad, factored, use_momentum));
            slot.step += 1;
            let t = slot.step;

            let mut p32 = in_fp32(param.shallow_clone());
            let beta2t = 1.0 - (t as f64).powf(self.cfg.decay_rate);
            let sq = grad.square() + self.cfg.eps1;
            let mut update = if factored {
                let (row, col) = match (&mut slot.exp_avg_sq_row, &mut slot.exp_avg_sq_col) {
                    (Some(row), Some(col)) => (row, col),
                    _ => return Err(state_mismatch(name, "factored")),
                };
                ema_(row, &sq.mean_dim(-1, false, sq.kind()), beta2t);
                ema_(col, &sq.mean_dim(-2, false, sq.kind()), beta2t);
                let r = (&*row / row.mean_dim(-1, true, row.kind()))
                    .rsqrt()
                    .unsqueeze(-1);
                let c = col.unsqueeze(-2).rsqrt();
                r * c * &grad
            } else {
                let v = slot
                    .exp_avg_sq
                    .as_mut()
                    .ok_or_else(|| state_mismatch(name, "unfactored"))?;
                ema_(v, &sq, beta2t);
                v.rsqrt() * &grad
            };
            let clip = (rms(&update) / self.cfg.clip_threshold).clamp_min(1.0);
            update /= clip;
            let step_size = Self::step_size(&self.cfg, lr, t, &p32);
            update = step_size.scale(&update);
            if let Some(b1) = self.cfg.beta1 {
                let m = slot
                    .exp_avg
                    .as_mut()
                    .ok_or_else(|| state_mismatch(name, "momentum"))?;
                ema_(m, &update, b1);
                update = m.shallow_clone();
            }
            if self.cfg.weight_decay != 0.0 {
                let decay = step_size.scale(&p32) * self.cfg.weight_decay;
                let _ = p32.f_sub_(&decay)?;
            }
            let _ = p32.f_sub_(&update)?;
            write_back(param, &p32)?;
        }
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.state.keys().collect();
        names.sort();
        for name in names {
            let slot = &self.state[name];
            out.push((format!("{name}::step"), step_tensor(slot.step)));
            let slots = [
                ("exp_avg", &slot.exp_avg),
                ("exp_avg_sq_row", &slot.exp_avg_sq_row),
                ("exp_avg_sq_col", &slot.exp_avg_sq_col),
                ("exp_avg_sq", &slot.exp_avg_sq),
            ];
            for (key, value) in slots {
                if let Some(t) = value {
                    out.push((format!("{name}::{key}"), t.shallow_clone()));
                }
            }
        }
        out
    }

    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let mut state: HashMap<String, Slot> = HashMap::new();
        for (full, t) in tensors {
            let (param, key) = split_state_name(&full)?;
            let slot = state.entry(param.to_string()).or_insert_with(Slot::empty);
            match key {
                "step" => slot.step = read_step(&full, &t)?,
                "exp_avg" => slot.exp_avg = Some(t),
                "exp_avg_sq_row" => slot.exp_avg_sq_row = Some(t),
                "exp_avg_sq_col" => slot.exp_avg_sq_col = Some(t),
                "exp_avg_sq" => slot.exp_avg_sq = Some(t),
                other => {
                    return Err(Error::OptimizerState {
                        message: format!("unknown Adafactor state slot `{other}` in `{full}`"),
                    })
                }
            }
        }
        for (name, slot) in &state {
            let complete = slot.exp_avg_sq.is_some()
                || (slot.exp_avg_sq_row.is_some() && slot.exp_avg_sq_col.is_some());
            if !complete || slot.exp_avg.is_some() != self.cfg.beta1.is_some() {
                return Err(Error::OptimizerState {
                    message: format!("Adafactor state of `{name}` does not match the configured optimizer (moments missing or momentum setting changed)"),
                });
            }
        }
        self.state = state;
        Ok(())
    }
}

impl Slot {
    fn empty() -> Self {
        Slot {
            step: 0,
            exp_avg: None,
            exp_avg_sq_row: None,
            exp_avg_sq_col: None,
            exp_avg_sq: None,
        }
    }

    fn zeros(grad: &Tensor, factored: bool, use_momentum: bool) -> Self {
        let opts = (grad.kind(), grad.device());
        let shape = grad.size();
        let n = shape.len();
        let mut slot = Slot::empty();
        if use_momentum {
            slot.exp_avg = Some(grad.zeros_like());
        }
        if factored {
            slot.exp_avg_sq_row = Some(Tensor::zeros(&shape[..n - 1], opts));
            let mut col_shape = shape[..n - 2].to_vec();
            col_shape.push(shape[n - 1]);
            slot.exp_avg_sq_col = Some(Tensor::zeros(&col_shape, opts));
        } else {
            slot.exp_avg_sq = Some(grad.zeros_like());
        }
        slot
    }
}

/// In place: avg ← β·avg + (1−β)·x.
fn ema_(avg: &mut Tensor, x: &Tensor, beta: f64) {
    let _ = avg.g_mul_scalar_(beta);
    *avg += x * (1.0 - beta);
}

fn state_mismatch(name: &str, expected: &str) -> Error {
    Error::OptimizerState {
        message: format!(
            "restored Adafactor state of `{name}` is not {expected}, as its gradient needs"
        ),
    }
}
