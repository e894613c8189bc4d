//! The one error type of this crate.

use std::path::PathBuf;

/// Errors of `flan-eval`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record of a benchmark, exemplar or predictions file could not be read.
    #[error("{}:{line}: {message}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line number (0 when the problem concerns the whole file).
        line: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// A file or directory could not be opened, read or written (the cause is the `source`, which
    /// error chains print after the path).
    #[error("cannot access {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A request that the chosen benchmark or mode cannot serve (e.g. CoT on TyDiQA).
    #[error("{0}")]
    Unsupported(String),
    /// A setting out of its range (e.g. self-consistency with k = 0).
    #[error("invalid setting: {0}")]
    Config(String),
    /// Two runs that should have evaluated the same items (before and after training) did not:
    /// the message counts and names the items found in only one of them.
    #[error("the runs cannot be paired item by item: {0}")]
    Unpaired(String),
    /// Measured points of the replication (points.json) that break its rules; the message
    /// names every offending point and field and says what was expected.
    #[error("invalid replication points: {0}")]
    InvalidPoints(String),
    /// The model behind [`crate::model::EvalModel`] failed or answered with the wrong shape.
    #[error("model: {0}")]
    Model(String),
    /// The toxicity scorer (a Perspective-style endpoint or a command) failed or answered with
    /// the wrong shape; the message names the text and, for HTTP, the status.
    #[error("toxicity scorer: {0}")]
    Scorer(String),
    /// A hub dataset (`--data hf:org/name`) could not be found or fetched; the reason says where
    /// it was looked for and how to get it.
    #[error("dataset {dataset}: {reason}")]
    HubDataset {
        /// The dataset as given (`hf:cais/mmlu`).
        dataset: String,
        /// What was looked for, where, and how to get it.
        reason: String,
        /// The hub's error, when there was one (boxed: it is large and rare).
        source: Option<Box<flan_hub::Error>>,
    },
    /// flan-data could not build or score what was asked (e.g. the synthetic suite).
    #[error(transparent)]
    Data(#[from] flan_data::Error),
    /// Serialising a report failed (the serializer's error is the `source`).
    #[error("serialising JSON")]
    Json(#[from] serde_json::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A parse error at `file:line`.
    pub fn parse(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Parse {
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reads a whole file as UTF-8, naming the file on failure. A leading byte-order mark is dropped:
/// every reader accepts one, as files exported by editors and spreadsheets often start with it.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    let mut text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}
