//! `MixtureSpec`: the TOML that says which tasks to read, how to mix them and what to hold out.
//!
//! Paths are relative to `data_dir`, which is itself relative to the spec file. Submixture
//! defaults are the Flan 2022 figures (caps flan 30,000, t0 20,000, niv2 5,000, cot 100,000,
//! dialog 200,000; weights 0.40 / 0.32 / 0.20 / 0.05 / 0.03); a spec lists only what it changes.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A submixture: its weight in the whole mixture, the per-task cap and how its examples are
/// rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submixture {
    /// Weight of the submixture in the mixture (renormalised over submixtures that have tasks).
    pub weight: f64,
    /// Per-task cap: a task's rate is min(cap, number of examples).
    pub cap: u64,
    /// Share of few-shot renderings (the rest zero-shot).
    #[serde(default = "half")]
    pub few_shot_ratio: f64,
    /// Share of renderings with answer options, among examples that have options.
    #[serde(default = "half")]
    pub options_ratio: f64,
    /// Share of input-inversion renderings (families that have inversion templates).
    #[serde(default)]
    pub inversion_ratio: f64,
}

fn half() -> f64 {
    0.5
}

/// The Flan 2022 submixtures.
pub fn flan2022_submixtures() -> BTreeMap<String, Submixture> {
    let sub = |weight, cap, options_ratio, inversion_ratio| Submixture {
        weight,
        cap,
        few_shot_ratio: 0.5,
        options_ratio,
        inversion_ratio,
    };
    BTreeMap::from([
        ("flan".to_string(), sub(0.40, 30_000, 0.5, 0.0)),
        ("t0".to_string(), sub(0.32, 20_000, 0.5, 0.0)),
        ("niv2".to_string(), sub(0.20, 5_000, 1.0, 0.0)),
        ("cot".to_string(), sub(0.05, 100_000, 0.5, 0.3)),
        ("dialog".to_string(), sub(0.03, 200_000, 0.5, 0.3)),
    ])
}

/// The format of a task source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Flan CoT TSV: question, answer, rationale.
    CotTsv,
    /// Super-NaturalInstructions task JSON (one task per file).
    Niv2,
    /// Generic JSONL: inputs, targets, options?, rationale?.
    Jsonl,
    /// GSM8K JSONL (answer after `####`), read as CoT.
    Gsm8k,
    /// The published Flan 2022 collection: already-templated rows (`inputs`, `targets`,
    /// `task_source`, `task_name`, `template_type`) in JSONL, JSONL.gz or Parquet files,
    /// streamed, never loaded ([`crate::collection`]).
    FlanCollection,
    /// T5's span corruption over plain text (one document per line) or JSONL `{"text"}` documents
    /// ([`crate::span_corruption`]): examples are token ids, so the mixture needs a tokenizer.
    SpanCorruption,
}

/// One `[[tasks]]` entry. With a wildcard path (`niv2/tasks/*.json`) each file is a task named
/// after its file stem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task name (default: the file stem).
    #[serde(default)]
    pub name: Option<String>,
    /// The source format.
    pub format: SourceFormat,
    /// The file, relative to `data_dir`; the last component may contain `*`. For
    /// `flan_collection` and `span_corruption` also a directory (every collection file, or every
    /// `.txt`/`.jsonl`/`.json` file, under it). Required, except for a `span_corruption` task
    /// whose documents come from `synthetic_world` (then it is empty).
    #[serde(default, skip_serializing_if = "path_is_empty")]
    pub path: PathBuf,
    /// For `span_corruption`, instead of `path`: documents of the synthetic suite's world text
    /// ([`crate::synthetic::world`]), `{ documents = 20000, seed = 7 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_world: Option<crate::synthetic::SyntheticWorldSpec>,
    /// The submixture it belongs to (required, except for `flan_collection`, whose rows name
    /// theirs by `task_source`; there it keeps only that submixture's rows).
    #[serde(default)]
    pub submixture: Option<String>,
    /// Template family (default: `cot` for CoT sources, `niv2` for NIv2, `qa` for JSONL).
    #[serde(default)]
    pub family: Option<String>,
    /// For NIv2: a split list; only tasks it names are read.
    #[serde(default)]
    pub split: Option<PathBuf>,
    /// Skip (and count) bad records instead of failing (not with `synthetic_world`, which has
    /// none).
    #[serde(default)]
    pub lenient: bool,
    /// For `flan_collection`: keep only rows of these template types (default: all four).
    #[serde(default)]
    pub template_types: Option<Vec<crate::collection::TemplateType>>,
    /// For `flan_collection`: where the row-count index is cached, relative to the spec file
    /// (default: `$FLAN_CACHE_DIR`, else `$XDG_CACHE_HOME/flan`, else `~/.cache/flan`, then
    /// `collection-index/`).
    #[serde(default)]
    pub index_dir: Option<PathBuf>,
    /// For `span_corruption`: share of tokens that are noise (default 0.15).
    #[serde(default)]
    pub noise_density: Option<f64>,
    /// For `span_corruption`: mean length of a noise span (default 3).
    #[serde(default)]
    pub mean_noise_span_length: Option<f64>,
    /// For `span_corruption`: tokens per chunk before corruption (default: the most whose
    /// corrupted inputs fit `input_len`, by
    /// [`compute_input_and_target_lengths`](crate::span_corruption::compute_input_and_target_lengths):
    /// 568 for 512).
    #[serde(default)]
    pub raw_length: Option<usize>,
}

