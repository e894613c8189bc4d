//! The Flan 2022 collection as a task source: shards in all three encodings, with and without
//! the `_` prefixes, read through the mixture.

#[path = "../common/collection_files.rs"]
mod files;

use files::{write_jsonl, write_jsonl_gz, write_parquet, write_parquet_columns, Row};
use flan_data::collection::{index_files, RowReader, TemplateType};
use flan_data::pipeline::export_shards;
use flan_data::{Mixture, MixtureCursor, MixtureSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// (source, task, rows per template type).
const TASKS: [(&str, &str, usize); 7] = [
    ("Flan2021", "anli_r1", 300),
    ("Flan2021", "wsc", 50),
    ("T0", "quoref", 200),
    ("NIv2", "task001_quoref", 100),
    ("NIv2", "task685_mmlu_answer", 20),
    ("CoT", "cot_gsm8k", 40),
    ("Dialog", "wiki_dialog", 30),
];

/// Writes the collection: zs_opt as prefixed JSONL, fs_opt as gzip JSONL, zs_noopt as
/// prefixed Parquet, fs_noopt as plain Parquet; rows of tasks interleaved as in the published
/// shards. Returns the rows by template type.
fn write_collection(dir: &Path) -> BTreeMap<&'static str, Vec<Row>> {
    let mut all = BTreeMap::new();
    for tt in ["zs_opt", "fs_opt", "zs_noopt", "fs_noopt"] {
        let mut rows = Vec::new();
        for i in 0..300 {
            for (source, task, n) in TASKS {
                if i < n {
                    rows.push(Row::new(i, source, task, tt));
                }
            }
        }
        all.insert(tt, rows);
    }
    std::fs::create_dir_all(dir.join("flan")).unwrap();
    write_jsonl(&dir.join("flan/zs_opt.jsonl"), &all["zs_opt"], true);
    write_jsonl_gz(&dir.join("flan/fs_opt.jsonl.gz"), &all["fs_opt"], false);
    write_parquet(
        &dir.join("flan/zs_noopt.parquet"),
        &all["zs_noopt"],
        true,
        97,
    );
    write_parquet(
        &dir.join("flan/fs_noopt.parquet"),
        &all["fs_noopt"],
        false,
        1000,
    );
    all
}

const CAPS: &str = r#"
[submixtures.flan]
weight = 0.40
cap = 400
[submixtures.t0]
weight = 0.32
cap = 300
[submixtures.niv2]
weight = 0.20
cap = 50
[submixtures.cot]
weight = 0.05
cap = 100000
[submixtures.dialog]
weight = 0.03
cap = 200000
"#;

fn mixture(dir: &Path, task: &str) -> Arc<Mixture> {
    let text = format!(
        "seed = 5\n{CAPS}\n[[tasks]]\nformat = \"flan_collection\"\nindex_dir = \"index\"\n{task}"
    );
    std::fs::write(dir.join("spec.toml"), &text).unwrap();
    Arc::new(Mixture::from_spec_file(&dir.join("spec.toml")).unwrap())
}

fn setup() -> (tempfile::TempDir, BTreeMap<&'static str, Vec<Row>>) {
    let dir = tempfile::tempdir().unwrap();
    let rows = write_collection(dir.path());
    (dir, rows)
}

