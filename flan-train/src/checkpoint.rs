//! Checkpoints that survive crashes: each is a directory `step-NNNNNNNN/` under
//! `<output_dir>/checkpoints/` holding the weights in the Hugging Face layout (whatever
//! [`crate::model::TrainModel::save_pretrained`] writes, plus `tokenizer.json` when known), the
//! optimiser state (`optimizer.safetensors`) and `trainer_state.json` (step, counters, data
//! cursor, RNG, config).
//!
//! Writing is atomic: everything goes into a hidden temporary directory, every file and the
//! directory are fsynced, and only then is it renamed to its final name (and the parent fsynced).
//! A crash at any point leaves either the complete new checkpoint or none; leftover temporary
//! directories are removed (and reported) by the next run. A directory counts as a checkpoint
//! only if its name is final and its `trainer_state.json` parses.
//!
//! Atomic writes do not protect against bytes that change afterwards (a bad disk, a copy cut
//! short, a stray write), and a damaged tensor file loads without complaint and trains on
//! garbage. So `trainer_state.json` also records the size and xxh3-64 digest of every other file
//! of the checkpoint ([`TrainerState::files`]), and [`CheckpointManager::latest_intact`] checks
//! them before a resume: a newest checkpoint that fails is reported by file and the previous
//! intact one is used instead (or the run stops, with `checkpoint.on_corrupt = "stop"`). xxh3 is
//! a non-cryptographic hash at memory speed (several GB/s on one core); it detects accidents,
//! not tampering.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::config::{OnCorrupt, TrainConfig};
use crate::{Error, Result};

/// Name of the training-state file, written last.
pub const STATE_FILE: &str = "trainer_state.json";
/// Name of the optimiser-state file.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Format version of [`TrainerState`]: 2 records file digests; 1 (no digests) is still read.
pub const STATE_FORMAT: u32 = 2;
/// The first format with [`TrainerState::files`].
const FIRST_FORMAT_WITH_DIGESTS: u32 = 2;
/// Test-only fault injection: abort the process in the middle of writing the checkpoint of this
/// step (after the weights, before the state file and the rename), to prove crash safety.
pub const CRASH_ENV: &str = "FLAN_TRAIN_CRASH_IN_CHECKPOINT";

const PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-";

/// The best evaluation so far, when `eval.best_metric` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestMetric {
    /// The metric's name.
    pub metric: String,
    /// Its best value.
    pub value: f64,
    /// The step that reached it.
    pub step: u64,
}

/// Everything besides weights and optimiser moments that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Examples consumed.
    pub examples_seen: u64,
    /// Real target tokens consumed.
    pub target_tokens_seen: u64,
    /// Steps whose update was skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    /// The batch source's cursor (where the next batch starts).
    pub data_cursor: serde_json::Value,
    /// The RNG: dropout is reseeded from (seed, step, micro-batch) before every forward, so the
    /// seed and the step are the whole RNG state.
    pub rng: RngState,
    /// Best evaluation so far.
    pub best: Option<BestMetric>,
    /// The run's config (TOML), for the record.
    pub config: String,
    /// Size and digest of every other file of the checkpoint, by path relative to its directory,
    /// computed when it was written. Empty in the trainer's live state and in format 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileDigest>,
}

/// What a checkpoint file was when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Its size.
    pub bytes: u64,
    /// xxh3-64 of its contents, 16 hex digits.
    pub xxh3_64: String,
}

impl FileDigest {
    /// Reads `path` once, in 1 MiB blocks.
    pub fn of_file(path: &Path) -> std::io::Result<FileDigest> {
        let mut file = fs::File::open(path)?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(FileDigest {
            bytes,
            xxh3_64: format!("{:016x}", hasher.digest()),
        })
    }
}

/// The digests of every file below `dir` except the state file, by relative path (`/`-separated).
fn digest_tree(dir: &Path) -> Result<BTreeMap<String, FileDigest>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, FileDigest>) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if rel != STATE_FILE {
                let digest = FileDigest::of_file(&path).map_err(|e| Error::io(&path, e))?;
                out.insert(rel, digest);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// The RNG state of a run (see [`TrainerState::rng`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// `per_step_reseed`.
    pub scheme: String,
    /// The run's seed.
    pub seed: u64,
}

/// A checkpoint found on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its training state.
    pub state: TrainerState,
}

