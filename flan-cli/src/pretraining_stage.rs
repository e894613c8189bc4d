//! `model.pretrain`: a run that starts from another run, a pretraining stage, run once and kept
//! in the run cache under a hash of everything that decides its result.
//!
//! The stage is an ordinary train config (e.g. span corruption on the synthetic suite's world
//! text, configs/finetune-default/pretrain.toml). `flan train` runs it as a child `flan train`
//! in `<run cache>/pretrain-<hash>/` (its own process, lock, checkpoints and resume: an
//! interrupted stage continues where it stopped), marks it finished with `stage.json`, and then
//! finetunes its `model/` as it would a `model.pretrained` directory. A later run whose stage
//! has the same hash starts at once from the cached model.
//!
//! The hash covers the stage's resolved config (without its output directory), with the files it
//! names (model config, mixture spec, tokenizer, tokenizer mixture) entering by their bytes rather
//! than their paths, and flan's version. It does not cover files a mixture spec names in turn, nor code changes within one
//! version: after changing those, clear the cache (`rm -r <run cache>/pretrain-*`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use flan_data::hash::fnv1a;
use flan_train::config::TrainConfig;

/// Where finished stages are kept: `$FLAN_RUN_CACHE`, else `$XDG_CACHE_HOME/flan/runs`, else
/// `~/.cache/flan/runs`.
pub fn run_cache_root() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("FLAN_RUN_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("flan").join("runs"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("flan").join("runs")),
        None => bail!("no run cache: set FLAN_RUN_CACHE (or HOME) for model.pretrain's stage"),
    }
}

/// The content hash of a stage's config, as 16 hex digits (see the module docs for what it
/// covers). The files the config names enter by their content, not their path, so that one
/// stage reached by two spellings of a path (`configs/replicate/../finetune-default/x.json`)
/// or from a moved checkout is one cache entry.
pub fn config_hash(stage: &TrainConfig) -> Result<String> {
    let mut stage = stage.clone();
    stage.output_dir = PathBuf::new();
    let by_content = |file: &mut Option<PathBuf>| -> Result<()> {
        if let Some(path) = file.as_mut() {
            let bytes = std::fs::read(&*path)
                .with_context(|| format!("reading {} (named by the stage)", path.display()))?;
            *path = PathBuf::from(format!(
                "content:{:016x}",
                fnv1a(&String::from_utf8_lossy(&bytes))
            ));
        }
        Ok(())
    };
    by_content(&mut stage.model.config)?;
    by_content(&mut stage.data.mixture)?;
    by_content(&mut stage.model.tokenizer)?;
    if let Some(training) = stage.model.train_tokenizer.as_mut() {
        by_content(&mut training.mixture)?;
    }
    let text = format!("flan {}\n{}", env!("CARGO_PKG_VERSION"), stage.to_toml()?);
    Ok(format!("{:016x}", fnv1a(&text)))
}

/// Replaces `cfg.model.pretrain` by `model.pretrained` = the stage's model, running the stage
/// first unless the cache has it. Nothing to do without `model.pretrain`.
pub fn resolve(cfg: &mut TrainConfig) -> Result<()> {
    let Some(stage_file) = cfg.model.pretrain.take() else {
        return Ok(());
    };
    let model = ensure(&stage_file)?;
    cfg.model.pretrained = Some(model);
    Ok(())
}

