//! Benchmarks from Hugging Face hub datasets (`--data hf:cais/mmlu`): which repository, which of
//! its files a benchmark needs, and where they are on disk (flan-hub's cache, downloaded when the
//! hub is reachable).
//!
//! A dataset's splits are Parquet, in one of the two layouts the hub serves: the repository's
//! own data files, `<config>/<split>-00000-of-00001.parquet` (what `push_to_hub` writes, on the
//! `main` branch), or the hub's conversion, `<config>/<split>/0000.parquet` on the branch
//! `refs/convert/parquet` (for datasets that ship a loading script). Without an explicit
//! revision (`hf:org/name@rev`), `main` is tried first, then `refs/convert/parquet`.
//!
//! Resolution follows huggingface_hub's `snapshot_download`: when online, the revision's file
//! list is asked for and the needed files fetched (each from the cache when it is there); when
//! offline (`HF_HUB_OFFLINE`) or when the hub cannot be reached, the cached snapshot of the
//! revision is used. Nothing found is an error naming the dataset and how to get it.

use crate::{Error, Result};
pub use flan_hub::HubConfig;
use flan_hub::{RepoKind, RepoRef};
use std::path::PathBuf;

/// The prefix that marks a hub dataset where a data path is expected.
pub const PREFIX: &str = "hf:";

/// The branch the hub writes its Parquet conversion to.
pub const PARQUET_BRANCH: &str = "refs/convert/parquet";

/// A hub dataset as a benchmark's data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDataset {
    /// The repository; its revision is `main` unless one was given.
    pub repo: RepoRef,
    /// Whether the revision was given (`@rev`); if not, the Parquet branch is tried after `main`.
    pub pinned: bool,
    /// Cache, endpoint, offline mode.
    pub hub: HubConfig,
}

/// The files a benchmark chose from a revision, on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The repository at the revision the files came from.
    pub repo: RepoRef,
    /// Every file of that revision (repository paths), sorted.
    pub listing: Vec<String>,
    /// The chosen files: repository path and local path, in the order chosen.
    pub files: Vec<(String, PathBuf)>,
}

