//! Learning-rate schedules: an optional linear warmup, then constant (the Flan default), linear
//! decay, cosine decay or inverse square root.

use serde::{Deserialize, Serialize};

use crate::config::{check, Range};
use crate::{Error, Result};

/// What happens after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Stay at the peak (Flan-T5 finetuning: 1e-3 for small/base, 5e-4 for larger models, t5x).
    Constant,
    /// Linear from the peak to `final_lr` at the last step.
    Linear,
    /// Half a cosine from the peak to `final_lr` at the last step.
    Cosine,
    /// lr·√(max(warmup, 1)/t): T5 pre-training's 1/√t decay, continuous at the end of the warmup.
    InverseSqrt,
}

/// `[schedule]` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Shape after warmup.
    pub kind: ScheduleKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warmup from 0 (0 = none).
    pub warmup_steps: u64,
    /// Where linear and cosine decay end.
    pub final_lr: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: ScheduleKind::Constant,
            lr: 1e-3,
            warmup_steps: 0,
            final_lr: 0.0,
        }
    }
}

/// A schedule bound to the run's length.
#[derive(Debug, Clone)]
pub struct Schedule {
    cfg: ScheduleConfig,
    total_steps: u64,
}

impl Schedule {
    /// Checks the settings against the run's `total_steps`.
    pub fn new(cfg: ScheduleConfig, total_steps: u64) -> Result<Self> {
        check("schedule.lr", cfg.lr, Range::NonNegative)?;
        check("schedule.final_lr", cfg.final_lr, Range::NonNegative)?;
        if matches!(cfg.kind, ScheduleKind::Linear | ScheduleKind::Cosine)
            && cfg.warmup_steps >= total_steps
        {
            return Err(Error::Config {
                message: format!(
                    "schedule.warmup_steps ({}) must be below steps ({total_steps}) for a decaying schedule",
                    cfg.warmup_steps
                ),
            });
        }
        Ok(Schedule { cfg, total_steps })
    }

    /// The learning rate of optimizer step `step` (counted from 1).
    pub fn lr(&self, step: u64) -> f64 {
        let c = &self.cfg;
        let step = step.max(1);
        if step < c.warmup_steps {
            return c.lr * step as f64 / c.warmup_steps as f64;
        }
        let progress = || {
            let span = (self.total_steps - c.warmup_steps) as f64;
            ((step - c.warmup_steps) as f64 / span).clamp(0.0, 1.0)
        };
        match c.kind {
            ScheduleKind::Constant => c.lr,
            ScheduleKind::Linear => c.lr + (c.final_lr - c.lr) * progress(),
            ScheduleKind::Cosine => {
                c.final_lr
                    + 0.5 * (c.lr - c.final_lr) * (1.0 + (std::f64::consts::PI * progress()).cos())
            }
            ScheduleKind::InverseSqrt => c.lr * (c.warmup_steps.max(1) as f64 / step as f64).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sched(kind: ScheduleKind, warmup: u64, total: u64) -> Schedule {
        Schedule::new(
            ScheduleConfig {
                kind,
                lr: 1e-3,
                warmup_steps: warmup,
                final_lr: 1e-5,
            },
            total,
        )
        .unwrap()
    }

    #[test]
    fn constant_is_the_flan_default() {
        let s = Schedule::new(ScheduleConfig::default(), 100).unwrap();
        assert_eq!(s.lr(1), 1e-3);
        assert_eq!(s.lr(100), 1e-3);
    }

    #[test]
    fn warmup_then_each_shape() {
        let c = sched(ScheduleKind::Constant, 10, 100);
        assert!((c.lr(5) - 5e-4).abs() < 1e-15);
        assert_eq!(c.lr(10), 1e-3);
        let l = sched(ScheduleKind::Linear, 10, 110);
        assert!((l.lr(60) - (1e-3 + 1e-5) / 2.0).abs() < 1e-12);
        assert!((l.lr(110) - 1e-5).abs() < 1e-15);
        let cos = sched(ScheduleKind::Cosine, 10, 110);
        assert!((cos.lr(60) - (1e-3 + 1e-5) / 2.0).abs() < 1e-12);
        assert!((cos.lr(110) - 1e-5).abs() < 1e-15);
        let inv = sched(ScheduleKind::InverseSqrt, 100, 1000);
        assert!((inv.lr(400) - 5e-4).abs() < 1e-15);
    }

    #[test]
    fn decay_needs_steps_after_warmup() {
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_steps: 10,
            ..Default::default()
        };
        let err = Schedule::new(cfg, 10).unwrap_err().to_string();
        assert!(err.contains("warmup_steps"), "{err}");
    }

    proptest! {
        /// Warmup rises, decays never rise, and every rate stays within [0, peak].
        #[test]
        fn rates_are_bounded_and_monotone(warmup in 0u64..50, extra in 1u64..200, kind in 0usize..4) {
            let kind = [ScheduleKind::Constant, ScheduleKind::Linear, ScheduleKind::Cosine, ScheduleKind::InverseSqrt][kind];
            let s = sched(kind, warmup, warmup + extra);
            let mut prev = 0.0;
            for step in 1..=warmup + extra {
                let lr = s.lr(step);
                prop_assert!((0.0..=1e-3 + 1e-18).contains(&lr));
                if step <= warmup { prop_assert!(lr >= prev); } else if step > 1 { prop_assert!(lr <= prev + 1e-18); }
                prev = lr;
            }
        }
    }
}
