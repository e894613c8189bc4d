//! Metrics as JSON lines (`<output_dir>/metrics.jsonl`): one record per logged training step and
//! one per evaluation, flushed as written so that a platform tailing the file sees them at once.
//! On resume the records after the checkpoint's step are dropped, so the file reads as one run.
//! The same numbers go to TensorBoard event files when asked ([`MetricsLog::with_tensorboard`]),
//! each under `<kind>/<field>` (`train/loss`, `eval/bbh/exact_match`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tensorboard::EventWriter;
use crate::{Error, Result};

/// One training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Always `train`.
    pub kind: String,
    /// Optimizer step, from 1.
    pub step: u64,
    /// Mean cross-entropy per real target token of this step (without z-loss).
    pub loss: f64,
    /// Mean z-loss term per real target token (0 when off).
    pub z_loss: f64,
    /// Learning rate applied.
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real (non-padding) tokens, inputs + targets, of this step's batches.
    pub real_tokens: u64,
    /// Real tokens per second over this step (fetching the batches included).
    pub tokens_per_second: f64,
    /// Examples consumed so far.
    pub examples_seen: u64,
    /// Real tokens / token slots of this step's batches.
    pub packing_efficiency: f64,
    /// Whether the update was skipped (non-finite loss or gradient).
    pub skipped: bool,
    /// Seconds since the (re)start of the process.
    pub elapsed_seconds: f64,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Always `eval`.
    pub kind: String,
    /// The step evaluated.
    pub step: u64,
    /// Scores by name (`benchmark/metric`).
    pub scores: BTreeMap<String, f64>,
}

/// Appends records to the metrics file (and to TensorBoard events).
pub struct MetricsLog {
    path: PathBuf,
    file: fs::File,
    tensorboard: Option<EventWriter>,
}

impl MetricsLog {
    /// Opens `path` for appending; with `keep_up_to = Some(step)` first drops records of later
    /// steps (a resumed run repeats them), with `None` starts the file afresh.
    pub fn open(path: &Path, keep_up_to: Option<u64>) -> Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        match keep_up_to {
            Some(step) if path.exists() => truncate_after(path, step)?,
            Some(_) => {}
            None => fs::write(path, "").map_err(|e| Error::io(path, e))?,
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            tensorboard: None,
        })
    }

    /// Also writes every record's numbers to a new TensorBoard event file in `dir`; `resumed_at`
    /// is the step a resumed run continues from, whose later events TensorBoard then drops.
    pub fn with_tensorboard(mut self, dir: &Path, resumed_at: Option<u64>) -> Result<Self> {
        self.tensorboard = Some(EventWriter::create(dir, resumed_at.map(|s| s + 1))?);
        Ok(self)
    }

    /// Writes one record as a line (and its numbers as TensorBoard scalars).
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let json_error = |e| Error::io(&self.path, std::io::Error::other(e));
        let line = serde_json::to_string(record).map_err(json_error)?;
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))?;
        if let Some(tb) = self.tensorboard.as_mut() {
            let value = serde_json::to_value(record).map_err(json_error)?;
            if let Some((step, scalars)) = scalars_of(&value) {
                tb.scalars(step, &scalars)?;
            }
        }
        Ok(())
    }

    /// Forces the records to disk (each is already flushed to the OS as written), so that a
    /// run stopped by its scheduler leaves them on disk even if the node goes down next.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        match self.tensorboard.as_mut() {
            Some(tb) => tb.sync(),
            None => Ok(()),
        }
    }
}

/// The step of a record and its numbers as `<kind>/<field>` scalars, a level of nested maps
/// flattened (`eval/bbh/exact_match`); booleans as 0/1. `None` for a record without a step.
pub fn scalars_of(record: &serde_json::Value) -> Option<(u64, Vec<(String, f64)>)> {
    use serde_json::Value;
    let step = record.get("step")?.as_u64()?;
    let kind = record
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("metrics");
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    let mut scalars = Vec::new();
    for (field, v) in record.as_object()? {
        if field == "step" || field == "kind" {
            continue;
        }
        match v {
            Value::Object(inner) => scalars.extend(
                inner
                    .iter()
                    .filter_map(|(k, x)| Some((format!("{kind}/{k}"), number(x)?))),
            ),
            other => scalars.extend(number(other).map(|x| (format!("{kind}/{field}"), x))),
        }
    }
    Some((step, scalars))
}

/// Rewrites `path` without records whose `step` is above `step` (atomically, via a temporary file).
fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let reader = BufReader::new(fs::File::open(path).map_err(|e| Error::io(path, e))?);
    let mut kept = String::new();
    for line in reader.lines() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let record_step = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["step"].as_u64());
        // Lines that are not records (a torn last line after a crash) are dropped with the rest.
        if matches!(record_step, Some(s) if s <= step) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let tmp = path.with_extension("jsonl.tmp");
    fs::write(&tmp, kept).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads the training records of a metrics file (for summaries and tests).
pub fn read_step_records(path: &Path) -> Result<Vec<StepRecord>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::io(path, std::io::Error::other(format!("line {}: {e}", i + 1))))?;
        if v["kind"] == "train" {
            out.push(serde_json::from_value(v).map_err(|e| {
                Error::io(path, std::io::Error::other(format!("line {}: {e}", i + 1)))
            })?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> StepRecord {
        StepRecord {
            kind: "train".into(),
            step,
            loss: 1.0 / step as f64,
            z_loss: 0.0,
            learning_rate: 1e-3,
            grad_norm: 1.0,
            real_tokens: 100,
            tokens_per_second: 10.0,
            examples_seen: step * 4,
            packing_efficiency: 0.9,
            skipped: false,
            elapsed_seconds: 0.1,
        }
    }

    #[test]
    fn resume_drops_later_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, None).unwrap();
        for s in 1..=5 {
            log.write(&record(s)).unwrap();
        }
        log.write(&EvalRecord {
            kind: "eval".into(),
            step: 4,
            scores: BTreeMap::from([("bbh/exact_match".into(), 0.5)]),
        })
        .unwrap();
        drop(log);
        let mut log = MetricsLog::open(&path, Some(3)).unwrap();
        log.write(&record(4)).unwrap();
        let steps: Vec<u64> = read_step_records(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        assert!(!fs::read_to_string(&path).unwrap().contains("eval"));
    }
}
