//! The before/after evaluation of `flan train` on flan-data's synthetic suite (`[eval.synthetic]`)
//! and the report it ends with: the untrained model (the config's initialisation, or the
//! pretrained checkpoint) is evaluated before training, the saved final model (`output_dir/model`,
//! exactly what the user gets) after it, and `output_dir/eval/` receives both runs' predictions,
//! `results.json`, `report.md` and the charts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flan_data::synthetic::Suite;
use flan_data::Tokenizer;
use flan_eval::breakdown::Breakdown;
use flan_eval::finetune_report::{terminal_table, write_report, FinetuneReport, ReportFiles};
use flan_eval::interval::Bootstrap;
use flan_eval::runner::{self, RunOptions, RunResult, SampleRecord};
use flan_eval::scorecard::{CellScore, Scorecard};
use flan_eval::{report, synthetic, EvalItem};
use flan_train::card::EvalTable;
use flan_train::config::{SyntheticEvalSection, TrainConfig};
use flan_train::trainer::TrainSummary;
use indicatif::{ProgressBar, ProgressStyle};

use flan_eval_t5::T5EvalModel;

/// The suite's items, how they run and where the results go.
pub struct SyntheticEvaluation {
    items: Vec<EvalItem>,
    options: RunOptions,
    dir: PathBuf,
}

impl SyntheticEvaluation {
    /// The plan of `section`, results under `cfg.output_dir/eval`.
    pub fn new(cfg: &TrainConfig, section: &SyntheticEvalSection) -> Result<Self> {
        let suite = Suite::new().context("building the synthetic suite")?;
        let items = synthetic::standard_items(&suite, &section.plan())
            .context("building the synthetic evaluation items")?;
        Ok(SyntheticEvaluation {
            items,
            options: synthetic::run_options(section.batch_size),
            dir: cfg.output_dir.join("eval"),
        })
    }

