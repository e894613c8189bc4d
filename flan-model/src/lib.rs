//! `flan-model`: T5 and Flan-T5 on libtorch through `tch`, numerically identical to Hugging Face
//! `transformers`.
//!
//! Main types:
//! - [`T5Config`]: the HF `config.json`, with transformers' defaults for missing fields.
//! - [`T5ForConditionalGeneration`]: the network (v1.0 relu, v1.1/Flan gated-gelu, tied or untied
//!   head); `from_pretrained` / `save_pretrained` in the HF safetensors layout (sharded too);
//!   `forward`, `forward_with_labels` (loss as transformers), `forward_packed` (t5x packing) and
//!   `forward_packed_targets` ([`TargetLogits`]: the head on target positions only, for training).
//! - [`KvCache`] and [`generate`]: KV-cached greedy, beam search and seeded sampling;
//!   [`continuous`]: a decode batch that sequences join and leave at step boundaries (serving).
//! - [`lora`]: LoRA adapters in PEFT's format ([`LoraConfig`], `add_lora`, `load_adapter`,
//!   `save_adapter`, `merge_adapter` on the model).
//! - [`score`]: log-likelihood of given targets, the basis of rank classification.
//! - [`Autocast`]: mixed precision (bf16 matmuls over fp32 weights) on CPU and CUDA.
//! - [`FlushDenormals`]: denormals flushed to zero on every intra-op thread (training speed).
//! - [`DeviceSpec`]: `cpu`, `cuda`, `cuda:N` or `auto`, resolved per process from the launcher's
//!   environment ([`LauncherEnv`]: `LOCAL_RANK`, `SLURM_LOCALID`), so each rank gets its own GPU.
//! - [`hub`]: resolves `--model` (a directory or a hub id) to a local directory;
//!   [`ModelSource`]: a model with an optional adapter (`--adapter`, or an adapter directory
//!   as `--model`).
//! - [`memory`]: the memory a generation or scoring call will take, estimated before the call,
//!   and the memory there is; [`fallible`]: a libtorch failure inside a call as an error.
//!
//! ```no_run
//! use flan_model::{generate::{generate, GenerationConfig}, T5ForConditionalGeneration};
//! use tch::{Device, Kind, Tensor};
//! # fn main() -> flan_model::Result<()> {
//! let (model, _report) = T5ForConditionalGeneration::from_pretrained("flan-t5-small", Device::Cpu, Kind::Float)?;
//! let input_ids = Tensor::from_slice(&[71i64, 1712, 10, 1]).view([1, 4]);
//! let mask = input_ids.ones_like();
//! let out = generate(&model, &input_ids, &mask, &GenerationConfig::greedy(20))?;
//! println!("{:?}", out[0][0].token_ids);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod autocast;
pub mod bf16_dot_linear;
pub mod checkpoint;
pub mod config;
pub mod continuous;
pub mod cpu_kernels;
pub mod denormals;
pub mod device;
pub mod dropout;
pub mod dtype;
pub mod error;
pub mod fallible;
mod ffi;
pub mod fma_linear;
pub mod generate;
pub mod hub;
pub mod inference_mode;
pub mod kv_cache;
pub mod layer_norm;
pub mod lora;
pub mod memory;
pub mod model_source;
pub mod padding;
pub mod position_bias;
pub mod prepacked_linear;
pub mod score;
pub mod stacked_linears;
pub mod step_copies;
pub mod t5;

pub use autocast::Autocast;
pub use checkpoint::LoadReport;
pub use config::T5Config;
pub use cpu_kernels::CpuKernels;
pub use denormals::FlushDenormals;
pub use device::{DeviceSpec, LauncherEnv};
pub use dtype::Dtype;
pub use error::{Error, Result};
pub use inference_mode::InferenceMode;
pub use kv_cache::KvCache;
pub use lora::{AdapterReport, LoraConfig, LoraInit, ModuleSelector};
pub use model_source::ModelSource;
pub use prepacked_linear::PrepackedStats;
pub use t5::{PackedTensors, T5ForConditionalGeneration, TargetLogits};
