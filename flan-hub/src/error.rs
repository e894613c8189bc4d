//! The one error type of this crate.

use std::path::PathBuf;

/// Errors of `flan-hub`. Callers add what the repository was wanted for and how to get it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `HF_HUB_OFFLINE` is set and the file is not in the cache, so nothing was requested.
    #[error(
        "{repo}: {file} is not in the cache and HF_HUB_OFFLINE is set, so nothing was downloaded"
    )]
    Offline {
        /// The repository (`dataset cais/mmlu`).
        repo: String,
        /// The file (or `the file list`).
        file: String,
    },
    /// No cache directory: none of `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HOME` is set.
    #[error("no Hugging Face cache directory: set HF_HUB_CACHE or HF_HOME")]
    NoCache,
    /// The hub (or `HF_ENDPOINT`) answered with an error or not at all.
    #[error("{repo}: {what} from {endpoint}")]
    Api {
        /// The repository.
        repo: String,
        /// What was asked (`the file list of revision main`, `file all/test-....parquet`).
        what: String,
        /// The endpoint asked.
        endpoint: String,
        /// What hf-hub (ureq) reported.
        source: Box<hf_hub::api::sync::ApiError>,
    },
    /// A cache directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
