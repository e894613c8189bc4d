//! One row of the collection, parsed from a JSON line or taken from Parquet columns, with errors
//! that name the field at fault.

use super::TemplateType;
use serde::Deserialize;
use std::borrow::Cow;

/// The fields of a row, as the collection names them (the `_` spellings are aliases).
pub(crate) const FIELDS: [&str; 5] = [
    "inputs",
    "targets",
    "task_source",
    "task_name",
    "template_type",
];

/// What a valid row looks like, for error messages.
pub(crate) const EXPECTED: &str = r#"a JSON object {"inputs": str, "targets": str, "task_source": str, "task_name": str, "template_type": "zs_opt"|"zs_noopt"|"fs_opt"|"fs_noopt"} (the last three may be spelled with a leading `_`)"#;

/// One example of the collection, used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRow {
    /// The templated model input.
    pub inputs: String,
    /// The target.
    pub targets: String,
    /// `Flan2021`, `T0`, `NIv2`, `CoT` or `Dialog`.
    pub task_source: String,
    /// The task it was made from.
    pub task_name: String,
    /// How it was templated.
    pub template_type: TemplateType,
}

/// The fields that decide whether a row is kept, borrowed from the line when they have no
/// escapes: reading the key alone is what skipping rows costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey<'a> {
    /// `task_source`.
    pub task_source: Cow<'a, str>,
    /// `task_name`.
    pub task_name: Cow<'a, str>,
    /// `template_type`.
    pub template_type: TemplateType,
}

#[derive(Deserialize)]
struct JsonRow<'a> {
    #[serde(borrow)]
    inputs: Cow<'a, str>,
    #[serde(borrow)]
    targets: Cow<'a, str>,
    #[serde(borrow, alias = "_task_source")]
    task_source: Cow<'a, str>,
    #[serde(borrow, alias = "_task_name")]
    task_name: Cow<'a, str>,
    #[serde(borrow, alias = "_template_type")]
    template_type: Cow<'a, str>,
}

/// Parses a template type, naming the field and the values it may take.
pub(crate) fn template_type(text: &str) -> Result<TemplateType, String> {
    TemplateType::parse(text).ok_or_else(|| {
        format!("field `template_type`: {text:?} is not one of zs_opt, zs_noopt, fs_opt, fs_noopt")
    })
}

/// Parses a JSON line into a row; the error names the field at fault.
pub(crate) fn parse_json_row(line: &[u8]) -> Result<CollectionRow, String> {
    match serde_json::from_slice::<JsonRow>(line) {
        Ok(r) => Ok(CollectionRow {
            template_type: template_type(&r.template_type)?,
            inputs: r.inputs.into_owned(),
            targets: r.targets.into_owned(),
            task_source: r.task_source.into_owned(),
            task_name: r.task_name.into_owned(),
        }),
        Err(e) => Err(explain(line, e)),
    }
}

/// Parses the key fields of a JSON line. The texts are checked to be strings (borrowed unless
/// they have escapes, never copied), so that a row the index counts is a row the stream can read.
pub(crate) fn parse_json_key(line: &[u8]) -> Result<RowKey<'_>, String> {
    match serde_json::from_slice::<JsonRow>(line) {
        Ok(k) => Ok(RowKey {
            template_type: template_type(&k.template_type)?,
            task_source: k.task_source,
            task_name: k.task_name,
        }),
        Err(e) => Err(explain(line, e)),
    }
}

/// serde's message for a mistyped field does not say which field: find it by looking at the
/// line as a JSON object.
fn explain(line: &[u8], err: serde_json::Error) -> String {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(line)
    else {
        return format!("{err}; expected {EXPECTED}");
    };
    for field in FIELDS {
        let value = object
            .get(field)
            .or_else(|| object.get(&format!("_{field}")));
        match value {
            None => return format!("field `{field}` is missing; expected {EXPECTED}"),
            Some(serde_json::Value::String(_)) => {}
            Some(other) => {
                return format!("field `{field}` is {}, expected a string", json_type(other))
            }
        }
    }
    format!("{err}; expected {EXPECTED}")
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_and_field_errors() {
        let plain = br#"{"inputs": "q", "targets": "a", "task_source": "CoT", "task_name": "cot_gsm8k", "template_type": "fs_opt", "extra": 1}"#;
        let prefixed = br#"{"inputs": "q", "targets": "a", "_task_source": "CoT", "_task_name": "cot_gsm8k", "_template_type": "fs_opt", "_template_idx": 3}"#;
        let a = parse_json_row(plain).unwrap();
        assert_eq!(a, parse_json_row(prefixed).unwrap());
        assert_eq!(a.template_type, TemplateType::FsOpt);
        let k = parse_json_key(prefixed).unwrap();
        assert_eq!(
            (k.task_name.as_ref(), k.task_source.as_ref()),
            ("cot_gsm8k", "CoT")
        );
        for (line, want) in [
            (&br#"{"inputs": "q", "task_source": "CoT", "task_name": "t", "template_type": "zs_opt"}"#[..], "field `targets` is missing"),
            (br#"{"inputs": "q", "targets": 5, "task_source": "CoT", "task_name": "t", "template_type": "zs_opt"}"#, "field `targets` is a number"),
            (br#"{"inputs": "q", "targets": "a", "task_source": "CoT", "task_name": null, "template_type": "zs_opt"}"#, "field `task_name` is null"),
            (br#"{"inputs": "q", "targets": "a", "task_source": "CoT", "task_name": "t", "template_type": "zs"}"#, "field `template_type`: \"zs\""),
            (b"[1]", "expected a JSON object"),
            (b"{\"inputs\": ", "EOF"),
        ] {
            let err = parse_json_row(line).unwrap_err();
            assert!(err.contains(want), "{err}");
            assert!(parse_json_key(line).unwrap_err().contains(want));
        }
    }
}
