//! Data parallelism for the trainer on flan-dist (libtorch's c10d: Gloo on CPU, NCCL on CUDA).
//!
//! A launch is distributed when its world size is above 1: `WORLD_SIZE` (torchrun, or any
//! launcher that sets `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), else `SLURM_NTASKS`
//! (`srun`, with `SLURM_PROCID` as the rank and `MASTER_ADDR`/`MASTER_PORT` set by the job script).
//! Each rank's device comes from the config's `device` and its local rank (see
//! [`flan_model::DeviceSpec::resolve`]). Every rank builds the same model, which is then
//! overwritten with rank 0's parameters; each rank reads its own shard of the mixture; the loss
//! of each rank is divided by the target tokens of the whole global batch and the gradients are
//! summed, so that W ranks × batch b take exactly the step of one process with batch W·b. Only
//! rank 0 writes checkpoints, metrics and the final model; the checkpoint records every rank's
//! data cursor and the world size, and a resume with another world size is refused.
//!
//! Collectives fail instead of hanging: a dead peer surfaces as an error after the group's
//! timeout (`FLAN_DIST_TIMEOUT_SECS`, default 300 s).

use std::time::Duration;

use flan_dist::{Backend, DataParallel, Membership, ProcessGroup, ReduceOp, Rendezvous};
use tch::{Device, Kind, Tensor};

use crate::optim::NamedParam;
use crate::{Error, Result};

/// The environment variable with the collective timeout in seconds.
pub const TIMEOUT_ENV: &str = "FLAN_DIST_TIMEOUT_SECS";

/// This process's place in a data-parallel run.
pub struct Distributed {
    group: ProcessGroup,
}

/// This process's rank and world size as its launcher set them (`RANK`/`WORLD_SIZE`, else
/// `SLURM_PROCID`/`SLURM_NTASKS`; flan-dist's [`Membership`] is the one reader of those
/// variables, so the trainer and the rendezvous never disagree about who is who). `None` outside
/// a launcher.
fn membership(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Membership>> {
    Ok(Membership::from_lookup(lookup)?)
}

/// Whether `membership` makes a distributed run: more than one process.
fn is_distributed(membership: Option<Membership>) -> bool {
    membership.is_some_and(|m| m.world_size > 1)
}

/// Whether this process writes outputs: a single process, or rank 0 of a distributed launch.
pub fn is_primary_from_env() -> Result<bool> {
    is_primary(|name| std::env::var(name).ok())
}

/// This process's rank as its launcher set it; 0 for a single process.
pub fn rank_from_env() -> Result<usize> {
    Ok(membership(|name| std::env::var(name).ok())?.map_or(0, |m| m.rank))
}

/// [`is_primary_from_env`] over any variable lookup.
fn is_primary(lookup: impl Fn(&str) -> Option<String>) -> Result<bool> {
    Ok(membership(lookup)?.is_none_or(|m| m.rank == 0))
}

impl Distributed {
    /// Joins the group the environment describes; `None` for a single process. Gloo on CPU,
    /// NCCL on CUDA (when flan-dist is built with its `nccl` feature).
    pub fn from_env(device: Device) -> Result<Option<Distributed>> {
        if !is_distributed(membership(|name| std::env::var(name).ok())?) {
            return Ok(None);
        }
        let mut rendezvous = Rendezvous::from_env()?;
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
        let group = ProcessGroup::new(&rendezvous, backend)?;
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
        Ok(DataParallel::new(&self.group).broadcast_tensors(params)?)
    }

    /// Sums the gradients of `params` over the ranks.
    pub fn sum_gradients(&self, params: &[NamedParam]) -> Result<()> {
        Ok(DataParallel::new(&self.group).reduce_gradients(params, ReduceOp::Sum)?)
    }

    /// Element-wise sums of `values` over the ranks (counts and loss sums, in f64 so that token
    /// counts stay exact).
    pub fn sum(&self, values: &[f64], device: Device) -> Result<Vec<f64>> {
        let mut t = Tensor::from_slice(values).to_device(device);
        self.group.all_reduce(&mut t, ReduceOp::Sum)?;
        Ok(Vec::<f64>::try_from(t.to_device(Device::Cpu))?)
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
        self.group.all_reduce(&mut t, ReduceOp::Sum)?;
        let table = Vec::<i64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Int64))?;
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
        Ok(self.group.barrier()?)
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
    use std::collections::HashMap;

    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn lookup(pairs: Vars) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn primary_and_distributed_follow_the_rendezvous_variables() {
        // (variables, is primary, is distributed)
        let cases: [(Vars, bool, bool); 7] = [
            (&[], true, false),
            (&[("RANK", "0"), ("WORLD_SIZE", "1")], true, false),
            (&[("RANK", "0"), ("WORLD_SIZE", "4")], true, true),
            (&[("RANK", "3"), ("WORLD_SIZE", "4")], false, true),
            (&[("SLURM_PROCID", "2"), ("SLURM_NTASKS", "4")], false, true),
            (&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")], true, false),
            // torchrun under srun: torchrun's rank decides.
            (
                &[
                    ("RANK", "0"),
                    ("WORLD_SIZE", "8"),
                    ("SLURM_PROCID", "1"),
                    ("SLURM_NTASKS", "2"),
                ],
                true,
                true,
            ),
        ];
        for (pairs, primary, distributed) in cases {
            assert_eq!(is_primary(lookup(pairs)).unwrap(), primary, "{pairs:?}");
            assert_eq!(
                is_distributed(membership(lookup(pairs)).unwrap()),
                distributed,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn a_bad_launch_environment_is_an_error_not_a_single_process() {
        for (pairs, needle) in [
            (&[("RANK", "1"), ("WORLD_SIZE", "x")][..], "WORLD_SIZE"),
            (&[("WORLD_SIZE", "4")][..], "RANK"),
            (&[("RANK", "4"), ("WORLD_SIZE", "4")][..], "RANK"),
            (&[("SLURM_PROCID", "1")][..], "SLURM_NTASKS"),
        ] {
            let err = flan_data::error::chain(&is_primary(lookup(pairs)).unwrap_err());
            assert!(err.contains(needle), "{pairs:?}: {err}");
        }
    }

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
