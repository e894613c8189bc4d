//! The replication's finetuning runs: each a child `flan train` in the run cache under a hash
//! of everything that decides it, so that an interrupted replication resumes where it stopped
//! (a finished run is reused, an unfinished one resumes from its checkpoints).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use flan_data::hash::fnv1a;
use flan_eval::runner::RunResult;
use flan_train::config::TrainConfig;

use super::plan::{Plan, Size};
use crate::pretraining_stage;

/// One finetuning point: a size, a mixture and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneRun {
    /// The model size (its pretraining stage).
    pub size: Size,
    /// The trained families (`None`: all).
    pub families: Option<Vec<String>>,
    /// CoT tasks in the mixture.
    pub cot: bool,
    /// The run's seed.
    pub seed: u64,
}

/// What a finished run left: its evaluations before and after finetuning, and its model.
#[derive(Debug)]
pub struct Finished {
    /// The run's directory.
    pub dir: PathBuf,
    /// The pretrained model, evaluated.
    pub before: RunResult,
    /// The finetuned model, evaluated.
    pub after: RunResult,
    /// The model's parameters.
    pub parameters: u64,
    /// Seconds the run took when it ran (0 when it came from the cache).
    pub seconds: f64,
}

/// The file that marks a run as finished.
const DONE: &str = "replicate-run.json";

impl FinetuneRun {
    /// How progress and errors name the run.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} families{}, seed {}",
            self.size.name,
            self.families
                .as_ref()
                .map_or("all".to_string(), |f| f.len().to_string()),
            if self.cot { "" } else { ", no CoT data" },
            self.seed
        )
    }

    /// The run's mixture spec: the base spec with its `[synthetic]` families (and CoT tasks)
    /// as the run says.
    fn mixture_spec(&self, base_spec: &Path) -> Result<String> {
        let text = std::fs::read_to_string(base_spec)
            .with_context(|| format!("reading {}", base_spec.display()))?;
        let mut spec: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", base_spec.display()))?;
        let synthetic = spec
            .get_mut("synthetic")
            .and_then(|s| s.as_table_mut())
            .with_context(|| {
                format!(
                    "{}: the replication needs a [synthetic] section",
                    base_spec.display()
                )
            })?;
        if let Some(families) = &self.families {
            synthetic.insert(
                "families".into(),
                toml::Value::Array(families.iter().cloned().map(toml::Value::String).collect()),
            );
        }
        if !self.cot {
            synthetic.insert("cot".into(), toml::Value::Boolean(false));
            // Its CoT submixture would be empty; the direct tasks take its place.
            let direct = synthetic
                .get("submixture")
                .and_then(|s| s.as_str())
                .unwrap_or("flan")
                .to_string();
            let cot = synthetic
                .get("cot_submixture")
                .and_then(|s| s.as_str())
                .unwrap_or("cot")
                .to_string();
            if cot != direct {
                synthetic.insert("cot_submixture".into(), toml::Value::String(direct));
                if let Some(subs) = spec.get_mut("submixtures").and_then(|s| s.as_table_mut()) {
                    subs.remove(&cot);
                }
            }
        }
        Ok(toml::to_string(&spec)?)
    }

    /// The `--set` overrides of the run (besides its mixture and output directory).
    fn overrides(&self, plan: &Plan) -> Vec<String> {
        vec![
            format!(
                "model.pretrain={}",
                toml::Value::String(self.size.pretrain.display().to_string())
            ),
            format!("seed={}", self.seed),
            format!("train.steps={}", plan.steps),
            format!("eval.synthetic.items_per_cell={}", plan.items_per_cell),
            // Two checkpoints over the run: an interrupted replication loses little.
            format!("checkpoint.every={}", plan.steps.div_ceil(2).max(1)),
            "checkpoint.keep_last=1".into(),
        ]
    }

    /// Runs the point unless the cache has it, and reads what it left. `before` is a finished
    /// run of the same size whose evaluation before finetuning this run can reuse (the same
    /// pretrained model on the same items).
    pub fn ensure(
        &self,
        plan: &Plan,
        cache: &Path,
        before: Option<&Path>,
        flan: &Path,
    ) -> Result<Finished> {
        let overrides = self.overrides(plan);
        let mut cfg = plan.finetune_config(&self.size, &overrides)?;
        let base_spec =
            cfg.data.mixture.clone().with_context(|| {
                format!("{}: data.mixture is required", plan.finetune.display())
            })?;
        let spec = self.mixture_spec(&base_spec)?;
        // The key: the resolved config (its files' contents included), the stage's own key,
        // and the mixture written for this run.
        let stage = TrainConfig::load(&self.size.pretrain, &[])
            .with_context(|| format!("the pretraining stage {}", self.size.pretrain.display()))?;
        let stage_key = pretraining_stage::config_hash(&stage)?;
        cfg.model.pretrain = None;
        cfg.model.pretrained = Some(PathBuf::from(format!("stage-{stage_key}")));
        cfg.data.mixture = None;
        let key = format!(
            "{:016x}",
            fnv1a(&format!(
                "{}\n{spec}",
                pretraining_stage::config_hash(&cfg)?
            ))
        );
        let dir = cache.join(format!("replicate-{key}"));
        if !dir.join(DONE).is_file() {
            std::fs::create_dir_all(dir.join("eval"))
                .with_context(|| format!("creating {}", dir.display()))?;
            let spec_file = dir.join("mixture.toml");
            std::fs::write(&spec_file, &spec)
                .with_context(|| format!("writing {}", spec_file.display()))?;
            let reuse = dir.join("eval").join("before.json");
            if let Some(other) = before.map(|d| d.join("eval").join("before.json")) {
                if !reuse.exists() && other.is_file() {
                    std::fs::copy(&other, &reuse).with_context(|| {
                        format!("copying {} to {}", other.display(), reuse.display())
                    })?;
                }
            }
            let started = std::time::Instant::now();
            self.train(plan, &dir, &spec_file, &overrides, flan)?;
            let record = serde_json::json!({
                "run": self.describe(),
                "seconds": started.elapsed().as_secs_f64(),
            });
            std::fs::write(
                dir.join(DONE),
                serde_json::to_string_pretty(&record)? + "\n",
            )
            .with_context(|| format!("writing {}", dir.join(DONE).display()))?;
            let mut finished = read_finished(&dir)?;
            finished.seconds = started.elapsed().as_secs_f64();
            return Ok(finished);
        }
        read_finished(&dir)
    }

    fn train(
        &self,
        plan: &Plan,
        dir: &Path,
        spec_file: &Path,
        overrides: &[String],
        flan: &Path,
    ) -> Result<()> {
        let log_file = dir.join("train.log");
        let log = std::fs::File::create(&log_file)
            .with_context(|| format!("creating {}", log_file.display()))?;
        let mut train = Command::new(flan);
        train
            .arg("train")
            .arg("--config")
            .arg(&plan.finetune)
            .arg("--output-dir")
            .arg(dir)
            .arg("--mixture")
            .arg(spec_file);
        for o in overrides {
            train.arg("--set").arg(o);
        }
        train
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let status = train
            .status()
            .with_context(|| format!("starting {}", flan.display()))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log_file).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let code = status.code().unwrap_or(1);
            return Err(crate::exit_code::Classified {
                kind: crate::exit_code::ExitKind::from_code(code),
                message: format!(
                    "the run ({}) failed ({status}); rerunning continues it. The end of {}:\n{}",
                    self.describe(),
                    log_file.display(),
                    tail.join("\n")
                ),
            }
            .into());
        }
        Ok(())
    }
}

