//! Who am I and where do we meet: the launcher's environment.
//!
//! torchrun (and the Kubernetes PyTorchJob operator) set `RANK` and `WORLD_SIZE`; Slurm's `srun`
//! sets `SLURM_PROCID` and `SLURM_NTASKS` for each task it starts, which PyTorch users take as
//! rank and world size. Either way the store's address comes from `MASTER_ADDR` and
//! `MASTER_PORT`. When both launchers' variables are present (`srun` starting torchrun), the
//! processes are torchrun's workers and torchrun's variables win. [`Membership`] is the one place
//! that reads the rank variables; [`Rendezvous`] adds the address.

use std::time::Duration;

use crate::error::{Error, Result};

/// The port torchrun uses when `MASTER_PORT` is not set.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// Timeout used for rendezvous and collectives unless the caller picks another: c10d's default
/// for Gloo (30 minutes) is far too long for a dead peer to be noticed; this is long enough for a
/// slow rank to load a large checkpoint.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The launcher whose variables gave a process its rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun (also the Kubernetes PyTorchJob operator): `RANK`, `WORLD_SIZE`.
    Torchrun,
    /// Slurm's `srun`: `SLURM_PROCID`, `SLURM_NTASKS`.
    Slurm,
}

impl Launcher {
    /// The launchers in the order their variables are consulted.
    pub const ALL: [Launcher; 2] = [Launcher::Torchrun, Launcher::Slurm];

    /// The variable with the rank.
    pub fn rank_variable(self) -> &'static str {
        match self {
            Launcher::Torchrun => "RANK",
            Launcher::Slurm => "SLURM_PROCID",
        }
    }

    /// The variable with the number of processes.
    pub fn world_size_variable(self) -> &'static str {
        match self {
            Launcher::Torchrun => "WORLD_SIZE",
            Launcher::Slurm => "SLURM_NTASKS",
        }
    }
}

/// This process's rank and the size of its group, as its launcher set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes in the group.
    pub world_size: usize,
    /// Whose variables these are.
    pub launcher: Launcher,
}

impl Membership {
    /// Reads the process environment; see [`Membership::from_lookup`].
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The rank and world size from the first launcher whose rank or world-size variable is set
    /// (torchrun's, then Slurm's); `None` when neither is (a process started by hand). A launcher
    /// whose variables are half set or malformed is an error, not a reason to try the next one:
    /// a wrong world size would hang or corrupt the run.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        for launcher in Launcher::ALL {
            let (rank_var, world_var) = (launcher.rank_variable(), launcher.world_size_variable());
            let (rank, world) = (lookup(rank_var), lookup(world_var));
            if rank.is_none() && world.is_none() {
                continue;
            }
            let rank: usize = parse_required(rank_var, rank, world_var)?;
            let world_size: usize = parse_required(world_var, world, rank_var)?;
            if world_size == 0 {
                return Err(Error::Env {
                    name: world_var,
                    reason: "expected a positive number of processes, got 0".to_string(),
                });
            }
            if rank >= world_size {
                return Err(Error::Env {
                    name: rank_var,
                    reason: format!("expected a rank below {world_var}={world_size}, got {rank}"),
                });
            }
            return Ok(Some(Membership {
                rank,
                world_size,
                launcher,
            }));
        }
        Ok(None)
    }
}

/// Where and as whom this process joins the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// This process's rank, `0..world_size`. Rank 0 hosts the TCPStore.
    pub rank: usize,
    /// Number of processes in the group.
    pub world_size: usize,
    /// Host of rank 0's TCPStore.
    pub master_addr: String,
    /// Port of rank 0's TCPStore.
    pub master_port: u16,
    /// How long to wait for peers and for each collective before failing.
    pub timeout: Duration,
}