impl Checkpoint {
    /// Reads a checkpoint directory, checking it is complete.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).map_err(|e| {
            Error::checkpoint(
                dir,
                format!("no readable {STATE_FILE} ({e}): not a complete checkpoint"),
            )
        })?;
        let state: TrainerState = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(dir, format!("{STATE_FILE}: {e}")))?;
        if !(1..=STATE_FORMAT).contains(&state.format) {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "state format {} is not one of the supported 1..={STATE_FORMAT}",
                    state.format
                ),
            ));
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            state,
        })
    }

    /// Checks every file against the digests recorded when the checkpoint was written; the
    /// error names the first file that differs (missing, another size, another digest).
    /// A format-1 checkpoint has no digests and passes unchecked (`Ok(false)`).
    pub fn verify(&self) -> Result<bool> {
        let corrupt = |message: String| Error::CorruptCheckpoint {
            dir: self.dir.clone(),
            message,
        };
        if self.state.format < FIRST_FORMAT_WITH_DIGESTS {
            return Ok(false);
        }
        if self.state.files.is_empty() {
            return Err(corrupt(format!("{STATE_FILE} lists no files to check")));
        }
        for (rel, want) in &self.state.files {
            let path = self.dir.join(rel);
            let found = FileDigest::of_file(&path)
                .map_err(|e| corrupt(format!("{rel} cannot be read ({e})")))?;
            if found.bytes != want.bytes {
                return Err(corrupt(format!(
                    "{rel} has {} bytes, {} were written",
                    found.bytes, want.bytes
                )));
            }
            if found.xxh3_64 != want.xxh3_64 {
                return Err(corrupt(format!(
                    "{rel} does not match its checksum (xxh3-64 {} when written, {} now)",
                    want.xxh3_64, found.xxh3_64
                )));
            }
        }
        Ok(true)
    }

    /// The optimiser state tensors (on the CPU).
    pub fn optimizer_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let path = self.dir.join(OPTIMIZER_FILE);
        Tensor::read_safetensors(&path)
            .map_err(|e| Error::checkpoint(&self.dir, format!("{OPTIMIZER_FILE}: {e}")))
    }
}

/// A directory named like a checkpoint that cannot be resumed from, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The directory.
    pub dir: PathBuf,
    /// The step its name says.
    pub step: u64,
    /// Why it is not used (names the file).
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.dir.display(), self.reason)
    }
}

/// The checkpoint a run resumes from, and the newer directories passed over.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// The newest checkpoint whose files match their digests.
    pub checkpoint: Option<Checkpoint>,
    /// Newer checkpoint directories that were not used, newest first.
    pub rejected: Vec<Rejected>,
    /// Whether `checkpoint` had digests to check (false for format 1).
    pub verified: bool,
}

/// The checkpoint directories of an output directory: those whose state parses, and those
/// whose state does not (with the reason).
struct Scan {
    checkpoints: Vec<Checkpoint>,
    unreadable: Vec<Rejected>,
}

/// Writes, finds and rotates the checkpoints of one output directory.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    root: PathBuf,
    keep_last: usize,
}

impl CheckpointManager {
    /// Manages `<output_dir>/checkpoints`, keeping the newest `keep_last`.
    pub fn new(output_dir: &Path, keep_last: usize) -> Self {
        CheckpointManager {
            root: output_dir.join("checkpoints"),
            keep_last: keep_last.max(1),
        }
    }

    /// The directory holding the checkpoints.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the checkpoint of `step`.
    pub fn dir_of(&self, step: u64) -> PathBuf {
        self.root.join(format!("{PREFIX}{step:08}"))
    }

    /// Complete checkpoints (state readable, files not checked), oldest first.
    pub fn list(&self) -> Result<Vec<Checkpoint>> {
        Ok(self.scan()?.checkpoints)
    }

