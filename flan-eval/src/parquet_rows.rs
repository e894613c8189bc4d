//! Rows of a Parquet file (a hub dataset's split) as JSON objects, so that a benchmark reads a
//! hub row with the same code and checks as its JSONL or CSV record. Apache's `parquet` crate,
//! row API without `arrow`: benchmark splits are small, and the row API keeps flan-eval's build
//! light. Parquet's reader is code we do not own: a panic on a malformed file is contained and
//! reported as an error naming the file.

use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Every row of `path`, in file order, as a JSON object keyed by column name (lists are arrays,
/// structs objects, nulls `null`).
pub fn read_rows(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let outcome = flan_contain::catch_panic(|| -> std::result::Result<_, (usize, String)> {
        use parquet::file::reader::FileReader;
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
            .map_err(|e| (0, format!("not a readable Parquet file: {e}")))?;
        let rows = reader
            .get_row_iter(None)
            .map_err(|e| (0, format!("cannot read the rows: {e}")))?;
        let mut out = Vec::new();
        for (i, row) in rows.enumerate() {
            let row = row.map_err(|e| (i + 1, format!("row {}: {e}", i + 1)))?;
            match row.to_json_value() {
                Value::Object(map) => out.push(map),
                _ => return Err((i + 1, format!("row {}: not a record", i + 1))),
            }
        }
        Ok(out)
    });
    match outcome {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err((row, message))) => Err(Error::parse(path, row, message)),
        Err(panic) => Err(Error::parse(
            path,
            0,
            format!("malformed Parquet file (the reader failed: {panic})"),
        )),
    }
}

/// One row of a Parquet split, for readers: typed access to its columns with errors that name
/// the file, the row (1-based) and the column.
pub struct RowRef<'a> {
    /// The file.
    pub path: &'a Path,
    /// 1-based row number.
    pub row: usize,
    /// The row's columns.
    pub fields: &'a Map<String, Value>,
}

impl RowRef<'_> {
    /// An error about this row.
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::parse(self.path, self.row, format!("row {}: {message}", self.row))
    }

    /// The value of `column`, which must exist.
    pub fn get(&self, column: &str) -> Result<&Value> {
        self.fields.get(column).ok_or_else(|| {
            let mut have: Vec<&str> = self.fields.keys().map(String::as_str).collect();
            have.sort();
            self.error(format!(
                "no column {column:?} (columns: {})",
                have.join(", ")
            ))
        })
    }

    /// A string column.
    pub fn str(&self, column: &str) -> Result<&str> {
        let v = self.get(column)?;
        v.as_str()
            .ok_or_else(|| self.error(format!("column {column:?}: expected a string, found {v}")))
    }

    /// An integer column.
    pub fn int(&self, column: &str) -> Result<i64> {
        let v = self.get(column)?;
        v.as_i64()
            .ok_or_else(|| self.error(format!("column {column:?}: expected an integer, found {v}")))
    }

    /// A list-of-strings column.
    pub fn str_list(&self, column: &str) -> Result<Vec<String>> {
        let v = self.get(column)?;
        v.as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|s| s.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                self.error(format!(
                    "column {column:?}: expected a list of strings, found {v}"
                ))
            })
    }
}

/// `rows` of `path` with their row numbers, for readers.
pub fn row_refs<'a>(
    path: &'a Path,
    rows: &'a [Map<String, Value>],
) -> impl Iterator<Item = RowRef<'a>> {
    rows.iter().enumerate().map(move |(i, fields)| RowRef {
        path,
        row: i + 1,
        fields,
    })
}