/// Reads a finished run's evaluations and size.
fn read_finished(dir: &Path) -> Result<Finished> {
    let eval = dir.join("eval");
    let read = |name: &str| -> Result<RunResult> {
        let file = eval.join(name);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    };
    let results = eval.join("results.json");
    let value: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&results)
            .with_context(|| format!("reading {}", results.display()))?,
    )
    .with_context(|| format!("parsing {}", results.display()))?;
    let Some(parameters) = value["parameters"].as_u64() else {
        bail!("{}: no `parameters` count", results.display());
    };
    Ok(Finished {
        dir: dir.to_path_buf(),
        before: read("before.json")?,
        after: read("after.json")?,
        parameters,
        seconds: 0.0,
    })
}

/// The first `n` trained families in an order drawn from `seed`: nested (a smaller set is a
/// prefix of a larger one with the same seed), so that a curve over n adds families rather
/// than swapping them.
pub fn family_subset(n: usize, seed: u64) -> Vec<String> {
    let mut names: Vec<&str> = flan_data::synthetic::trained_families()
        .map(|f| f.name)
        .collect();
    names.sort_by_key(|name| (fnv1a(&format!("{seed}\u{1f}{name}")), *name));
    names.into_iter().take(n).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_subsets_are_nested_seeded_and_trained_only() {
        let all = flan_data::synthetic::trained_families().count();
        let big = family_subset(16, 3);
        assert_eq!(big.len(), 16);
        assert_eq!(family_subset(4, 3), big[..4]);
        assert_ne!(family_subset(16, 4), big);
        assert_eq!(family_subset(all + 5, 3).len(), all);
        for name in &big {
            assert!(!flan_data::synthetic::family_def(name).unwrap().held_out);
        }
    }

    #[test]
    fn a_run_without_cot_data_drops_the_cot_submixture_and_names_its_families() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("spec.toml");
        std::fs::write(
            &base,
            "seed = 0\ninput_len = 64\ntarget_len = 32\n[submixtures.d]\nweight = 1.0\ncap = 10\n\
             [submixtures.c]\nweight = 0.5\ncap = 10\n[synthetic]\nexamples_per_family = 10\n\
             submixture = \"d\"\ncot_submixture = \"c\"\n",
        )
        .unwrap();
        let run = FinetuneRun {
            size: Size {
                name: "x".into(),
                pretrain: PathBuf::from("p.toml"),
            },
            families: Some(vec!["sort_numbers".into()]),
            cot: false,
            seed: 0,
        };
        let spec: toml::Table = toml::from_str(&run.mixture_spec(&base).unwrap()).unwrap();
        assert!(spec["submixtures"].get("c").is_none());
        assert_eq!(spec["synthetic"]["cot"].as_bool(), Some(false));
        assert_eq!(spec["synthetic"]["cot_submixture"].as_str(), Some("d"));
        assert_eq!(
            spec["synthetic"]["families"].as_array().unwrap()[0].as_str(),
            Some("sort_numbers")
        );
        // The spec flan-data reads.
        let out = dir.path().join("out.toml");
        std::fs::write(&out, run.mixture_spec(&base).unwrap()).unwrap();
        flan_data::Mixture::from_spec_file(&out).unwrap();
    }
}
