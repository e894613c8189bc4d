//! `flan-train`: finetuning T5 the Flan way — Adafactor, packed batches from the flan-data
//! mixture, exact resume, metrics, evaluation during training.
//!
//! Main types:
//! - [`config::TrainConfig`]: the whole run as TOML (`deny_unknown_fields`) plus `key=value`
//!   overrides; defaults are the Flan-T5 recipe (Adafactor without momentum or parameter scaling,
//!   constant learning rate 1e-3, packing, dropout 0.05).
//! - [`optim::Adafactor`] (transformers semantics, checked against it to 1e-6) and
//!   [`optim::AdamW`], over named parameters; [`schedule::Schedule`]; [`clip`] by global norm.
//! - [`source::BatchSource`] / [`source::MixtureBatches`]: the mixture stream tokenized and packed,
//!   with a cursor that makes resume exact.
//! - [`model::TrainModel`]: what the loop needs from a model; flan-model's T5 implements it
//!   ([`t5`]).
//! - [`trainer::Trainer`]: the loop (accumulation, z-loss, NaN/inf stop or skip, hooks);
//!   [`checkpoint`]: atomic checkpoints in the Hugging Face layout plus training state;
//!   [`metrics`]: JSONL; [`run`]: everything from a config, as `flan train` uses it.
//! - [`freeze`]: `train.freeze`, globs over parameter names that do not train.
//! - [`card`]: the model card (`README.md`) of the saved model; [`lock`]: one run per output
//!   directory; [`stop`]: SIGTERM/SIGINT stop the run after the
//!   current step, with a checkpoint.
//!
//! One Adafactor step on a parameter, as in the Flan recipe:
//!
//! ```
//! use flan_train::optim::{Adafactor, AdafactorConfig, Optimizer};
//! use tch::{Kind, Tensor};
//!
//! let w = Tensor::ones([4, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
//! (&w * &w).sum(Kind::Float).backward(); // gradient 2·w
//! let mut opt = Adafactor::new(AdafactorConfig::default()).unwrap();
//! opt.step(&[("w".to_string(), w.shallow_clone())], 1e-3).unwrap();
//! // A constant gradient gives a unit-RMS update: every weight moves by the learning rate.
//! let moved = (1.0 - w.double_value(&[0, 0])).abs();
//! assert!((moved - 1e-3).abs() < 1e-7);
//! ```

pub mod batch;
pub mod card;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod distributed;
pub mod error;
pub mod freeze;
pub mod lock;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod source;
pub mod stop;
pub mod t5;
pub mod tensorboard;
pub mod trainer;

pub use error::{Error, Result};
