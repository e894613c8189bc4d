//! The text span corruption is made from: plain text with one document per line, or JSONL
//! with one `{"text": ...}` object per line (files ending in `.jsonl` or `.json`).

use crate::error::{Error, Result};
use crate::example::Provenance;
use crate::source::{read_bytes, utf8_lines, Skipped, Strictness};
use std::path::Path;

/// One document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its text.
    pub text: String,
    /// Where it was read.
    pub provenance: Provenance,
}

#[derive(serde::Deserialize)]
struct Record {
    text: String,
}

const EXPECTED_JSONL: &str = r#"a JSON object {"text": str}"#;
const EXPECTED_TEXT: &str = "text, one document per line";

/// Reads the documents of `path`. Blank lines are not documents and are counted in the second
/// value (a JSONL record with an empty or blank `text` too); a JSONL line that is not an object
/// with a string `text` is an error (strict) or skipped and counted (lenient). Other JSON fields
/// are ignored.
pub fn read_documents(
    path: &Path,
    strictness: Strictness,
) -> Result<(Vec<Document>, usize, Skipped)> {
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "json")
    );
    let bytes = read_bytes(path)?;
    let expected = if jsonl { EXPECTED_JSONL } else { EXPECTED_TEXT };
    let mut documents = Vec::new();
    let mut blank = 0;
    let mut skipped = Skipped::default();
    for (line, text) in utf8_lines(path, &bytes, expected)? {
        let parsed = text.and_then(|text| {
            if !jsonl || text.trim().is_empty() {
                return Ok(text.to_string());
            }
            serde_json::from_str::<Record>(text)
                .map(|r| r.text)
                .map_err(|e| Error::parse(path, line, format!("{e}; expected {expected}")))
        });
        match parsed {
            Ok(t) if t.trim().is_empty() => blank += 1,
            Ok(t) => documents.push(Document {
                text: t,
                provenance: Provenance {
                    file: path.to_path_buf(),
                    line,
                },
            }),
            Err(e) => skipped.handle(strictness, e)?,
        }
    }
    Ok((documents, blank, skipped))
}
