//! The text span corruption is made from: plain text with one document per line, or JSONL
//! with one `{"text": ...}` object per line (files ending in `.jsonl` or `.json`).

use crate::error::{Error, Result};
use crate::example::Provenance;
use crate::source::{read_bytes, utf8_lines, Skipped, Strictness};
use std::path::{Path, PathBuf};

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

/// Whether a file in a directory is read as documents: `.txt`, `.jsonl` or `.json`.
fn is_document_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("txt" | "jsonl" | "json")
    )
}

/// The files a task's `path` names: the file itself, every `.txt`/`.jsonl`/`.json` file under a
/// directory (recursively), or the files a wildcard in the last component matches; sorted, so
/// every run and every rank reads them in the same order.
pub fn document_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return crate::source::expand_glob(path);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let p = entry.map_err(|e| Error::io(&dir, e))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if is_document_file(&p) {
                files.push(p);
            }
        }
    }
    if files.is_empty() {
        return Err(Error::config(
            path.display().to_string(),
            "the directory holds no .txt, .jsonl or .json file",
        ));
    }
    files.sort();
    Ok(files)
}