#[test]
fn counts_per_source_after_caps_and_template_filter() {
    let (dir, _) = setup();
    let m = mixture(dir.path(), "path = \"flan\"");
    let parts: BTreeMap<&str, (u64, f64)> = m
        .parts()
        .iter()
        .map(|p| (p.submixture.as_str(), (p.rows, p.rate)))
        .collect();
    // Four template types each: flan 4·350 rows, rates min(400, 1200) + min(400, 200).
    assert_eq!(parts["flan"], (1400, 600.0));
    assert_eq!(parts["t0"], (800, 300.0));
    assert_eq!(parts["niv2"], (480, 50.0 + 50.0));
    assert_eq!(parts["cot"], (160, 160.0));
    assert_eq!(parts["dialog"], (120, 120.0));
    let probability: f64 = m.rates().iter().map(|r| r.probability).sum();
    assert!((probability - 1.0).abs() < 1e-9);
    assert_eq!(m.rates()[0].task, "flan_collection/cot");

    // Only zero-shot with options, and the MMLU-derived NIv2 task held out.
    let text = "path = \"flan/*\"\ntemplate_types = [\"zs_opt\"]";
    std::fs::write(
        dir.path().join("spec.toml"),
        format!("exclude_niv2_ids = [[685, 737]]\n{CAPS}\n[[tasks]]\nformat = \"flan_collection\"\nindex_dir = \"index\"\n{text}"),
    )
    .unwrap();
    let m = Mixture::from_spec_file(&dir.path().join("spec.toml")).unwrap();
    let niv2 = m.parts().iter().find(|p| p.submixture == "niv2").unwrap();
    assert_eq!((niv2.rows, niv2.rate), (100, 50.0));
    assert_eq!(niv2.excluded, ["task685_mmlu_answer"]);
    let flan = m.parts().iter().find(|p| p.submixture == "flan").unwrap();
    assert_eq!((flan.rows, flan.rate), (350, 350.0));
    let stream = Arc::new(m);
    for e in stream.stream(1).next_batch(500).unwrap() {
        assert_eq!(e.template_type, TemplateType::ZsOpt, "{e:?}");
        assert_ne!(e.task, "task685_mmlu_answer");
    }
}

#[test]
fn rates_within_tolerance_over_many_draws_and_rows_as_given() {
    let (dir, rows) = setup();
    let m = mixture(dir.path(), "path = \"flan\"");
    let known: HashSet<(String, String)> = rows
        .values()
        .flatten()
        .map(|r| (r.inputs.clone(), r.targets.clone()))
        .collect();
    let n = 20_000usize;
    let examples = m.stream(9).next_batch(n).unwrap();
    let mut per_sub: HashMap<String, usize> = HashMap::new();
    let mut per_task: HashMap<String, usize> = HashMap::new();
    for e in &examples {
        assert!(
            known.contains(&(e.inputs.clone(), e.targets.clone())),
            "{e:?}"
        );
        *per_sub
            .entry(m.rates()[e.task_index].submixture.clone())
            .or_default() += 1;
        *per_task.entry(e.task.clone()).or_default() += 1;
    }
    let share = |c: usize| c as f64 / n as f64;
    for (sub, w) in [
        ("flan", 0.40),
        ("t0", 0.32),
        ("niv2", 0.20),
        ("cot", 0.05),
        ("dialog", 0.03),
    ] {
        let got = share(per_sub[sub]);
        assert!((got - w).abs() < 0.015, "{sub}: {got} vs {w}");
    }
    // Within flan: anli_r1 rate 400 (1200 rows, thinned), wsc 200 (all rows kept).
    let anli = per_task["anli_r1"] as f64 / per_sub["flan"] as f64;
    assert!((anli - 400.0 / 600.0).abs() < 0.03, "{anli}");
    // Within niv2: both tasks at the cap of 50 rows per epoch.
    let quoref = per_task["task001_quoref"] as f64 / per_sub["niv2"] as f64;
    assert!((quoref - 0.5).abs() < 0.05, "{quoref}");
}

