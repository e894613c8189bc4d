//! Readers of real task formats. Each turns one file into [`Example`]s that remember their file
//! and line, and fails with an [`Error::Parse`](crate::Error::Parse) naming both when a record is
//! bad — or, in lenient mode, skips the record and counts it in [`Skipped`], so nothing is dropped
//! silently.

mod cot_tsv;
mod gsm8k;
mod jsonl;
mod niv2;

pub use cot_tsv::read_cot_tsv;
pub use gsm8k::read_gsm8k_jsonl;
pub use jsonl::read_jsonl;
pub use niv2::{read_niv2_split, read_niv2_task, Niv2Demo, Niv2Task};

use crate::error::{Error, Result};
use crate::example::Example;
use std::path::{Path, PathBuf};

/// Whether a bad record stops the read (strict, the default) or is skipped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// The first bad record is an error.
    #[default]
    Strict,
    /// Bad records are skipped and counted.
    Lenient,
}

/// Records skipped in lenient mode, with the first few reasons kept for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// How many records were skipped.
    pub count: usize,
    /// `file:line: why` of the first [`Skipped::KEPT_REASONS`] skips.
    pub reasons: Vec<String>,
}

impl Skipped {
    /// How many reasons are kept verbatim.
    pub const KEPT_REASONS: usize = 5;

    /// Records `err` as a skip (lenient) or returns it (strict).
    pub(crate) fn handle(&mut self, strictness: Strictness, err: Error) -> Result<()> {
        match strictness {
            Strictness::Strict => Err(err),
            Strictness::Lenient => {
                self.count += 1;
                if self.reasons.len() < Self::KEPT_REASONS {
                    self.reasons.push(err.to_string());
                }
                Ok(())
            }
        }
    }

    /// Adds the skips of another read.
    pub fn merge(&mut self, other: &Skipped) {
        self.count += other.count;
        for r in &other.reasons {
            if self.reasons.len() < Self::KEPT_REASONS {
                self.reasons.push(r.clone());
            }
        }
    }
}

/// What a reader returns: the examples and what it skipped.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// Records skipped in lenient mode.
    pub skipped: Skipped,
    /// Fields present in the records that the format does not use, with the records they were
    /// on (ignored, and reported once by `flan mixture --stats`).
    pub ignored: std::collections::BTreeMap<String, usize>,
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The UTF-8 byte-order mark that Windows editors and spreadsheet exports put at the start of
/// a text file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading UTF-8 byte-order mark: every reader accepts one, as the files
/// people bring from other tools often start with it, and it is never part of the data.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Splits a text file into `(1-based line number, line)` pairs, checking UTF-8 line by line so
/// that an encoding error names its line. A leading byte-order mark and a trailing `\r` are
/// removed. An empty file is an error: it is almost always a failed download or a wrong path.
pub(crate) fn utf8_lines<'a>(
    path: &'a Path,
    bytes: &'a [u8],
    expected: &'a str,
) -> Result<impl Iterator<Item = (usize, std::result::Result<&'a str, Error>)> + 'a> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::parse(
            path,
            1,
            format!("the file is empty; expected {expected}"),
        ));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    Ok(body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(move |(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = i + 1;
            let text = std::str::from_utf8(raw).map_err(|e| {
                Error::parse(
                    path,
                    line,
                    format!(
                        "invalid UTF-8 at byte {} of the line; expected {expected}",
                        e.valid_up_to()
                    ),
                )
            });
            (line, text)
        }))
}

/// Reads a file that must be UTF-8 as a whole (JSON), naming the line of the first bad byte. A
/// leading byte-order mark is dropped.
pub(crate) fn read_utf8(path: &Path, expected: &str) -> Result<String> {
    let mut bytes = read_bytes(path)?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::parse(
            path,
            1,
            format!("the file is empty; expected {expected}"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..upto].iter().filter(|&&b| b == b'\n').count();
        Error::parse(path, line, format!("invalid UTF-8; expected {expected}"))
    })
}

/// Expands a path whose last component may hold `*` wildcards (`niv2/tasks/*.json`) into the
/// matching files, sorted so that every run sees the same order.
pub fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>> {
    let name = pattern
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.contains('*') {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(file) = entry.file_name().to_str() {
            if wildcard_match(name, file) {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::io(
            pattern,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no file matches this pattern"),
        ));
    }
    Ok(out)
}

/// `*` matches any run of characters; everything else matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("task*_mmlu*", "task685_mmlu_answer"));
        assert!(wildcard_match("*.json", "a.json"));
        assert!(!wildcard_match("*.json", "a.tsv"));
        assert!(wildcard_match("abc", "abc"));
        assert!(!wildcard_match("a*b*c", "acb"));
        assert!(wildcard_match("a*b*c", "axbyc"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }
}
