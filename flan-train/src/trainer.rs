//! The loop, readable aloud: batch → loss → backward → clip → step → record; evaluation and
//! checkpointing are hooks called between steps.
//!
//! Determinism: batches come from a resumable [`BatchSource`]; dropout is reseeded before every
//! forward from (seed, step, micro-batch), so the RNG state is a function of the step; the
//! optimiser state is saved whole. On CPU a run stopped after any checkpoint and resumed
//! reproduces the uninterrupted run's losses exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flan_data::Truncation;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{BatchCounts, DeviceBatch};
use crate::checkpoint::{
    initial_state, write_atomically, write_json, BestMetric, Checkpoint, CheckpointManager,
    TrainerState,
};
use crate::clip::clip_grad_norm;
use crate::config::{MetricMode, OnNonFinite, TrainConfig};
use crate::distributed::{cursor_for_rank, cursors_to_json, Distributed};
use crate::freeze::{freeze, ParameterCounts};
use crate::lock::OutputLock;
use crate::loss::loss_sums;
use crate::metrics::{EvalRecord, MetricsLog, StepRecord};
use crate::model::TrainModel;
use crate::optim::{NamedParam, Optimizer};
use crate::progress::Progress;
use crate::schedule::Schedule;
use crate::source::BatchSource;
use crate::stop::{signal_name, StopFlag};
use crate::{Error, Result};

/// Evaluation during training: called every `eval.every` steps with the model in eval mode.
pub trait EvalHook<M> {
    /// Scores by name (`benchmark/metric`), logged as one `eval` record.
    fn evaluate(&mut self, model: &M, step: u64) -> Result<BTreeMap<String, f64>>;
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Steps done in total (including those before a resume).
    pub steps: u64,
    /// The step this process started from (0, or the resumed checkpoint's).
    pub resumed_from: u64,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Mean loss over the last (up to) 100 steps of this process.
    pub recent_mean_loss: f64,
    /// Examples consumed in total.
    pub examples_seen: u64,
    /// Real target tokens consumed in total.
    pub target_tokens_seen: u64,
    /// Updates skipped for non-finite values.
    pub skipped_steps: u64,
    /// What was cut to fit the lengths (this process).
    pub truncation: Truncation,
    /// Mean real tokens per second (this process).
    pub tokens_per_second: f64,
    /// Mean packing efficiency (this process).
    pub packing_efficiency: f64,
    /// Wall time of this process's training, seconds.
    pub seconds: f64,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// The final model (Hugging Face layout).
    pub model_dir: Option<PathBuf>,
    /// The best evaluation, when tracked.
    pub best: Option<BestMetric>,
    /// Whether the data ran out before `train.steps`.
    pub data_exhausted: bool,
    /// The signal that stopped the run early (it resumes from `last_checkpoint`).
    #[serde(default)]
    pub stopped_by: Option<String>,
    /// How many parameters trained and how many `train.freeze` kept frozen.
    #[serde(default)]
    pub parameters: ParameterCounts,
}

/// The summary a finished run wrote, if it can be read.
fn read_summary(path: &Path) -> Option<TrainSummary> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// A training run: the model, its data, optimiser, schedule, checkpoints and metrics.
pub struct Trainer<M: TrainModel, S: BatchSource> {
    cfg: TrainConfig,
    model: M,
    source: S,
    /// The parameters that train (what the optimiser, clipping and gradient sums see).
    params: Vec<NamedParam>,
    /// The parameters `train.freeze` keeps as they are (no gradient, no optimiser state).
    frozen: Vec<NamedParam>,
    optimizer: Box<dyn Optimizer>,
    schedule: Schedule,
    checkpoints: CheckpointManager,
    state: TrainerState,
    resumed_from: u64,
    tokenizer_file: Option<PathBuf>,
    eval_hook: Option<Box<dyn EvalHook<M>>>,
    dist: Option<Distributed>,
    /// The lower precision of the forward pass under autocast, if on (parsed once from the config).
    autocast: Option<tch::Kind>,
    /// Whether optimizer steps flush denormals: the config asks and the model is on an x86 CPU
    /// (libtorch has no flush mode elsewhere, so the default must not make training fail there).
    flush_denormals: bool,
    /// The output directory's lock, held by the writing process for the trainer's life (taken
    /// before the first write; see [`crate::lock`]).
    lock: Option<OutputLock>,
    /// Set by a signal: stop after the current step (see [`Trainer::with_stop_flag`]).
    stop: Option<StopFlag>,
}