    fn scan(&self) -> Result<Scan> {
        let mut scan = Scan {
            checkpoints: Vec::new(),
            unreadable: Vec::new(),
        };
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(step) = name
                .strip_prefix(PREFIX)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            // An incomplete directory (state missing or unreadable) is not a checkpoint.
            let reject = |reason: String| Rejected {
                dir: entry.path(),
                step,
                reason,
            };
            match Checkpoint::open(&entry.path()) {
                Ok(ckpt) if ckpt.state.step == step => scan.checkpoints.push(ckpt),
                Ok(ckpt) => scan.unreadable.push(reject(format!(
                    "its {STATE_FILE} is of step {}, not {step}",
                    ckpt.state.step
                ))),
                Err(Error::Checkpoint { message, .. }) => scan.unreadable.push(reject(message)),
                Err(e) => return Err(e),
            }
        }
        scan.checkpoints.sort_by_key(|c| c.state.step);
        Ok(scan)
    }

    /// The newest complete checkpoint (files not checked; see [`Self::latest_intact`]).
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        Ok(self.list()?.pop())
    }

    /// The newest checkpoint whose state parses and whose files match their digests, with the
    /// newer directories passed over and why. With [`OnCorrupt::Stop`] the first directory that
    /// fails is an error ([`Error::CorruptCheckpoint`]) instead.
    pub fn latest_intact(&self, on_corrupt: OnCorrupt) -> Result<Choice> {
        let Scan {
            checkpoints,
            unreadable,
        } = self.scan()?;
        // Newest first, readable or not.
        let mut candidates: Vec<(u64, std::result::Result<Checkpoint, Rejected>)> = checkpoints
            .into_iter()
            .map(|c| (c.state.step, Ok(c)))
            .chain(unreadable.into_iter().map(|r| (r.step, Err(r))))
            .collect();
        candidates.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
        let mut choice = Choice::default();
        for (step, candidate) in candidates {
            let rejected = match candidate {
                Ok(ckpt) => match ckpt.verify() {
                    Ok(verified) => {
                        choice.checkpoint = Some(ckpt);
                        choice.verified = verified;
                        return Ok(choice);
                    }
                    Err(Error::CorruptCheckpoint { dir, message }) => Rejected {
                        dir,
                        step,
                        reason: message,
                    },
                    Err(e) => return Err(e),
                },
                Err(rejected) => rejected,
            };
            if on_corrupt == OnCorrupt::Stop {
                return Err(Error::CorruptCheckpoint {
                    dir: rejected.dir,
                    message: format!(
                        "{} (checkpoint.on_corrupt = \"stop\"; set it to \"previous\" to resume from the previous intact checkpoint)",
                        rejected.reason
                    ),
                });
            }
            choice.rejected.push(rejected);
        }
        Ok(choice)
    }

    /// Removes temporary directories left by a crash; returns how many.
    pub fn remove_stale(&self) -> Result<usize> {
        let mut removed = 0;
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(0);
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes the checkpoint of `state.step` atomically: `write_weights` fills the directory with
    /// the model files, then the optimiser state and the training state follow. Returns the final
    /// directory, after rotating out checkpoints beyond `keep_last`.
    pub fn save(
        &self,
        state: &TrainerState,
        write_weights: impl FnOnce(&Path) -> Result<()>,
        optimizer: &[(String, Tensor)],
    ) -> Result<PathBuf> {
        let dir = self.dir_of(state.step);
        write_atomically(&self.root, &dir, |tmp| {
            write_weights(tmp)?;
            let cpu: Vec<(String, Tensor)> = optimizer
                .iter()
                .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu)))
                .collect();
            Tensor::write_safetensors(&cpu, tmp.join(OPTIMIZER_FILE))
                .map_err(|e| Error::checkpoint(tmp, format!("writing {OPTIMIZER_FILE}: {e}")))?;
            if std::env::var(CRASH_ENV)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                == Some(state.step)
            {
                eprintln!(
                    "{CRASH_ENV}={}: aborting in the middle of the checkpoint write",
                    state.step
                );
                std::process::abort();
            }
            // Last, so that the digests cover every other file as written.
            let recorded = TrainerState {
                format: STATE_FORMAT,
                files: digest_tree(tmp)?,
                ..state.clone()
            };
            write_json(&tmp.join(STATE_FILE), &recorded)
        })?;
        self.rotate()?;
        Ok(dir)
    }

    /// Deletes the oldest checkpoints beyond `keep_last`. The state file goes first, so that a
    /// crash during deletion leaves a directory that is no longer taken for a checkpoint.
    fn rotate(&self) -> Result<()> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep_last);
        for ckpt in &all[..excess] {
            fs::remove_file(ckpt.dir.join(STATE_FILE))
                .map_err(|e| Error::io(ckpt.dir.join(STATE_FILE), e))?;
            fs::remove_dir_all(&ckpt.dir).map_err(|e| Error::io(&ckpt.dir, e))?;
        }
        Ok(())
    }
}

