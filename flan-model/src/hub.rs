//! Resolving `--model`: a local directory, or a Hugging Face hub id (`google/flan-t5-small`)
//! found in the local HF cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`)
//! and downloaded with `hf-hub` only when it is not cached and the hub is reachable.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Files a model directory needs besides the weights.
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];

/// The hub cache directory transformers uses.
pub fn hub_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HF_HUB_CACHE")
        .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// The snapshot directory of `repo_id` in a hub cache laid out as transformers writes it
/// (`models--org--name/refs/main` names the snapshot), if it holds a config and weights.
pub fn cached_snapshot(cache: &Path, repo_id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = std::fs::read_to_string(repo.join("refs").join("main")).ok();
    let snapshot = match commit {
        Some(c) => repo.join("snapshots").join(c.trim()),
        None => {
            // No ref: accept a single snapshot.
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo.join("snapshots"))
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            if dirs.len() != 1 {
                return None;
            }
            dirs.pop()?
        }
    };
    let complete = snapshot.join("config.json").is_file()
        && crate::checkpoint::weight_files(&snapshot).is_ok();
    complete.then_some(snapshot)
}

/// Whether `model` has the form of a hub id: `name` or `org/name`, of letters, digits, `-`,
/// `_` and `.` (as the hub allows), so that it can be told from a path to a directory.
pub fn is_hub_id(model: &str) -> bool {
    let parts: Vec<&str> = model.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && *p != "."
                && *p != ".."
        })
}

/// Resolves `model` to a local directory holding `config.json`, weights and `tokenizer.json`:
/// an existing directory as is; else a hub id from the cache; else a download unless
/// `HF_HUB_OFFLINE` is set. Failing that, the error says where the files were looked for.
pub fn resolve_model(model: &str) -> Result<PathBuf> {
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
    let cache = hub_cache_dir();
    if let Some(snapshot) = cache.as_deref().and_then(|c| cached_snapshot(c, model)) {
        return Ok(snapshot);
    }
    let cache_text = cache
        .as_ref()
        .map(|c| c.display().to_string())
        .unwrap_or_else(|| "(no cache directory: set HF_HOME)".into());
    let offline = std::env::var("HF_HUB_OFFLINE")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    let hint = format!(
        "not a local directory and not in the Hugging Face cache {cache_text}. Either pass a \
         directory with config.json, model.safetensors and tokenizer.json (e.g. saved by \
         `transformers` `save_pretrained`), or fetch it once where the hub is reachable \
         (`huggingface-cli download {model}`), which fills that cache"
    );
    if offline {
        return Err(not_found(format!(
            "{hint} (HF_HUB_OFFLINE is set, so nothing was downloaded)"
        )));
    }
    download(model).map_err(|e| not_found(format!("{hint}; download failed: {e}")))
}

fn download(model: &str) -> std::result::Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(model.to_string());
    let mut dir = None;
    for file in REQUIRED {
        let p = repo.get(file).map_err(|e| format!("{file}: {e}"))?;
        dir = p.parent().map(Path::to_path_buf);
    }
    match repo.get(crate::checkpoint::WEIGHTS_FILE) {
        Ok(_) => {}
        Err(single) => {
            let index = repo.get(crate::checkpoint::INDEX_FILE).map_err(|e| {
                format!(
                    "{}: {single}; {}: {e}",
                    crate::checkpoint::WEIGHTS_FILE,
                    crate::checkpoint::INDEX_FILE
                )
            })?;
            let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
            let parsed: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| e.to_string())?;
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
                repo.get(&shard).map_err(|e| format!("{shard}: {e}"))?;
            }
        }
    }
    let _ = repo.get("generation_config.json");
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
        assert_eq!(cached_snapshot(cache.path(), "google/flan-t5-small"), None);
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.join("model.safetensors"), "").unwrap();
        assert_eq!(
            cached_snapshot(cache.path(), "google/flan-t5-small"),
            Some(snap)
        );
    }

    #[test]
    fn offline_and_uncached_error_says_where_to_put_files() {
        // A name no cache holds; HF_HUB_OFFLINE keeps the test off the network.
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let err = resolve_model("flan-test-org/definitely-not-cached-model")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the Hugging Face cache"), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
        assert!(is_hub_id("google/flan-t5-small"));
        assert!(!is_hub_id("../x/y"));
    }
}
