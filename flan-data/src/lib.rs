//! `flan-data`: the Flan instruction-tuning mixture, without libtorch.
//!
//! Reads task sources in their real formats ([`source`]: Flan CoT TSV, Super-NaturalInstructions
//! JSON, generic JSONL, GSM8K; T5 span corruption of plain text, [`span_corruption`]), renders them through instruction templates from a TOML library
//! users can extend ([`template`], [`render`]: zero-/few-shot, with/without options, CoT, input
//! inversion), mixes tasks with seeded examples-proportional rates and caps ([`spec`],
//! [`mixture`]) into a deterministic, shardable, resumable stream, tokenizes with T5 conventions
//! ([`tokenizer`]) and packs into plain integer batches ([`pack`]). [`synthetic`] generates a
//! seeded instruction-task suite a tiny T5 can learn on a CPU, with held-out templates and
//! families, and scores it.
//!
//! Main types: [`Example`], [`Task`], [`TaskRegistry`], [`TemplateLibrary`], [`MixtureSpec`],
//! [`Mixture`], [`MixtureStream`], [`MixtureCursor`], [`Tokenizer`], [`Packer`], [`PackedBatch`].
//!
//! ```
//! use flan_data::{Mixture, MixtureSpec, Packer, Tokenizer, TokenizedExample};
//! use std::sync::Arc;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let rows: String = (0..20)
//!     .map(|i| format!("{{\"inputs\": \"What is {i} plus one?\", \"targets\": \"{}\"}}\n", i + 1))
//!     .collect();
//! std::fs::write(dir.path().join("add.jsonl"), rows).unwrap();
//! let spec = MixtureSpec::from_toml(
//!     r#"
//!     [[tasks]]
//!     format = "jsonl"
//!     path = "add.jsonl"
//!     submixture = "flan"
//!     "#,
//!     "example",
//! )
//! .unwrap();
//! let mixture = Arc::new(Mixture::from_spec(&spec, dir.path()).unwrap());
//! let mut stream = mixture.stream(42);
//! let first = stream.next().unwrap().unwrap();
//! assert_eq!(first.task, "add");
//!
//! // Resuming from a cursor continues the same stream.
//! let cursor = stream.cursor();
//! let a = stream.next_batch(3).unwrap();
//! let b = mixture.resume(cursor).unwrap().next_batch(3).unwrap();
//! assert_eq!(a, b);
//!
//! // Tokenize with a freshly trained Unigram tokenizer and pack.
//! let corpus = a.iter().flat_map(|e| [e.inputs.clone(), e.targets.clone()]);
//! let tok = Tokenizer::train_unigram(corpus.collect::<Vec<_>>().into_iter(), 60, 4).unwrap();
//! let mut packer = Packer::new(2, 64, 16).unwrap();
//! for e in &a {
//!     let ex = TokenizedExample { inputs: tok.encode(&e.inputs).unwrap(), targets: tok.encode(&e.targets).unwrap() };
//!     packer.push(&ex);
//! }
//! let batch = packer.finish().unwrap();
//! assert_eq!(batch.unpack().len(), 3);
//! ```

pub mod atomic;
pub mod collection;
pub mod error;
pub mod example;
pub mod hash;
pub mod mixture;
pub mod mode;
pub mod pack;
pub mod pipeline;
pub mod records;
pub mod render;
pub mod source;
pub mod span_corruption;
pub mod spec;
pub mod synthetic;
pub mod task;
pub mod template;
pub mod tokenizer;
pub mod truncation;
mod unigram;

pub use error::{Error, Result};
pub use example::{Example, Provenance};
pub use mixture::{MixedExample, Mixture, MixtureCursor, MixtureStream, TaskRate};
pub use pack::{PackStats, PackedBatch, Packer, TokenizedExample};
pub use render::{Form, TokenCount, WordCount};
pub use source::{Skipped, Strictness};
pub use spec::{MixtureSpec, SourceFormat, Submixture, TaskSpec};
pub use task::{Task, TaskRegistry};
pub use template::TemplateLibrary;
pub use tokenizer::Tokenizer;
pub use truncation::{LengthLimit, Overlong, Truncation, TruncationCounts};
