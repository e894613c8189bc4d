//! The indexing pass: rows per (task source, task, template type) of every collection file,
//! which the caps need before the first row is drawn. It reads each file once (in parallel over
//! files, with a progress bar on stderr) and caches the result per file, keyed by the file's path,
//! size and modification time, so later runs start at once.

use super::reader::RowReader;
use super::TemplateType;
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bumped when the index's meaning changes, so old caches are rebuilt.
const INDEX_FORMAT: u32 = 1;

/// Bad rows kept verbatim per file.
const KEPT_BAD: usize = 5;

/// Rows of one (source, task, template type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCount {
    /// `task_source` as written in the file.
    pub task_source: String,
    /// `task_name`.
    pub task_name: String,
    /// `template_type`.
    pub template_type: TemplateType,
    /// Rows.
    pub rows: u64,
}

/// The index of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIndex {
    /// [`INDEX_FORMAT`] of the code that wrote it.
    pub format: u32,
    /// The file, as given to the indexer.
    pub path: PathBuf,
    /// Its size in bytes when indexed.
    pub size: u64,
    /// Its modification time when indexed (nanoseconds since the Unix epoch).
    pub modified_ns: u64,
    /// Rows, good and bad.
    pub rows: u64,
    /// Bad rows.
    pub bad_rows: u64,
    /// (row, message) of the first bad rows.
    pub bad: Vec<(u64, String)>,
    /// Good rows by (source, task, template type), sorted.
    pub counts: Vec<TaskCount>,
}

impl FileIndex {
    /// The error of the first bad row (strict reading refuses the file).
    pub fn first_bad_error(&self) -> Option<Error> {
        self.bad
            .first()
            .map(|(row, message)| Error::parse(&self.path, *row as usize, message.clone()))
    }
}

/// The index of a task's files, in file order.
#[derive(Debug, Clone, Default)]
pub struct CollectionIndex {
    /// One per file.
    pub files: Vec<FileIndex>,
    /// Files whose index came from the cache.
    pub cached: usize,
}

/// Size and modification time: what says a cached index is still the file's.
fn stamp(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), modified))
}

/// Where a file's index is cached: named after a hash of its absolute path.
fn cache_path(cache_dir: &Path, file: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let key = crate::hash::fnv1a(&absolute.to_string_lossy());
    cache_dir.join(format!("{key:016x}.json"))
}

fn read_cached(cache_dir: &Path, file: &Path, stamp: (u64, u64)) -> Option<FileIndex> {
    let text = std::fs::read(cache_path(cache_dir, file)).ok()?;
    let index: FileIndex = serde_json::from_slice(&text).ok()?;
    (index.format == INDEX_FORMAT && index.path == file && (index.size, index.modified_ns) == stamp)
        .then_some(index)
}

/// Reads one file and counts its rows.
pub fn index_file(path: &Path, bytes: Option<Arc<AtomicU64>>) -> Result<FileIndex> {
    let (size, modified_ns) = stamp(path)?;
    let mut reader = RowReader::open_counting(path, bytes)?;
    let mut counts: BTreeMap<(String, String, TemplateType), u64> = BTreeMap::new();
    let mut last: Option<((String, String, TemplateType), u64)> = None;
    let (mut bad_rows, mut bad) = (0u64, Vec::new());
    while reader.advance()? {
        match reader.key() {
            Ok(key) => {
                // Files are mostly runs of one task: count a run before touching the map.
                match &mut last {
                    Some((k, n))
                        if k.1 == key.task_name
                            && k.0 == key.task_source
                            && k.2 == key.template_type =>
                    {
                        *n += 1
                    }
                    _ => {
                        if let Some((k, n)) = last.take() {
                            *counts.entry(k).or_default() += n;
                        }
                        last = Some((
                            (
                                key.task_source.into_owned(),
                                key.task_name.into_owned(),
                                key.template_type,
                            ),
                            1,
                        ));
                    }
                }
            }
            Err(err) => {
                bad_rows += 1;
                if bad.len() < KEPT_BAD {
                    if let Error::Parse { line, message, .. } = err {
                        bad.push((line as u64, message));
                    }
                }
            }
        }
    }
    if let Some((k, n)) = last {
        *counts.entry(k).or_default() += n;
    }
    let rows = reader.rows_read();
    if rows == 0 {
        return Err(Error::parse(path, 1, "the file has no rows"));
    }
    Ok(FileIndex {
        format: INDEX_FORMAT,
        path: path.to_path_buf(),
        size,
        modified_ns,
        rows,
        bad_rows,
        bad,
        counts: counts
            .into_iter()
            .map(
                |((task_source, task_name, template_type), rows)| TaskCount {
                    task_source,
                    task_name,
                    template_type,
                    rows,
                },
            )
            .collect(),
    })
}

/// The index of `files`, from `cache_dir` where it is current there, else by reading the files
/// (and then written to `cache_dir`). With no cache directory nothing is kept between runs.
pub fn index_files(files: &[PathBuf], cache_dir: Option<&Path>) -> Result<CollectionIndex> {
    let mut slots: Vec<Option<FileIndex>> = Vec::with_capacity(files.len());
    for f in files {
        let stamp = stamp(f)?;
        slots.push(cache_dir.and_then(|d| read_cached(d, f, stamp)));
    }
    let cached = slots.iter().filter(|s| s.is_some()).count();
    let todo: Vec<usize> = (0..files.len()).filter(|&i| slots[i].is_none()).collect();
    if !todo.is_empty() {
        let total: u64 = todo
            .iter()
            .map(|&i| std::fs::metadata(&files[i]).map_or(0, |m| m.len()))
            .sum();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        )
        .with_style(
            indicatif::ProgressStyle::with_template(
                "indexing the Flan collection {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let bytes = Arc::new(AtomicU64::new(0));
        let done = AtomicU64::new(0);
        let ticker = {
            let (bar, bytes) = (bar.clone(), Arc::clone(&bytes));
            move || bar.set_position(bytes.load(Ordering::Relaxed))
        };
        let built: Vec<Result<FileIndex>> = todo
            .par_iter()
            .map(|&i| {
                let index = index_file(&files[i], Some(Arc::clone(&bytes)))?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                ticker();
                bar.set_message(format!("{n}/{} files", todo.len()));
                if let Some(dir) = cache_dir {
                    write_cached(dir, &files[i], &index)?;
                }
                Ok(index)
            })
            .collect();
        bar.finish_and_clear();
        for (&i, index) in todo.iter().zip(built) {
            slots[i] = Some(index?);
        }
    }
    Ok(CollectionIndex {
        files: slots.into_iter().flatten().collect(),
        cached,
    })
}

fn write_cached(dir: &Path, file: &Path, index: &FileIndex) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let path = cache_path(dir, file);
    let mut out = AtomicFile::create(&path)?;
    let text = serde_json::to_vec(index).map_err(|e| Error::config("index", e.to_string()))?;
    out.write_bytes(&text)?;
    out.commit()
}

/// The per-user cache directory of collection indexes: `$FLAN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/flan`, else `~/.cache/flan`, then `collection-index/`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = env("FLAN_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("flan")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("flan")))?;
    Some(base.join("collection-index"))
}
