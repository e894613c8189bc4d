//! `flan-hub`: the Hugging Face hub as flan uses it, for models (`--model google/flan-t5-small`)
//! and datasets (`--data hf:cais/mmlu`) alike, without libtorch so that flan-eval can use it.
//!
//! It behaves as `huggingface_hub` does: the cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, laid out as
//! `{models,datasets}--org--name/refs/<revision>` naming a commit whose files are under
//! `snapshots/<commit>/`; `HF_HUB_OFFLINE` (1/ON/YES/TRUE) forbids requests; `HF_ENDPOINT`
//! replaces `https://huggingface.co`; `HF_TOKEN` (or the cache's `token` file) authenticates.
//! Downloads go through `hf-hub` (ureq), which writes the same layout, so a file fetched once is
//! found offline afterwards — by flan and by Python tools.
//!
//! Main types: [`HubConfig`] (where the cache is, which endpoint, offline or not; from the
//! environment or explicit, so tests need not touch the process environment) and [`RepoRef`]
//! (a model or dataset repository at a revision).
//!
//! ```
//! use flan_hub::{HubConfig, RepoRef};
//! let cache = tempfile::tempdir().unwrap();
//! let hub = HubConfig { cache: Some(cache.path().into()), endpoint: "http://127.0.0.1:9".into(),
//!                       offline: true, token: None };
//! let mmlu = RepoRef::dataset("cais/mmlu");
//! assert_eq!(mmlu.folder_name(), "datasets--cais--mmlu");
//! assert!(hub.cached_snapshot(&mmlu).is_none());
//! let err = hub.fetch(&mmlu, "all/test-00000-of-00001.parquet").unwrap_err();
//! assert!(err.to_string().contains("HF_HUB_OFFLINE"));
//! ```

#![deny(missing_docs)]

mod error;

pub use error::{Error, Result};

use std::fmt;
use std::path::{Path, PathBuf};

/// The hub's own address, replaced by `HF_ENDPOINT`.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Whether a repository holds a model or a dataset (they live in separate namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// `models--org--name`, `/org/name/resolve/...`.
    Model,
    /// `datasets--org--name`, `/datasets/org/name/resolve/...`.
    Dataset,
}

/// A repository at a revision (a branch such as `main` or `refs/convert/parquet`, or a commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// Model or dataset.
    pub kind: RepoKind,
    /// `org/name`.
    pub id: String,
    /// Branch, tag or commit; `main` unless asked otherwise.
    pub revision: String,
}

impl RepoRef {
    /// A model repository at `main`.
    pub fn model(id: &str) -> Self {
        Self::new(RepoKind::Model, id, "main")
    }

    /// A dataset repository at `main`.
    pub fn dataset(id: &str) -> Self {
        Self::new(RepoKind::Dataset, id, "main")
    }

    /// A repository at `revision`.
    pub fn new(kind: RepoKind, id: &str, revision: &str) -> Self {
        RepoRef {
            kind,
            id: id.to_string(),
            revision: revision.to_string(),
        }
    }

    /// The same repository at another revision.
    pub fn at(&self, revision: &str) -> Self {
        Self::new(self.kind, &self.id, revision)
    }

    /// The repository's directory in the cache, as huggingface_hub names it.
    pub fn folder_name(&self) -> String {
        let prefix = match self.kind {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        };
        format!("{prefix}--{}", self.id.replace('/', "--"))
    }

    fn hf_repo(&self) -> hf_hub::Repo {
        let kind = match self.kind {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
        };
        hf_hub::Repo::with_revision(self.id.clone(), kind, self.revision.clone())
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        };
        write!(f, "{kind} {}", self.id)?;
        if self.revision != "main" {
            write!(f, "@{}", self.revision)?;
        }
        Ok(())
    }
}

/// Whether `name` has the form of a hub id: `name` or `org/name`, of letters, digits, `-`, `_`
/// and `.` (as the hub allows), so that it can be told from a path.
pub fn is_hub_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && *p != "."
                && *p != ".."
        })
}

