//! Reading collection files row by row, whatever their encoding: JSONL, gzip-compressed JSONL,
//! or Parquet (through the `parquet` crate's row API, without arrow; see docs/data.md).

use super::row::{self, CollectionRow, RowKey, FIELDS};
use crate::error::{Error, Result};
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::types::Type;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a collection file is encoded, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON object per line (`.jsonl`, `.json`).
    Jsonl,
    /// The same, gzip-compressed (`.jsonl.gz`, `.json.gz`).
    JsonlGz,
    /// Apache Parquet (`.parquet`).
    Parquet,
}

impl Encoding {
    /// The encoding of a file name, if it is one the collection comes in.
    pub fn of(path: &Path) -> Option<Encoding> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".jsonl.gz") || name.ends_with(".json.gz") {
            Some(Encoding::JsonlGz)
        } else if name.ends_with(".jsonl") || name.ends_with(".json") {
            Some(Encoding::Jsonl)
        } else if name.ends_with(".parquet") {
            Some(Encoding::Parquet)
        } else {
            None
        }
    }
}

/// The files a task's `path` names: the file itself, every collection file under a directory
/// (recursively), or the files a wildcard in the last component matches; sorted, so every run
/// and every rank sees the same order.
pub fn collection_files(path: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if path.is_dir() {
        let mut dirs = vec![path.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let p = entry.map_err(|e| Error::io(&dir, e))?.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if Encoding::of(&p).is_some() {
                    files.push(p);
                }
            }
        }
        if files.is_empty() {
            return Err(Error::config(
                path.display().to_string(),
                "the directory holds no .jsonl, .jsonl.gz or .parquet file",
            ));
        }
    } else {
        for f in crate::source::expand_glob(path)? {
            if Encoding::of(&f).is_none() {
                return Err(Error::config(
                    f.display().to_string(),
                    "a flan_collection file must end in .jsonl, .json, .jsonl.gz, .json.gz or .parquet",
                ));
            }
            files.push(f);
        }
    }
    files.sort();
    Ok(files)
}

/// A row as read: the row, or what is wrong with it (a bad row is not a failed read: lenient
/// mode skips it).
pub type RowResult<T> = std::result::Result<T, Error>;

/// Counts the bytes read through it, for the indexing progress bar.
struct Counting<R> {
    inner: R,
    counter: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &self.counter {
            c.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(n)
    }
}

enum Inner {
    Lines {
        reader: Box<dyn BufRead + Send>,
        line: Vec<u8>,
    },
    Parquet {
        rows: RowIter<'static>,
        /// Position of inputs, targets, task_source, task_name, template_type in a row.
        columns: [usize; 5],
        /// The row taken by the last `next_*` call.
        current: Option<parquet::record::Row>,
    },
}

/// Reads one collection file row by row.
pub struct RowReader {
    path: PathBuf,
    inner: Inner,
    /// Rows read so far (the 1-based number of the last row read).
    row: u64,
}

impl RowReader {
    /// Opens `path` at its first row.
    pub fn open(path: &Path) -> Result<RowReader> {
        Self::open_counting(path, None)
    }