fn path_is_empty(path: &Path) -> bool {
    path.as_os_str().is_empty()
}

impl TaskSpec {
    /// Where the task's data comes from, for messages: its path, or `synthetic_world`.
    pub fn source_description(&self) -> String {
        match &self.synthetic_world {
            Some(w) if path_is_empty(&self.path) => format!(
                "synthetic_world: {} documents, seed {}",
                w.documents, w.seed
            ),
            _ => self.path.display().to_string(),
        }
    }

    /// What is wrong with the task's source, if anything: it needs `path`, except a
    /// `span_corruption` task, which takes its documents from exactly one of `path` and
    /// `synthetic_world`.
    pub(crate) fn source_problem(&self) -> Option<&'static str> {
        let has_path = !path_is_empty(&self.path);
        let span = self.format == SourceFormat::SpanCorruption;
        match &self.synthetic_world {
            None if has_path => None,
            None if span => Some(
                "needs its documents from exactly one of `path` and `synthetic_world`; it has \
                 neither",
            ),
            None => Some("missing field `path`"),
            Some(_) if !span => {
                Some("`synthetic_world` applies to format = \"span_corruption\" only")
            }
            Some(_) if has_path => {
                Some("has both `path` and `synthetic_world`; give exactly one source of documents")
            }
            Some(w) if w.documents == 0 => Some("`synthetic_world.documents` must be at least 1"),
            Some(_) if self.lenient => Some(
                "`lenient` applies to documents read from `path`; generated documents have no \
                 bad line to skip",
            ),
            Some(_) => None,
        }
    }

    /// The family used when none is given.
    pub fn family_or_default(&self) -> &str {
        self.family.as_deref().unwrap_or(match self.format {
            SourceFormat::CotTsv | SourceFormat::Gsm8k => "cot",
            SourceFormat::Niv2 => "niv2",
            SourceFormat::Jsonl | SourceFormat::FlanCollection => "qa",
            // Not rendered through templates; the name only says what the examples are.
            SourceFormat::SpanCorruption => "span_corruption",
        })
    }
}

/// The whole mixture specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureSpec {
    /// Seed of the stream (CLI `--seed` overrides).
    #[serde(default)]
    pub seed: u64,
    /// Where task paths are resolved, relative to the spec file.
    #[serde(default = "dot")]
    pub data_dir: PathBuf,
    /// Extra template files (relative to the spec file), applied over the built-in library.
    #[serde(default)]
    pub templates: Vec<PathBuf>,
    /// Token budget of model inputs (few-shot prompts are cut to fit; packing length).
    #[serde(default = "default_input_len")]
    pub input_len: usize,
    /// Token budget of targets (packing length).
    #[serde(default = "default_target_len")]
    pub target_len: usize,
    /// Held-out task names; `*` is a wildcard.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Held-out NIv2 task id ranges, inclusive (`[[664, 667], [685, 737]]` are the MMLU-derived
    /// tasks).
    #[serde(default)]
    pub exclude_niv2_ids: Vec<[u32; 2]>,
    /// Submixtures by name (defaults: Flan 2022).
    #[serde(default = "flan2022_submixtures")]
    pub submixtures: BTreeMap<String, Submixture>,
    /// The tasks.
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
    /// Tasks generated by the synthetic suite ([`crate::synthetic`]), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<crate::synthetic::SyntheticSpec>,
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}
fn default_input_len() -> usize {
    512
}
fn default_target_len() -> usize {
    256
}

