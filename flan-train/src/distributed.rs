//! Data parallelism for the trainer on flan-dist (libtorch's c10d: Gloo on CPU, NCCL on CUDA).
//!
//! A launch is distributed when `WORLD_SIZE` > 1 (torchrun, or any launcher that sets `RANK`,
//! `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`). Every rank builds the same model, which is then
//! overwritten with rank 0's parameters; each rank reads its own shard of the mixture; the loss
//! of each rank is divided by the target tokens of the whole global batch and the gradients are
//! summed, so that W ranks × batch b take exactly the step of one process with batch W·b. Only
//! rank 0 writes checkpoints, metrics and the final model; the checkpoint records every rank's
//! data cursor and the world size, and a resume with another world size is refused.
//!
//! Collectives fail instead of hanging: a dead peer surfaces as an error after the group's
//! timeout (`FLAN_DIST_TIMEOUT_SECS`, default 300 s).

use std::time::Duration;

use flan_dist::{Backend, DataParallel, ProcessGroup, ReduceOp, Rendezvous};
use tch::{Device, Kind, Tensor};

use crate::optim::NamedParam;
use crate::{Error, Result};

/// The environment variable with the collective timeout in seconds.
pub const TIMEOUT_ENV: &str = "FLAN_DIST_TIMEOUT_SECS";

/// This process's place in a data-parallel run.
pub struct Distributed {
    group: ProcessGroup,
}

fn dist_error(e: flan_dist::Error) -> Error {
    Error::Distributed {
        message: e.to_string(),
    }
}

/// `WORLD_SIZE` from the environment (1 when unset).
fn world_size_from_env() -> Result<usize> {
    match std::env::var("WORLD_SIZE") {
        Err(_) => Ok(1),
        Ok(v) => v.trim().parse().map_err(|_| Error::Distributed {
            message: format!("WORLD_SIZE={v:?} is not a number of processes"),
        }),
    }
}

/// Whether this process writes outputs: a single process, or rank 0 of a distributed launch.
pub fn is_primary_from_env() -> Result<bool> {
    if world_size_from_env()? <= 1 {
        return Ok(true);
    }
    match std::env::var("RANK") {
        Ok(r) => r
            .trim()
            .parse::<usize>()
            .map(|r| r == 0)
            .map_err(|_| Error::Distributed {
                message: format!("RANK={r:?} is not a rank number"),
            }),
        Err(_) => Err(Error::Distributed {
            message: "WORLD_SIZE > 1 but RANK is not set".into(),
        }),
    }
}

