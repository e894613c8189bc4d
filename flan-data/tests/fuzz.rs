//! Fuzz targets of flan-data's readers (see the `flan-fuzz` crate): the task sources (Flan CoT
//! TSV, generic JSONL, GSM8K, Super-NaturalInstructions tasks and split lists), the JSONL records
//! of `flan generate` / `score`, the mixture spec (parsed, then built into a mixture over small
//! files and streamed) with template files, and the tokenizer (its JSON, and any text or ids).
//! No input may panic; an error about a file must name it.
//!
//! `FLAN_FUZZ_CASES=2000 cargo test -p flan-data --test fuzz -- --nocapture` runs more inputs.

use flan_data::records::read_jsonl_records;
use flan_data::source::{
    read_cot_tsv, read_gsm8k_jsonl, read_jsonl, read_niv2_split, read_niv2_task,
};
use flan_data::{Error, Mixture, MixtureSpec, Strictness, TemplateLibrary, Tokenizer};
use flan_fuzz::{documents, fuzz, head, names_file, shared_data, Scratch};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A reader's answer: any `Ok`, or an error that names the file. Both strictness modes.
fn check<T>(file: &Path, result: Result<T, Error>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => names_file(&flan_data::error::chain(&e), file),
    }
}

fn both_modes<T>(file: &Path, read: impl Fn(Strictness) -> Result<T, Error>) -> Result<(), String> {
    check(file, read(Strictness::Strict))?;
    check(file, read(Strictness::Lenient))
}

fn cot_seeds() -> Vec<Vec<u8>> {
    ["aqua_train.tsv", "gsm8k_train.tsv", "strategyqa_train.tsv"]
        .iter()
        .map(|f| head(&shared_data().join("flan-cot").join(f), 6))
        .collect()
}

#[test]
fn cot_tsv() {
    let scratch = Scratch::new();
    fuzz("flan-data cot_tsv", documents(cot_seeds()), |bytes| {
        let path = scratch.file("cot.tsv", &bytes);
        both_modes(&path, |s| read_cot_tsv(&path, "t", s))
    });
}

#[test]
fn jsonl() {
    let scratch = Scratch::new();
    let seeds = vec![
        b"{\"inputs\": \"2+2?\", \"targets\": \"4\"}\n{\"inputs\": \"Pick\", \"targets\": \"b\", \
          \"options\": [\"a\", \"b\"], \"rationale\": \"because\"}\n"
            .to_vec(),
        b"\xEF\xBB\xBF{\"inputs\": \"x\", \"targets\": \"y\", \"options\": []}\r\n".to_vec(),
    ];
    fuzz("flan-data jsonl", documents(seeds), |bytes| {
        let path = scratch.file("in.jsonl", &bytes);
        both_modes(&path, |s| read_jsonl(&path, "t", s))
    });
}

#[test]
fn gsm8k() {
    let scratch = Scratch::new();
    let seeds = vec![
        head(&shared_data().join("gsm8k/test.jsonl"), 3),
        head(&shared_data().join("gsm8k/train.jsonl"), 2),
    ];
    fuzz("flan-data gsm8k", documents(seeds), |bytes| {
        let path = scratch.file("gsm8k.jsonl", &bytes);
        both_modes(&path, |s| read_gsm8k_jsonl(&path, "t", true, s))
    });
}

#[test]
fn niv2_task() {
    let scratch = Scratch::new();
    let seeds = vec![
        std::fs::read(shared_data().join("niv2/tasks/task1191_food_veg_nonveg.json")).unwrap(),
        br#"{"Definition": ["Answer."], "Positive Examples": [{"input": "a", "output": "b"}],
            "Instances": [{"id": "1", "input": "q", "output": ["r"]}], "URL": NaN}"#
            .to_vec(),
    ];
    fuzz("flan-data niv2_task", documents(seeds), |bytes| {
        let path = scratch.file("task1_fuzz.json", &bytes);
        both_modes(&path, |s| read_niv2_task(&path, s))
    });
}

