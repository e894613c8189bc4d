//! What `--model` and `--adapter` name, resolved to local directories and loaded.
//!
//! A model is a Hugging Face model directory or hub id ([`crate::hub::resolve_model`]), optionally
//! with a LoRA adapter on top: `--adapter DIR|HUB_ID`, or `--model` naming an adapter directory
//! itself (`adapter_config.json` and no `config.json`, as PEFT saves one and as a LoRA run of
//! flan writes its model), whose base is then its `base_model_name_or_path` — as peft's
//! `AutoPeftModelForSeq2SeqLM.from_pretrained` reads it.

use std::path::{Path, PathBuf};

use flan_hub::{HubConfig, RepoRef};
use tch::{Device, Kind};

use crate::checkpoint::LoadReport;
use crate::lora::{AdapterReport, LoraConfig, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use crate::{Error, Result, T5ForConditionalGeneration};

/// A base model directory and the adapter directory to apply over it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// `config.json`, weights, usually `tokenizer.json`.
    pub base: PathBuf,
    /// `adapter_config.json` and `adapter_model.safetensors`.
    pub adapter: Option<PathBuf>,
}

/// Whether `dir` is an adapter directory rather than a model directory.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG_FILE).is_file() && !dir.join("config.json").is_file()
}

impl ModelSource {
    /// Resolves `model` and `adapter` with the hub configuration of the environment.
    pub fn resolve(model: &str, adapter: Option<&str>) -> Result<Self> {
        Self::resolve_with(&HubConfig::from_env(), model, adapter)
    }

    /// Resolves `model` (a model directory or hub id, or an adapter directory) and `adapter`
    /// (a directory or hub id). A model given as an adapter directory takes its base from the
    /// adapter's `base_model_name_or_path`: a directory (as given, else relative to the
    /// adapter's directory) or a hub id.
    pub fn resolve_with(hub: &HubConfig, model: &str, adapter: Option<&str>) -> Result<Self> {
        let given = Path::new(model);
        if given.is_dir() && is_adapter_dir(given) {
            if let Some(second) = adapter {
                return Err(Error::InvalidInput(format!(
                    "--model {model} is itself an adapter directory; pass its base model as \
                     --model and the adapter as --adapter (not a second adapter, {second})"
                )));
            }
            let base = base_of(hub, given)?;
            return Ok(ModelSource {
                base,
                adapter: Some(given.to_path_buf()),
            });
        }
        let base = crate::hub::resolve_model_with(hub, model)?;
        let adapter = adapter.map(|a| resolve_adapter(hub, a)).transpose()?;
        Ok(ModelSource { base, adapter })
    }

    /// The tokenizer to use: the adapter directory's `tokenizer.json` when it has one (PEFT
    /// users often save it there), else the base model's.
    pub fn tokenizer_file(&self) -> PathBuf {
        match &self.adapter {
            Some(a) if a.join("tokenizer.json").is_file() => a.join("tokenizer.json"),
            _ => self.base.join("tokenizer.json"),
        }
    }

    /// Loads the base in `kind` on `device` and applies the adapter (see
    /// [`T5ForConditionalGeneration::from_pretrained`] and
    /// [`T5ForConditionalGeneration::load_adapter`]).
    pub fn load(
        &self,
        device: Device,
        kind: Kind,
    ) -> Result<(
        T5ForConditionalGeneration,
        LoadReport,
        Option<AdapterReport>,
    )> {
        let (model, report) =
            T5ForConditionalGeneration::from_pretrained(&self.base, device, kind)?;
        let adapter = match &self.adapter {
            Some(dir) => Some(model.load_adapter(dir)?),
            None => None,
        };
        Ok((model, report, adapter))
    }

    /// How to name this model in reports: the base, and the adapter when there is one.
    pub fn describe(&self) -> String {
        match &self.adapter {
            Some(a) => format!("{} + adapter {}", self.base.display(), a.display()),
            None => self.base.display().to_string(),
        }
    }
}

/// The base model of the adapter directory `dir`.
fn base_of(hub: &HubConfig, dir: &Path) -> Result<PathBuf> {
    let config_path = dir.join(ADAPTER_CONFIG_FILE);
    let config = LoraConfig::from_file(&config_path)?;
    let Some(base) = config.base_model_name_or_path.filter(|b| !b.is_empty()) else {
        return Err(Error::InvalidAdapter {
            path: config_path,
            reason: "base_model_name_or_path is not set: pass the base model as --model and \
                     this directory as --adapter"
                .into(),
        });
    };
    let beside = dir.join(&base);
    if !Path::new(&base).is_dir() && beside.is_dir() {
        return Ok(beside);
    }
    crate::hub::resolve_model_with(hub, &base).map_err(|e| Error::InvalidAdapter {
        path: config_path,
        reason: format!("its base model (base_model_name_or_path = {base:?}): {e}"),
    })
}

