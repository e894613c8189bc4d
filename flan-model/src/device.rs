//! Which device a process runs on: [`DeviceSpec`] is what a user writes (`cpu`, `cuda`, `cuda:N`,
//! `auto`), parsed once, and [`DeviceSpec::resolve`] turns it into a [`tch::Device`] for this
//! process, given what the launcher says about it ([`LauncherEnv`]) and how many CUDA devices
//! libtorch sees.
//!
//! Why resolution needs the launcher: `torchrun --nproc_per_node=8` (and `srun` with 8 tasks per
//! node) starts eight copies of the same command line on one node. If `cuda` meant `cuda:0`, all
//! eight would share the first GPU. Each launcher tells a process its index on the node —
//! torchrun (also under a Kubernetes PyTorchJob) in `LOCAL_RANK`, Slurm's `srun` in
//! `SLURM_LOCALID` — and that index is the process's GPU, as in PyTorch's own recipes.
//!
//! ```
//! use flan_model::device::{DeviceSpec, LauncherEnv};
//! use tch::Device;
//! # fn main() -> flan_model::Result<()> {
//! let spec: DeviceSpec = "auto".parse()?;
//! // Rank 3 of a torchrun launch on a node with 8 GPUs.
//! let launcher = LauncherEnv::from_lookup(|name| (name == "LOCAL_RANK").then(|| "3".to_string()))?;
//! assert_eq!(spec.resolve(&launcher, 8)?, Device::Cuda(3));
//! // The same spec on a machine without CUDA.
//! assert_eq!(spec.resolve(&launcher, 0)?, Device::Cpu);
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Device;

use crate::{Error, Result};

/// A device as a user names it. Its text form (`FromStr`, `Display`, serde) is one of `cpu`,
/// `cuda`, `cuda:N` and `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// `cpu`.
    Cpu,
    /// `cuda` (`None`: this process's GPU, see [`DeviceSpec::resolve`]) or `cuda:N` (`Some(N)`:
    /// that GPU, whatever the launcher says).
    Cuda(Option<usize>),
    /// `auto`: as `cuda` when libtorch sees a CUDA device, else `cpu`.
    Auto,
}

/// The accepted spellings, for error messages and help texts.
pub const ACCEPTED: &str = "cpu, cuda, cuda:N (N a device index) or auto";

impl DeviceSpec {
    /// The device this process uses.
    ///
    /// - `cpu` is the CPU; `auto` is the CPU when `cuda_device_count` is 0 and `cuda` otherwise.
    /// - `cuda` is `cuda:i` where `i` is this process's index on its node, from the launcher
    ///   (`LOCAL_RANK`, else `SLURM_LOCALID`), and `cuda:0` outside a launcher. When that device
    ///   does not exist, this is an error naming the variable, its value and the device count:
    ///   silently sharing a GPU between ranks would run out of memory or crawl.
    /// - `cuda:N` is device N on every rank (for launchers that give each process its own
    ///   `CUDA_VISIBLE_DEVICES`); an error when the machine has no device N.
    pub fn resolve(&self, launcher: &LauncherEnv, cuda_device_count: usize) -> Result<Device> {
        let count = cuda_device_count;
        match *self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto if count == 0 => Ok(Device::Cpu),
            DeviceSpec::Cuda(Some(n)) if n < count => Ok(Device::Cuda(n)),
            DeviceSpec::Cuda(Some(n)) => Err(Error::DeviceUnavailable {
                spec: self.to_string(),
                reason: format!("there is no cuda:{n}: {}", devices(count)),
            }),
            DeviceSpec::Cuda(None) | DeviceSpec::Auto => match launcher.local_rank {
                Some(local) if local.index < count => Ok(Device::Cuda(local.index)),
                Some(local) => Err(Error::DeviceUnavailable {
                    spec: self.to_string(),
                    reason: format!(
                        "the process with local rank {index} ({variable}={index}) would use \
                         cuda:{index}, but {}; start at most one process per GPU on each node, \
                         or, when the launcher gives each process its own GPU \
                         (CUDA_VISIBLE_DEVICES), use cuda:0",
                        devices(count),
                        index = local.index,
                        variable = local.variable,
                    ),
                }),
                None if count > 0 => Ok(Device::Cuda(0)),
                None => Err(Error::DeviceUnavailable {
                    spec: self.to_string(),
                    reason: format!("{}; use cpu or auto", devices(count)),
                }),
            },
        }
    }

    /// [`DeviceSpec::resolve`] for this process: the launcher variables of the process
    /// environment and the CUDA devices libtorch sees. The launcher variables are read only when
    /// they choose the device (`cuda`, or `auto` with CUDA present): a malformed `LOCAL_RANK`
    /// says nothing wrong about a run on `cpu` or `cuda:N`.
    pub fn resolve_from_env(&self) -> Result<Device> {
        if *self == DeviceSpec::Cpu {
            return Ok(Device::Cpu);
        }
        let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        let launcher = match self {
            DeviceSpec::Cuda(None) => LauncherEnv::from_env()?,
            DeviceSpec::Auto if count > 0 => LauncherEnv::from_env()?,
            _ => LauncherEnv::none(),
        };
        self.resolve(&launcher, count)
    }
}