#[test]
fn niv2_split() {
    let scratch = Scratch::new();
    let seeds = vec![head(
        &shared_data().join("niv2/splits/default/train_tasks.txt"),
        8,
    )];
    fuzz("flan-data niv2_split", documents(seeds), |bytes| {
        let path = scratch.file("split.txt", &bytes);
        check(&path, read_niv2_split(&path))
    });
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ScoreLine {
    inputs: String,
    targets: String,
}

#[test]
fn records() {
    let scratch = Scratch::new();
    let seeds = vec![
        b"{\"inputs\": \"a\", \"targets\": \"b\", \"id\": 7}\n{\"inputs\": \"c\", \"targets\": \
          \"d\", \"meta\": {\"k\": [1, 2]}}\n"
            .to_vec(),
        b"\xEF\xBB\xBF{\"id\": \"q1\", \"inputs\": \"\", \"targets\": \"x\"}\r\n".to_vec(),
    ];
    fuzz("flan-data records", documents(seeds), |bytes| {
        let path = scratch.file("records.jsonl", &bytes);
        let read = read_jsonl_records::<ScoreLine>(&path, r#"{"inputs", "targets"}"#);
        if let Ok(r) = &read {
            // One record per line, numbered from 1 in order.
            for (i, rec) in r.records.iter().enumerate() {
                if rec.line != i + 1 {
                    return Err(format!("record {i} has line {}", rec.line));
                }
            }
        }
        check(&path, read)
    });
}

/// A data directory with one small file of each format, for specs to point at.
fn spec_data(scratch: &Scratch) -> PathBuf {
    let dir = scratch.dir().join("data");
    std::fs::create_dir_all(dir.join("niv2")).unwrap();
    std::fs::write(
        dir.join("a.tsv"),
        head(&shared_data().join("flan-cot/aqua_train.tsv"), 6),
    )
    .unwrap();
    std::fs::write(
        dir.join("g.jsonl"),
        head(&shared_data().join("gsm8k/test.jsonl"), 4),
    )
    .unwrap();
    std::fs::write(
        dir.join("x.jsonl"),
        "{\"inputs\": \"Is it wet?\", \"targets\": \"yes\", \"options\": [\"yes\", \"no\"]}\n\
         {\"inputs\": \"Name a colour\", \"targets\": \"red\"}\n",
    )
    .unwrap();
    std::fs::copy(
        shared_data().join("niv2/tasks/task1191_food_veg_nonveg.json"),
        dir.join("niv2/task1191_food_veg_nonveg.json"),
    )
    .unwrap();
    std::fs::write(dir.join("split.txt"), "task1191_food_veg_nonveg\n").unwrap();
    dir
}

const SPEC: &str = r#"seed = 3
data_dir = "data"
input_len = 64
target_len = 16
exclude = ["*mmlu*"]
exclude_niv2_ids = [[664, 667]]

[submixtures.cot]
weight = 0.5
cap = 3
few_shot_ratio = 0.5
inversion_ratio = 0.3

[submixtures.flan]
weight = 0.3
cap = 10
options_ratio = 1.0

[submixtures.niv2]
weight = 0.2
cap = 5

[[tasks]]
name = "aqua"
format = "cot_tsv"
path = "a.tsv"
submixture = "cot"

[[tasks]]
format = "gsm8k"
path = "g.jsonl"
submixture = "cot"
lenient = true

[[tasks]]
name = "colours"
format = "jsonl"
path = "x.jsonl"
submixture = "flan"

[[tasks]]
format = "niv2"
path = "niv2/*.json"
split = "split.txt"
submixture = "niv2"
"#;

#[test]
fn mixture_spec() {
    let scratch = Scratch::new();
    spec_data(&scratch);
    let seeds = vec![
        SPEC.as_bytes().to_vec(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/shared-data.toml"))
            .unwrap(),
    ];
    // The unmutated seed builds and streams, so mutations start from code deep inside.
    let spec = MixtureSpec::from_toml(SPEC, "seed").unwrap();
    let mixture = Arc::new(Mixture::from_spec(&spec, scratch.dir()).unwrap());
    assert_eq!(mixture.stream(0).next_batch(6).unwrap().len(), 6);
    fuzz("flan-data mixture_spec", documents(seeds), |bytes| {
        let path = scratch.file("spec.toml", &bytes);
        let spec = match MixtureSpec::from_file(&path) {
            Ok(spec) => spec,
            Err(e) => return names_file(&flan_data::error::chain(&e), &path),
        };
        // A spec that parses is built (reading the small files) and streamed a little.
        if let Ok(mixture) = Mixture::from_spec(&spec, scratch.dir()) {
            let mixture = Arc::new(mixture);
            let _ = mixture.stream(spec.seed).next_batch(6);
            let _ = mixture.stream(1).shard(1, 3).map(|mut s| s.next_batch(3));
        }
        Ok(())
    });
}

#[test]
fn templates() {
    let scratch = Scratch::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let seeds = vec![
        head(&root.join("default.toml"), 120),
        head(&root.join("synthetic.toml"), 80),
    ];
    fuzz("flan-data templates", documents(seeds), |bytes| {
        let path = scratch.file("templates.toml", &bytes);
        let mut library = TemplateLibrary::builtin().expect("the built-in templates load");
        check(&path, library.extend_from_file(&path))
    });
}

fn fixture_tokenizer() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../flan-model/tests/fixtures/v1_1/tokenizer.json"),
    )
    .unwrap()
}

#[test]
fn tokenizer_json() {
    let seeds = vec![fixture_tokenizer().into_bytes()];
    fuzz("flan-data tokenizer_json", documents(seeds), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        // A damaged tokenizer may refuse to load or to encode (no `unk_id` for an unknown
        // piece); either is an error, and only a panic fails the target.
        if let Ok(tok) = Tokenizer::from_json(&text) {
            if let Ok(ids) = tok.encode("Q: what is 2 + 2?\nA:") {
                let _ = tok.decode(&ids, true);
            }
        }
        Ok(())
    });
}