    fn run(&self, model: &mut T5EvalModel, what: &str) -> Result<RunResult> {
        let bar = ProgressBar::new(self.items.len() as u64).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} prompts ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("evaluating {what}"));
        let run = runner::run(model, &self.items, &self.options, &mut |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        let overall = Breakdown::of(&run.samples).overall;
        tracing::info!(
            "evaluated {what}: {} of {} prompts correct ({:.1}%) in {:.0} s",
            overall.correct,
            overall.n,
            overall.percent(),
            run.seconds
        );
        std::fs::create_dir_all(&self.dir).with_context(|| self.dir.display().to_string())?;
        report::samples_file(
            &self.dir.join(format!("predictions-{what}.jsonl")),
            &run.samples,
        )?
        .commit()?;
        Ok(run)
    }

    /// The suite on the model as training starts from it. The result is kept in
    /// `eval/before.json`, so a resumed run reuses it instead of evaluating a checkpoint.
    pub fn before(&self, cfg: &TrainConfig) -> Result<RunResult> {
        let cached = self.dir.join("before.json");
        if cached.exists() {
            let text = std::fs::read_to_string(&cached)
                .with_context(|| format!("reading {}", cached.display()))?;
            // A file this version cannot read (an older layout) is evaluated again, as is
            // one made with other settings.
            let run: Option<RunResult> = serde_json::from_str(&text).ok();
            if let Some(run) = run.filter(|run| {
                run.samples.len() == self.items.len()
                    && run.samples.iter().zip(&self.items).all(|(s, i)| s.is_of(i))
            }) {
                tracing::info!(
                    "using the evaluation before training from {}",
                    cached.display()
                );
                return Ok(run);
            }
            tracing::info!(
                "{} was made with other evaluation settings or by another version; evaluating again",
                cached.display()
            );
        }
        let tokenizer_file = flan_train::run::ensure_tokenizer(cfg)?;
        let (model, _) = flan_train::t5::build_model(cfg)?;
        let tokenizer = Tokenizer::from_file(&tokenizer_file)
            .with_context(|| format!("reading {}", tokenizer_file.display()))?;
        let mut model = T5EvalModel::new(model, tokenizer, "untrained".into(), usize::MAX);
        let run = self.run(&mut model, "before")?;
        std::fs::write(&cached, serde_json::to_string(&run)?)
            .with_context(|| cached.display().to_string())?;
        Ok(run)
    }

    /// The suite on the trained model in `model_dir`, then the report; also the results as a
    /// table for the model card.
    pub fn after(
        &self,
        cfg: &TrainConfig,
        model_dir: &Path,
        train: &TrainSummary,
        before: RunResult,
    ) -> Result<(ReportFiles, EvalTable)> {
        // The device and dtype the model was trained in and evaluated in before training. A LoRA
        // run's model directory is an adapter over model.pretrained.
        let source = flan_model::ModelSource::resolve(&model_dir.to_string_lossy(), None)?;
        let mut model = flan_eval_t5::load(&source, cfg.tch_device()?, cfg.dtype, usize::MAX)?;
        let parameters = model.parameter_count();
        let after = self.run(&mut model, "after")?;
        std::fs::write(self.dir.join("after.json"), serde_json::to_string(&after)?)
            .with_context(|| self.dir.display().to_string())?;
        let source = match (&cfg.model.pretrained, &cfg.model.config) {
            (Some(dir), _) => format!("T5 finetuned from {}", dir.display()),
            (None, Some(file)) => format!("T5 trained from scratch ({})", file.display()),
            (None, None) => "T5".into(),
        };
        let report = FinetuneReport {
            model: source,
            parameters,
            train: serde_json::to_value(train)?,
            loss: loss_curve(&cfg.output_dir.join("metrics.jsonl"))?,
            eval_seconds: (before.seconds, after.seconds),
            samples: samples(&after.samples),
            before: Breakdown::of(&before.samples),
            after: Breakdown::of(&after.samples),
        };
        let files = write_report(&self.dir, &report)?;
        // The card's table says what the report says: each setting against its chance baseline.
        let card = Scorecard::of(&report.before, &report.after, &Bootstrap::default())?;
        let row = |label: String, cell: Option<&CellScore>| -> Option<(String, String)> {
            let cell = cell?;
            let after = cell.after.as_ref()?;
            let before = cell
                .before
                .as_ref()
                .map_or("–".to_string(), |b| format!("{:.1}%", 100.0 * b.accuracy));
            Some((
                format!("{label} ({} prompts)", after.items),
                format!(
                    "{:.1}% (before: {before}; chance {:.1}%, after − chance {:+.1} points, 95% \
                     interval {:+.1} to {:+.1})",
                    100.0 * after.accuracy,
                    100.0 * after.chance,
                    100.0 * after.above_chance,
                    100.0 * after.above_chance_interval.low,
                    100.0 * after.above_chance_interval.high
                ),
            ))
        };
        let mut rows: Vec<(String, String)> = card
            .by_setting
            .iter()
            .filter_map(|(setting, cell)| row(setting.clone(), Some(cell)))
            .collect();
        rows.extend(row("all".into(), card.overall.as_ref()));
        let table = EvalTable {
            title: "flan-data's synthetic suite on the saved model, exact match, greedy (`eval/report.md`)"
                .into(),
            rows,
        };
        tracing::info!("\n{}", terminal_table(&report.before, &report.after));
        tracing::info!(
            "{}",
            flan_eval::finetune_report::held_out_family_verdict(&report.before, &report.after)
        );
        Ok((files, table))
    }
}

/// `(step, loss)` of the training records in `metrics.jsonl`; when a resumed run logged a step
/// twice, its last record counts.
fn loss_curve(metrics: &Path) -> Result<Vec<(u64, f64)>> {
    let file = std::fs::File::open(metrics).with_context(|| metrics.display().to_string())?;
    let mut by_step = BTreeMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| metrics.display().to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", metrics.display(), i + 1))?;
        if record["kind"] == "train" {
            if let (Some(step), Some(loss)) = (record["step"].as_u64(), record["loss"].as_f64()) {
                by_step.insert(step, loss);
            }
        }
    }
    Ok(by_step.into_iter().collect())
}

/// The first item of every (setting, prompt form) cell, right or wrong: a fixed choice, so the
/// samples are not picked for looking good.
fn samples(records: &[SampleRecord]) -> Vec<SampleRecord> {
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter(|r| seen.insert((r.exposure, r.mode, r.n_shot)))
        .cloned()
        .collect()
}

/// Builds the evaluation when the config asks for one and this process reports.
pub fn from_config(cfg: &TrainConfig) -> Result<Option<SyntheticEvaluation>> {
    match &cfg.eval.synthetic {
        Some(section) if flan_train::distributed::is_primary_from_env()? => {
            Ok(Some(SyntheticEvaluation::new(cfg, section)?))
        }
        _ => Ok(None),
    }
}