fn devices(count: usize) -> String {
    match count {
        0 => "libtorch sees no CUDA device on this machine".to_string(),
        1 => "libtorch sees 1 CUDA device on this machine".to_string(),
        n => format!("libtorch sees {n} CUDA devices on this machine"),
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let unknown = || Error::UnknownDevice {
            given: text.to_string(),
        };
        match text {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            "auto" => Ok(DeviceSpec::Auto),
            _ => {
                let index = text.strip_prefix("cuda:").ok_or_else(unknown)?;
                // `usize::from_str` takes a leading `+`; a device index is digits only.
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                index
                    .parse()
                    .map(|n| DeviceSpec::Cuda(Some(n)))
                    .map_err(|_| unknown())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            DeviceSpec::Auto => f.write_str("auto"),
        }
    }
}

/// Written as its text form, so that a config file says `device = "cuda"`.
impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The variable a launcher sets to a process's index among the processes of its node, in the
/// order they are consulted: torchrun's (also set under a Kubernetes PyTorchJob that runs
/// torchrun), then Slurm's. When `srun` starts torchrun, both are set and torchrun's is the one
/// that tells its workers apart.
pub const LOCAL_RANK_VARIABLES: [&str; 2] = ["LOCAL_RANK", "SLURM_LOCALID"];

/// A process's index among the processes of its node, and the variable that said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRank {
    /// The index (`0..processes on the node`).
    pub index: usize,
    /// `LOCAL_RANK` or `SLURM_LOCALID`.
    pub variable: &'static str,
}

/// What a launcher tells a process about its place on the node; empty outside a launcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LauncherEnv {
    /// This process's local rank, when a launcher set one.
    pub local_rank: Option<LocalRank>,
}

