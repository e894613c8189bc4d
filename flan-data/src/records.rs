//! JSONL records made by other tools (a platform's exports, `flan mixture --sample`, an
//! evaluation file), read as the project treats data records: the fields a command needs are
//! strict (missing or mistyped, the error names the file and line), other fields are ignored and
//! counted, and an `id` field, of any JSON type, is kept for the matching output record. A UTF-8
//! byte-order mark at the start of the file is accepted, as editors and spreadsheet exports write
//! one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::source::{read_bytes, utf8_lines};

/// The field carried from an input record to its output record.
pub const ID_FIELD: &str = "id";

/// One record of a JSONL file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// 1-based line number.
    pub line: usize,
    /// The record's `id`, when it has one.
    pub id: Option<Value>,
    /// The fields the reader asked for.
    pub fields: T,
}

/// The records of a file and the fields that were skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Records<T> {
    /// One per line, in file order.
    pub records: Vec<Record<T>>,
    /// Lines on which each unknown field was present, by field name.
    pub ignored: BTreeMap<String, usize>,
}

impl<T> Records<T> {
    /// "ignored fields (not used by this command): meta on 3 lines, targets on 120 lines", or
    /// `None` when every field was used.
    pub fn ignored_note(&self) -> Option<String> {
        (!self.ignored.is_empty()).then(|| {
            let fields: Vec<String> = self
                .ignored
                .iter()
                .map(|(name, lines)| {
                    format!(
                        "{name} on {lines} line{}",
                        if *lines == 1 { "" } else { "s" }
                    )
                })
                .collect();
            format!(
                "ignored fields (not used by this command): {}",
                fields.join(", ")
            )
        })
    }
}

/// Reads every line of `path` as an object with the fields of `T` (plus an optional `id`).
/// `expected` describes a valid line for error messages (`{"inputs": string}`). Blank lines are
/// errors: outputs have one line per input line.
pub fn read_jsonl_records<T: DeserializeOwned>(path: &Path, expected: &str) -> Result<Records<T>> {
    let bytes = read_bytes(path)?;
    let mut records = Vec::new();
    let mut ignored: BTreeMap<String, usize> = BTreeMap::new();
    for (line, text) in utf8_lines(path, &bytes, expected)? {
        let text = text?;
        let bad = |message: String| Error::parse(path, line, message);
        if text.trim().is_empty() {
            return Err(bad(format!("blank line; expected {expected}")));
        }
        let mut object: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| bad(format!("expected {expected}: {e}")))?;
        let id = object.remove(ID_FIELD);
        let mut skipped = Vec::new();
        let fields = serde_ignored::deserialize(Value::Object(object), |field| {
            skipped.push(field.to_string())
        })
        .map_err(|e: serde_json::Error| bad(format!("expected {expected}: {e}")))?;
        for field in skipped {
            *ignored.entry(field).or_default() += 1;
        }
        records.push(Record { line, id, fields });
    }
    Ok(Records { records, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Input {
        inputs: String,
    }

    fn read(text: &[u8]) -> Result<Records<Input>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, text).unwrap();
        read_jsonl_records(&path, r#"{"inputs": string}"#)
    }

    #[test]
    fn unknown_fields_are_counted_and_ids_of_any_type_kept() {
        let r = read(
            "\u{feff}{\"inputs\": \"a\", \"targets\": \"x\", \"id\": \"q1\"}\r\n\
             {\"inputs\": \"b\", \"id\": 7, \"meta\": {\"k\": 1}, \"targets\": \"y\"}\n\
             {\"inputs\": \"c\"}\n"
                .as_bytes(),
        )
        .unwrap();
        let inputs: Vec<&str> = r.records.iter().map(|r| r.fields.inputs.as_str()).collect();
        assert_eq!(inputs, ["a", "b", "c"]);
        let ids: Vec<Option<Value>> = r.records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [Some("q1".into()), Some(7.into()), None]);
        assert_eq!(r.records[2].line, 3);
        assert_eq!(
            r.ignored_note().unwrap(),
            "ignored fields (not used by this command): meta on 1 line, targets on 2 lines"
        );
    }

    #[test]
    fn missing_and_mistyped_fields_and_blank_lines_name_the_line() {
        for (text, want) in [
            ("{\"inputs\": \"a\"}\n{\"input\": \"b\"}\n", ":2: expected"),
            ("{\"inputs\": 5}\n", ":1: expected"),
            (
                "{\"inputs\": \"a\"}\n\n{\"inputs\": \"b\"}\n",
                ":2: blank line",
            ),
            ("[1, 2]\n", ":1: expected"),
            ("", ":1: the file is empty"),
        ] {
            let err = read(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("in.jsonl"), "{err}");
        }
        let clean = read(b"{\"inputs\": \"a\"}\n").unwrap();
        assert_eq!(clean.ignored_note(), None);
    }
}
