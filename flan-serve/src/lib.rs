//! `flan-serve`: a T5 as an HTTP service — what `flan serve` runs.
//!
//! Endpoints: TGI's `POST /generate` and `POST /generate_stream` (server-sent events), OpenAI's
//! `POST /v1/completions` (also streamed), flan's `POST /score` (log-likelihood of targets), and
//! `GET /health`, `GET /info`, `GET /metrics` (Prometheus text).
//!
//! Main types:
//! - [`ServeConfig`] ([`ModelSpec`], [`Limits`]) and [`start`], which returns a
//!   [`RunningServer`]: the model loads on its own thread while the address already answers
//!   (`/health` is 503 until it is loaded).
//! - The model thread ([`worker`]) owns the T5 and runs flan-model's
//!   [`flan_model::continuous::DecodeBatch`]: sequences join the decode batch at step boundaries
//!   and leave it when done, so greedy outputs equal `flan generate`'s whatever else is in the
//!   batch, and a seeded sample is the same whatever else is in the batch.
//! - [`Limits`]: queue (429 with `Retry-After`), input and new tokens (422), body size (413),
//!   request timeout (504); malformed JSON and wrong types get 400 naming the field.
//!
//! ```no_run
//! use flan_serve::{start, Limits, ModelSpec, ServeConfig};
//! # fn main() -> flan_serve::Result<()> {
//! let config = ServeConfig {
//!     model: ModelSpec {
//!         model: "google/flan-t5-small".into(),
//!         adapter: None,
//!         device: "cpu".parse().unwrap(),
//!         dtype: "f32".parse().unwrap(),
//!     },
//!     addr: "127.0.0.1:8080".parse().unwrap(),
//!     limits: Limits::default(),
//!     seed: 0,
//! };
//! let server = start(config, std::future::pending())?;
//! server.join()
//! # }
//! ```

#![deny(missing_docs)]

pub mod error;
mod http;
pub mod limits;
pub mod metrics;
pub mod server;
mod session;
pub mod state;
pub mod worker;

pub use error::{ApiError, Error, Result};
pub use limits::Limits;
pub use server::{start, termination, ModelSpec, RunningServer, ServeConfig};
