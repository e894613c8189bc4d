//! The one error type of this crate. Errors about files name the file; errors about the config
//! name the key; a non-finite loss names the step.

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// An I/O error on a named file or directory (the OS error is the `source`, printed after
    /// the path by error chains).
    #[error("{}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The training config file could not be read (TOML syntax, unknown key, wrong type).
    #[error("{}: {message}", file.display())]
    ConfigFile {
        /// The config file.
        file: PathBuf,
        /// What was wrong, with line and column when known.
        message: String,
    },
    /// The config a file starts from (`base = ...`) could not be used.
    #[error("{}: base {}", file.display(), base.display())]
    ConfigBase {
        /// The file that names the base.
        file: PathBuf,
        /// The base, resolved against that file's directory.
        base: PathBuf,
        /// What was wrong with the base.
        source: Box<Error>,
    },
    /// A `--set key=value` override could not be applied.
    #[error("--set {assignment}: {message}")]
    Override {
        /// The override as given.
        assignment: String,
        /// What was wrong (unknown key, wrong type).
        message: String,
    },
    /// A collective or the rendezvous of a distributed run failed (a peer died, timed out, or
    /// the launch environment is wrong); flan-dist's error is the source.
    #[error("distributed")]
    Collective(#[from] flan_dist::Error),
    /// The ranks of a distributed run disagree, or a checkpoint does not fit this launch.
    #[error("distributed: {message}")]
    Distributed {
        /// What failed.
        message: String,
    },
    /// The settings are inconsistent.
    #[error("config: {message}")]
    Config {
        /// What was expected.
        message: String,
    },
    /// Optimiser state that does not fit the optimiser or the parameters.
    #[error("optimizer state: {message}")]
    OptimizerState {
        /// What did not fit.
        message: String,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Another run holds the output directory (see [`crate::lock`]).
    #[error("output directory {} is in use by another run: {holder}; wait for it to end or stop it, or choose another output_dir", dir.display())]
    Locked {
        /// The output directory.
        dir: PathBuf,
        /// Who holds it (pid, host, since when).
        holder: String,
    },
    /// A checkpoint whose files do not match the checksums recorded when it was written (or
    /// whose state cannot be read), when no fallback is allowed.
    #[error("checkpoint {}: {message}", dir.display())]
    CorruptCheckpoint {
        /// The checkpoint directory.
        dir: PathBuf,
        /// What failed, naming the file.
        message: String,
    },
    /// The run stopped on SIGTERM or SIGINT after finishing a step and writing its checkpoint:
    /// rerunning the same command resumes it (the CLI exits with 75, EX_TEMPFAIL).
    #[error("stopped by {signal} after step {step}; {}; run the same command again to resume", match checkpoint {
        Some(dir) => format!("checkpoint {} is written", dir.display()),
        None => "no step was trained, so there is no checkpoint".to_string(),
    })]
    Preempted {
        /// The last step done.
        step: u64,
        /// The signal (`SIGTERM`, `SIGINT`), or which rank received one.
        signal: String,
        /// The checkpoint of `step`, when one was written.
        checkpoint: Option<PathBuf>,
    },
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {source}")]
    Signals {
        /// The underlying error.
        source: std::io::Error,
    },
    /// The loss or the gradients became NaN or infinite.
    #[error("non-finite {what} at step {step} ({value}); lower the learning rate, check the data of this step, or set train.on_nonfinite = \"skip\"")]
    NonFinite {
        /// The optimizer step (from 1) at which it happened.
        step: u64,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The value seen.
        value: f64,
    },
    /// The data pipeline failed.
    #[error("data: {message}")]
    Data {
        /// What went wrong.
        message: String,
    },
    /// A batch that does not fit the model or itself.
    #[error("batch: {message}")]
    Batch {
        /// What was inconsistent.
        message: String,
    },
    /// flan-model could not build, load, save or run the model; its error is the source.
    #[error("model")]
    Network(#[from] flan_model::Error),
    /// The model does not fit the trainer (no trainable parameters, a missing tensor).
    #[error("model: {message}")]
    Model {
        /// What went wrong.
        message: String,
    },
    /// An evaluation hook failed.
    #[error("evaluation at step {step}: {message}")]
    Eval {
        /// The step at which evaluation ran.
        step: u64,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A checkpoint error on `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
