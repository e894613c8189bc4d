//! The one error type of flan-dist.

/// Everything that can go wrong when setting up or using a process group.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rendezvous variable (`RANK`, `WORLD_SIZE`, `SLURM_PROCID`, `SLURM_NTASKS`,
    /// `MASTER_ADDR`, `MASTER_PORT`) is missing or malformed.
    #[error("environment variable {name}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What was expected.
        reason: String,
    },
    /// Arguments that make no sense together (rank outside the world, root out of range, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor that c10d cannot reduce in place (not contiguous, wrong device, ...).
    #[error("tensor not usable for {op}: {reason}")]
    Tensor {
        /// The collective.
        op: &'static str,
        /// Why the tensor was refused.
        reason: String,
    },
    /// An exception thrown by libtorch's c10d (store, Gloo, NCCL), with its message. A peer that
    /// died or a collective that timed out shows up here.
    #[error("c10d {op} failed: {message}")]
    C10d {
        /// What we asked c10d to do.
        op: &'static str,
        /// The exception's message (without the C++ backtrace).
        message: String,
    },
    /// An error from tch.
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

/// Result alias of flan-dist.
pub type Result<T> = std::result::Result<T, Error>;
