//! `flan-eval-t5`: flan-eval's [`flan_eval::EvalModel`] for flan-model's T5, so that a library
//! user evaluates a T5 checkpoint the way `flan eval run` does, without the CLI. flan-eval itself
//! stays free of libtorch; this crate is the bridge (strings in, strings and scores out on one
//! side; token ids and tensors on the other).
//!
//! ```
//! use flan_eval::{Decoding, EvalModel, GenerateRequest};
//!
//! // A Hugging Face model directory (config.json, model.safetensors, tokenizer.json); a
//! // `--adapter` (a PEFT LoRA directory) would be the second argument of `resolve`.
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("../flan-model/tests/fixtures/v1_1");
//! let source = flan_model::ModelSource::resolve(dir.to_str().unwrap(), None)?;
//! let mut model = flan_eval_t5::load(&source, tch::Device::Cpu, flan_model::Dtype::F32, 512)?;
//! let request = GenerateRequest { prompt: "Q: Is the sky blue? A:".into(), seed: 0 };
//! let outputs = model.generate(&[request], &Decoding::greedy(8))?;
//! assert_eq!(outputs.len(), 1);
//! let logprobs = model.score(&["Q: 2 + 2? A:".into()], &["4".into()])?;
//! assert!(logprobs[0] < 0.0);
//! // `flan_eval::runner::run(&mut model, &items, &options, &mut progress)` runs a benchmark.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod model;

pub use error::{Error, Result};
pub use model::{load, T5EvalModel};
