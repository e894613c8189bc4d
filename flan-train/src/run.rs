//! A whole run from a [`TrainConfig`]: tokenizer, mixture, batches, T5, trainer; resume from a
//! given checkpoint or the latest one in the output directory; one rank of a data-parallel run
//! when the environment says so. `flan train` calls [`prepare`] (so it can evaluate between
//! preparing and training); [`train`] does both for library users.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flan_data::{Mixture, Tokenizer};
use flan_model::T5ForConditionalGeneration;

use crate::config::TrainConfig;
use crate::distributed::Distributed;
use crate::lock::OutputLock;
use crate::source::MixtureBatches;
use crate::t5::build_model;
use crate::trainer::{EvalHook, TrainSummary, Trainer};
use crate::{Error, Result};

/// The trainer of a T5 run on the flan-data mixture.
pub type T5Trainer = Trainer<T5ForConditionalGeneration, MixtureBatches>;

/// Builds everything `cfg` describes; `resume` names a checkpoint directory to continue from,
/// otherwise the latest complete checkpoint in `output_dir` is used when `checkpoint.auto_resume`.
/// Returns the trainer and the checkpoint it resumed from.
pub fn prepare(cfg: &TrainConfig, resume: Option<&Path>) -> Result<(T5Trainer, Option<PathBuf>)> {
    let mut cfg = cfg.clone();
    cfg.resolve_pretrained()?;
    let cfg = &cfg;
    cfg.validate()?;
    if let Some(stage) = &cfg.model.pretrain {
        // The stage is a separate run (its own process, output directory and lock); the
        // `flan` binary runs it and puts its model into `model.pretrained`.
        return Err(Error::Config {
            message: format!(
                "model.pretrain ({}) must be resolved into model.pretrained before training: \
                 `flan train` runs the stage, or set model.pretrained to its model directory",
                stage.display()
            ),
        });
    }
    // A distributed launch (world size > 1) joins its group before anything is written, so that
    // every rank learns whether rank 0 could lock the output directory.
    let device = cfg.tch_device()?;
    let dist = Distributed::from_env(device)?;
    let lock = lock_output_dir(cfg, dist.as_ref(), device)?;
    ensure_tokenizer(cfg)?;
    let (model, tokenizer_file) = build_model(cfg)?;
    let tokenizer = Arc::new(
        Tokenizer::from_file(&tokenizer_file).map_err(|e| Error::Data {
            message: flan_data::error::chain(&e),
        })?,
    );
    let vocab = model.config().vocab_size;
    if tokenizer.vocab_size() as i64 > vocab {
        return Err(Error::Config {
            message: format!(
                "the tokenizer {} has {} tokens but the model's vocab_size is {vocab}",
                tokenizer_file.display(),
                tokenizer.vocab_size()
            ),
        });
    }
    // Each rank reads its own shard of the stream.
    let shard = dist.as_ref().map(|d| (d.rank(), d.world_size()));
    let source = mixture_batches(cfg, tokenizer, shard)?;
    let mut trainer = Trainer::new(cfg.clone(), model, source)?.with_tokenizer_file(tokenizer_file);
    if let Some(lock) = lock {
        trainer = trainer.with_output_lock(lock);
    }
    if let Some(d) = dist {
        trainer = trainer.with_distributed(d)?;
    }
    let resumed = match resume {
        Some(dir) => {
            trainer.resume_from(dir)?;
            Some(dir.to_path_buf())
        }
        None if cfg.checkpoint.auto_resume => trainer.resume_latest()?,
        None => None,
    };
    Ok((trainer, resumed))
}

