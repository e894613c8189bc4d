//! The exit status of `flan`: one per kind of failure, so that a scheduler or a platform can
//! decide whether a retry can help (a preempted run resumes; a wrong config fails again). The
//! table is the README's; clap's own usage errors exit with 2 as well.

use std::fmt;

/// Why `flan` stopped, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Anything not classified below (an I/O error writing outputs, a libtorch failure, ...): 1.
    Failure,
    /// A wrong flag, option value or config (the same invocation fails again): 2.
    Usage,
    /// Input data that cannot be read as its format says (file:line in the message): 3.
    Data,
    /// A model directory, hub id, checkpoint of weights or tokenizer that cannot be used: 4.
    Model,
    /// Training stopped on a non-finite loss or gradient: 5.
    NonFinite,
    /// A rendezvous or collective of a distributed run failed (a peer died or timed out): 6.
    Distributed,
    /// Another run holds the output directory (its pid and host are in the message): 7. Retry
    /// once that run has ended.
    Locked,
    /// Stopped by SIGTERM or SIGINT after saving a checkpoint: 75 (`EX_TEMPFAIL` of
    /// sysexits.h, "try again later"). Rerunning the same command resumes the run.
    Preempted,
}

impl ExitKind {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Failure => 1,
            ExitKind::Usage => 2,
            ExitKind::Data => 3,
            ExitKind::Model => 4,
            ExitKind::NonFinite => 5,
            ExitKind::Distributed => 6,
            ExitKind::Locked => 7,
            ExitKind::Preempted => 75,
        }
    }

    /// The kind a child `flan` reported with its exit status `code` (a pretraining stage's),
    /// so that the parent exits as the child did: a preempted stage is preempted work.
    pub fn from_code(code: i32) -> ExitKind {
        [
            ExitKind::Usage,
            ExitKind::Data,
            ExitKind::Model,
            ExitKind::NonFinite,
            ExitKind::Distributed,
            ExitKind::Locked,
            ExitKind::Preempted,
        ]
        .into_iter()
        .find(|k| k.code() == code)
        .unwrap_or(ExitKind::Failure)
    }
}

