//! The replication's plan: which points to run, read from a TOML file
//! (configs/replicate/full.toml, quick.toml) and checked once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flan_train::config::TrainConfig;
use serde::Deserialize;

use crate::exit_code::usage;

/// What `flan replicate` runs. Paths are relative to the plan file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The train config every finetuning point starts from (its mixture is the base of the
    /// points' mixtures; `model.pretrain`, `seed`, `train.steps` and the evaluation size are
    /// set per point).
    pub finetune: PathBuf,
    /// Seeds of every finetuning point (training, mixture stream, family subsets, sampling).
    pub seeds: Vec<u64>,
    /// Finetuning steps of every point.
    pub steps: u64,
    /// Numbers of finetuning families of the task-scaling curve besides 0 (not finetuned) and
    /// all of them.
    pub families: Vec<usize>,
    /// Evaluation items per (family, template set, prompt form) cell.
    pub items_per_cell: usize,
    /// Self-consistency: the numbers of samples that vote, and the temperature.
    pub self_consistency: SelfConsistencyPlan,
    /// The model sizes (each with its pretraining stage), smallest first.
    pub sizes: Vec<Size>,
    /// The size every experiment but model scaling uses.
    pub default_size: String,
}

/// `[self_consistency]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfConsistencyPlan {
    /// Samples that vote, e.g. `[1, 2, 4, 8]`; one run draws the largest and smaller k vote
    /// over its first samples.
    pub k: Vec<usize>,
    /// Sampling temperature.
    pub temperature: f64,
}

/// `[[sizes]]`: a model size and the pretraining stage that makes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    /// How the report names it.
    pub name: String,
    /// Its pretraining stage's train config (`model.pretrain` of its finetuning points).
    pub pretrain: PathBuf,
}

impl Plan {
    /// Reads and checks `file`; relative paths resolve against its directory.
    pub fn read(file: &Path) -> Result<Plan> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let mut plan: Plan = toml::from_str(&text)
            .map_err(|e| usage(format!("{}: {}", file.display(), e.to_string().trim_end())))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut plan.finetune);
        for size in &mut plan.sizes {
            resolve(&mut size.pretrain);
        }
        plan.check()
            .map_err(|m| usage(format!("{}: {m}", file.display())))?;
        Ok(plan)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.seeds.is_empty() {
            return Err("seeds must list at least one seed".into());
        }
        let mut seeds = self.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        if seeds.len() != self.seeds.len() {
            return Err(format!("seeds {:?} repeat a seed", self.seeds));
        }
        if self.steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if self.items_per_cell == 0 {
            return Err("items_per_cell must be at least 1".into());
        }
        let trained = flan_data::synthetic::trained_families().count();
        if let Some(n) = self.families.iter().find(|&&n| n == 0 || n >= trained) {
            return Err(format!(
                "families: {n} is not between 1 and {} (0 and all {trained} are always run)",
                trained - 1
            ));
        }
        if self.self_consistency.k.is_empty() || self.self_consistency.k.contains(&0) {
            return Err("self_consistency.k must list numbers of samples >= 1".into());
        }
        let t = self.self_consistency.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(format!(
                "self_consistency.temperature must be a finite number > 0, got {t}"
            ));
        }
        if self.sizes.is_empty() {
            return Err("sizes must list at least one model size".into());
        }
        if !self.sizes.iter().any(|s| s.name == self.default_size) {
            let names: Vec<&str> = self.sizes.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "default_size `{}` is not one of the sizes {names:?}",
                self.default_size
            ));
        }
        Ok(())
    }

    /// The size every experiment but model scaling uses.
    pub fn default_size(&self) -> &Size {
        self.sizes
            .iter()
            .find(|s| s.name == self.default_size)
            .unwrap_or(&self.sizes[0])
    }

    /// The finetune config as a point of `size` starts from (with `model.pretrain` set, which
    /// the file leaves to the plan).
    pub fn finetune_config(&self, size: &Size, overrides: &[String]) -> Result<TrainConfig> {
        let mut all = vec![format!(
            "model.pretrain={}",
            toml::Value::String(size.pretrain.display().to_string())
        )];
        all.extend(overrides.iter().cloned());
        TrainConfig::load(&self.finetune, &all)
            .with_context(|| format!("the plan's finetune config {}", self.finetune.display()))
    }

    /// The largest k of self-consistency (the samples its one run draws).
    pub fn max_k(&self) -> usize {
        self.self_consistency.k.iter().copied().max().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
finetune = "ft.toml"
seeds = [0, 1]
steps = 5
families = [2]
items_per_cell = 1
default_size = "a"
self_consistency = { k = [1, 3], temperature = 0.7 }
[[sizes]]
name = "a"
pretrain = "a.toml"
"#;

    fn read(text: &str) -> Result<Plan> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.toml");
        std::fs::write(&file, text).unwrap();
        Plan::read(&file)
    }

    #[test]
    fn a_plan_reads_with_paths_beside_it_and_mistakes_are_named() {
        let plan = read(GOOD).unwrap();
        assert!(plan.finetune.ends_with("ft.toml") && plan.finetune.is_absolute());
        assert_eq!(plan.max_k(), 3);
        assert_eq!(plan.default_size().name, "a");
        for (from, to, says) in [
            ("seeds = [0, 1]", "seeds = []", "seeds"),
            ("seeds = [0, 1]", "seeds = [1, 1]", "repeat"),
            ("families = [2]", "families = [0]", "families: 0"),
            ("families = [2]", "families = [99]", "families: 99"),
            ("k = [1, 3]", "k = [0]", "self_consistency.k"),
            ("temperature = 0.7", "temperature = -1.0", "temperature"),
            (
                "default_size = \"a\"",
                "default_size = \"b\"",
                "default_size `b`",
            ),
            ("steps = 5", "steps = 5\nstep = 3", "unknown field"),
        ] {
            let err = read(&GOOD.replace(from, to)).unwrap_err();
            assert!(format!("{err:#}").contains(says), "{to}: {err:#}");
        }
    }
}