#[test]
fn export_import_round_trip_keeps_provenance() {
    let (dir, _) = setup();
    let m = mixture(dir.path(), "path = \"flan\"");
    let out = dir.path().join("export");
    let paths = export_shards(&m, 3, &out, 600, 1).unwrap();
    let expected = m.stream(3).next_batch(600).unwrap();
    let mut reader = RowReader::open(&paths[0]).unwrap();
    let mut back = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        back.push(row.unwrap());
    }
    assert_eq!(back.len(), expected.len());
    for (r, e) in back.iter().zip(&expected) {
        assert_eq!(
            (
                &r.inputs,
                &r.targets,
                &r.task_source,
                &r.task_name,
                r.template_type
            ),
            (
                &e.inputs,
                &e.targets,
                &e.task_source,
                &e.task,
                e.template_type
            )
        );
    }
    // The export is itself a collection: its counts are the export's.
    let again = mixture(dir.path(), "path = \"export\"");
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for e in &expected {
        *counted
            .entry(m.rates()[e.task_index].submixture.clone())
            .or_default() += 1;
    }
    let parts: BTreeMap<String, u64> = again
        .parts()
        .iter()
        .map(|p| (p.submixture.clone(), p.rows))
        .collect();
    assert_eq!(parts, counted);
    // And generic JSONL reads it too, counting the fields it does not use.
    std::fs::write(
        dir.path().join("generic.toml"),
        "[[tasks]]\nformat = \"jsonl\"\npath = \"export/*.jsonl\"\nsubmixture = \"flan\"\n",
    )
    .unwrap();
    let generic = Arc::new(Mixture::from_spec_file(&dir.path().join("generic.toml")).unwrap());
    let task = &generic.registry().tasks()[0];
    assert_eq!(task.examples.len(), 600);
    assert_eq!(task.ignored.get("task_source"), Some(&600));
    let stats = flan_data::pipeline::mixture_stats(&generic, 1, 10, 2, None, 2).unwrap();
    assert_eq!(stats.tasks[0].ignored_fields["template_type"], 600);
}

#[test]
fn rank_shards_are_disjoint_and_make_the_stream() {
    let (dir, _) = setup();
    let m = mixture(dir.path(), "path = \"flan\"");
    let whole = m.stream(11).next_batch(400).unwrap();
    let a = m.stream(11).shard(0, 2).unwrap().next_batch(200).unwrap();
    let b = m.stream(11).shard(1, 2).unwrap().next_batch(200).unwrap();
    let pa: HashSet<u64> = a.iter().map(|e| e.position).collect();
    assert!(b.iter().all(|e| !pa.contains(&e.position)));
    let mut merged: Vec<_> = a.into_iter().chain(b).collect();
    merged.sort_by_key(|e| e.position);
    assert_eq!(merged, whole);
}

#[test]
fn resume_from_a_cursor_continues_the_stream() {
    let (dir, _) = setup();
    let m = mixture(dir.path(), "path = \"flan\"");
    let mut s = m.stream(4);
    s.next_batch(1_337).unwrap();
    let cursor = s.cursor();
    assert!(!cursor.collection.is_empty());
    assert!(cursor.collection[0].files.iter().any(|f| f.row > 0));
    let json = serde_json::to_string(&cursor).unwrap();
    let back: MixtureCursor = serde_json::from_str(&json).unwrap();
    let continued = s.next_batch(700).unwrap();
    assert_eq!(m.resume(back).unwrap().next_batch(700).unwrap(), continued);

    // A rank's cursor taken by counting draws (as the trainer does) resumes that rank.
    let mut rank = m.stream(4).shard(1, 3).unwrap();
    let first = rank.next_batch(50).unwrap();
    let mut replay = m.stream(4);
    replay.advance_to(first[30].position);
    let resumed = m.resume(replay.cursor()).unwrap().shard(1, 3).unwrap();
    assert_eq!(
        resumed.take(20).collect::<Result<Vec<_>, _>>().unwrap(),
        first[30..50]
    );
}

#[test]
fn index_is_cached_and_rebuilt_when_a_file_changes() {
    let (dir, rows) = setup();
    let files: Vec<_> = [
        "flan/fs_noopt.parquet",
        "flan/zs_opt.jsonl",
        "flan/fs_opt.jsonl.gz",
    ]
    .iter()
    .map(|f| dir.path().join(f))
    .collect();
    let cache = dir.path().join("cache");
    let first = index_files(&files, Some(&cache)).unwrap();
    assert_eq!(first.cached, 0);
    let total: u64 = first.files.iter().map(|f| f.rows).sum();
    assert_eq!(total as usize, 3 * rows["zs_opt"].len());
    let second = index_files(&files, Some(&cache)).unwrap();
    assert_eq!((second.cached, &second.files), (3, &first.files));
    write_jsonl(&files[1], &rows["zs_opt"][..10], false);
    let third = index_files(&files, Some(&cache)).unwrap();
    assert_eq!(third.cached, 2);
    assert_eq!(third.files[1].rows, 10);
}

