//! Integration tests of flan-model, one binary split by topic. Parity references come from
//! `transformers` via `cargo xtask fixtures` (committed under `tests/fixtures/`).

mod activation_checkpointing;
mod autocast;
mod checkpoint;
mod common;
mod continuous;
mod dropout;
mod generation;
mod lora;
mod packed;
mod parity;
