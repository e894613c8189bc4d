//! The one error type of this crate. Every variant that concerns a file names it, and where a
//! record is at fault, its 1-based line, so that a user can open the file and fix it.

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record of a data file could not be read.
    #[error("{}:{line}: {message}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line number (for JSON files: the line where the faulty value starts).
        line: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// An I/O error on a named file. The message is the path; the OS error is the `source`,
    /// which error chains (`{:#}`, [`chain`]) print after it, so it appears once.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An output file could not be created, written, synced or renamed into place (the OS
    /// error is the `source`). Separate from [`Error::Io`], which is about reading inputs: a
    /// full disk is not bad data.
    #[error("writing {}", path.display())]
    Write {
        /// The output file, as the user named it.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tokenizer could not be loaded, trained, saved or run.
    #[error("tokenizer{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The tokenizer file, when one is involved.
        path: Option<PathBuf>,
        /// What went wrong.
        message: String,
    },
    /// A configuration (mixture spec, template file) is inconsistent.
    #[error("{context}: {message}")]
    Config {
        /// The file or section at fault.
        context: String,
        /// What was expected.
        message: String,
    },
}

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

    /// An error writing the output file `path`.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.into(),
            source,
        }
    }

    /// A configuration error in `context`.
    pub fn config(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            context: context.into(),
            message: message.into(),
        }
    }
}

/// `err` and each of its causes, joined by `: ` (what anyhow's `{:#}` prints), for the places
/// that keep an error as text: `err.to_string()` alone would drop the causes that error types
/// leave to [`std::error::Error::source`].
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