impl<M: TrainModel, S: BatchSource> Trainer<M, S> {
    /// A fresh run of `model` on `source` as `cfg` says (call [`Trainer::resume_from`] or
    /// [`Trainer::resume_latest`] to continue an earlier one).
    pub fn new(cfg: TrainConfig, model: M, source: S) -> Result<Self> {
        cfg.validate()?;
        let params = model.parameters();
        if params.is_empty() {
            return Err(Error::Model {
                message: "the model has no trainable parameters".into(),
            });
        }
        // Before the optimiser exists: frozen parameters never get a gradient or state.
        let mut split = freeze(params, &cfg.train.freeze)?;
        for (_, p) in model.fixed_parameters() {
            let _ = p.set_requires_grad(false);
        }
        split.frozen.extend(model.fixed_parameters());
        let state = initial_state(&cfg, source.cursor()?)?;
        let autocast = cfg.autocast_kind()?;
        let flush_denormals = cfg.flush_denormals
            && model.device() == tch::Device::Cpu
            && cfg!(target_arch = "x86_64");
        Ok(Trainer {
            optimizer: cfg.optimizer.build()?,
            schedule: Schedule::new(cfg.schedule.clone(), cfg.train.steps)?,
            checkpoints: CheckpointManager::new(&cfg.output_dir, cfg.checkpoint.keep_last),
            cfg,
            model,
            source,
            params: split.trainable,
            frozen: split.frozen,
            state,
            resumed_from: 0,
            tokenizer_file: None,
            eval_hook: None,
            dist: None,
            autocast,
            flush_denormals,
            lock: None,
            stop: None,
        })
    }

    /// Makes this trainer one rank of a data-parallel run: the parameters are overwritten with
    /// rank 0's now, gradients are summed over the ranks every step, and only rank 0 writes.
    /// The batch source must already be this rank's shard.
    pub fn with_distributed(mut self, dist: Distributed) -> Result<Self> {
        dist.broadcast_parameters(&self.params)?;
        // Frozen parameters never change, so every rank must start from the same ones too.
        if !self.frozen.is_empty() {
            dist.broadcast_parameters(&self.frozen)?;
        }
        self.state.data_cursor = self.source.cursor()?;
        self.dist = Some(dist);
        Ok(self)
    }

    /// Holds `lock`, the output directory's lock taken by the caller (as
    /// [`crate::run::prepare`] does before it writes anything), for the trainer's life.
    pub fn with_output_lock(mut self, lock: OutputLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Takes the output directory's lock unless this trainer has it or does not write: before
    /// resuming (which removes leftovers) and before training, so that two runs never write one
    /// directory.
    fn lock_output_dir(&mut self) -> Result<()> {
        if self.lock.is_none() && self.is_primary() {
            self.lock = Some(OutputLock::acquire(&self.cfg.output_dir)?);
        }
        Ok(())
    }

    /// Whether this process writes checkpoints, metrics and the final model.
    pub fn is_primary(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.rank() == 0)
    }

    fn rank_and_world(&self) -> (usize, usize) {
        self.dist
            .as_ref()
            .map_or((0, 1), |d| (d.rank(), d.world_size()))
    }

    /// Copies this `tokenizer.json` into every checkpoint, so each is a complete model directory.
    pub fn with_tokenizer_file(mut self, path: PathBuf) -> Self {
        self.tokenizer_file = Some(path);
        self
    }

    /// Runs `hook` every `eval.every` steps.
    pub fn with_eval_hook(mut self, hook: Box<dyn EvalHook<M>>) -> Self {
        self.eval_hook = Some(hook);
        self
    }