impl Rendezvous {
    /// A single-process "group": rank 0 of 1 on loopback (useful for tests and for running the
    /// same code path without a launcher).
    pub fn single(master_port: u16) -> Self {
        Rendezvous {
            rank: 0,
            world_size: 1,
            master_addr: "127.0.0.1".to_string(),
            master_port,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads the rank and world size ([`Membership`]: `RANK`/`WORLD_SIZE`, else
    /// `SLURM_PROCID`/`SLURM_NTASKS`), `MASTER_ADDR` and `MASTER_PORT` (default 29500) from the
    /// process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Rendezvous::from_env`] over any variable lookup (tests, launchers that pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let Membership {
            rank, world_size, ..
        } = Membership::from_lookup(&lookup)?.ok_or_else(|| Error::Env {
            name: "RANK",
            reason: "not set (nor SLURM_PROCID); launch with torchrun or srun, or set RANK, \
                     WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
                .to_string(),
        })?;
        let master_addr = match lookup("MASTER_ADDR") {
            Some(addr) if !addr.trim().is_empty() => addr.trim().to_string(),
            Some(_) => {
                return Err(Error::Env {
                    name: "MASTER_ADDR",
                    reason: "expected the host name or address of rank 0, got an empty string"
                        .to_string(),
                })
            }
            None => {
                return Err(Error::Env {
                    name: "MASTER_ADDR",
                    reason: "not set; expected the host name or address of rank 0 (under srun, \
                             e.g. the first of `scontrol show hostnames \"$SLURM_JOB_NODELIST\"`)"
                        .to_string(),
                })
            }
        };
        let master_port = match lookup("MASTER_PORT") {
            None => DEFAULT_MASTER_PORT,
            Some(text) => parse_value("MASTER_PORT", &text, "a TCP port (1-65535)")?,
        };
        if master_port == 0 {
            return Err(Error::Env {
                name: "MASTER_PORT",
                reason: "expected a TCP port (1-65535), got 0".to_string(),
            });
        }
        Ok(Rendezvous {
            rank,
            world_size,
            master_addr,
            master_port,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same rendezvous with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether this process hosts the store (and, by convention, writes checkpoints and logs).
    pub fn is_master(&self) -> bool {
        self.rank == 0
    }
}

/// `value` of `name`, which must be set because its partner `other` is.
fn parse_required<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    other: &'static str,
) -> Result<T> {
    match value {
        Some(text) => parse_value(name, &text, "a non-negative integer"),
        None => Err(Error::Env {
            name,
            reason: format!("not set, but {other} is; a launcher sets both"),
        }),
    }
}

fn parse_value<T: std::str::FromStr>(name: &'static str, text: &str, expected: &str) -> Result<T> {
    text.trim().parse().map_err(|_| Error::Env {
        name,
        reason: format!("expected {expected}, got {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_torchrun_variables_with_default_port() {
        let rdv = Rendezvous::from_lookup(lookup(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "node0"),
        ]))
        .unwrap();
        assert_eq!(rdv.rank, 1);
        assert_eq!(rdv.world_size, 4);
        assert_eq!(rdv.master_addr, "node0");
        assert_eq!(rdv.master_port, DEFAULT_MASTER_PORT);
        assert!(!rdv.is_master());
    }

    #[test]
    fn rejects_rank_outside_world_and_bad_port() {
        let err = Rendezvous::from_lookup(lookup(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("RANK"), "{err}");
        let err = Rendezvous::from_lookup(lookup(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "70000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("MASTER_PORT"), "{err}");
        let err =
            Rendezvous::from_lookup(lookup(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(err.to_string().contains("MASTER_ADDR"), "{err}");
    }

    #[test]
    fn reads_slurm_variables_when_torchrun_is_absent() {
        let rdv = Rendezvous::from_lookup(lookup(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "gpu-node-01"),
            ("MASTER_PORT", "29600"),
        ]))
        .unwrap();
        assert_eq!((rdv.rank, rdv.world_size), (5, 8));
        assert_eq!(rdv.master_addr, "gpu-node-01");
        assert_eq!(rdv.master_port, 29600);
        assert_eq!(
            Membership::from_lookup(lookup(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]))
                .unwrap(),
            Some(Membership {
                rank: 0,
                world_size: 1,
                launcher: Launcher::Slurm
            })
        );
    }

    #[test]
    fn torchrun_variables_win_over_slurms() {
        // srun starting one torchrun per node: SLURM_* describe the torchrun agents, RANK and
        // WORLD_SIZE the workers.
        let both = lookup(&[
            ("RANK", "6"),
            ("WORLD_SIZE", "16"),
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "2"),
            ("MASTER_ADDR", "n0"),
        ]);
        assert_eq!(
            Membership::from_lookup(&both).unwrap(),
            Some(Membership {
                rank: 6,
                world_size: 16,
                launcher: Launcher::Torchrun
            })
        );
        let rdv = Rendezvous::from_lookup(&both).unwrap();
        assert_eq!((rdv.rank, rdv.world_size), (6, 16));
        // A half-set torchrun environment is an error even when Slurm's is complete.
        let err = Membership::from_lookup(lookup(&[
            ("RANK", "0"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("WORLD_SIZE") && err.contains("not set"),
            "{err}"
        );
    }

    #[test]
    fn neither_launcher_is_a_single_process_but_no_rendezvous() {
        assert_eq!(Membership::from_lookup(lookup(&[])).unwrap(), None);
        // MASTER_ADDR alone says nothing about the rank.
        assert_eq!(
            Membership::from_lookup(lookup(&[("MASTER_ADDR", "h")])).unwrap(),
            None
        );
        let err = Rendezvous::from_lookup(lookup(&[("MASTER_ADDR", "h")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RANK") && err.contains("SLURM_PROCID") && err.contains("srun"),
            "{err}"
        );
    }

    #[test]
    fn malformed_launcher_variables_are_named() {
        for (pairs, needle) in [
            (&[("RANK", "0"), ("WORLD_SIZE", "two")][..], "WORLD_SIZE"),
            (&[("RANK", "-1"), ("WORLD_SIZE", "2")][..], "RANK"),
            (&[("RANK", "0"), ("WORLD_SIZE", "0")][..], "WORLD_SIZE"),
            (&[("WORLD_SIZE", "2")][..], "RANK"),
            (
                &[("SLURM_PROCID", "x"), ("SLURM_NTASKS", "2")][..],
                "SLURM_PROCID",
            ),
            (
                &[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "")][..],
                "SLURM_NTASKS",
            ),
            (&[("SLURM_NTASKS", "4")][..], "SLURM_PROCID"),
            (
                &[("SLURM_PROCID", "4"), ("SLURM_NTASKS", "4")][..],
                "SLURM_PROCID",
            ),
        ] {
            let err = Membership::from_lookup(lookup(pairs))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{pairs:?}: {err}");
        }
        let err = Rendezvous::from_lookup(lookup(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MASTER_ADDR") && err.contains("SLURM_JOB_NODELIST"),
            "{err}"
        );
    }
}