/// Where the hub cache is, which endpoint to ask and whether asking is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The cache directory (`None`: no variable names one, so nothing is cached or found).
    pub cache: Option<PathBuf>,
    /// The hub's address, without a trailing `/`.
    pub endpoint: String,
    /// `HF_HUB_OFFLINE`: only the cache is read.
    pub offline: bool,
    /// `HF_TOKEN`, for gated repositories (else hf-hub reads the cache's `token` file).
    pub token: Option<String>,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// huggingface_hub's reading of a boolean variable.
fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// The cache directory huggingface_hub uses, from the environment.
pub fn cache_dir() -> Option<PathBuf> {
    let path = |k: &str| env(k).map(PathBuf::from);
    path("HF_HUB_CACHE")
        .or_else(|| path("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| path("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| path("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
        .or_else(|| path("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

impl HubConfig {
    /// The configuration huggingface_hub would use in this process's environment.
    pub fn from_env() -> Self {
        HubConfig {
            cache: cache_dir(),
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            offline: is_true(env("HF_HUB_OFFLINE").or_else(|| env("TRANSFORMERS_OFFLINE"))),
            token: env("HF_TOKEN"),
        }
    }

    /// The cache directory as text for messages.
    pub fn cache_text(&self) -> String {
        self.cache.as_ref().map_or_else(
            || "(no cache directory: set HF_HUB_CACHE or HF_HOME)".into(),
            |c| c.display().to_string(),
        )
    }

    /// The snapshot directory `repo`'s revision names in the cache: `refs/<revision>` holds a
    /// commit whose files are in `snapshots/<commit>/`; a commit given as the revision is its
    /// own snapshot. A repository with no ref but a single snapshot (copied by hand) is that
    /// snapshot, when the revision asked is `main`.
    pub fn cached_snapshot(&self, repo: &RepoRef) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?.join(repo.folder_name());
        let snapshots = dir.join("snapshots");
        if let Ok(commit) = std::fs::read_to_string(dir.join("refs").join(&repo.revision)) {
            let snapshot = snapshots.join(commit.trim());
            return snapshot.is_dir().then_some(snapshot);
        }
        let direct = snapshots.join(&repo.revision);
        if is_commit(&repo.revision) && direct.is_dir() {
            return Some(direct);
        }
        if repo.revision != "main" || dir.join("refs").is_dir() {
            return None;
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        if dirs.len() == 1 {
            dirs.pop()
        } else {
            None
        }
    }

    fn api(&self) -> Result<hf_hub::api::sync::Api> {
        let cache = self.cache.clone().ok_or(Error::NoCache)?;
        let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache))
            .with_endpoint(self.endpoint.clone())
            .with_progress(false);
        if self.token.is_some() {
            builder = builder.with_token(self.token.clone());
        }
        builder.build().map_err(|e| Error::Api {
            repo: String::new(),
            what: "setting up the client".into(),
            endpoint: self.endpoint.clone(),
            source: Box::new(e),
        })
    }

    /// The files of `repo` at its revision, as the hub lists them
    /// (`GET /api/{models,datasets}/<id>/revision/<revision>`), and the commit it names.
    pub fn list_files(&self, repo: &RepoRef) -> Result<(String, Vec<String>)> {
        if self.offline {
            return Err(Error::Offline {
                repo: repo.to_string(),
                file: format!("the file list of revision {}", repo.revision),
            });
        }
        let info = self
            .api()?
            .repo(repo.hf_repo())
            .info()
            .map_err(|e| Error::Api {
                repo: repo.to_string(),
                what: format!("the file list of revision {}", repo.revision),
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            })?;
        Ok((
            info.sha,
            info.siblings.into_iter().map(|s| s.rfilename).collect(),
        ))
    }

    /// `file` of `repo`: from the cache when its revision is there, else downloaded into the
    /// cache (`GET /<datasets/>id/resolve/<revision>/<file>`) unless offline.
    pub fn fetch(&self, repo: &RepoRef, file: &str) -> Result<PathBuf> {
        if let Some(path) = self
            .cached_snapshot(repo)
            .map(|s| s.join(file))
            .filter(|p| p.is_file())
        {
            return Ok(path);
        }
        if self.offline {
            return Err(Error::Offline {
                repo: repo.to_string(),
                file: file.to_string(),
            });
        }
        self.api()?
            .repo(repo.hf_repo())
            .download(file)
            .map_err(|e| Error::Api {
                repo: repo.to_string(),
                what: format!("file {file}"),
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            })
    }
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every file under a snapshot directory, as repository paths (`all/test-00000-of-00001.parquet`),
/// sorted. Links whose blob is missing (an interrupted download) are left out.
pub fn snapshot_files(snapshot: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![snapshot.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                if let Ok(rel) = path.strip_prefix(snapshot) {
                    let parts: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(parts.join("/"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cache: &Path) -> HubConfig {
        HubConfig {
            cache: Some(cache.to_path_buf()),
            endpoint: "http://127.0.0.1:9".into(),
            offline: true,
            token: None,
        }
    }

    #[test]
    fn snapshot_is_found_through_the_revision_ref() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("datasets--cais--mmlu");
        let main = repo.join("snapshots").join("a".repeat(40));
        let parquet = repo.join("snapshots").join("b".repeat(40));
        std::fs::create_dir_all(main.join("all")).unwrap();
        std::fs::create_dir_all(&parquet).unwrap();
        // A branch named `refs/convert/parquet` has its ref at `refs/refs/convert/parquet`, as
        // huggingface_hub joins `refs/` and the revision.
        std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
        std::fs::write(repo.join("refs/main"), "a".repeat(40) + "\n").unwrap();
        std::fs::write(repo.join("refs/refs/convert/parquet"), "b".repeat(40)).unwrap();
        std::fs::write(main.join("all/test.parquet"), "").unwrap();
        let hub = config(cache.path());
        let mmlu = RepoRef::dataset("cais/mmlu");
        assert_eq!(hub.cached_snapshot(&mmlu), Some(main.clone()));
        assert_eq!(
            hub.cached_snapshot(&mmlu.at("refs/convert/parquet")),
            Some(parquet)
        );
        assert_eq!(hub.cached_snapshot(&mmlu.at(&"a".repeat(40))), Some(main));
        assert_eq!(hub.cached_snapshot(&mmlu.at("v2")), None);
        // Models and datasets do not share a namespace.
        assert_eq!(hub.cached_snapshot(&RepoRef::model("cais/mmlu")), None);
        assert_eq!(
            hub.fetch(&mmlu, "all/test.parquet").unwrap(),
            repo.join("snapshots")
                .join("a".repeat(40))
                .join("all/test.parquet")
        );
        let listed = snapshot_files(&hub.cached_snapshot(&mmlu).unwrap()).unwrap();
        assert_eq!(listed, ["all/test.parquet"]);
    }

    #[test]
    fn offline_refuses_to_ask() {
        let cache = tempfile::tempdir().unwrap();
        let hub = config(cache.path());
        let repo = RepoRef::dataset("org/absent").at("v1");
        let err = hub.list_files(&repo).unwrap_err().to_string();
        assert!(err.contains("dataset org/absent@v1"), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
        let err = hub.fetch(&repo, "x.parquet").unwrap_err().to_string();
        assert!(err.contains("x.parquet"), "{err}");
    }

    #[test]
    fn booleans_and_ids_read_as_huggingface_hub_reads_them() {
        for yes in ["1", "on", "YES", "True"] {
            assert!(is_true(Some(yes.into())), "{yes}");
        }
        for no in ["0", "off", "no", "2", ""] {
            assert!(!is_true(Some(no.into())), "{no}");
        }
        assert!(!is_true(None));
        assert!(is_hub_id("google/flan-t5-small"));
        assert!(!is_hub_id("../x/y"));
        assert!(!is_hub_id("a/b/c"));
    }
}