/// Fills a temporary sibling of `dest` with `fill`, fsyncs it and renames it to `dest` (replacing
/// an existing `dest`).
pub fn write_atomically(
    parent: &Path,
    dest: &Path,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!("{TMP_PREFIX}{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let filled = fill(&tmp).and_then(|()| sync_tree(&tmp));
    if let Err(e) = filled {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dest.exists() {
        // Replacing (e.g. the best checkpoint): move the old one aside first, so `dest` is never
        // a half-deleted directory.
        let old = parent.join(format!("{TMP_PREFIX}old-{name}-{}", std::process::id()));
        fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
        fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
    }
    sync_dir(parent)
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::checkpoint(path, format!("cannot serialise: {e}")))?;
    fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// fsyncs every file below `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// A state for `config` at step 0 (a fresh run).
pub fn initial_state(config: &TrainConfig, data_cursor: serde_json::Value) -> Result<TrainerState> {
    Ok(TrainerState {
        format: STATE_FORMAT,
        step: 0,
        examples_seen: 0,
        target_tokens_seen: 0,
        skipped_steps: 0,
        data_cursor,
        rng: RngState {
            scheme: "per_step_reseed".into(),
            seed: config.seed,
        },
        best: None,
        config: config.to_toml()?,
        files: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainerState {
        let cfg = TrainConfig::from_overrides(&[
            "model.config=c.json".into(),
            "model.tokenizer=t.json".into(),
            "data.mixture=m.toml".into(),
        ])
        .unwrap();
        TrainerState {
            step,
            ..initial_state(&cfg, serde_json::json!({"position": step})).unwrap()
        }
    }

    fn save(m: &CheckpointManager, step: u64) -> PathBuf {
        let opt = vec![("w::step".to_string(), Tensor::from_slice(&[step as i64]))];
        m.save(
            &state(step),
            |dir| write_json(&dir.join("config.json"), &serde_json::json!({"d_model": 4})),
            &opt,
        )
        .unwrap()
    }

    #[test]
    fn saves_lists_and_rotates() {
        let out = tempfile::tempdir().unwrap();
        let m = CheckpointManager::new(out.path(), 2);
        assert!(m.latest().unwrap().is_none());
        for step in [10, 20, 30] {
            save(&m, step);
        }
        let steps: Vec<u64> = m.list().unwrap().iter().map(|c| c.state.step).collect();
        assert_eq!(steps, vec![20, 30]);
        let latest = m.latest().unwrap().unwrap();
        assert_eq!(latest.state.data_cursor["position"], 30);
        assert!(latest.dir.join("config.json").is_file());
        let opt = latest.optimizer_tensors().unwrap();
        assert_eq!(opt[0].1.int64_value(&[0]), 30);
    }

    #[test]
    fn incomplete_directories_are_not_checkpoints() {
        let out = tempfile::tempdir().unwrap();
        let m = CheckpointManager::new(out.path(), 3);
        save(&m, 5);
        // A crash mid-write leaves a temporary directory, and a torn final one lacks its state.
        fs::create_dir_all(m.root().join(".tmp-step-00000009-1")).unwrap();
        fs::create_dir_all(m.dir_of(7)).unwrap();
        // A stray file with a checkpoint's name is not one either.
        fs::write(m.dir_of(8), "").unwrap();
        assert_eq!(m.latest().unwrap().unwrap().state.step, 5);
        assert_eq!(m.remove_stale().unwrap(), 1);
        let err = Checkpoint::open(&m.dir_of(7)).unwrap_err().to_string();
        assert!(err.contains("not a complete checkpoint"), "{err}");
    }

    #[test]
    fn digests_are_recorded_and_a_changed_byte_is_named() {
        let out = tempfile::tempdir().unwrap();
        let m = CheckpointManager::new(out.path(), 3);
        let dir = save(&m, 4);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let files: Vec<&str> = ckpt.state.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["config.json", OPTIMIZER_FILE]);
        assert!(ckpt.verify().unwrap());

        let config = dir.join("config.json");
        let mut bytes = fs::read(&config).unwrap();
        bytes[3] ^= 0x20;
        fs::write(&config, &bytes).unwrap();
        let err = ckpt.verify().unwrap_err();
        assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("config.json does not match its checksum"),
            "{err}"
        );
        fs::write(&config, &bytes[1..]).unwrap();
        let err = ckpt.verify().unwrap_err().to_string();
        assert!(err.contains("config.json has"), "{err}");
        fs::remove_file(&config).unwrap();
        let err = ckpt.verify().unwrap_err().to_string();
        assert!(err.contains("config.json cannot be read"), "{err}");

        // A checkpoint of format 1 (before digests) still resumes, unchecked.
        let mut old: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join(STATE_FILE)).unwrap()).unwrap();
        old["format"] = 1.into();
        old.as_object_mut().unwrap().remove("files");
        write_json(&dir.join(STATE_FILE), &old).unwrap();
        let ckpt = Checkpoint::open(&dir).unwrap();
        assert!(ckpt.state.files.is_empty());
        assert!(!ckpt.verify().unwrap());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let out = tempfile::tempdir().unwrap();
        let m = CheckpointManager::new(out.path(), 3);
        let err = m.save(
            &state(4),
            |_| {
                Err(Error::Model {
                    message: "disk full".into(),
                })
            },
            &[],
        );
        assert!(err.is_err());
        assert_eq!(fs::read_dir(m.root()).unwrap().count(), 0);
    }
}
