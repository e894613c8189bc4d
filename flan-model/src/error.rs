//! The crate's error type.

use std::path::PathBuf;

/// Errors of `flan-model`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),

    /// A file could not be read or written (the OS error is the `source`, printed after the
    /// path by error chains).
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// A JSON file (config, index) is malformed.
    #[error("{}:{line}: invalid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// The parser's message.
        source: serde_json::Error,
    },

    /// The config parses but describes no valid T5.
    #[error("{}: invalid T5 config: {reason}", path.display())]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A safetensors file is malformed or holds an unsupported dtype.
    #[error("{}: {reason}", path.display())]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The checkpoint does not match the network the config describes.
    #[error("{} does not match its config.json:{}{}", dir.display(), list("missing tensors", missing), list("unexpected tensors", unexpected))]
    KeyMismatch {
        /// The model directory.
        dir: PathBuf,
        /// Tensors the network needs that no file provides.
        missing: Vec<String>,
        /// Tensors in the files that the network does not have.
        unexpected: Vec<String>,
    },

    /// An adapter directory's `adapter_config.json` is not a LoRA adapter flan can apply.
    #[error("{}: {reason}", path.display())]
    InvalidAdapter {
        /// The adapter config (or the directory).
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// An adapter's weights do not match the modules its config targets on this model.
    #[error("{} does not match its adapter_config.json on this model:{}{}", dir.display(), list("missing tensors", missing), list("unexpected tensors", unexpected))]
    AdapterMismatch {
        /// The adapter directory.
        dir: PathBuf,
        /// Adapter tensors the config implies that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that belong to no targeted module.
        unexpected: Vec<String>,
    },

    /// A tensor has the wrong shape.
    #[error("{}: tensor `{name}` has shape {found:?} but the config needs {expected:?}", path.display())]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The checkpoint key.
        name: String,
        /// Shape the config implies.
        expected: Vec<i64>,
        /// Shape in the file.
        found: Vec<i64>,
    },

    /// A checkpoint holds NaN or infinite weights (a diverged run, a corrupt download or a cast
    /// that overflowed): every output of such a model is garbage, so it is refused at load.
    #[error(
        "{}: tensor `{tensor}` has {count} non-finite value(s) (NaN or infinity){after}; the \
         checkpoint is unusable (a diverged training run or a corrupt file)",
        dir.display()
    )]
    NonFiniteWeights {
        /// The model directory.
        dir: PathBuf,
        /// The first tensor (in checkpoint-key order) with non-finite values.
        tensor: String,
        /// How many of its values are not finite.
        count: i64,
        /// Empty, or where the values became non-finite (` after the cast to float16`).
        after: String,
    },

    /// libtorch failed inside a model call (see [`crate::fallible`]).
    #[error("libtorch failed while {during}: {message}")]
    Libtorch {
        /// What the call was doing.
        during: &'static str,
        /// libtorch's message (its first line).
        message: String,
    },

    /// A model name resolves to nothing usable.
    #[error("model `{model}`: {reason}")]
    ModelNotFound {
        /// What the user asked for.
        model: String,
        /// What was tried and where to put the files.
        reason: String,
    },

    /// libtorch refused to switch autocast (an unsupported device or dtype).
    #[error("autocast: {0}")]
    Autocast(String),

    /// Activation checkpointing cannot run as asked (see
    /// [`crate::T5ForConditionalGeneration::set_activation_checkpointing`]), or a recomputed
    /// block did not repeat its first pass.
    #[error("activation checkpointing: {0}")]
    ActivationCheckpointing(String),
    /// A caller passed inconsistent inputs (shapes, options).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A dtype name that is not one of [`crate::dtype::ACCEPTED`].
    #[error("unknown dtype `{given}`: expected {}", crate::dtype::ACCEPTED)]
    UnknownDtype {
        /// The name as given.
        given: String,
    },

    /// A device name that is not one of [`crate::device::ACCEPTED`].
    #[error("unknown device `{given}`: expected {}", crate::device::ACCEPTED)]
    UnknownDevice {
        /// The name as given.
        given: String,
    },

    /// The device a spec resolves to does not exist on this machine (or for this rank).
    #[error("device `{spec}`: {reason}")]
    DeviceUnavailable {
        /// The spec as the user wrote it (`cuda`, `cuda:3`, `auto`).
        spec: String,
        /// Which device was wanted, why, and how many there are.
        reason: String,
    },

    /// A launcher's local-rank variable (`LOCAL_RANK`, `SLURM_LOCALID`) that is not an index.
    #[error(
        "{variable}={value:?}: expected a non-negative integer (the index of this process on \
         its node, as torchrun or srun set it)"
    )]
    LauncherVariable {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
}

fn list(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    const SHOWN: usize = 20;
    let mut s = format!(
        " {} {what}: {}",
        names.len(),
        names[..names.len().min(SHOWN)].join(", ")
    );
    if names.len() > SHOWN {
        s.push_str(&format!(", ... ({} more)", names.len() - SHOWN));
    }
    s.push(';');
    s
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