/// An error the CLI finds itself, with its kind (a flag out of range is [`ExitKind::Usage`]).
#[derive(Debug)]
pub struct Classified {
    /// The exit status it stands for.
    pub kind: ExitKind,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// A usage error: `return Err(usage(format!(...)).into())`.
pub fn usage(message: impl Into<String>) -> Classified {
    Classified {
        kind: ExitKind::Usage,
        message: message.into(),
    }
}

/// A data error the CLI finds itself (a record over a limit that refuses it).
pub fn data(message: impl Into<String>) -> Classified {
    Classified {
        kind: ExitKind::Data,
        message: message.into(),
    }
}

/// A model error the CLI finds itself (outputs that are NaN).
pub fn model(message: impl Into<String>) -> Classified {
    Classified {
        kind: ExitKind::Model,
        message: message.into(),
    }
}

/// The kind of the outermost cause in `err`'s chain that says what it is.
pub fn classify(err: &anyhow::Error) -> ExitKind {
    err.chain()
        .find_map(|cause| {
            if let Some(c) = cause.downcast_ref::<Classified>() {
                return Some(c.kind);
            }
            if let Some(e) = cause.downcast_ref::<flan_train::Error>() {
                use flan_train::Error as E;
                return match e {
                    E::ConfigFile { .. } | E::Override { .. } | E::Config { .. } => {
                        Some(ExitKind::Usage)
                    }
                    E::Data { .. } => Some(ExitKind::Data),
                    E::Model { .. } | E::CorruptCheckpoint { .. } => Some(ExitKind::Model),
                    // flan-model's error, next in the chain, says which kind it is.
                    E::Network(_) => None,
                    E::Collective(_) => Some(ExitKind::Distributed),
                    E::NonFinite { .. } => Some(ExitKind::NonFinite),
                    E::Distributed { .. } => Some(ExitKind::Distributed),
                    E::Locked { .. } => Some(ExitKind::Locked),
                    E::Preempted { .. } => Some(ExitKind::Preempted),
                    _ => None,
                };
            }
            if let Some(e) = cause.downcast_ref::<flan_data::Error>() {
                return Some(data_kind(e));
            }
            if let Some(e) = cause.downcast_ref::<flan_model::Error>() {
                use flan_model::Error as E;
                return match e {
                    E::UnknownDevice { .. }
                    | E::DeviceUnavailable { .. }
                    | E::LauncherVariable { .. }
                    | E::InvalidInput(_) => Some(ExitKind::Usage),
                    // Out of memory, a CUDA error: not the model's fault, and a retry elsewhere
                    // may succeed.
                    E::Libtorch { .. } => Some(ExitKind::Failure),
                    _ => Some(ExitKind::Model),
                };
            }
            if let Some(e) = cause.downcast_ref::<flan_eval::Error>() {
                use flan_eval::Error as E;
                return match e {
                    E::Data(inner) => Some(data_kind(inner)),
                    E::Parse { .. } | E::Io { .. } | E::HubDataset { .. } | E::InvalidPoints(_) => {
                        Some(ExitKind::Data)
                    }
                    E::Config(_) | E::Unsupported(_) => Some(ExitKind::Usage),
                    E::Model(_) => Some(ExitKind::Model),
                    _ => None,
                };
            }
            None
        })
        .unwrap_or(ExitKind::Failure)
}

/// The kind of a flan-data error: reading inputs is data (3), writing outputs a plain failure
/// (1: a full disk is not bad data), a tokenizer a model error (4), a spec a usage error (2).
fn data_kind(e: &flan_data::Error) -> ExitKind {
    use flan_data::Error as E;
    match e {
        E::Parse { .. } | E::Io { .. } => ExitKind::Data,
        E::Write { .. } => ExitKind::Failure,
        E::Tokenizer { .. } => ExitKind::Model,
        E::Config { .. } => ExitKind::Usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_childs_exit_status_maps_back_to_its_kind() {
        for kind in [
            ExitKind::Failure,
            ExitKind::Usage,
            ExitKind::Preempted,
            ExitKind::Locked,
        ] {
            assert_eq!(ExitKind::from_code(kind.code()), kind);
        }
        assert_eq!(ExitKind::from_code(-9), ExitKind::Failure);
        assert_eq!(ExitKind::from_code(101), ExitKind::Failure);
    }

    #[test]
    fn the_outermost_typed_cause_decides_and_context_is_looked_through() {
        let data: anyhow::Error =
            flan_data::Error::parse("in.jsonl", 3, "expected an object").into();
        assert_eq!(classify(&data), ExitKind::Data);
        let wrapped = Err::<(), _>(data).context("reading the input").unwrap_err();
        assert_eq!(classify(&wrapped), ExitKind::Data);
        let nonfinite: anyhow::Error = flan_train::Error::NonFinite {
            step: 3,
            what: "loss",
            value: f64::NAN,
        }
        .into();
        assert_eq!(classify(&nonfinite).code(), 5);
        assert_eq!(
            classify(&usage("--top-p must be in (0, 1]").into()).code(),
            2
        );
        assert_eq!(classify(&anyhow::anyhow!("disk full")), ExitKind::Failure);
        let model: anyhow::Error = flan_model::Error::ModelNotFound {
            model: "org/x".into(),
            reason: "offline".into(),
        }
        .into();
        assert_eq!(classify(&model).code(), 4);
        let locked: anyhow::Error = flan_train::Error::Locked {
            dir: "runs/x".into(),
            holder: "pid 7 on host h".into(),
        }
        .into();
        assert_eq!(classify(&locked).code(), 7);
        let preempted = Err::<(), _>(flan_train::Error::Preempted {
            step: 3,
            signal: "SIGTERM".into(),
            checkpoint: None,
        })
        .context("flan train")
        .unwrap_err();
        assert_eq!(classify(&preempted).code(), 75);
        let corrupt: anyhow::Error = flan_train::Error::CorruptCheckpoint {
            dir: "runs/x/checkpoints/step-00000003".into(),
            message: "model.safetensors does not match its checksum".into(),
        }
        .into();
        assert_eq!(classify(&corrupt).code(), 4);
    }
}