    /// The model being trained.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// How many parameters train and how many are frozen (`train.freeze`).
    pub fn parameter_counts(&self) -> ParameterCounts {
        ParameterCounts::of(&self.params, &self.frozen)
    }

    /// Steps done.
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// The checkpoints of this run's output directory.
    pub fn checkpoints(&self) -> &CheckpointManager {
        &self.checkpoints
    }

    /// Continues from the newest complete checkpoint in the output directory, if any; removes
    /// temporary directories a crash left behind. Returns the checkpoint used.
    pub fn resume_latest(&mut self) -> Result<Option<PathBuf>> {
        self.lock_output_dir()?;
        // Only the writer cleans up, so a rank never removes what rank 0 is writing.
        let stale = if self.is_primary() {
            self.checkpoints.remove_stale()?
        } else {
            0
        };
        if stale > 0 {
            tracing::info!(
                "removed {stale} incomplete checkpoint director{} left by an interrupted write",
                if stale == 1 { "y" } else { "ies" }
            );
        }
        let choice = self
            .checkpoints
            .latest_intact(self.cfg.checkpoint.on_corrupt)?;
        if self.is_primary() {
            for rejected in &choice.rejected {
                tracing::warn!("not resuming from {rejected}");
            }
        }
        self.agree_on_checkpoint(choice.checkpoint.as_ref().map(|c| c.state.step))?;
        let Some(ckpt) = choice.checkpoint else {
            return match choice.rejected.into_iter().last() {
                // Starting afresh would overwrite the metrics of the run these belong to.
                Some(oldest) => Err(Error::CorruptCheckpoint {
                    dir: oldest.dir,
                    message: format!(
                        "no intact checkpoint is left to resume from ({}); remove {} or pass --no-resume to start afresh",
                        oldest.reason,
                        self.checkpoints.root().display()
                    ),
                }),
                None => Ok(None),
            };
        };
        if self.is_primary() {
            if !choice.rejected.is_empty() {
                tracing::info!(
                    "falling back to the previous intact checkpoint {}",
                    ckpt.dir.display()
                );
            }
            if !choice.verified {
                tracing::info!(
                    "{}: written before checkpoints recorded checksums; its files are not checked",
                    ckpt.dir.display()
                );
            }
        }
        let dir = ckpt.dir.clone();
        self.restore(ckpt)?;
        Ok(Some(dir))
    }

    /// Continues from the checkpoint in `dir`: weights, optimiser state, step, counters, data
    /// cursor. Its files are checked against their digests first; a mismatch is an error (the
    /// directory was named, so there is nothing to fall back to).
    pub fn resume_from(&mut self, dir: &Path) -> Result<()> {
        self.lock_output_dir()?;
        let ckpt = Checkpoint::open(dir)?;
        if !ckpt.verify()? && self.is_primary() {
            tracing::info!(
                "{}: written before checkpoints recorded checksums; its files are not checked",
                dir.display()
            );
        }
        self.restore(ckpt)
    }

    /// Under data parallelism, checks that every rank chose the checkpoint of the same step (or
    /// none): ranks that resumed from different steps would train on inconsistent state.
    fn agree_on_checkpoint(&self, step: Option<u64>) -> Result<()> {
        let Some(d) = &self.dist else {
            return Ok(());
        };
        let mut mine = vec![0.0; d.world_size()];
        mine[d.rank()] = step.map_or(0.0, |s| s as f64 + 1.0);
        let all = d.sum(&mine, self.model.device())?;
        if all.iter().any(|&v| v != all[0]) {
            let described: Vec<String> = all
                .iter()
                .enumerate()
                .map(|(rank, &v)| match v as u64 {
                    0 => format!("rank {rank}: none"),
                    s => format!("rank {rank}: step {}", s - 1),
                })
                .collect();
            return Err(Error::Distributed {
                message: format!(
                    "the ranks found different checkpoints to resume from ({}); do they all see the same output directory?",
                    described.join(", ")
                ),
            });
        }
        Ok(())
    }