impl MixtureSpec {
    /// Parses a spec from TOML; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<MixtureSpec> {
        let spec: MixtureSpec =
            toml::from_str(text).map_err(|e| Error::config(origin, e.to_string()))?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Reads a spec file (a leading byte-order mark is dropped).
    pub fn from_file(path: &Path) -> Result<MixtureSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        Self::from_toml(text, &path.display().to_string())
    }

    /// Checks weights, ratios and submixture names.
    pub fn validate(&self, origin: &str) -> Result<()> {
        for (name, sub) in &self.submixtures {
            let ctx = format!("{origin}: submixture `{name}`");
            if !(sub.weight.is_finite() && sub.weight >= 0.0) {
                return Err(Error::config(
                    ctx,
                    format!("weight must be >= 0, got {}", sub.weight),
                ));
            }
            for (what, r) in [
                ("few_shot_ratio", sub.few_shot_ratio),
                ("options_ratio", sub.options_ratio),
                ("inversion_ratio", sub.inversion_ratio),
            ] {
                if !(0.0..=1.0).contains(&r) {
                    return Err(Error::config(
                        ctx,
                        format!("{what} must be in [0, 1], got {r}"),
                    ));
                }
            }
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let ctx = || match &task.name {
                Some(name) => format!(
                    "{origin}: tasks[{i}] `{name}` ({})",
                    task.source_description()
                ),
                None => format!("{origin}: tasks[{i}] ({})", task.source_description()),
            };
            if let Some(problem) = task.source_problem() {
                return Err(Error::config(ctx(), problem));
            }
            let collection = task.format == SourceFormat::FlanCollection;
            match &task.submixture {
                Some(sub) if !self.submixtures.contains_key(sub) => {
                    let known: Vec<&String> = self.submixtures.keys().collect();
                    return Err(Error::config(
                        ctx(),
                        format!("unknown submixture `{sub}`; known: {known:?}"),
                    ));
                }
                None if !collection => {
                    return Err(Error::config(ctx(), "missing field `submixture`"));
                }
                _ => {}
            }
            if !collection && (task.template_types.is_some() || task.index_dir.is_some()) {
                return Err(Error::config(
                    ctx(),
                    "`template_types` and `index_dir` apply to format = \"flan_collection\" only",
                ));
            }
            if collection && (task.family.is_some() || task.split.is_some()) {
                return Err(Error::config(
                    ctx(),
                    "a flan_collection is used as given: `family` and `split` do not apply",
                ));
            }
            let span = task.format == SourceFormat::SpanCorruption;
            let span_options = task.noise_density.is_some()
                || task.mean_noise_span_length.is_some()
                || task.raw_length.is_some();
            if !span && span_options {
                return Err(Error::config(
                    ctx(),
                    "`noise_density`, `mean_noise_span_length` and `raw_length` apply to \
                     format = \"span_corruption\" only",
                ));
            }
            if span && (task.family.is_some() || task.split.is_some()) {
                return Err(Error::config(
                    ctx(),
                    "span corruption is not templated: `family` and `split` do not apply",
                ));
            }
            if task.template_types.as_ref().is_some_and(|t| t.is_empty()) {
                return Err(Error::config(
                    ctx(),
                    "`template_types` is empty: no row would be kept",
                ));
            }
        }
        if self.input_len < 2 || self.target_len < 2 {
            return Err(Error::config(
                origin,
                "input_len and target_len must be at least 2",
            ));
        }
        Ok(())
    }

    /// Whether a task is held out by name or NIv2 id.
    pub fn is_excluded(&self, name: &str) -> bool {
        if self
            .exclude
            .iter()
            .any(|p| crate::source::wildcard_match(p, name))
        {
            return true;
        }
        niv2_task_id(name).is_some_and(|id| {
            self.exclude_niv2_ids
                .iter()
                .any(|[lo, hi]| (*lo..=*hi).contains(&id))
        })
    }
}

