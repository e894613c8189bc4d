//! AdamW (Loshchilov & Hutter) with PyTorch's `torch.optim.AdamW` semantics: decoupled weight
//! decay p ← p·(1 − lr·wd), bias-corrected moments, ε added after the square root.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{in_fp32, read_step, split_state_name, step_tensor, write_back, NamedParam, Optimizer};
use crate::config::{check, Range};
use crate::{Error, Result};

/// AdamW settings (`[optimizer] kind = "adamw"`); defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to √v.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Parts of one parameter's state while reading a checkpoint: step, exp_avg, exp_avg_sq.
type PartialSlot = (Option<i64>, Option<Tensor>, Option<Tensor>);

struct Slot {
    step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// The AdamW optimiser; moments are kept in fp32 for half-precision parameters.
pub struct AdamW {
    cfg: AdamWConfig,
    state: HashMap<String, Slot>,
}

impl AdamW {
    /// Checks the settings and makes an empty state.
    pub fn new(cfg: AdamWConfig) -> Result<Self> {
        check("optimizer.beta1", cfg.beta1, Range::UnitOpen)?;
        check("optimizer.beta2", cfg.beta2, Range::UnitOpen)?;
        // ε = 0 divides by zero where a gradient has always been zero.
        check("optimizer.eps", cfg.eps, Range::Positive)?;
        check(
            "optimizer.weight_decay",
            cfg.weight_decay,
            Range::NonNegative,
        )?;
        Ok(AdamW {
            cfg,
            state: HashMap::new(),
        })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &[NamedParam], lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let c = &self.cfg;
        for (name, param) in params {
            let grad = param.grad();
            if !grad.defined() {
                continue;
            }
            let grad = in_fp32(grad);
            let slot = self.state.entry(name.clone()).or_insert_with(|| Slot {
                step: 0,
                exp_avg: grad.zeros_like(),
                exp_avg_sq: grad.zeros_like(),
            });
            slot.step += 1;
            let mut p32 = in_fp32(param.shallow_clone());
            let _ = p32.g_mul_scalar_(1.0 - lr * c.weight_decay);
            let _ = slot.exp_avg.g_mul_scalar_(c.beta1);
            slot.exp_avg += &grad * (1.0 - c.beta1);
            let _ = slot.exp_avg_sq.g_mul_scalar_(c.beta2);
            slot.exp_avg_sq += grad.square() * (1.0 - c.beta2);
            let bias1 = 1.0 - c.beta1.powi(slot.step as i32);
            let bias2 = 1.0 - c.beta2.powi(slot.step as i32);
            let denom = slot.exp_avg_sq.sqrt() / bias2.sqrt() + c.eps;
            let update = &slot.exp_avg / denom * (lr / bias1);
            let _ = p32.f_sub_(&update)?;
            write_back(param, &p32)?;
        }
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut names: Vec<&String> = self.state.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let slot = &self.state[name];
            out.push((format!("{name}::step"), step_tensor(slot.step)));
            out.push((format!("{name}::exp_avg"), slot.exp_avg.shallow_clone()));
            out.push((
                format!("{name}::exp_avg_sq"),
                slot.exp_avg_sq.shallow_clone(),
            ));
        }
        out
    }

    fn load_state_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let mut parts: HashMap<String, PartialSlot> = HashMap::new();
        for (full, t) in tensors {
            let (param, key) = split_state_name(&full)?;
            let entry = parts.entry(param.to_string()).or_default();
            match key {
                "step" => entry.0 = Some(read_step(&full, &t)?),
                "exp_avg" => entry.1 = Some(t),
                "exp_avg_sq" => entry.2 = Some(t),
                other => {
                    return Err(Error::OptimizerState {
                        message: format!("unknown AdamW state slot `{other}` in `{full}`"),
                    })
                }
            }
        }
        let mut state = HashMap::new();
        for (name, part) in parts {
            match part {
                (Some(step), Some(exp_avg), Some(exp_avg_sq)) => {
                    state.insert(
                        name,
                        Slot {
                            step,
                            exp_avg,
                            exp_avg_sq,
                        },
                    );
                }
                _ => {
                    return Err(Error::OptimizerState {
                        message: format!(
                        "AdamW state of `{name}` is incomplete (needs step, exp_avg, exp_avg_sq)"
                    ),
                    })
                }
            }
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Two steps by hand in f64 against the formula PyTorch documents.
    #[test]
    fn matches_the_documented_update() {
        let p = Tensor::from_slice(&[1.0f64, -2.0, 0.5]).set_requires_grad(true);
        let params = vec![("w".to_string(), p.shallow_clone())];
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(cfg.clone()).unwrap();
        let grads = [[0.3f64, -0.1, 2.0], [-0.2, 0.4, 1.0]];
        let (mut w, mut m, mut v) = ([1.0f64, -2.0, 0.5], [0.0f64; 3], [0.0f64; 3]);
        let lr = 0.05;
        for (t, g) in grads.iter().enumerate() {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
            let loss = (&p * Tensor::from_slice(g)).sum(tch::Kind::Double);
            loss.backward();
            opt.step(&params, lr).unwrap();
            let t = (t + 1) as i32;
            for i in 0..3 {
                w[i] *= 1.0 - lr * cfg.weight_decay;
                m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g[i];
                v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g[i] * g[i];
                let mhat = m[i] / (1.0 - cfg.beta1.powi(t));
                let denom = v[i].sqrt() / (1.0 - cfg.beta2.powi(t)).sqrt() + cfg.eps;
                w[i] -= lr * mhat / denom;
            }
        }
        let got: Vec<f64> = Vec::try_from(p.detach().to_device(Device::Cpu)).unwrap();
        for (a, b) in got.iter().zip(w) {
            assert!((a - b).abs() < 1e-12, "{got:?} vs {w:?}");
        }
        // The state round-trips through named tensors.
        let mut other = AdamW::new(cfg).unwrap();
        other.load_state_tensors(opt.state_tensors()).unwrap();
        assert_eq!(other.state["w"].step, 2);
    }
}
