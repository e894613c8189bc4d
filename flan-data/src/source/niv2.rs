//! Super-NaturalInstructions task files (`tasks/taskNNN_name.json`) and the official split lists
//! (`splits/default/{train,test}_tasks.txt`).
//!
//! A task file holds a `Definition` (a list of strings), `Positive Examples` and `Negative
//! Examples` (input, output, explanation) and `Instances` (id, input, a list of acceptable
//! outputs). Each instance becomes one [`Example`] whose target is its first output; the
//! definition and demonstrations stay with the task, where the templates use them.

use super::{read_utf8, utf8_lines, Loaded, Strictness};
use crate::error::{Error, Result};
use crate::example::{Example, Provenance};
use serde::Deserialize;
use std::path::Path;

const EXPECTED: &str = "a Super-NaturalInstructions task object with `Definition`, \
                        `Positive Examples` and `Instances` ({id, input, output: [str]})";

/// A demonstration of a task: an input, its output and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Niv2Demo {
    /// The input.
    pub input: String,
    /// The output.
    pub output: String,
    /// Why the output is (or is not) right.
    #[serde(default)]
    pub explanation: String,
}

#[derive(Deserialize)]
struct Instance {
    #[allow(dead_code)]
    id: String,
    input: String,
    output: Vec<String>,
}

#[derive(Deserialize)]
struct TaskFile {
    #[serde(rename = "Definition")]
    definition: Vec<String>,
    #[serde(rename = "Positive Examples")]
    positive: Vec<Niv2Demo>,
    #[serde(rename = "Negative Examples", default)]
    negative: Vec<Niv2Demo>,
    #[serde(rename = "Categories", default)]
    categories: Vec<String>,
    #[serde(rename = "Instances")]
    instances: Vec<serde_json::Value>,
}

/// One NIv2 task: its instruction, demonstrations and instances.
#[derive(Debug, Clone)]
pub struct Niv2Task {
    /// The task name (file stem, e.g. `task1149_item_check_edible`).
    pub name: String,
    /// The definition, its parts joined by blank lines.
    pub definition: String,
    /// Positive demonstrations (used as few-shot exemplars).
    pub positive: Vec<Niv2Demo>,
    /// Negative demonstrations.
    pub negative: Vec<Niv2Demo>,
    /// The task categories.
    pub categories: Vec<String>,
    /// The instances as examples.
    pub loaded: Loaded,
}

/// Reads a task file. Instances are checked one by one so that, in lenient mode, a bad instance
/// is skipped (and counted) rather than failing the task; the error line is where the bad
/// instance ends in the file.
pub fn read_niv2_task(path: &Path, strictness: Strictness) -> Result<Niv2Task> {
    let text = replace_non_json_numbers(&read_utf8(path, EXPECTED)?);
    let file: TaskFile = serde_json::from_str(&text)
        .map_err(|e| Error::parse(path, e.line().max(1), format!("{e}; expected {EXPECTED}")))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let definition = file.definition.join("\n\n").trim().to_string();
    if definition.is_empty() {
        let line = line_of(&text, "\"Definition\"");
        return Err(Error::parse(
            path,
            line,
            "the `Definition` is empty; expected the task instruction",
        ));
    }
    // Line numbers of instances: each instance object starts with its `"id"` key in the official
    // files; we locate them in order to point errors at the right line.
    let instance_lines = instance_start_lines(&text, file.instances.len());
    let mut loaded = Loaded::default();
    for (i, value) in file.instances.into_iter().enumerate() {
        let line = instance_lines.get(i).copied().unwrap_or(1);
        let parsed = serde_json::from_value::<Instance>(value)
            .map_err(|e| {
                Error::parse(
                    path,
                    line,
                    format!("instance {i}: {e}; expected {EXPECTED}"),
                )
            })
            .and_then(|inst| {
                let target = inst.output.into_iter().next().ok_or_else(|| {
                    Error::parse(
                        path,
                        line,
                        format!("instance {i} has no output; expected at least one"),
                    )
                })?;
                Ok(Example {
                    task: name.clone(),
                    inputs: inst.input,
                    targets: target,
                    options: None,
                    rationale: None,
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
    Ok(Niv2Task {
        name,
        definition,
        positive: file.positive,
        negative: file.negative,
        categories: file.categories,
        loaded,
    })
}

/// Some official task files were written by Python's `json` and hold bare `NaN` (e.g. an unknown
/// `URL`); standard JSON has no such value. Outside strings, `NaN`, `Infinity` and `-Infinity`
/// become `null` — same length class of change, and line numbers are kept.
fn replace_non_json_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        // Bytes, not `&text[i..]`: outside a string `i` may sit inside a multi-byte character
        // of malformed JSON (found by fuzzing; a panic on `\u{e9}NaN` outside quotes). The
        // tokens are ASCII, so a match starts and ends on character boundaries.
        let rest = &bytes[i..];
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t.as_bytes()));
        if let Some(token) = token {
            out.push_str(&text[copied..i]);
            out.push_str("null");
            i += token.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map(|at| 1 + text[..at].matches('\n').count())
        .unwrap_or(1)
}

/// 1-based lines where the `"Instances"` array's objects start, found by scanning JSON structure
/// (strings and nesting) after the `"Instances"` key.
fn instance_start_lines(text: &str, expected: usize) -> Vec<usize> {
    let Some(key) = text.find("\"Instances\"") else {
        return Vec::new();
    };
    let mut lines = Vec::with_capacity(expected);
    let mut line = 1 + text[..key].matches('\n').count();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text[key + "\"Instances\"".len()..].bytes() {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                if b == b'{' && depth == 1 {
                    lines.push(line);
                }
                depth += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    lines
}

/// Reads a split list: one task name per line, blank lines and `#` comments ignored.
pub fn read_niv2_split(path: &Path) -> Result<Vec<String>> {
    let bytes = super::read_bytes(path)?;
    let mut names = Vec::new();
    for (line, text) in utf8_lines(path, &bytes, "one task name per line")? {
        let text = text?.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if text.contains(char::is_whitespace) {
            return Err(Error::parse(
                path,
                line,
                format!("{text:?} is not a task name; expected one name per line"),
            ));
        }
        names.push(text.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a multi-byte character outside a string before a token sliced `text`
    /// inside the character and panicked.
    #[test]
    fn non_json_numbers_after_a_multibyte_character_outside_strings() {
        assert_eq!(
            replace_non_json_numbers("{\"a\": \u{e9}NaN, \"b\": \"NaN\"}"),
            "{\"a\": \u{e9}null, \"b\": \"NaN\"}"
        );
        assert_eq!(
            replace_non_json_numbers("\u{20ac}-Infinity"),
            "\u{20ac}null"
        );
        assert_eq!(replace_non_json_numbers("\u{20ac}"), "\u{20ac}");
    }
}