/// The number of a NIv2 task name (`task685_mmlu_answer_generation_...` → 685).
pub fn niv2_task_id(name: &str) -> Option<u32> {
    let digits: String = name
        .strip_prefix("task")?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_exclusion() {
        let spec = MixtureSpec::from_toml(
            r#"
            exclude = ["*mmlu*"]
            exclude_niv2_ids = [[664, 667], [685, 737]]
            [[tasks]]
            format = "cot_tsv"
            path = "a.tsv"
            submixture = "cot"
            "#,
            "t",
        )
        .unwrap();
        assert_eq!(spec.submixtures["flan"].cap, 30_000);
        assert_eq!(spec.submixtures["dialog"].weight, 0.03);
        assert!(spec.is_excluded("task690_foo"));
        assert!(spec.is_excluded("my_mmlu_copy"));
        assert!(!spec.is_excluded("task1149_item_check_edible"));
        assert_eq!(niv2_task_id("task664_x"), Some(664));
        let bad = MixtureSpec::from_toml("tasks = []\nbogus = 1", "spec.toml").unwrap_err();
        assert!(bad.to_string().contains("bogus"), "{bad}");
        let bad = MixtureSpec::from_toml(
            "[[tasks]]\nformat = \"jsonl\"\npath = \"x\"\nsubmixture = \"nope\"",
            "spec.toml",
        )
        .unwrap_err();
        assert!(bad.to_string().contains("unknown submixture"), "{bad}");
    }

    fn span_task(fields: &str) -> Result<MixtureSpec> {
        MixtureSpec::from_toml(
            &format!(
                "[submixtures.pretrain]\nweight = 1.0\ncap = 10\n[[tasks]]\nname = \"world\"\n\
                 submixture = \"pretrain\"\n{fields}"
            ),
            "spec.toml",
        )
    }

    #[test]
    fn a_span_corruption_task_takes_exactly_one_of_path_and_synthetic_world() {
        let world = "synthetic_world = { documents = 20, seed = 7 }";
        let spec = span_task(&format!("format = \"span_corruption\"\n{world}")).unwrap();
        let task = &spec.tasks[0];
        assert_eq!(
            task.synthetic_world,
            Some(crate::synthetic::SyntheticWorldSpec {
                documents: 20,
                seed: 7
            })
        );
        assert!(task.path.as_os_str().is_empty());
        assert_eq!(
            task.source_description(),
            "synthetic_world: 20 documents, seed 7"
        );
        // The seed defaults to 0, as the `[synthetic]` section's does.
        let spec =
            span_task("format = \"span_corruption\"\nsynthetic_world = { documents = 1 }").unwrap();
        assert_eq!(spec.tasks[0].synthetic_world.unwrap().seed, 0);
        // A spec without it serializes as before (no empty `synthetic_world`).
        let file = span_task("format = \"span_corruption\"\npath = \"corpus\"").unwrap();
        let text = toml::to_string(&file).unwrap();
        assert!(!text.contains("synthetic_world"), "{text}");
        assert_eq!(MixtureSpec::from_toml(&text, "again").unwrap(), file);

        let err = |fields: &str| span_task(fields).unwrap_err().to_string();
        let both = err(&format!(
            "format = \"span_corruption\"\npath = \"corpus\"\n{world}"
        ));
        assert!(
            both.contains("`world`") && both.contains("both `path` and `synthetic_world`"),
            "{both}"
        );
        let neither = err("format = \"span_corruption\"");
        assert!(
            neither.contains("`world`") && neither.contains("it has neither"),
            "{neither}"
        );
        let zero = err("format = \"span_corruption\"\nsynthetic_world = { documents = 0 }");
        assert!(
            zero.contains("`world`")
                && zero.contains("synthetic_world.documents` must be at least 1"),
            "{zero}"
        );
        let other = err(&format!("format = \"jsonl\"\n{world}"));
        assert!(
            other.contains("`synthetic_world` applies to format = \"span_corruption\" only"),
            "{other}"
        );
        let lenient = err(&format!(
            "format = \"span_corruption\"\nlenient = true\n{world}"
        ));
        assert!(lenient.contains("`lenient`"), "{lenient}");
        let unknown =
            err("format = \"span_corruption\"\nsynthetic_world = { documents = 5, sed = 1 }");
        assert!(unknown.contains("sed"), "{unknown}");
        let missing = err("format = \"span_corruption\"\nsynthetic_world = { seed = 1 }");
        assert!(missing.contains("documents"), "{missing}");
        // Other formats still need their path.
        let no_path = err("format = \"jsonl\"");
        assert!(no_path.contains("missing field `path`"), "{no_path}");
    }
}
