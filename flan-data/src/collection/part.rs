//! A submixture of the collection as one entry of the mixture, and the streaming state that
//! draws its rows.

use super::index::{default_cache_dir, index_files};
use super::reader::{collection_files, RowReader};
use super::row::CollectionRow;
use super::{submixture_of_source, TemplateType};
use crate::error::{Error, Result};
use crate::source::Skipped;
use crate::spec::{MixtureSpec, SourceFormat, TaskSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Files read at once by one part: rows are interleaved among the first unread files of the
/// epoch's (seeded) file order, which bounds the open readers and their buffers.
const OPEN_FILES: usize = 8;

/// A task of a part, after the template-type filter and the exclusions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartTask {
    /// `task_name`.
    pub task_name: String,
    /// Its rows.
    pub rows: u64,
    /// min(cap, rows): the rows one epoch of the part keeps on average.
    pub rate: f64,
}

/// One file of a part.
#[derive(Debug, Clone, PartialEq)]
pub struct PartFile {
    /// The file.
    pub path: PathBuf,
    /// All its rows (the part keeps only its own).
    pub rows: u64,
}

/// One submixture of a `flan_collection` task: the mixture draws it as one entry with rate
/// Σ min(cap, Nₜ) over its tasks.
#[derive(Debug, Clone)]
pub struct CollectionPart {
    /// Entry name: `<task name>/<submixture>`.
    pub name: String,
    /// The submixture.
    pub submixture: String,
    /// Files that hold rows of this part, sorted.
    pub files: Vec<PartFile>,
    /// Per task, sorted by name.
    pub tasks: Vec<PartTask>,
    /// Rows of its tasks.
    pub rows: u64,
    /// Σ min(cap, rows of the task).
    pub rate: f64,
    /// Bad rows of its files (lenient mode), counted by the index.
    pub skipped: Skipped,
    /// Task names held out by the spec.
    pub excluded: Vec<String>,
    /// `task_source` values of this part, as written in the files.
    sources: Vec<String>,
    /// Keep threshold by task: a row is kept when its hash is below it (`u64::MAX`: always).
    keep: HashMap<String, u64>,
    template_types: [bool; 4],
    salt: u64,
}

/// Where a part's stream stands in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartFileRow {
    /// The file.
    pub file: PathBuf,
    /// Rows read from it in this epoch.
    pub row: u64,
}

/// Where a part's stream stands: the epoch, the row reached in each file, and how many kept
/// rows are still to be passed over (draws of other ranks, counted without reading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartCursor {
    /// Passes over the part's files so far.
    pub epoch: u64,
    /// Per file of the part, in its order.
    pub files: Vec<PartFileRow>,
    /// Kept rows drawn but not yet read.
    pub pending: u64,
}

/// The live state of a part's stream (readers are opened when first needed).
pub struct PartState {
    epoch: u64,
    consumed: Vec<u64>,
    pending: u64,
    readers: Vec<Option<RowReader>>,
    order: Option<(u64, Vec<usize>)>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn type_slot(t: TemplateType) -> usize {
    TemplateType::ALL.iter().position(|&x| x == t).unwrap_or(0)
}

impl PartState {
    /// The state at the start of the stream.
    pub fn new(part: &CollectionPart) -> PartState {
        PartState {
            epoch: 0,
            consumed: vec![0; part.files.len()],
            pending: 0,
            readers: (0..part.files.len()).map(|_| None).collect(),
            order: None,
        }
    }

    /// The state a cursor describes.
    pub fn from_cursor(part: &CollectionPart, cursor: &PartCursor) -> Result<PartState> {
        let same = cursor.files.len() == part.files.len()
            && cursor
                .files
                .iter()
                .zip(&part.files)
                .all(|(c, f)| c.file == f.path && c.row <= f.rows);
        if !same {
            return Err(Error::config(
                "mixture cursor",
                format!(
                    "its rows of `{}` name other files than the collection has now; refusing to resume",
                    part.name
                ),
            ));
        }
        let mut state = PartState::new(part);
        state.epoch = cursor.epoch;
        state.pending = cursor.pending;
        state.consumed = cursor.files.iter().map(|f| f.row).collect();
        Ok(state)
    }

    /// The cursor of this state.
    pub fn cursor(&self, part: &CollectionPart) -> PartCursor {
        PartCursor {
            epoch: self.epoch,
            files: part
                .files
                .iter()
                .zip(&self.consumed)
                .map(|(f, &row)| PartFileRow {
                    file: f.path.clone(),
                    row,
                })
                .collect(),
            pending: self.pending,
        }
    }