/// Rank 0 (or the single process) locks the output directory. Under data parallelism every
/// rank then learns the outcome, so that a refused launch fails on all ranks at once, each
/// naming the holder, instead of leaving the others waiting in a collective for a rank 0 that
/// has gone. `None` on the ranks that do not write.
fn lock_output_dir(
    cfg: &TrainConfig,
    dist: Option<&Distributed>,
    device: tch::Device,
) -> Result<Option<OutputLock>> {
    let Some(d) = dist else {
        return OutputLock::acquire(&cfg.output_dir).map(Some);
    };
    let mine = (d.rank() == 0).then(|| OutputLock::acquire(&cfg.output_dir));
    // What rank 0 tells the others: nothing (locked), `L<holder>` or `E<error>`.
    let verdict = match &mine {
        Some(Err(Error::Locked { holder, .. })) => format!("L{holder}"),
        Some(Err(e)) => format!("E{e}"),
        _ => String::new(),
    };
    let told = d.all_gather_bytes(verdict.as_bytes(), device)?;
    let rank0 = String::from_utf8_lossy(&told[0]).into_owned();
    match mine {
        Some(result) => result.map(Some),
        None => match rank0.split_at_checked(1) {
            None => Ok(None),
            Some(("L", holder)) => Err(Error::Locked {
                dir: cfg.output_dir.clone(),
                holder: holder.to_string(),
            }),
            Some((_, error)) => Err(Error::Distributed {
                message: format!("rank 0 could not lock the output directory: {error}"),
            }),
        },
    }
}

/// Trains the run's tokenizer on its mixture when `model.train_tokenizer` asks for one and the
/// file does not exist yet; returns its path. The file is written whole or not at all (a
/// temporary file renamed into place), so concurrent ranks and interrupted runs never see half
/// of one. Training is deterministic (the mixture's seed), so a rerun makes the same file.
pub fn ensure_tokenizer(cfg: &TrainConfig) -> Result<PathBuf> {
    let path = cfg.tokenizer_path()?;
    let Some(training) = &cfg.model.train_tokenizer else {
        return Ok(path);
    };
    if path.exists() {
        return Ok(path);
    }
    let spec = training
        .mixture
        .as_ref()
        .or(cfg.data.mixture.as_ref())
        .ok_or_else(|| Error::Config {
            message: "data.mixture is required".into(),
        })?;
    let data_error = |e: flan_data::Error| Error::Data {
        message: flan_data::error::chain(&e),
    };
    let mixture = Arc::new(Mixture::from_spec_file(spec).map_err(data_error)?);
    let seed = cfg.data.seed.unwrap_or(mixture.seed());
    let tokenizer = flan_data::pipeline::train_tokenizer_on_mixture(
        &mixture,
        seed,
        training.rendered,
        training.vocab_size,
    )
    .map_err(data_error)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    tokenizer.save(&tmp).map_err(data_error)?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// The batches of `cfg`'s mixture: lengths from `data` or else the spec, rows from `batch`;
/// with `shard = Some((rank, world_size))`, only the stream positions of that rank.
pub fn mixture_batches(
    cfg: &TrainConfig,
    tokenizer: Arc<Tokenizer>,
    shard: Option<(usize, usize)>,
) -> Result<MixtureBatches> {
    let spec = cfg.data.mixture.as_ref().ok_or_else(|| Error::Config {
        message: "data.mixture is required".into(),
    })?;
    let mixture = Mixture::from_spec_file(spec).map_err(|e| Error::Data {
        message: flan_data::error::chain(&e),
    })?;
    let mixture = Arc::new(mixture.with_tokenizer(tokenizer.clone()));
    let input_len = cfg.data.input_len.unwrap_or(mixture.input_len());
    let target_len = cfg.data.target_len.unwrap_or(mixture.target_len());
    let batches = MixtureBatches::new(
        mixture,
        tokenizer,
        cfg.data.seed.unwrap_or(cfg.seed),
        cfg.batch.rows(input_len, target_len),
        (input_len, target_len),
        cfg.data.pack,
    )?
    .with_overlong(cfg.data.overlong);
    match shard {
        Some((rank, world)) => batches.with_shard(rank as u64, world as u64),
        None => Ok(batches),
    }
}

/// Prepares and runs to `train.steps`, with an optional evaluation hook.
pub fn train(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    eval_hook: Option<Box<dyn EvalHook<T5ForConditionalGeneration>>>,
) -> Result<TrainSummary> {
    let (mut trainer, resumed) = prepare(cfg, resume)?;
    if let Some(dir) = resumed {
        tracing::info!("resuming from {} (step {})", dir.display(), trainer.step());
    }
    if let Some(hook) = eval_hook {
        trainer = trainer.with_eval_hook(hook);
    }
    trainer.run()
}