    /// Opens `path`, adding the bytes read to `counter`.
    pub(crate) fn open_counting(
        path: &Path,
        counter: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<RowReader> {
        let encoding = Encoding::of(path).ok_or_else(|| {
            Error::config(
                path.display().to_string(),
                "not a .jsonl, .jsonl.gz or .parquet file",
            )
        })?;
        let inner = match encoding {
            Encoding::Jsonl | Encoding::JsonlGz => {
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let counted = Counting {
                    inner: file,
                    counter,
                };
                let reader: Box<dyn BufRead + Send> = if encoding == Encoding::JsonlGz {
                    Box::new(BufReader::with_capacity(
                        1 << 16,
                        flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                            1 << 16,
                            counted,
                        )),
                    ))
                } else {
                    Box::new(BufReader::with_capacity(1 << 16, counted))
                };
                Inner::Lines {
                    reader,
                    line: Vec::new(),
                }
            }
            Encoding::Parquet => {
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                // The parquet crate panics on some corrupt files (offsets it does not check):
                // contained here and below, a bad file is an error naming it.
                let opened = flan_contain::catch_panic(|| -> Result<_> {
                    let reader = SerializedFileReader::new(file).map_err(|e| {
                        Error::parse(path, 1, format!("not a readable Parquet file: {e}"))
                    })?;
                    let (projection, columns) =
                        parquet_projection(path, reader.metadata().file_metadata().schema())?;
                    let rows = RowIter::from_file_into(Box::new(reader))
                        .project(Some(projection))
                        .map_err(|e| {
                            Error::parse(path, 1, format!("cannot read the Parquet columns: {e}"))
                        })?;
                    Ok((rows, columns))
                });
                let (rows, columns) = opened.map_err(|panic| {
                    Error::parse(path, 1, format!("not a readable Parquet file: {panic}"))
                })??;
                if let Some(c) = &counter {
                    // The row API does not expose bytes read: count the file when opened.
                    c.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
                }
                Inner::Parquet {
                    rows,
                    columns,
                    current: None,
                }
            }
        };
        Ok(RowReader {
            path: path.to_path_buf(),
            inner,
            row: 0,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.row
    }

    /// Moves to the next row; `Ok(false)` at the end of the file. Errors here are failed reads
    /// (I/O, corrupt compression), not bad rows.
    pub fn advance(&mut self) -> Result<bool> {
        match &mut self.inner {
            Inner::Lines { reader, line } => {
                line.clear();
                let n = reader
                    .read_until(b'\n', line)
                    .map_err(|e| Error::io(&self.path, e))?;
                if n == 0 {
                    return Ok(false);
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if self.row == 0 && line.starts_with(b"\xEF\xBB\xBF") {
                    line.drain(..3);
                }
                self.row += 1;
                Ok(true)
            }
            Inner::Parquet { rows, current, .. } => match flan_contain::catch_panic(|| rows.next())
                .unwrap_or_else(|panic| {
                    Some(Err(parquet::errors::ParquetError::General(format!(
                        "the reader failed: {panic}"
                    ))))
                }) {
                None => Ok(false),
                Some(Ok(row)) => {
                    *current = Some(row);
                    self.row += 1;
                    Ok(true)
                }
                Some(Err(e)) => Err(Error::parse(
                    &self.path,
                    (self.row + 1) as usize,
                    format!("row {}: cannot decode the Parquet data: {e}", self.row + 1),
                )),
            },
        }
    }

    fn row_error(&self, message: String) -> Error {
        Error::parse(
            &self.path,
            self.row as usize,
            format!("row {}: {message}", self.row),
        )
    }

    /// The current row in full (after [`RowReader::advance`] returned `true`); `Err` for a bad
    /// row.
    pub fn row(&self) -> RowResult<CollectionRow> {
        let parsed = match &self.inner {
            Inner::Lines { line, .. } => row::parse_json_row(line),
            Inner::Parquet {
                current: Some(r),
                columns,
                ..
            } => parquet_row(r, columns),
            Inner::Parquet { current: None, .. } => Err("no row was read".to_string()),
        };
        parsed.map_err(|m| self.row_error(m))
    }

    /// The key fields of the current row (no copy of the texts for JSON lines).
    pub fn key(&self) -> RowResult<RowKey<'_>> {
        let parsed = match &self.inner {
            Inner::Lines { line, .. } => row::parse_json_key(line),
            Inner::Parquet {
                current: Some(r),
                columns,
                ..
            } => parquet_row(r, columns).map(|r| RowKey {
                task_source: r.task_source.into(),
                task_name: r.task_name.into(),
                template_type: r.template_type,
            }),
            Inner::Parquet { current: None, .. } => Err("no row was read".to_string()),
        };
        parsed.map_err(|m| self.row_error(m))
    }

    /// The next row in full: `None` at the end of the file, `Some(Err)` for a bad row.
    pub fn next_row(&mut self) -> Result<Option<RowResult<CollectionRow>>> {
        Ok(self.advance()?.then(|| self.row()))
    }

    /// Skips `n` rows without parsing them (resuming at a row).
    pub fn skip(&mut self, n: u64) -> Result<()> {
        for _ in 0..n {
            if !self.advance()? {
                return Err(Error::parse(
                    &self.path,
                    self.row as usize,
                    format!(
                        "the file has {} rows, fewer than the index or the cursor says: it changed since it was indexed",
                        self.row
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The projection onto the five fields (either spelling) and their positions in a projected
/// row; a missing or non-string column is an error naming it.
fn parquet_projection(path: &Path, schema: &Type) -> Result<(Type, [usize; 5])> {
    let fields = schema.get_fields();
    let mut chosen: Vec<(usize, usize)> = Vec::new(); // (schema position, field number)
    for (k, name) in FIELDS.iter().enumerate() {
        let prefixed = format!("_{name}");
        let found = fields
            .iter()
            .position(|f| f.name() == *name)
            .or_else(|| fields.iter().position(|f| f.name() == prefixed));
        let Some(at) = found else {
            let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
            return Err(Error::parse(
                path,
                1,
                format!("Parquet schema: column `{name}` (or `{prefixed}`) is missing; the file has {names:?}"),
            ));
        };
        let f = &fields[at];
        let is_string = f.is_primitive()
            && f.get_physical_type() == PhysicalType::BYTE_ARRAY
            && f.get_basic_info().repetition() != parquet::basic::Repetition::REPEATED
            && matches!(
                (
                    f.get_basic_info().logical_type_ref(),
                    f.get_basic_info().converted_type()
                ),
                (Some(LogicalType::String), _)
                    | (None, ConvertedType::UTF8)
                    | (None, ConvertedType::NONE)
            );
        if !is_string {
            let what = if f.is_primitive() {
                format!(
                    "{:?}{}",
                    f.get_physical_type(),
                    f.get_basic_info()
                        .logical_type_ref()
                        .map(|l| format!(" ({l:?})"))
                        .unwrap_or_default()
                )
            } else {
                "a group (nested column)".to_string()
            };
            return Err(Error::parse(
                path,
                1,
                format!(
                    "Parquet schema: column `{}` is {what}, expected a string (BYTE_ARRAY, UTF8)",
                    f.name()
                ),
            ));
        }
        chosen.push((at, k));
    }
    let mut by_position = chosen.clone();
    by_position.sort();
    let mut columns = [0usize; 5];
    for (i, (_, k)) in by_position.iter().enumerate() {
        columns[*k] = i;
    }
    let projected = by_position
        .iter()
        .map(|(at, _)| Arc::clone(&fields[*at]))
        .collect();
    let projection = Type::group_type_builder(schema.name())
        .with_fields(projected)
        .build()
        .map_err(|e| Error::parse(path, 1, format!("Parquet schema: {e}")))?;
    Ok((projection, columns))
}

fn parquet_row(
    row: &parquet::record::Row,
    columns: &[usize; 5],
) -> std::result::Result<CollectionRow, String> {
    let values: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
    let text = |k: usize| -> std::result::Result<String, String> {
        let name = FIELDS[k];
        match values.get(columns[k]) {
            Some(Field::Str(s)) => Ok(s.clone()),
            Some(Field::Bytes(b)) => String::from_utf8(b.data().to_vec())
                .map_err(|_| format!("column `{name}`: not valid UTF-8")),
            Some(Field::Null) => Err(format!("column `{name}` is null, expected a string")),
            Some(other) => Err(format!("column `{name}` is {other}, expected a string")),
            None => Err(format!("column `{name}` is missing from the row")),
        }
    };
    Ok(CollectionRow {
        inputs: text(0)?,
        targets: text(1)?,
        task_source: text(2)?,
        task_name: text(3)?,
        template_type: row::template_type(&text(4)?)?,
    })
}