    /// Counts a draw whose row this reader does not need (another rank's): it is passed over
    /// when the next row is read.
    pub fn pass(&mut self) {
        self.pending += 1;
    }
}

impl CollectionPart {
    /// The keep threshold of a row, or `None` when the row is not this part's.
    fn threshold(&self, source: &str, task: &str, template: TemplateType) -> Option<u64> {
        if !self.template_types[type_slot(template)] || !self.sources.iter().any(|s| s == source) {
            return None;
        }
        self.keep.get(task).copied()
    }

    /// The next row of the part's stream: passes over the pending kept rows, then reads the
    /// next kept one.
    pub fn next_row(&self, state: &mut PartState, seed: u64) -> Result<CollectionRow> {
        let mut rollovers = 0u32;
        loop {
            let total: u64 = self.files.iter().map(|f| f.rows).sum();
            if state.consumed.iter().sum::<u64>() >= total {
                rollovers += 1;
                if rollovers > 2 {
                    return Err(Error::config(
                        format!("collection part `{}`", self.name),
                        "two whole passes over its files kept no row",
                    ));
                }
                state.epoch += 1;
                state.consumed.iter_mut().for_each(|c| *c = 0);
                state.readers.iter_mut().for_each(|r| *r = None);
            }
            let f = self.pick_file(state, seed);
            if state.readers[f].is_none() {
                let mut reader = RowReader::open(&self.files[f].path)?;
                reader.skip(state.consumed[f])?;
                state.readers[f] = Some(reader);
            }
            let Some(reader) = state.readers[f].as_mut() else {
                continue;
            };
            if !reader.advance()? {
                return Err(Error::parse(
                    &self.files[f].path,
                    reader.rows_read() as usize,
                    format!(
                        "the file ends after {} rows, but was indexed with {}: it changed since it was indexed",
                        reader.rows_read(),
                        self.files[f].rows
                    ),
                ));
            }
            let row_number = state.consumed[f];
            state.consumed[f] += 1;
            let threshold = match reader.key() {
                Ok(key) => self.threshold(&key.task_source, &key.task_name, key.template_type),
                // Bad rows are counted by the index; strict reading refused the file there.
                Err(_) => None,
            };
            let Some(threshold) = threshold else { continue };
            let h = splitmix(
                seed ^ splitmix(
                    self.salt ^ splitmix(state.epoch ^ splitmix(f as u64 ^ splitmix(row_number))),
                ),
            );
            if threshold != u64::MAX && h >= threshold {
                continue;
            }
            if state.pending > 0 {
                state.pending -= 1;
                continue;
            }
            return reader.row();
        }
    }