impl Distributed {
    /// Joins the group the environment describes; `None` for a single process. Gloo on CPU,
    /// NCCL on CUDA (when flan-dist is built with its `nccl` feature).
    pub fn from_env(device: Device) -> Result<Option<Distributed>> {
        if world_size_from_env()? <= 1 {
            return Ok(None);
        }
        let mut rendezvous = Rendezvous::from_env().map_err(dist_error)?;
        if let Ok(v) = std::env::var(TIMEOUT_ENV) {
            let secs: u64 = v.trim().parse().map_err(|_| Error::Distributed {
                message: format!("{TIMEOUT_ENV}={v:?} is not a number of seconds"),
            })?;
            rendezvous = rendezvous.with_timeout(Duration::from_secs(secs.max(1)));
        }
        let backend = match device {
            Device::Cpu => Backend::Gloo,
            _ => Backend::Nccl,
        };
        let group = ProcessGroup::new(&rendezvous, backend).map_err(dist_error)?;
        Ok(Some(Distributed { group }))
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// Overwrites `params` with rank 0's values.
    pub fn broadcast_parameters(&self, params: &[NamedParam]) -> Result<()> {
        DataParallel::new(&self.group)
            .broadcast_tensors(params)
            .map_err(dist_error)
    }

    /// Sums the gradients of `params` over the ranks.
    pub fn sum_gradients(&self, params: &[NamedParam]) -> Result<()> {
        DataParallel::new(&self.group)
            .reduce_gradients(params, ReduceOp::Sum)
            .map_err(dist_error)
    }

    /// Element-wise sums of `values` over the ranks (counts and loss sums, in f64 so that token
    /// counts stay exact).
    pub fn sum(&self, values: &[f64], device: Device) -> Result<Vec<f64>> {
        let mut t = Tensor::from_slice(values).to_device(device);
        self.group
            .all_reduce(&mut t, ReduceOp::Sum)
            .map_err(dist_error)?;
        Vec::<f64>::try_from(t.to_device(Device::Cpu)).map_err(|e| Error::Distributed {
            message: e.to_string(),
        })
    }

    /// Every rank's `bytes`, in rank order (two all-reduces: the longest length, then a
    /// `[world, longest]` table where each rank fills its row).
    pub fn all_gather_bytes(&self, bytes: &[u8], device: Device) -> Result<Vec<Vec<u8>>> {
        let world = self.world_size();
        let rank = self.rank();
        let mut lengths = vec![0.0; world];
        lengths[rank] = bytes.len() as f64;
        let lengths = self.sum(&lengths, device)?;
        let longest = lengths.iter().fold(0.0f64, |a, &b| a.max(b)) as usize;
        let mut table = vec![0i64; world * longest.max(1)];
        for (i, &b) in bytes.iter().enumerate() {
            table[rank * longest + i] = i64::from(b);
        }
        let mut t = Tensor::from_slice(&table).to_device(device);
        self.group
            .all_reduce(&mut t, ReduceOp::Sum)
            .map_err(dist_error)?;
        let table =
            Vec::<i64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Int64)).map_err(|e| {
                Error::Distributed {
                    message: e.to_string(),
                }
            })?;
        Ok((0..world)
            .map(|r| {
                table[r * longest..r * longest + lengths[r] as usize]
                    .iter()
                    .map(|&v| v as u8)
                    .collect()
            })
            .collect())
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        self.group.barrier().map_err(dist_error)
    }
}

/// The checkpoint form of the data cursors of a distributed run.
pub fn cursors_to_json(cursors: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "world_size": cursors.len(), "ranks": cursors })
}

/// This rank's cursor out of a checkpoint's data cursor; an error when the checkpoint was
/// written by a run with another world size (its data shards would not line up).
pub fn cursor_for_rank(
    cursor: &serde_json::Value,
    rank: usize,
    world_size: usize,
) -> Result<serde_json::Value> {
    let saved_world = cursor
        .get("world_size")
        .and_then(serde_json::Value::as_u64)
        .map(|w| w as usize);
    match saved_world {
        None if world_size == 1 => Ok(cursor.clone()),
        None => Err(Error::Distributed {
            message: format!(
                "the checkpoint was written by a single-process run; resume it with 1 process, not {world_size}"
            ),
        }),
        Some(w) if w != world_size => Err(Error::Distributed {
            message: format!(
                "the checkpoint was written by a run of {w} processes; resume it with {w} processes, not {world_size}"
            ),
        }),
        Some(_) => cursor
            .get("ranks")
            .and_then(|r| r.get(rank))
            .cloned()
            .ok_or_else(|| Error::Distributed {
                message: format!("the checkpoint has no data cursor for rank {rank}"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_resumes_only_with_its_world_size() {
        let single = serde_json::json!({"position": 7});
        assert_eq!(cursor_for_rank(&single, 0, 1).unwrap(), single);
        let err = cursor_for_rank(&single, 0, 2).unwrap_err().to_string();
        assert!(err.contains("single-process run"), "{err}");

        let two = cursors_to_json(vec![
            serde_json::json!({"p": 1}),
            serde_json::json!({"p": 2}),
        ]);
        assert_eq!(
            cursor_for_rank(&two, 1, 2).unwrap(),
            serde_json::json!({"p": 2})
        );
        let err = cursor_for_rank(&two, 0, 4).unwrap_err().to_string();
        assert!(
            err.contains("run of 2 processes") && err.contains("not 4"),
            "{err}"
        );
        let err = cursor_for_rank(&two, 0, 1).unwrap_err().to_string();
        assert!(err.contains("run of 2 processes"), "{err}");
    }
}
