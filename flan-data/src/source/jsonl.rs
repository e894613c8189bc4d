//! Generic JSONL, one example per line: `{"inputs": ..., "targets": ...}` with optional
//! `"options": [...]` and `"rationale": ...`, so that users can add any task. Other fields (an
//! export's `task_source`, a platform's `id`, ...) are ignored and counted; only a missing or
//! mistyped field this format uses is an error.

use super::{read_bytes, utf8_lines, Loaded, Strictness};
use crate::error::{Error, Result};
use crate::example::{Example, Provenance};
use serde::Deserialize;
use std::path::Path;

const EXPECTED: &str =
    r#"a JSON object {"inputs": str, "targets": str, "options"?: [str], "rationale"?: str}"#;

#[derive(Deserialize)]
struct Record {
    inputs: String,
    targets: String,
    #[serde(default)]
    options: Option<Vec<String>>,
    #[serde(default)]
    rationale: Option<String>,
}

/// Reads generic JSONL. When options are given, the target must be one of them (otherwise no
/// lettered rendering could name the right answer).
pub fn read_jsonl(path: &Path, task: &str, strictness: Strictness) -> Result<Loaded> {
    let bytes = read_bytes(path)?;
    let mut loaded = Loaded::default();
    for (line, text) in utf8_lines(path, &bytes, EXPECTED)? {
        let parsed = text.and_then(|text| {
            if text.trim().is_empty() {
                return Err(Error::parse(
                    path,
                    line,
                    format!("blank line; expected {EXPECTED}"),
                ));
            }
            let mut de = serde_json::Deserializer::from_str(text);
            let mut unknown = Vec::new();
            let r: Record =
                serde_ignored::deserialize(&mut de, |field| unknown.push(field.to_string()))
                    .and_then(|r| de.end().map(|()| r))
                    .map_err(|e| Error::parse(path, line, format!("{e}; expected {EXPECTED}")))?;
            for field in unknown {
                *loaded.ignored.entry(field).or_default() += 1;
            }
            if let Some(options) = &r.options {
                if !options.is_empty() && !options.contains(&r.targets) {
                    return Err(Error::parse(
                        path,
                        line,
                        format!(
                            "the target {:?} is not one of the options {options:?}",
                            r.targets
                        ),
                    ));
                }
            }
            Ok(Example {
                task: task.to_string(),
                inputs: r.inputs,
                targets: r.targets,
                options: r.options.filter(|o| !o.is_empty()),
                rationale: r.rationale,
                provenance: Provenance {
                    file: path.to_path_buf(),
                    line,
                },
            })
        });
        match parsed {
            Ok(ex) => loaded.examples.push(ex),
            Err(err) => loaded.skipped.handle(strictness, err)?,
        }
    }
    Ok(loaded)
}