    /// The file the next row comes from: among the first [`OPEN_FILES`] unfinished files of
    /// the epoch's order, one with probability proportional to its unread rows.
    fn pick_file(&self, state: &mut PartState, seed: u64) -> usize {
        if state.order.as_ref().is_none_or(|(e, _)| *e != state.epoch) {
            let mut order: Vec<usize> = (0..self.files.len()).collect();
            // A seeded Fisher-Yates over the files, so each epoch starts elsewhere.
            let mut x = splitmix(seed ^ splitmix(self.salt ^ splitmix(state.epoch) ^ 0x5eed));
            for i in (1..order.len()).rev() {
                x = splitmix(x);
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            state.order = Some((state.epoch, order));
        }
        let order = state
            .order
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or(&[]);
        let active: Vec<(usize, u64)> = order
            .iter()
            .map(|&f| {
                (
                    f,
                    self.files[f].rows - state.consumed[f].min(self.files[f].rows),
                )
            })
            .filter(|&(_, left)| left > 0)
            .take(OPEN_FILES)
            .collect();
        let left: u64 = active.iter().map(|(_, l)| l).sum();
        let step: u64 = state.consumed.iter().sum();
        let mut u =
            splitmix(seed ^ splitmix(self.salt ^ splitmix(state.epoch ^ splitmix(step ^ 0xf11e))))
                % left.max(1);
        for &(f, l) in &active {
            if u < l {
                return f;
            }
            u -= l;
        }
        active.first().map_or(0, |(f, _)| *f)
    }
}

/// The parts of every `flan_collection` task of `spec` (paths resolved against `spec_dir`), and
/// the task names the spec held out.
pub fn load_parts(spec: &MixtureSpec, spec_dir: &Path) -> Result<Vec<CollectionPart>> {
    let data_dir = spec_dir.join(&spec.data_dir);
    let mut parts = Vec::new();
    for task_spec in spec
        .tasks
        .iter()
        .filter(|t| t.format == SourceFormat::FlanCollection)
    {
        parts.extend(load_task(spec, spec_dir, &data_dir, task_spec)?);
    }
    Ok(parts)
}

fn load_task(
    spec: &MixtureSpec,
    spec_dir: &Path,
    data_dir: &Path,
    task_spec: &TaskSpec,
) -> Result<Vec<CollectionPart>> {
    // A spec built in code has not been through `MixtureSpec::validate`.
    if let Some(problem) = task_spec.source_problem() {
        return Err(Error::config(
            format!("flan_collection task ({})", task_spec.source_description()),
            problem,
        ));
    }
    let files = collection_files(&data_dir.join(&task_spec.path))?;
    let cache = match &task_spec.index_dir {
        Some(dir) => Some(spec_dir.join(dir)),
        None => default_cache_dir(),
    };
    let index = index_files(&files, cache.as_deref())?;
    let mut template_types = [true; 4];
    if let Some(types) = &task_spec.template_types {
        template_types = [false; 4];
        for &t in types {
            template_types[type_slot(t)] = true;
        }
    }
    let name = task_spec.name.as_deref().unwrap_or("flan_collection");
    // submixture → (sources, task → rows, files with its rows → file rows, skipped, excluded)
    #[derive(Default)]
    struct Acc {
        sources: Vec<String>,
        tasks: BTreeMap<String, u64>,
        files: BTreeMap<usize, u64>,
        excluded: Vec<String>,
    }
    let mut by_sub: BTreeMap<String, Acc> = BTreeMap::new();
    let mut skipped = Skipped::default();
    for (fi, file) in index.files.iter().enumerate() {
        if file.bad_rows > 0 {
            if !task_spec.lenient {
                if let Some(err) = file.first_bad_error() {
                    return Err(err);
                }
            }
            skipped.count += file.bad_rows as usize;
            for (row, message) in &file.bad {
                if skipped.reasons.len() < Skipped::KEPT_REASONS {
                    skipped
                        .reasons
                        .push(format!("{}:{row}: {message}", file.path.display()));
                }
            }
        }
        for count in &file.counts {
            let Some(sub) = submixture_of_source(&count.task_source, &spec.submixtures) else {
                let message = format!(
                    "{} rows have task_source {:?}, which is none of Flan2021, T0, NIv2, CoT, Dialog nor a submixture of the spec",
                    count.rows, count.task_source
                );
                if task_spec.lenient {
                    skipped.count += count.rows as usize;
                    if skipped.reasons.len() < Skipped::KEPT_REASONS {
                        skipped
                            .reasons
                            .push(format!("{}: {message}", file.path.display()));
                    }
                    continue;
                }
                return Err(Error::config(file.path.display().to_string(), message));
            };
            if task_spec.submixture.as_deref().is_some_and(|s| s != sub) {
                continue;
            }
            let acc = by_sub.entry(sub.to_string()).or_default();
            if !acc.sources.contains(&count.task_source) {
                acc.sources.push(count.task_source.clone());
            }
            *acc.files.entry(fi).or_default() = file.rows;
            if spec.is_excluded(&count.task_name) {
                if !acc.excluded.contains(&count.task_name) {
                    acc.excluded.push(count.task_name.clone());
                }
                continue;
            }
            if template_types[type_slot(count.template_type)] {
                *acc.tasks.entry(count.task_name.clone()).or_default() += count.rows;
            }
        }
    }
    let mut parts = Vec::new();
    for (sub, acc) in by_sub {
        if acc.tasks.is_empty() {
            continue;
        }
        let cap = spec.submixtures[&sub].cap;
        let mut keep = HashMap::new();
        let tasks: Vec<PartTask> = acc
            .tasks
            .into_iter()
            .map(|(task_name, rows)| {
                let threshold = if rows <= cap {
                    u64::MAX
                } else {
                    (cap as f64 / rows as f64 * u64::MAX as f64) as u64
                };
                keep.insert(task_name.clone(), threshold);
                PartTask {
                    task_name,
                    rows,
                    rate: rows.min(cap) as f64,
                }
            })
            .collect();
        let part_name = format!("{name}/{sub}");
        parts.push(CollectionPart {
            salt: crate::hash::fnv1a(&part_name),
            name: part_name,
            submixture: sub,
            files: acc
                .files
                .iter()
                .map(|(&fi, &rows)| PartFile {
                    path: index.files[fi].path.clone(),
                    rows,
                })
                .collect(),
            rows: tasks.iter().map(|t| t.rows).sum(),
            rate: tasks.iter().map(|t| t.rate).sum(),
            tasks,
            skipped: skipped.clone(),
            excluded: acc.excluded,
            sources: acc.sources,
            keep,
            template_types,
        });
    }
    // A file's bad rows are counted once, on the task's first part.
    for part in parts.iter_mut().skip(1) {
        part.skipped = Skipped::default();
    }
    if parts.is_empty() {
        return Err(Error::config(
            format!("flan_collection {}", task_spec.path.display()),
            "no rows left after the template-type filter, the submixture and the exclusions",
        ));
    }
    Ok(parts)
}