/// `adapter` as a local directory: a directory as is, else a hub repository holding
/// `adapter_config.json` and `adapter_model.safetensors` (from the cache, or downloaded unless
/// offline).
fn resolve_adapter(hub: &HubConfig, adapter: &str) -> Result<PathBuf> {
    let path = Path::new(adapter);
    if path.is_dir() {
        if !path.join(ADAPTER_CONFIG_FILE).is_file() {
            return Err(Error::InvalidAdapter {
                path: path.join(ADAPTER_CONFIG_FILE),
                reason: "--adapter must be a PEFT adapter directory (adapter_config.json, \
                         adapter_model.safetensors)"
                    .into(),
            });
        }
        return Ok(path.to_path_buf());
    }
    let not_found = |reason: String| Error::ModelNotFound {
        model: adapter.to_string(),
        reason,
    };
    if !crate::hub::is_hub_id(adapter) {
        return Err(not_found(
            "no such adapter directory, and not a hub id of the form `org/name`".into(),
        ));
    }
    let repo = RepoRef::model(adapter);
    let mut dir = None;
    for file in [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] {
        let fetched = if hub.offline {
            hub.cached_snapshot(&repo)
                .map(|s| s.join(file))
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "{file} is not in the Hugging Face cache {} (HF_HUB_OFFLINE is set, so \
                         nothing was downloaded)",
                        hub.cache_text()
                    )
                })
        } else {
            hub.fetch(&repo, file).map_err(|e| e.to_string())
        };
        dir = fetched.map_err(not_found)?.parent().map(Path::to_path_buf);
    }
    dir.ok_or_else(|| not_found("the hub returned no file".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_hub(cache: &Path) -> HubConfig {
        HubConfig {
            cache: Some(cache.to_path_buf()),
            endpoint: flan_hub::DEFAULT_ENDPOINT.into(),
            offline: true,
            token: None,
        }
    }

    #[test]
    fn an_adapter_directory_as_model_finds_its_base_beside_it_or_in_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("config.json"), "{}").unwrap();
        let adapter = root.path().join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        let mut config = LoraConfig::new(
            2,
            4.0,
            0.0,
            crate::lora::ModuleSelector::Names(vec!["q".into()]),
        );
        config.base_model_name_or_path = Some("../base".into());
        config.save(&adapter).unwrap();
        let hub = offline_hub(root.path());
        let source = ModelSource::resolve_with(&hub, adapter.to_str().unwrap(), None).unwrap();
        assert_eq!(source.base, adapter.join("../base"));
        assert_eq!(source.adapter.as_deref(), Some(adapter.as_path()));
        assert_eq!(
            source.tokenizer_file(),
            adapter.join("../base/tokenizer.json")
        );

        // A hub id that is not cached: the error names the base and the adapter config.
        config.base_model_name_or_path = Some("flan-test-org/not-cached".into());
        config.save(&adapter).unwrap();
        let err = ModelSource::resolve_with(&hub, adapter.to_str().unwrap(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("adapter_config.json") && err.contains("not-cached"),
            "{err}"
        );

        // --adapter must be an adapter directory.
        let err = ModelSource::resolve_with(&hub, base.to_str().unwrap(), base.to_str())
            .unwrap_err()
            .to_string();
        assert!(err.contains("adapter_config.json"), "{err}");
    }

    #[test]
    fn a_hub_adapter_is_found_in_the_cache_as_huggingface_hub_lays_it_out() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--some-org--t5-lora");
        let snap = repo.join("snapshots").join("0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
        std::fs::write(snap.join(ADAPTER_CONFIG_FILE), "{}").unwrap();
        let hub = offline_hub(cache.path());
        let err = resolve_adapter(&hub, "some-org/t5-lora")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(ADAPTER_WEIGHTS_FILE) && err.contains("HF_HUB_OFFLINE"),
            "{err}"
        );
        std::fs::write(snap.join(ADAPTER_WEIGHTS_FILE), "").unwrap();
        assert_eq!(resolve_adapter(&hub, "some-org/t5-lora").unwrap(), snap);
    }
}