impl Resolved {
    /// The repository paths of the chosen files.
    pub fn files_names(&self) -> Vec<String> {
        self.files.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The local path of repository file `name` (one of the chosen).
    pub fn path(&self, name: &str) -> Option<&PathBuf> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

impl HubDataset {
    /// Whether `data` names a hub dataset (`hf:org/name`).
    pub fn is_spec(data: &str) -> bool {
        data.starts_with(PREFIX)
    }

    /// Parses `hf:org/name` or `hf:org/name@revision`.
    pub fn parse(spec: &str, hub: HubConfig) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "{spec:?}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION (a hub dataset id)"
            ))
        };
        let rest = spec.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (id, revision) = match rest.split_once('@') {
            Some((id, rev)) if !rev.is_empty() && !rev.contains("..") => (id, Some(rev)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        if !flan_hub::is_hub_id(id) {
            return Err(bad());
        }
        Ok(HubDataset {
            repo: RepoRef::new(RepoKind::Dataset, id, revision.unwrap_or("main")),
            pinned: revision.is_some(),
            hub,
        })
    }

    /// The dataset as the user wrote it, for messages and reports.
    pub fn spec(&self) -> String {
        if self.pinned {
            format!("{PREFIX}{}@{}", self.repo.id, self.repo.revision)
        } else {
            format!("{PREFIX}{}", self.repo.id)
        }
    }

    fn revisions(&self) -> Vec<RepoRef> {
        if self.pinned {
            vec![self.repo.clone()]
        } else {
            vec![self.repo.clone(), self.repo.at(PARQUET_BRANCH)]
        }
    }

    /// The files `pick` chooses from a revision's file list (`what` says what they are, for
    /// messages). `pick` returns `None` when the revision does not hold the benchmark's layout
    /// (the next revision is then tried), else the files needed (none when the tasks asked for
    /// are not there: the reader then names the tasks that are).
    pub fn resolve(
        &self,
        what: &str,
        pick: &dyn Fn(&[String]) -> Option<Vec<String>>,
    ) -> Result<Resolved> {
        let mut problems = Vec::new();
        if !self.hub.offline {
            for repo in self.revisions() {
                let listing = match self.hub.list_files(&repo) {
                    Ok((_, mut files)) => {
                        files.sort();
                        files
                    }
                    Err(e) => {
                        problems.push(chain(&e));
                        continue;
                    }
                };
                let Some(chosen) = pick(&listing) else {
                    problems.push(format!(
                        "revision {} has no {what} ({} files)",
                        repo.revision,
                        listing.len()
                    ));
                    continue;
                };
                let mut files = Vec::with_capacity(chosen.len());
                for name in chosen {
                    let path = self
                        .hub
                        .fetch(&repo, &name)
                        .map_err(|e| self.error(format!("cannot fetch {name}"), e))?;
                    files.push((name, path));
                }
                return Ok(Resolved {
                    repo,
                    listing,
                    files,
                });
            }
        }
        // Offline, or the hub unreachable: the cache, as huggingface_hub falls back to it.
        for repo in self.revisions() {
            let Some(snapshot) = self.hub.cached_snapshot(&repo) else {
                continue;
            };
            let listing = flan_hub::snapshot_files(&snapshot)
                .map_err(|e| self.error("cannot list the cached snapshot".into(), e))?;
            let Some(chosen) = pick(&listing) else {
                problems.push(format!(
                    "the cached revision {} has no {what}",
                    repo.revision
                ));
                continue;
            };
            let files = chosen
                .into_iter()
                .map(|name| {
                    let path = snapshot.join(&name);
                    (name, path)
                })
                .collect();
            return Ok(Resolved {
                repo,
                listing,
                files,
            });
        }
        let mut reason = format!(
            "no {what} found in the Hugging Face cache {}",
            self.hub.cache_text()
        );
        if self.hub.offline {
            reason.push_str(" and HF_HUB_OFFLINE is set, so nothing was downloaded");
        }
        for p in problems {
            reason.push_str("; ");
            reason.push_str(&p);
        }
        reason.push_str(&format!(
            ". Fetch it once where the hub is reachable (`huggingface-cli download --repo-type \
             dataset {}`, or run this command there without HF_HUB_OFFLINE), which fills that \
             cache",
            self.repo.id
        ));
        Err(Error::HubDataset {
            dataset: self.spec(),
            reason,
            source: None,
        })
    }

    fn error(&self, reason: String, source: flan_hub::Error) -> Error {
        Error::HubDataset {
            dataset: self.spec(),
            reason,
            source: Some(Box::new(source)),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The Parquet files of `config`'s `split` in `listing`, in shard order: the repository's own
/// `<config>/<split>-*.parquet`, else the conversion's `<config>/<split>/*.parquet`.
pub fn split_files(listing: &[String], config: &str, split: &str) -> Vec<String> {
    let own = format!("{config}/{split}-");
    let converted = format!("{config}/{split}/");
    let mut files: Vec<String> = listing
        .iter()
        .filter(|f| f.starts_with(&own) && f.ends_with(".parquet") && !f[own.len()..].contains('/'))
        .cloned()
        .collect();
    if files.is_empty() {
        files = listing
            .iter()
            .filter(|f| {
                f.starts_with(&converted)
                    && f.ends_with(".parquet")
                    && !f[converted.len()..].contains('/')
            })
            .cloned()
            .collect();
    }
    files.sort();
    files
}

/// The configs (top-level directories) of `listing` that have Parquet files of `split`, sorted.
pub fn configs_with_split(listing: &[String], split: &str) -> Vec<String> {
    let mut configs: Vec<String> = listing
        .iter()
        .filter_map(|f| f.split_once('/').map(|(c, _)| c.to_string()))
        .collect();
    configs.sort();
    configs.dedup();
    configs.retain(|c| !split_files(listing, c, split).is_empty());
    configs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> HubConfig {
        HubConfig {
            cache: None,
            endpoint: flan_hub::DEFAULT_ENDPOINT.into(),
            offline: true,
            token: None,
        }
    }

    #[test]
    fn specs_parse_and_print_back() {
        let d = HubDataset::parse("hf:cais/mmlu", hub()).unwrap();
        assert_eq!(
            (d.repo.id.as_str(), d.repo.revision.as_str()),
            ("cais/mmlu", "main")
        );
        assert!(!d.pinned);
        assert_eq!(d.spec(), "hf:cais/mmlu");
        let d = HubDataset::parse("hf:openai/gsm8k@e53f048", hub()).unwrap();
        assert_eq!(d.repo.revision, "e53f048");
        assert_eq!(d.spec(), "hf:openai/gsm8k@e53f048");
        for bad in [
            "cais/mmlu",
            "hf:",
            "hf:a/b/c",
            "hf:../x",
            "hf:a/b@",
            "hf:a/b@../x",
        ] {
            assert!(HubDataset::parse(bad, hub()).is_err(), "{bad}");
        }
    }

    #[test]
    fn both_hub_layouts_of_a_split_are_found_in_shard_order() {
        let listing: Vec<String> = [
            "README.md",
            "all/test-00001-of-00002.parquet",
            "all/test-00000-of-00002.parquet",
            "all/dev-00000-of-00001.parquet",
            "anatomy/test/0000.parquet",
            "anatomy/test/index.duckdb",
            "anatomy/test/deeper/0000.parquet",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            split_files(&listing, "all", "test"),
            [
                "all/test-00000-of-00002.parquet",
                "all/test-00001-of-00002.parquet"
            ]
        );
        assert_eq!(
            split_files(&listing, "anatomy", "test"),
            ["anatomy/test/0000.parquet"]
        );
        assert!(split_files(&listing, "anatomy", "dev").is_empty());
        assert_eq!(configs_with_split(&listing, "test"), ["all", "anatomy"]);
        assert_eq!(configs_with_split(&listing, "dev"), ["all"]);
    }
}
