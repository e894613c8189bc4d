//! The errors of loading a T5 for evaluation.

use std::path::PathBuf;

/// What can go wrong loading a checkpoint for evaluation (calls report `flan_eval::Error`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The network could not be loaded (config, weights, non-finite values).
    #[error("loading the model")]
    Model(#[from] flan_model::Error),
    /// The checkpoint's tokenizer could not be read.
    #[error("{}: reading the tokenizer", file.display())]
    Tokenizer {
        /// The tokenizer file.
        file: PathBuf,
        /// What the tokenizer said.
        source: flan_data::Error,
    },
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;