impl LauncherEnv {
    /// No launcher: a single process.
    pub fn none() -> Self {
        LauncherEnv::default()
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (tests, callers that hold the environment as a map):
    /// the first of [`LOCAL_RANK_VARIABLES`] that is set. A set variable that is not a
    /// non-negative integer is an error, not a reason to fall back to the next one.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        for variable in LOCAL_RANK_VARIABLES {
            if let Some(value) = lookup(variable) {
                let trimmed = value.trim();
                if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::LauncherVariable { variable, value });
                }
                let index = trimmed
                    .parse()
                    .map_err(|_| Error::LauncherVariable { variable, value })?;
                return Ok(LauncherEnv {
                    local_rank: Some(LocalRank { index, variable }),
                });
            }
        }
        Ok(LauncherEnv::none())
    }
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

    fn launcher(pairs: &[(&str, &str)]) -> LauncherEnv {
        LauncherEnv::from_lookup(lookup(pairs)).unwrap()
    }

    fn spec(text: &str) -> DeviceSpec {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_every_accepted_form() {
        for (text, expected) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(None)),
            ("cuda:0", DeviceSpec::Cuda(Some(0))),
            ("cuda:7", DeviceSpec::Cuda(Some(7))),
            ("auto", DeviceSpec::Auto),
        ] {
            assert_eq!(spec(text), expected, "{text}");
            assert_eq!(expected.to_string(), text);
        }
    }

    #[test]
    fn refuses_other_names_and_lists_the_accepted_ones() {
        for text in [
            "", "tpu", "CPU", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda:1 ", " cpu",
            "mps",
        ] {
            let err = text.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{text}`")) && err.contains(ACCEPTED),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Cfg {
            device: DeviceSpec,
        }
        let cfg: Cfg = serde_json::from_str(r#"{"device": "cuda:2"}"#).unwrap();
        assert_eq!(cfg.device, DeviceSpec::Cuda(Some(2)));
        assert_eq!(
            serde_json::to_string(&cfg).unwrap(),
            r#"{"device":"cuda:2"}"#
        );
        let err = serde_json::from_str::<Cfg>(r#"{"device": "tpu"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`tpu`") && err.contains(ACCEPTED), "{err}");
        assert!(serde_json::from_str::<Cfg>(r#"{"device": 0}"#).is_err());
    }

    #[test]
    fn reads_the_local_rank_of_torchrun_then_slurm() {
        assert_eq!(launcher(&[]), LauncherEnv::none());
        assert_eq!(
            launcher(&[("LOCAL_RANK", "3")]).local_rank,
            Some(LocalRank {
                index: 3,
                variable: "LOCAL_RANK"
            })
        );
        assert_eq!(
            launcher(&[("SLURM_LOCALID", "5")]).local_rank,
            Some(LocalRank {
                index: 5,
                variable: "SLURM_LOCALID"
            })
        );
        // srun starting torchrun: torchrun's index tells its workers apart.
        assert_eq!(
            launcher(&[("SLURM_LOCALID", "0"), ("LOCAL_RANK", "2")]).local_rank,
            Some(LocalRank {
                index: 2,
                variable: "LOCAL_RANK"
            })
        );
        assert_eq!(
            launcher(&[("LOCAL_RANK", " 1\n")])
                .local_rank
                .unwrap()
                .index,
            1
        );
    }

    #[test]
    fn a_malformed_local_rank_is_an_error_naming_the_variable() {
        for (variable, value) in [
            ("LOCAL_RANK", ""),
            ("LOCAL_RANK", "one"),
            ("LOCAL_RANK", "-1"),
            ("SLURM_LOCALID", "0x1"),
            ("SLURM_LOCALID", "99999999999999999999999"),
        ] {
            let err = LauncherEnv::from_lookup(lookup(&[(variable, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(variable) && err.contains(&format!("{value:?}")),
                "{variable}={value:?}: {err}"
            );
        }
        // A bad LOCAL_RANK is not papered over by a good SLURM_LOCALID.
        let err = LauncherEnv::from_lookup(lookup(&[("LOCAL_RANK", "x"), ("SLURM_LOCALID", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOCAL_RANK"), "{err}");
    }

    #[test]
    fn outside_a_launcher_cuda_is_the_first_gpu() {
        let none = LauncherEnv::none();
        assert_eq!(spec("cpu").resolve(&none, 4).unwrap(), Device::Cpu);
        assert_eq!(spec("cuda").resolve(&none, 4).unwrap(), Device::Cuda(0));
        assert_eq!(spec("auto").resolve(&none, 4).unwrap(), Device::Cuda(0));
        assert_eq!(spec("cuda:3").resolve(&none, 4).unwrap(), Device::Cuda(3));
    }

    #[test]
    fn under_a_launcher_cuda_is_the_local_ranks_gpu() {
        for (var, rank) in [("LOCAL_RANK", 5), ("SLURM_LOCALID", 7)] {
            let l = launcher(&[(var, &rank.to_string())]);
            assert_eq!(spec("cuda").resolve(&l, 8).unwrap(), Device::Cuda(rank));
            assert_eq!(spec("auto").resolve(&l, 8).unwrap(), Device::Cuda(rank));
            // An explicit index wins over the launcher.
            assert_eq!(spec("cuda:1").resolve(&l, 8).unwrap(), Device::Cuda(1));
            assert_eq!(spec("cpu").resolve(&l, 8).unwrap(), Device::Cpu);
        }
    }

    #[test]
    fn auto_without_cuda_is_the_cpu_even_under_a_launcher() {
        assert_eq!(
            spec("auto").resolve(&LauncherEnv::none(), 0).unwrap(),
            Device::Cpu
        );
        assert_eq!(
            spec("auto")
                .resolve(&launcher(&[("LOCAL_RANK", "3")]), 0)
                .unwrap(),
            Device::Cpu
        );
    }

    #[test]
    fn a_rank_beyond_the_devices_names_rank_variable_and_count() {
        for (text, var) in [
            ("cuda", "LOCAL_RANK"),
            ("auto", "LOCAL_RANK"),
            ("cuda", "SLURM_LOCALID"),
            ("auto", "SLURM_LOCALID"),
        ] {
            let err = spec(text)
                .resolve(&launcher(&[(var, "2")]), 2)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("{var}=2"))
                    && err.contains("local rank 2")
                    && err.contains("sees 2 CUDA devices")
                    && err.contains(&format!("`{text}`")),
                "{text} {var}: {err}"
            );
        }
    }

    #[test]
    fn missing_cuda_devices_are_errors() {
        let err = spec("cuda")
            .resolve(&LauncherEnv::none(), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no CUDA device"), "{err}");
        let err = spec("cuda:4")
            .resolve(&LauncherEnv::none(), 4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no cuda:4") && err.contains("sees 4 CUDA devices"),
            "{err}"
        );
        let err = spec("cuda:0")
            .resolve(&launcher(&[("LOCAL_RANK", "0")]), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no cuda:0"), "{err}");
    }
}