    fn restore(&mut self, ckpt: Checkpoint) -> Result<()> {
        if ckpt.state.step > self.cfg.train.steps {
            return Err(Error::checkpoint(
                &ckpt.dir,
                format!(
                    "is at step {}, beyond train.steps = {}",
                    ckpt.state.step, self.cfg.train.steps
                ),
            ));
        }
        // (A config that cannot be read is reported by the comparison below; it only matters
        // here when this run freezes something.)
        let recorded = match crate::config::recorded_freeze(&ckpt.state.config) {
            Ok(recorded) => recorded,
            Err(e) if !self.cfg.train.freeze.is_empty() => return Err(e),
            Err(_) => Vec::new(),
        };
        if recorded != self.cfg.train.freeze {
            // Its optimiser state covers the parameters that trained then; another split would
            // silently restart some of them from no state, or carry state for frozen ones.
            return Err(Error::Config {
                message: format!(
                    "{} was trained with train.freeze = {recorded:?}, this run has {:?}; resume \
                     with the same list, or start a new run from its weights (model.pretrained \
                     = that directory)",
                    ckpt.dir.display(),
                    self.cfg.train.freeze
                ),
            });
        }
        if self.is_primary() {
            match crate::config::config_changes(&ckpt.state.config, &self.cfg) {
                Ok(changes) if changes.is_empty() => {}
                Ok(changes) => tracing::warn!(
                    "warning: resuming {} with settings other than its own: {}; the run goes on with the new values",
                    ckpt.dir.display(),
                    changes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => tracing::warn!(
                    "warning: {}: cannot compare its config with this run's: {e}",
                    ckpt.dir.display()
                ),
            }
        }
        self.model.load_weights(&ckpt.dir)?;
        let device = self.model.device();
        let tensors = ckpt
            .optimizer_tensors()?
            .into_iter()
            .map(|(n, t)| (n, t.to_device(device)))
            .collect();
        self.optimizer.load_state_tensors(tensors)?;
        let (rank, world) = self.rank_and_world();
        let cursor = cursor_for_rank(&ckpt.state.data_cursor, rank, world)
            .map_err(|e| Error::checkpoint(&ckpt.dir, e.to_string()))?;
        self.source.restore(&cursor)?;
        self.resumed_from = ckpt.state.step;
        self.state = TrainerState {
            format: crate::checkpoint::STATE_FORMAT,
            config: self.cfg.to_toml()?,
            data_cursor: cursor,
            files: Default::default(),
            ..ckpt.state
        };
        Ok(())
    }

    /// Trains up to `train.steps`.
    pub fn run(&mut self) -> Result<TrainSummary> {
        self.run_until(self.cfg.train.steps)
    }

    /// Trains up to step `stop_at` (at most `train.steps`); the schedule still spans the whole
    /// run. Stopping early is what a pre-empted job does.
    pub fn run_until(&mut self, stop_at: u64) -> Result<TrainSummary> {
        self.lock_output_dir()?;
        let stop_at = stop_at.min(self.cfg.train.steps);
        let started = Instant::now();
        let primary = self.is_primary();
        let start_step = self.state.step;
        let metrics_path = self.cfg.output_dir.join("metrics.jsonl");
        let summary_path = self.cfg.output_dir.join("summary.json");
        let mut metrics = if primary {
            let resumed_at = (self.state.step > 0).then_some(self.state.step);
            let log = MetricsLog::open(&metrics_path, resumed_at)?;
            Some(if self.cfg.log.tensorboard {
                log.with_tensorboard(&self.cfg.output_dir.join("tensorboard"), resumed_at)?
            } else {
                log
            })
        } else {
            None
        };
        let progress_style = if primary {
            self.cfg.log.progress
        } else {
            crate::config::ProgressStyle::Off
        };
        let progress = Progress::new(progress_style, self.state.step, self.cfg.train.steps);
        let mut totals = BatchCounts::default();
        let mut recent: Vec<f64> = Vec::new();
        let mut last_loss = f64::NAN;
        let mut last_checkpoint = None;
        let mut data_exhausted = false;
        let mut train_seconds = 0.0;
        let mut stopped_by = None;

        while self.state.step < stop_at {
            let step = self.state.step + 1;
            let t0 = Instant::now();
            let Some(batches) = self.next_batches()? else {
                data_exhausted = true;
                progress.note(
                    self.state.step,
                    &format!("the data ran out after step {}", self.state.step),
                );
                break;
            };
            let record = self.train_step(step, &batches, t0, started)?;
            let seconds = t0.elapsed().as_secs_f64();
            train_seconds += seconds;
            let counts = batches.iter().fold(BatchCounts::default(), |mut acc, b| {
                acc.add(&b.counts);
                acc
            });
            totals.add(&counts);
            last_loss = record.loss;
            recent.push(record.loss);
            if recent.len() > 100 {
                recent.remove(0);
            }
            // A signal stops the run after this step, on every rank alike; at the last step
            // there is nothing left to stop.
            let stop = self.stop_requested()?.filter(|_| step < stop_at);
            if let Some(metrics) = metrics.as_mut() {
                if step % self.cfg.log.every == 0 || step == stop_at || stop.is_some() {
                    metrics.write(&record)?;
                }
            }
            progress.step(&record);

            if self.cfg.eval.every > 0 && step % self.cfg.eval.every == 0 {
                if stop.is_some() {
                    // The grace period is for saving; the resumed run does not repeat it.
                    progress.note(
                        step,
                        &format!("step {step}: evaluation skipped, the run is stopping"),
                    );
                } else if let Some(metrics) = metrics.as_mut() {
                    self.evaluate(step, metrics, &progress)?;
                }
            }
            let every = self.cfg.checkpoint.every;
            if (every > 0 && step % every == 0) || step == self.cfg.train.steps || stop.is_some() {
                if let Some(dir) = self.save_checkpoint()? {
                    progress.note(step, &format!("step {step}: checkpoint {}", dir.display()));
                    last_checkpoint = Some(dir);
                }
            }
            if let Some(reason) = stop {
                stopped_by = Some(reason);
                break;
            }
        }
        progress.finish();
        if let Some(metrics) = metrics.as_mut() {
            metrics.sync()?;
        }

        let ran = self.state.step > start_step;
        if !ran && primary {
            // Nothing trained (the run was already at `stop_at`): the finished run's figures are
            // in its summary, and recomputing them from nothing would replace them with nulls.
            if let Some(finished) = read_summary(&summary_path).filter(|s| {
                s.steps == self.state.step && s.model_dir.as_ref().is_none_or(|d| d.is_dir())
            }) {
                self.barrier()?;
                return Ok(finished);
            }
            // No usable summary: the last losses are in the metrics file, if it can be read.
            let losses: Vec<f64> = crate::metrics::read_step_records(&metrics_path)
                .unwrap_or_default()
                .iter()
                .map(|r| r.loss)
                .collect();
            last_loss = losses.last().copied().unwrap_or(f64::NAN);
            recent = losses[losses.len().saturating_sub(100)..].to_vec();
        }

        let model_dir = if primary && self.state.step == self.cfg.train.steps && !data_exhausted {
            let dir = self.cfg.output_dir.join("model");
            self.save_model_dir(&dir)?;
            Some(dir)
        } else {
            None
        };
        let summary = TrainSummary {
            steps: self.state.step,
            resumed_from: self.resumed_from,
            final_loss: last_loss,
            recent_mean_loss: if recent.is_empty() {
                f64::NAN
            } else {
                recent.iter().sum::<f64>() / recent.len() as f64
            },
            examples_seen: self.state.examples_seen,
            target_tokens_seen: self.state.target_tokens_seen,
            skipped_steps: self.state.skipped_steps,
            truncation: self.source.truncation(),
            tokens_per_second: if train_seconds > 0.0 {
                (totals.input_tokens + totals.target_tokens) as f64 / train_seconds
            } else {
                0.0
            },
            packing_efficiency: totals.packing_efficiency(),
            seconds: started.elapsed().as_secs_f64(),
            last_checkpoint,
            model_dir,
            best: self.state.best.clone(),
            data_exhausted,
            stopped_by: stopped_by.clone(),
            parameters: self.parameter_counts(),
        };
        if primary {
            if let Some(dir) = &summary.model_dir {
                crate::card::ModelCard::new(&self.cfg, &summary).write(dir)?;
            }
            write_json(&summary_path, &summary)?;
        }
        // Nobody leaves before the final model (or the stopping checkpoint) is written.
        self.barrier()?;
        match stopped_by {
            Some(signal) => Err(Error::Preempted {
                step: self.state.step,
                signal,
                checkpoint: Some(self.checkpoints.dir_of(self.state.step)),
            }),
            None => Ok(summary),
        }
    }

    fn barrier(&self) -> Result<()> {
        match &self.dist {
            Some(d) => d.barrier(),
            None => Ok(()),
        }
    }

    /// Stops this run after its current step when `flag` is set (by [`crate::stop::StopSignals`]
    /// on SIGTERM/SIGINT): the step finishes, a checkpoint and the metrics are written, and
    /// [`Trainer::run`] returns [`Error::Preempted`]. Under data parallelism the ranks sum their
    /// flags after every step and stop together, whichever of them was signalled.
    pub fn with_stop_flag(mut self, flag: StopFlag) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Whether to stop after this step, and why (the signal, and the rank that got it when it
    /// was another). Under data parallelism a collective on every rank at every step, whether
    /// or not this rank has a flag, so that all ranks decide alike.
    fn stop_requested(&self) -> Result<Option<String>> {
        let mine = self.stop.as_ref().and_then(StopFlag::requested);
        let Some(d) = &self.dist else {
            return Ok(mine.map(signal_name));
        };
        let mut signals = vec![0.0; d.world_size()];
        signals[d.rank()] = mine.map_or(0.0, f64::from);
        let all = d.sum(&signals, self.model.device())?;
        if let Some(signal) = mine {
            return Ok(Some(signal_name(signal)));
        }
        Ok(all
            .iter()
            .enumerate()
            .find(|(_, &s)| s != 0.0)
            .map(|(rank, &s)| format!("{} on rank {rank}", signal_name(s as i32))))
    }

    /// One optimizer step outside [`Trainer::run`] (benchmarks, custom loops): no metrics file,
    /// no evaluation, no checkpoint. `None` when the data ran out.
    pub fn train_one_step(&mut self) -> Result<Option<StepRecord>> {
        let t0 = Instant::now();
        let Some(batches) = self.next_batches()? else {
            return Ok(None);
        };
        self.train_step(self.state.step + 1, &batches, t0, t0)
            .map(Some)
    }

    /// The micro-batches of one optimizer step, on the device; `None` when the data ran out.
    fn next_batches(&mut self) -> Result<Option<Vec<DeviceBatch>>> {
        let device = self.model.device();
        let mut out = Vec::with_capacity(self.cfg.batch.grad_accum);
        for _ in 0..self.cfg.batch.grad_accum {
            match self.source.next_batch()? {
                Some(b) => out.push(DeviceBatch::from_packed(&b, device)?),
                None => break,
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// The training forward pass of `batch`, under autocast when the config asks for it (the
    /// backward pass, [`flan_model::TargetLogits::backward`], runs outside the region, as with
    /// `torch.autocast`; the loss is fp32 either way).
    fn forward(&self, batch: &DeviceBatch) -> Result<flan_model::TargetLogits<'_>> {
        let _autocast = match self.autocast {
            Some(kind) => Some(flan_model::Autocast::enter(self.model.device(), kind)?),
            None => None,
        };
        self.model.target_logits(batch, true)
    }

    /// One optimizer step over `batches` (fetched since `t0`, which the throughput counts);
    /// returns its record.
    fn train_step(
        &mut self,
        step: u64,
        batches: &[DeviceBatch],
        t0: Instant,
        started: Instant,
    ) -> Result<StepRecord> {
        let _flush = self
            .flush_denormals
            .then(flan_model::FlushDenormals::enter)
            .transpose()?;
        let mut counts = BatchCounts::default();
        for b in batches {
            counts.add(&b.counts);
        }
        let device = self.model.device();
        // The real target tokens of the whole step on every rank: the loss is normalised by
        // them, so that accumulation over micro-batches and ranks gives the gradient of one
        // large batch.
        let global_target_tokens = match &self.dist {
            Some(d) => d.sum(&[counts.target_tokens as f64], device)?[0],
            None => counts.target_tokens as f64,
        };
        let norm = self
            .cfg
            .train
            .loss_normalizing_factor
            .unwrap_or(global_target_tokens.max(1.0));
        let (rank, _) = self.rank_and_world();
        let micro_offset = (rank * batches.len()) as u64;
        let z_coef = self.cfg.train.z_loss;
        zero_grads(&self.params);
        let (mut ce_sum, mut z_sum) = (0.0, 0.0);
        for (micro, b) in batches.iter().enumerate() {
            // Ranks draw the dropout masks of distinct micro-batches of the global step.
            tch::manual_seed(dropout_seed(
                self.cfg.seed,
                step,
                micro_offset + micro as u64,
            ));
            let out = self.forward(b)?;
            let sums = loss_sums(&out.logits, &out.targets, &out.weights, z_coef > 0.0);
            let objective = (&sums.cross_entropy + &sums.z * z_coef) / norm;
            // Also recomputes the blocks of a pass that checkpointed its activations.
            out.backward(&objective)?;
            ce_sum += sums.cross_entropy.double_value(&[]);
            z_sum += sums.z.double_value(&[]);
        }
        if let Some(d) = &self.dist {
            d.sum_gradients(&self.params)?;
            let totals = d.sum(
                &[
                    ce_sum,
                    z_sum,
                    counts.examples as f64,
                    counts.input_tokens as f64,
                    counts.slots as f64,
                ],
                device,
            )?;
            (ce_sum, z_sum) = (totals[0], totals[1]);
            counts.examples = totals[2] as u64;
            counts.input_tokens = totals[3] as u64;
            counts.slots = totals[4] as u64;
            counts.target_tokens = global_target_tokens as u64;
        }
        let tokens = counts.target_tokens.max(1) as f64;
        let loss = ce_sum / tokens;
        let z_loss = z_coef * z_sum / tokens;

        let mut skipped = false;
        if !(loss + z_loss).is_finite() {
            skipped = self.non_finite(step, "loss", loss + z_loss)?;
        }
        let grad_norm = clip_grad_norm(&self.params, self.cfg.train.clip_grad_norm)?;
        if !skipped && !grad_norm.is_finite() {
            skipped = self.non_finite(step, "gradient norm", grad_norm)?;
        }
        let lr = self.schedule.lr(step);
        if skipped {
            self.state.skipped_steps += 1;
        } else {
            self.optimizer.step(&self.params, lr)?;
        }
        zero_grads(&self.params);

        self.state.step = step;
        self.state.examples_seen += counts.examples;
        self.state.target_tokens_seen += counts.target_tokens;
        self.state.data_cursor = self.source.cursor()?;
        let seconds = t0.elapsed().as_secs_f64().max(1e-9);
        Ok(StepRecord {
            kind: "train".into(),
            step,
            loss,
            z_loss,
            learning_rate: lr,
            grad_norm,
            real_tokens: counts.input_tokens + counts.target_tokens,
            tokens_per_second: (counts.input_tokens + counts.target_tokens) as f64 / seconds,
            examples_seen: self.state.examples_seen,
            packing_efficiency: counts.packing_efficiency(),
            skipped,
            elapsed_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Stops (error naming the step) or agrees to skip, as configured.
    fn non_finite(&self, step: u64, what: &'static str, value: f64) -> Result<bool> {
        match self.cfg.train.on_nonfinite {
            OnNonFinite::Stop => {
                zero_grads(&self.params);
                Err(Error::NonFinite { step, what, value })
            }
            OnNonFinite::Skip => Ok(true),
        }
    }

    fn evaluate(&mut self, step: u64, metrics: &mut MetricsLog, progress: &Progress) -> Result<()> {
        let Some(hook) = self.eval_hook.as_mut() else {
            return Err(Error::Eval {
                step,
                message: "eval.every is set but no evaluation hook was installed".into(),
            });
        };
        let scores = tch::no_grad(|| hook.evaluate(&self.model, step))?;
        progress.note(
            step,
            &format!(
                "step {step}: eval {}",
                scores
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        metrics.write(&EvalRecord {
            kind: "eval".into(),
            step,
            scores: scores.clone(),
        })?;
        if let Some(metric) = self.cfg.eval.best_metric.clone() {
            let value = *scores.get(&metric).ok_or_else(|| Error::Eval {
                step,
                message: format!(
                    "eval.best_metric `{metric}` is not among the scores ({})",
                    scores.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })?;
            let better = match (&self.state.best, self.cfg.eval.best_mode) {
                (None, _) => true,
                (Some(b), MetricMode::Max) => value > b.value,
                (Some(b), MetricMode::Min) => value < b.value,
            };
            if better {
                self.state.best = Some(BestMetric {
                    metric,
                    value,
                    step,
                });
                let dir = self.cfg.output_dir.join("best");
                self.save_model_dir(&dir)?;
                write_json(&dir.join("best.json"), &self.state.best)?;
                progress.note(
                    step,
                    &format!("step {step}: new best {value:.4}, saved {}", dir.display()),
                );
            }
        }
        Ok(())
    }

    /// Writes a checkpoint (rank 0 only; every rank takes part in gathering the data cursors).
    /// `None` on the other ranks.
    fn save_checkpoint(&self) -> Result<Option<PathBuf>> {
        let state = match &self.dist {
            None => self.state.clone(),
            Some(d) => {
                let mine =
                    serde_json::to_vec(&self.state.data_cursor).map_err(|e| Error::Data {
                        message: format!("cannot record the data cursor: {e}"),
                    })?;
                let mut cursors = Vec::with_capacity(d.world_size());
                for bytes in d.all_gather_bytes(&mine, self.model.device())? {
                    cursors.push(serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Distributed {
                            message: format!("a rank sent an unreadable data cursor: {e}"),
                        }
                    })?);
                }
                TrainerState {
                    data_cursor: cursors_to_json(cursors),
                    ..self.state.clone()
                }
            }
        };
        if !self.is_primary() {
            return Ok(None);
        }
        let tokenizer = self.tokenizer_file.clone();
        self.checkpoints
            .save(
                &state,
                |dir| {
                    self.model.save_pretrained(dir)?;
                    copy_tokenizer(tokenizer.as_deref(), dir)
                },
                &self.optimizer.state_tensors(),
            )
            .map(Some)
    }

    /// Writes the weights (and tokenizer) atomically into `dir`.
    fn save_model_dir(&self, dir: &Path) -> Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        write_atomically(parent, dir, |tmp| {
            self.model.save_pretrained(tmp)?;
            copy_tokenizer(self.tokenizer_file.as_deref(), tmp)
        })
    }
}

fn copy_tokenizer(tokenizer: Option<&Path>, dir: &Path) -> Result<()> {
    if let Some(src) = tokenizer {
        let dst = dir.join("tokenizer.json");
        std::fs::copy(src, &dst).map_err(|e| Error::io(src, e))?;
    }
    Ok(())
}

fn zero_grads(params: &[NamedParam]) {
    for (_, p) in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.detach_().zero_();
        }
    }
}

/// The dropout seed of micro-batch `micro` of `step`: independent streams of one ChaCha key.
pub fn dropout_seed(seed: u64, step: u64, micro: u64) -> i64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step.wrapping_mul(1 << 16).wrapping_add(micro));
    (rng.next_u64() >> 1) as i64
}