#[test]
fn tokenizer_text() {
    let tok = Tokenizer::from_json(&fixture_tokenizer()).unwrap();
    let texts = prop_oneof![
        3 => any::<String>(),
        1 => documents(cot_seeds()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => ("[a-z ]{0,20}", 0usize..5000).prop_map(|(s, n)| s.repeat(n)),
    ];
    let input = (
        texts,
        proptest::collection::vec(any::<u32>(), 0..40),
        0usize..64,
    );
    fuzz("flan-data tokenizer_text", input, |(text, ids, max_len)| {
        let encoded = tok.encode(&text).map_err(|e| e.to_string())?;
        // T5's convention: every encoding ends with EOS.
        if encoded.last() != Some(&tok.eos_id()) {
            return Err(format!("{text:?} encoded without a final EOS: {encoded:?}"));
        }
        if let Ok(cut) = tok.encode_truncated(&text, max_len) {
            if max_len > 0 && cut.len() > max_len {
                return Err(format!("cut to {max_len} gave {} ids", cut.len()));
            }
        }
        let _ = tok.count_pieces(&text);
        let _ = tok.decode(&encoded, true);
        // Arbitrary ids, in and out of the vocabulary.
        let _ = tok.decode(&ids, false);
        let _ = tok.decode(&ids, true);
        Ok(())
    });
}

#[path = "common/collection_files.rs"]
mod collection_files;

/// The Flan collection's reader, index and stream over one file in each encoding: any bytes,
/// either strictness.
#[test]
fn flan_collection() {
    use collection_files::{write_jsonl_gz, write_parquet, Row};
    use flan_data::collection::{index::index_file, RowReader};
    let scratch = Scratch::new();
    let rows: Vec<Row> = (0..6)
        .map(|i| Row::new(i, ["CoT", "NIv2", "T0"][i % 3], "task", "fs_noopt"))
        .collect();
    let jsonl: Vec<u8> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, r)| format!("{}\n", r.json(i % 2 == 0)).into_bytes())
        .collect();
    let seed_file = |name: &str, write: &dyn Fn(&Path)| {
        let path = scratch.file(name, b"");
        write(&path);
        std::fs::read(&path).unwrap()
    };
    let gz = seed_file("seed.jsonl.gz", &|p| write_jsonl_gz(p, &rows, true));
    let pq = seed_file("seed.parquet", &|p| write_parquet(p, &rows, false, 4));
    for (name, seed) in [("c.jsonl", jsonl), ("c.jsonl.gz", gz), ("c.parquet", pq)] {
        fuzz(
            &format!("flan-data flan_collection {name}"),
            documents(vec![seed]),
            |bytes| {
                let path = scratch.file(name, &bytes);
                let read = || -> Result<usize, Error> {
                    let mut reader = RowReader::open(&path)?;
                    let mut n = 0;
                    while let Some(row) = reader.next_row()? {
                        n += usize::from(row.is_ok());
                    }
                    index_file(&path, None)?;
                    Ok(n)
                };
                check(&path, read())?;
                let spec = scratch.file(
                "collection.toml",
                format!("[[tasks]]\nformat = \"flan_collection\"\npath = \"{name}\"\nlenient = true\nindex_dir = \"idx\"\n")
                    .as_bytes(),
            );
                let built = Mixture::from_spec_file(&spec).and_then(|m| {
                    let m = Arc::new(m);
                    let mut s = m.stream(1);
                    s.next_batch(8)
                });
                check(&path, built).or_else(|e| {
                    if e.contains("no rows left") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            },
        );
    }
}

#[test]
fn span_corruption_documents() {
    let scratch = Scratch::new();
    let seeds = vec![
        b"{\"text\": \"The cat sat.\", \"id\": 1}\n{\"text\": \"\"}\n".to_vec(),
        b"\xEF\xBB\xBFplain text, one document\r\n\r\nanother one\n".to_vec(),
    ];
    fuzz(
        "flan-data span_corruption documents",
        documents(seeds),
        |bytes| {
            for name in ["docs.jsonl", "docs.txt"] {
                let path = scratch.file(name, &bytes);
                both_modes(&path, |s| {
                    flan_data::span_corruption::read_documents(&path, s)
                })?;
            }
            Ok(())
        },
    );
}
