//! The model card: `README.md` in the saved model directory (`output_dir/model`), so that the
//! directory can go to a model registry or the Hugging Face hub as it is and still say what it
//! is. It opens with the hub's YAML metadata (`library_name: transformers`, since the weights load
//! there; `pipeline_tag`, `tags`, and `base_model` when the run started from a hub model), then
//! the base model, the mixture (spec, submixtures, tasks), what training saw (steps, examples,
//! target tokens, final loss, truncation), the evaluations the run has, and the whole config as
//! TOML.
//!
//! The trainer writes it when it saves the final model, with the evaluations logged during
//! training; `flan train` writes it again once its after-training evaluation has results.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path};

use crate::config::TrainConfig;
use crate::trainer::TrainSummary;
use crate::{Error, Result};

/// File name of the card inside the model directory.
pub const CARD_FILE: &str = "README.md";

/// A table of evaluation results: a title and (name, value) rows.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTable {
    /// What was evaluated, and how.
    pub title: String,
    /// Metric name and its formatted value.
    pub rows: Vec<(String, String)>,
}

/// Everything the card says.
pub struct ModelCard<'a> {
    cfg: &'a TrainConfig,
    summary: &'a TrainSummary,
    evaluations: Vec<EvalTable>,
}

impl<'a> ModelCard<'a> {
    /// The card of the run `cfg` that ended as `summary`, with the evaluations logged in its
    /// `metrics.jsonl` (the last one, and the best when `eval.best_metric` is tracked).
    pub fn new(cfg: &'a TrainConfig, summary: &'a TrainSummary) -> ModelCard<'a> {
        let mut evaluations = Vec::new();
        if let Some((step, scores)) = last_eval(&cfg.output_dir.join("metrics.jsonl")) {
            evaluations.push(EvalTable {
                title: format!("During training, at step {step} (`eval.benchmarks`)"),
                rows: scores
                    .into_iter()
                    .map(|(k, v)| (k, format!("{v:.4}")))
                    .collect(),
            });
        }
        if let Some(best) = &summary.best {
            evaluations.push(EvalTable {
                title: format!("Best `{}` during training", best.metric),
                rows: vec![(
                    format!("{} (step {}, saved in `best/`)", best.metric, best.step),
                    format!("{:.4}", best.value),
                )],
            });
        }
        ModelCard {
            cfg,
            summary,
            evaluations,
        }
    }

    /// Adds a table of results (e.g. an evaluation of the saved model).
    pub fn with_evaluation(mut self, table: EvalTable) -> Self {
        self.evaluations.push(table);
        self
    }

    /// The base model's hub id, when the run finetuned one: `model.pretrained` as a hub id, or a
    /// directory of the Hugging Face cache (`models--org--name/snapshots/<sha>`).
    pub fn base_model_id(&self) -> Option<String> {
        self.cfg.model.pretrained.as_deref().and_then(hub_id_of)
    }

    /// The card as Markdown with the YAML header.
    pub fn render(&self) -> Result<String> {
        let cfg = self.cfg;
        let s = self.summary;
        let base = self.base_model_id();
        let mut out = String::new();
        // YAML header: strings as JSON strings, which YAML reads as double-quoted scalars.
        let q = |v: &str| serde_json::Value::from(v).to_string();
        out.push_str("---\n");
        writeln!(out, "library_name: {}", q("transformers")).ok();
        writeln!(out, "pipeline_tag: {}", q("text2text-generation")).ok();
        out.push_str("tags:\n");
        for tag in [
            "t5",
            "flan",
            "instruction-tuning",
            "text2text-generation",
            "flan-rs",
        ] {
            writeln!(out, "- {}", q(tag)).ok();
        }
        if let Some(id) = &base {
            writeln!(out, "base_model: {}", q(id)).ok();
            writeln!(out, "base_model_relation: {}", q("finetune")).ok();
        }
        out.push_str("---\n\n");

        let name = cfg
            .output_dir
            .file_name()
            .map_or("flan run".into(), |n| n.to_string_lossy().into_owned());
        writeln!(out, "# {name}\n").ok();
        out.push_str(
            "A T5 model instruction-finetuned with the Flan recipe by `flan train` (Rust, libtorch). \
             The directory is in the Hugging Face layout: `AutoModelForSeq2SeqLM.from_pretrained` \
             and `AutoTokenizer.from_pretrained` load it.\n\n",
        );

        out.push_str("## Base model\n\n");
        match (&cfg.model.pretrained, &cfg.model.config) {
            (Some(dir), _) => match &base {
                Some(id) => writeln!(
                    out,
                    "Finetuned from [`{id}`](https://huggingface.co/{id}) (read from `{}`).",
                    dir.display()
                ),
                None => writeln!(out, "Finetuned from the model in `{}`.", dir.display()),
            },
            (None, Some(file)) => writeln!(
                out,
                "Trained from scratch: initialised from `{}` with seed {}.",
                file.display(),
                cfg.seed
            ),
            (None, None) => writeln!(out, "Unknown."),
        }
        .ok();
        writeln!(out, "Training dropout {}.\n", cfg.model.dropout).ok();

        out.push_str("## Training data\n\n");
        self.mixture_section(&mut out);

        out.push_str("## Training\n\n");
        out.push_str("| steps | examples | target tokens | final loss | mean loss, last steps | skipped updates |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|\n");
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |\n",
            s.steps,
            s.examples_seen,
            s.target_tokens_seen,
            fmt_loss(s.final_loss),
            fmt_loss(s.recent_mean_loss),
            s.skipped_steps
        )
        .ok();
        let t = &s.truncation;
        let cut = t.describe();
        if cut.is_empty() {
            writeln!(
                out,
                "Truncation: no example was cut (inputs {} tokens, targets {}; counted over {} examples{}).\n",
                t.input_limit,
                t.target_limit,
                t.inputs.sequences,
                if s.resumed_from > 0 { ", since the last resume" } else { "" }
            )
            .ok();
        } else {
            writeln!(
                out,
                "Truncation ({} examples cut{}):\n",
                t.truncated,
                if s.resumed_from > 0 {
                    ", counted since the last resume"
                } else {
                    ""
                }
            )
            .ok();
            for line in cut {
                writeln!(out, "- {line}").ok();
            }
            out.push('\n');
        }

        out.push_str("## Evaluation\n\n");
        if self.evaluations.is_empty() {
            out.push_str("This run has no evaluation results.\n\n");
        }
        for table in &self.evaluations {
            writeln!(out, "{}:\n", table.title).ok();
            out.push_str("| metric | value |\n|---|---:|\n");
            for (k, v) in &table.rows {
                writeln!(out, "| {k} | {v} |").ok();
            }
            out.push('\n');
        }

        out.push_str("## Configuration\n\n```toml\n");
        out.push_str(&cfg.to_toml()?);
        out.push_str("```\n");
        Ok(out)
    }

    fn mixture_section(&self, out: &mut String) {
        let Some(spec_path) = &self.cfg.data.mixture else {
            out.push_str("Unknown.\n\n");
            return;
        };
        writeln!(out, "Mixture spec: `{}`.", spec_path.display()).ok();
        let spec = match flan_data::spec::MixtureSpec::from_file(spec_path) {
            Ok(spec) => spec,
            Err(e) => {
                writeln!(out, "(It cannot be read any more: {e}.)\n").ok();
                return;
            }
        };
        writeln!(
            out,
            "Seed {}, inputs up to {} tokens, targets up to {}, packing {}.\n",
            self.cfg.data.seed.unwrap_or(self.cfg.seed),
            self.cfg.data.input_len.unwrap_or(spec.input_len),
            self.cfg.data.target_len.unwrap_or(spec.target_len),
            if self.cfg.data.pack { "on" } else { "off" }
        )
        .ok();
        let used: std::collections::BTreeSet<&str> = spec
            .tasks
            .iter()
            .flat_map(|t| match &t.submixture {
                Some(sub) => vec![sub.as_str()],
                // A flan_collection without one: its rows name their submixtures.
                None => spec.submixtures.keys().map(String::as_str).collect(),
            })
            .chain(
                spec.synthetic
                    .iter()
                    .flat_map(|s| [s.submixture.as_str(), s.cot_submixture.as_str()]),
            )
            .collect();
        out.push_str(
            "| submixture | weight | cap per task | few-shot share |\n|---|---:|---:|---:|\n",
        );
        for (name, sub) in spec
            .submixtures
            .iter()
            .filter(|(n, _)| used.contains(n.as_str()))
        {
            writeln!(
                out,
                "| {name} | {} | {} | {} |",
                sub.weight, sub.cap, sub.few_shot_ratio
            )
            .ok();
        }
        out.push('\n');
        if !spec.tasks.is_empty() {
            out.push_str("| task | format | submixture | source |\n|---|---|---|---|\n");
            for task in &spec.tasks {
                let name = task.name.clone().unwrap_or_else(|| {
                    task.path
                        .file_stem()
                        .map_or("?".into(), |s| s.to_string_lossy().into_owned())
                });
                writeln!(
                    out,
                    "| {name} | {} | {} | `{}` |",
                    serde_json::to_value(task.format)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    task.submixture.as_deref().unwrap_or("by task_source"),
                    task.source_description()
                )
                .ok();
            }
            out.push('\n');
        }
        if let Some(synthetic) = &spec.synthetic {
            writeln!(
                out,
                "Synthetic task suite of flan-data: families {}, {} examples per family (seed {}).\n",
                synthetic.families.join(", "),
                synthetic.examples_per_family,
                synthetic.seed
            )
            .ok();
        }
        if !spec.exclude.is_empty() {
            writeln!(out, "Held out of training: {}.\n", spec.exclude.join(", ")).ok();
        }
    }

    /// Writes the card into `model_dir` (a temporary file renamed into place).
    pub fn write(&self, model_dir: &Path) -> Result<()> {
        let text = self.render()?;
        let path = model_dir.join(CARD_FILE);
        let tmp = model_dir.join(format!(".{CARD_FILE}.tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

fn fmt_loss(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "n/a".into()
    }
}

/// The scores of the last `eval` record of a metrics file.
fn last_eval(metrics: &Path) -> Option<(u64, BTreeMap<String, f64>)> {
    let text = std::fs::read_to_string(metrics).ok()?;
    text.lines().rev().find_map(|line| {
        let record: crate::metrics::EvalRecord = serde_json::from_str(line).ok()?;
        (record.kind == "eval").then_some((record.step, record.scores))
    })
}

/// `org/name` when `model` is a hub id that is not a local directory, or a snapshot directory
/// of the Hugging Face cache (`.../models--org--name/snapshots/<revision>`).
pub fn hub_id_of(model: &Path) -> Option<String> {
    let text = model.to_string_lossy();
    if !model.is_dir() && model.is_relative() && flan_model::hub::is_hub_id(&text) {
        return Some(text.into_owned());
    }
    let parts: Vec<String> = model
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.windows(2).find_map(|w| {
        let repo = w[0].strip_prefix("models--")?;
        (w[1] == "snapshots").then(|| repo.replacen("--", "/", 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::BestMetric;

    fn summary(steps: u64) -> TrainSummary {
        TrainSummary {
            steps,
            resumed_from: 0,
            final_loss: 1.25,
            recent_mean_loss: 1.5,
            examples_seen: 640,
            target_tokens_seen: 5120,
            skipped_steps: 0,
            truncation: flan_data::Truncation::default(),
            tokens_per_second: 1000.0,
            packing_efficiency: 0.9,
            seconds: 1.0,
            last_checkpoint: None,
            model_dir: None,
            best: Some(BestMetric {
                metric: "bbh-direct/accuracy".into(),
                value: 0.375,
                step: 8,
            }),
            data_exhausted: false,
            stopped_by: None,
            parameters: Default::default(),
        }
    }

    #[test]
    fn the_card_has_the_hub_header_and_says_what_the_run_was() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("mixture.toml");
        std::fs::write(
            &spec,
            "input_len = 64\ntarget_len = 16\n[submixtures.cot]\nweight = 0.5\ncap = 1000\n\
             [[tasks]]\nformat = \"cot_tsv\"\npath = \"cot/gsm8k.tsv\"\nsubmixture = \"cot\"\n",
        )
        .unwrap();
        let snapshot = dir
            .path()
            .join("hub/models--google--flan-t5-small/snapshots/0123abc");
        let cfg = TrainConfig::from_overrides(&[
            format!("model.pretrained={}", snapshot.display()),
            format!("data.mixture={}", spec.display()),
            format!("output_dir={}", dir.path().join("my-run").display()),
            "train.steps=10".into(),
        ])
        .unwrap();
        let s = summary(10);
        let card = ModelCard::new(&cfg, &s)
            .with_evaluation(EvalTable {
                title: "Synthetic suite".into(),
                rows: vec![("all (8 prompts)".into(), "25.0%".into())],
            })
            .render()
            .unwrap();
        let (header, body) = card
            .strip_prefix("---\n")
            .and_then(|r| r.split_once("\n---\n"))
            .expect("a YAML header between --- lines");
        let meta = &yaml_rust2::YamlLoader::load_from_str(header).unwrap()[0];
        assert_eq!(meta["library_name"].as_str(), Some("transformers"));
        assert_eq!(meta["base_model"].as_str(), Some("google/flan-t5-small"));
        assert_eq!(meta["base_model_relation"].as_str(), Some("finetune"));
        assert!(meta["tags"].as_vec().unwrap().len() >= 3);
        assert!(body.starts_with("\n# my-run\n"), "{body}");
        for needle in [
            "Finetuned from [`google/flan-t5-small`]",
            "| cot | 0.5 | 1000 | 0.5 |",
            "| gsm8k | cot_tsv | cot | `cot/gsm8k.tsv` |",
            "| 10 | 640 | 5120 | 1.2500 | 1.5000 | 0 |",
            "no example was cut",
            "| bbh-direct/accuracy (step 8, saved in `best/`) | 0.3750 |",
            "Synthetic suite:",
            "| all (8 prompts) | 25.0% |",
            "```toml\n",
        ] {
            assert!(body.contains(needle), "{needle} missing:\n{card}");
        }
        // The config block is the run's config.
        let toml_text = body.split_once("```toml\n").unwrap().1;
        let toml_text = toml_text.split_once("```").unwrap().0;
        let again: TrainConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn hub_ids_are_recognised_only_where_they_are_certain() {
        assert_eq!(
            hub_id_of(Path::new("google/flan-t5-small")).as_deref(),
            Some("google/flan-t5-small")
        );
        assert_eq!(
            hub_id_of(Path::new("/c/hub/models--t5-small/snapshots/abc")).as_deref(),
            Some("t5-small")
        );
        assert_eq!(hub_id_of(Path::new("/models/my-t5")), None);
        assert_eq!(hub_id_of(Path::new("/tmp")), None);
    }
}