/// The model directory of the stage `stage_file`, from the cache or trained now.
pub fn ensure(stage_file: &Path) -> Result<PathBuf> {
    let stage = TrainConfig::load(stage_file, &[])
        .with_context(|| format!("model.pretrain: the stage {}", stage_file.display()))?;
    if stage.model.pretrain.is_some() {
        bail!(
            "model.pretrain: the stage {} has a model.pretrain of its own; stages do not chain \
             (set its model.pretrained to the earlier stage's model instead)",
            stage_file.display()
        );
    }
    let hash = config_hash(&stage)?;
    let dir = run_cache_root()?.join(format!("pretrain-{hash}"));
    let model = dir.join("model");
    let marker = dir.join("stage.json");
    if marker.is_file() && model.join("config.json").is_file() {
        tracing::info!(
            "pretraining stage {}: cached in {}",
            stage_file.display(),
            dir.display()
        );
        return Ok(model);
    }
    if launched_with_peers() {
        bail!(
            "model.pretrain: the stage {} is not in the run cache yet, and a distributed launch \
             does not run it (every rank would); run it once first: flan train --config {} \
             (it is then cached in {})",
            stage_file.display(),
            stage_file.display(),
            dir.display()
        );
    }
    tracing::info!(
        "pretraining stage {}: not cached, training it now in {} (once; later runs reuse it)",
        stage_file.display(),
        dir.display()
    );
    let exe = std::env::current_exe().context("finding the flan binary for the stage")?;
    let mut child = Command::new(exe);
    child
        .arg("train")
        .arg("--config")
        .arg(stage_file)
        .arg("--output-dir")
        .arg(&dir);
    let status = child
        .status()
        .with_context(|| format!("starting the pretraining stage {}", stage_file.display()))?;
    if !status.success() {
        // The child's exit status carries the kind of failure (75: preempted, resumable).
        let code = status.code().unwrap_or(1);
        return Err(crate::exit_code::Classified {
            kind: crate::exit_code::ExitKind::from_code(code),
            message: format!(
                "the pretraining stage {} stopped ({status}); its output is in {}, and rerunning \
                 the same command continues it",
                stage_file.display(),
                dir.display()
            ),
        }
        .into());
    }
    if !model.join("config.json").is_file() {
        bail!(
            "the pretraining stage {} finished without a model in {}",
            stage_file.display(),
            model.display()
        );
    }
    let record = serde_json::json!({
        "stage": stage_file.display().to_string(),
        "hash": hash,
        "flan": env!("CARGO_PKG_VERSION"),
    });
    let tmp = dir.join(format!("stage.json.tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, &marker).with_context(|| marker.display().to_string())?;
    Ok(model)
}

/// Whether a launcher started this process with others (a world size above 1).
fn launched_with_peers() -> bool {
    ["WORLD_SIZE", "SLURM_NTASKS"].iter().any(|name| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n > 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(dir: &Path, steps: u64) -> TrainConfig {
        std::fs::write(dir.join("spec.toml"), "seed = 0\n").unwrap();
        std::fs::write(dir.join("t5.json"), "{}").unwrap();
        let text = format!(
            "[model]\nconfig = \"t5.json\"\ntokenizer = \"t5.json\"\n[data]\nmixture = \"spec.toml\"\n[train]\nsteps = {steps}\n"
        );
        std::fs::write(dir.join("stage.toml"), text).unwrap();
        TrainConfig::load(&dir.join("stage.toml"), &[]).unwrap()
    }

    #[test]
    fn the_hash_follows_the_config_and_the_files_it_names_but_not_the_output_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let a = stage(tmp.path(), 10);
        let h = config_hash(&a).unwrap();
        assert_eq!(h.len(), 16);
        let mut moved = a.clone();
        moved.output_dir = PathBuf::from("/elsewhere");
        assert_eq!(config_hash(&moved).unwrap(), h);
        assert_ne!(config_hash(&stage(tmp.path(), 11)).unwrap(), h);
        // The same files through another spelling of their directory.
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let mut respelled = a.clone();
        respelled.data.mixture = Some(tmp.path().join("sub/../spec.toml"));
        assert_eq!(config_hash(&respelled).unwrap(), h);
        // Same config, another mixture spec content.
        std::fs::write(tmp.path().join("spec.toml"), "seed = 1\n").unwrap();
        assert_ne!(config_hash(&a).unwrap(), h);
    }
}
