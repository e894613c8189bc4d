//! Resolving `--model`: a local directory, or a Hugging Face hub id (`google/flan-t5-small`)
//! found in the local HF cache and downloaded only when it is not cached and the hub is
//! reachable. The hub itself (cache layout, `HF_HUB_OFFLINE`, `HF_ENDPOINT`, downloads) is
//! flan-hub's, shared with the datasets flan-eval reads; this module knows what a model needs.

use std::path::{Path, PathBuf};

pub use flan_hub::is_hub_id;
use flan_hub::{HubConfig, RepoRef};

use crate::{Error, Result};

/// Files a model directory needs besides the weights.
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];

/// The snapshot of `repo_id` at `main` in `hub`'s cache, if it holds a config and weights.
pub fn cached_snapshot(hub: &HubConfig, repo_id: &str) -> Option<PathBuf> {
    hub.cached_snapshot(&RepoRef::model(repo_id))
        .filter(|s| s.join("config.json").is_file() && crate::checkpoint::weight_files(s).is_ok())
}

/// Resolves `model` to a local directory holding `config.json`, weights and `tokenizer.json`
/// with the hub configuration of the environment (see [`resolve_model_with`]).
pub fn resolve_model(model: &str) -> Result<PathBuf> {
    resolve_model_with(&HubConfig::from_env(), model)
}

/// Resolves `model`: an existing directory as is; else a hub id from the cache; else a download
/// unless `hub` is offline. Failing that, the error says where the files were looked for.
pub fn resolve_model_with(hub: &HubConfig, model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let not_found = |reason: String| Error::ModelNotFound {
        model: model.to_string(),
        reason,
    };
    if !is_hub_id(model) {
        return Err(not_found(
            "no such directory, and not a hub id of the form `org/name`".into(),
        ));
    }
    if let Some(snapshot) = cached_snapshot(hub, model) {
        return Ok(snapshot);
    }
    let hint = format!(
        "not a local directory and not in the Hugging Face cache {}. Either pass a \
         directory with config.json, model.safetensors and tokenizer.json (e.g. saved by \
         `transformers` `save_pretrained`), or fetch it once where the hub is reachable \
         (`huggingface-cli download {model}`), which fills that cache",
        hub.cache_text()
    );
    if hub.offline {
        return Err(not_found(format!(
            "{hint} (HF_HUB_OFFLINE is set, so nothing was downloaded)"
        )));
    }
    download(hub, &RepoRef::model(model))
        .map_err(|e| not_found(format!("{hint}; download failed: {e}")))
}

fn download(hub: &HubConfig, repo: &RepoRef) -> std::result::Result<PathBuf, String> {
    let get = |file: &str| hub.fetch(repo, file).map_err(|e| e.to_string());
    let mut dir = None;
    for file in REQUIRED {
        dir = get(file)?.parent().map(Path::to_path_buf);
    }
    if let Err(single) = get(crate::checkpoint::WEIGHTS_FILE) {
        let index = get(crate::checkpoint::INDEX_FILE).map_err(|e| format!("{single}; {e}"))?;
        let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
        let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut shards: Vec<String> = parsed["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        for shard in shards {
            get(&shard)?;
        }
    }
    // Optional: transformers falls back to the config's generation settings without it.
    let _ = get("generation_config.json");
    dir.ok_or_else(|| "the hub returned no file".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_found_through_refs_main() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--google--flan-t5-small");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        let hub = HubConfig {
            cache: Some(cache.path().to_path_buf()),
            endpoint: flan_hub::DEFAULT_ENDPOINT.into(),
            offline: true,
            token: None,
        };
        assert_eq!(cached_snapshot(&hub, "google/flan-t5-small"), None);
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.join("model.safetensors"), "").unwrap();
        assert_eq!(cached_snapshot(&hub, "google/flan-t5-small"), Some(snap));
    }

    #[test]
    fn offline_and_uncached_error_says_where_to_put_files() {
        // A name no cache holds; offline keeps the test off the network.
        let cache = tempfile::tempdir().unwrap();
        let hub = HubConfig {
            cache: Some(cache.path().to_path_buf()),
            endpoint: flan_hub::DEFAULT_ENDPOINT.into(),
            offline: true,
            token: None,
        };
        let err = resolve_model_with(&hub, "flan-test-org/definitely-not-cached-model")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the Hugging Face cache"), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
        assert!(is_hub_id("google/flan-t5-small"));
        assert!(!is_hub_id("../x/y"));
    }
}