#[test]
fn a_bad_row_names_file_row_and_field_or_is_skipped_when_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<Row> = (0..5)
        .map(|i| Row::new(i, "CoT", "cot_x", "zs_opt"))
        .collect();
    let mut lines: Vec<String> = good.iter().map(|r| r.json(false)).collect();
    lines[2] = lines[2].replace("\"task_name\":\"cot_x\"", "\"task_name\":7");
    std::fs::create_dir(dir.path().join("c")).unwrap();
    std::fs::write(dir.path().join("c/bad.jsonl"), lines.join("\n")).unwrap();
    let spec = |lenient: bool| {
        format!("[[tasks]]\nformat = \"flan_collection\"\npath = \"c\"\nindex_dir = \"i{lenient}\"\nlenient = {lenient}\n")
    };
    let err = MixtureSpec::from_toml(&spec(false), "s")
        .and_then(|s| Mixture::from_spec(&s, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.jsonl:3:") && err.contains("field `task_name` is a number"),
        "{err}"
    );
    let m = Mixture::from_spec(
        &MixtureSpec::from_toml(&spec(true), "s").unwrap(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(m.parts()[0].rows, 4);
    assert_eq!(m.parts()[0].skipped.count, 1);
    let stats = flan_data::pipeline::mixture_stats(&Arc::new(m), 1, 10, 2, None, 2).unwrap();
    assert_eq!(stats.tasks[0].skipped, 1);

    // An unknown task source is an error naming it.
    std::fs::write(
        dir.path().join("c/bad.jsonl"),
        Row::new(0, "Mystery", "t", "zs_opt").json(true),
    )
    .unwrap();
    let err = Mixture::from_spec(
        &MixtureSpec::from_toml(&spec(false), "s").unwrap(),
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("\"Mystery\""), "{err}");
}

#[test]
fn a_parquet_file_with_the_wrong_schema_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..4).map(|i| Row::new(i, "T0", "t", "zs_opt")).collect();
    let missing = dir.path().join("missing.parquet");
    write_parquet_columns(
        &missing,
        "message m { REQUIRED BYTE_ARRAY inputs (UTF8); REQUIRED BYTE_ARRAY targets (UTF8); REQUIRED BYTE_ARRAY task_source (UTF8); REQUIRED BYTE_ARRAY template_type (UTF8); }",
        &rows,
        &[|r| &r.inputs, |r| &r.targets, |r| &r.source, |r| &r.template_type],
        10,
    );
    let err = RowReader::open(&missing).err().unwrap().to_string();
    assert!(
        err.contains("missing.parquet")
            && err.contains("column `task_name` (or `_task_name`) is missing"),
        "{err}"
    );

    let mistyped = dir.path().join("mistyped.parquet");
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message m { REQUIRED BYTE_ARRAY inputs (UTF8); REQUIRED INT64 targets; REQUIRED BYTE_ARRAY task_source (UTF8); REQUIRED BYTE_ARRAY task_name (UTF8); REQUIRED BYTE_ARRAY template_type (UTF8); }",
        )
        .unwrap(),
    );
    let props = Arc::new(parquet::file::properties::WriterProperties::builder().build());
    let mut w = parquet::file::writer::SerializedFileWriter::new(
        std::fs::File::create(&mistyped).unwrap(),
        schema,
        props,
    )
    .unwrap();
    let mut rg = w.next_row_group().unwrap();
    while let Some(mut col) = rg.next_column().unwrap() {
        use parquet::column::writer::ColumnWriter;
        match col.untyped() {
            ColumnWriter::Int64ColumnWriter(c) => {
                c.write_batch(&[1], None, None).unwrap();
            }
            ColumnWriter::ByteArrayColumnWriter(c) => {
                c.write_batch(&["x".into()], None, None).unwrap();
            }
            _ => unreachable!(),
        }
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
    let err = RowReader::open(&mistyped).err().unwrap().to_string();
    assert!(
        err.contains("column `targets` is INT64, expected a string"),
        "{err}"
    );
}
