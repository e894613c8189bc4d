//! Writes Flan-collection shards in the collection's three encodings, for the tests, the fuzz
//! target and the benchmark (included with `#[path]`).
#![allow(dead_code)]

use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// One row: inputs, targets, task_source, task_name, template_type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub inputs: String,
    pub targets: String,
    pub source: String,
    pub task: String,
    pub template_type: String,
}

impl Row {
    pub fn new(i: usize, source: &str, task: &str, template_type: &str) -> Row {
        Row {
            inputs: format!(
                "{task} question {i}: what is {i} plus \"{}\"?\nanswer briefly",
                i % 7
            ),
            targets: format!("answer {i} of {task}"),
            source: source.into(),
            task: task.into(),
            template_type: template_type.into(),
        }
    }

    /// The JSON line, with or without the `_` prefixes (the prefixed copies add `_template_idx`).
    pub fn json(&self, prefixed: bool) -> String {
        let p = if prefixed { "_" } else { "" };
        let mut v = serde_json::json!({
            "inputs": self.inputs,
            "targets": self.targets,
            format!("{p}task_source"): self.source,
            format!("{p}task_name"): self.task,
            format!("{p}template_type"): self.template_type,
        });
        if prefixed {
            v["_template_idx"] = 3.into();
        }
        v.to_string()
    }
}

pub fn write_jsonl(path: &Path, rows: &[Row], prefixed: bool) {
    let mut text = String::new();
    for r in rows {
        text.push_str(&r.json(prefixed));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

pub fn write_jsonl_gz(path: &Path, rows: &[Row], prefixed: bool) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for r in rows {
        gz.write_all(r.json(prefixed).as_bytes()).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    gz.finish().unwrap().flush().unwrap();
}

/// A Parquet file of string columns, as pyarrow writes the collection (snappy, row groups of
/// `group` rows).
pub fn write_parquet(path: &Path, rows: &[Row], prefixed: bool, group: usize) {
    let p = if prefixed { "_" } else { "" };
    let schema = format!(
        "message schema {{ REQUIRED BYTE_ARRAY inputs (UTF8); REQUIRED BYTE_ARRAY targets (UTF8); \
         OPTIONAL BYTE_ARRAY {p}task_source (UTF8); OPTIONAL BYTE_ARRAY {p}task_name (UTF8); \
         OPTIONAL BYTE_ARRAY {p}template_type (UTF8); }}"
    );
    let columns: [fn(&Row) -> &str; 5] = [
        |r| &r.inputs,
        |r| &r.targets,
        |r| &r.source,
        |r| &r.task,
        |r| &r.template_type,
    ];
    write_parquet_columns(path, &schema, rows, &columns, group);
}

/// A Parquet file with a given schema whose columns are all strings taken by `columns`.
pub fn write_parquet_columns(
    path: &Path,
    schema: &str,
    rows: &[Row],
    columns: &[fn(&Row) -> &str],
    group: usize,
) {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    for chunk in rows.chunks(group.max(1)) {
        let mut rg = writer.next_row_group().unwrap();
        let mut k = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            let values: Vec<ByteArray> = chunk.iter().map(|r| columns[k](r).into()).collect();
            let optional = col
                .typed::<ByteArrayType>()
                .get_descriptor()
                .max_def_level()
                > 0;
            let defs = vec![1i16; values.len()];
            col.typed::<ByteArrayType>()
                .write_batch(&values, optional.then_some(&defs[..]), None)
                .unwrap();
            col.close().unwrap();
            k += 1;
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
}
