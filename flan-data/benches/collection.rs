//! Throughput and memory of the Flan collection path: index, read + mix + tokenize + pack a
//! generated collection (JSONL.gz and Parquet; sizes 200k and 1M examples) with a 32k-piece
//! Unigram tokenizer, on 2 threads. Each configuration runs in its own process so that its peak
//! RSS (VmHWM) is its own; the table shows whether memory grows with the collection.
//!
//! `cargo bench -p flan-data --bench collection` (the generated files and the tokenizer are kept
//! in `$TMPDIR/flan-collection-bench` between runs). Not a test: nothing is asserted.

#[path = "../tests/common/collection_files.rs"]
mod collection_files;

use collection_files::{write_jsonl_gz, write_parquet, Row};
use flan_data::pipeline::tokenize_example;
use flan_data::{Mixture, MixtureSpec, Packer, Tokenizer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const SIZES: [usize; 2] = [200_000, 1_000_000];
const CHUNK: usize = 4096;
const SOURCES: [(&str, usize); 5] = [
    ("Flan2021", 60),
    ("T0", 40),
    ("NIv2", 300),
    ("CoT", 9),
    ("Dialog", 2),
];
const TYPES: [&str; 4] = ["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"];

fn root() -> PathBuf {
    std::env::temp_dir().join("flan-collection-bench")
}

/// Real text to template: the shared Flan CoT questions and rationales.
fn texts() -> Vec<(String, String)> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/flan-cot");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&data).expect("the shared Flan CoT data") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tsv") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let f: Vec<&str> = line.split('\t').collect();
                if f.len() == 3 {
                    out.push((
                        f[0].replace("\\n", "\n"),
                        format!("{} So the answer is {}.", f[2], f[1]),
                    ));
                }
            }
        }
    }
    out
}

/// `n` rows over 411 tasks in 5 sources, 4 template types, one file per (source, type) as the
/// published collection is sharded.
fn generate(n: usize, texts: &[(String, String)]) -> PathBuf {
    let dir = root().join(n.to_string());
    if dir.join("done").exists() {
        return dir;
    }
    let tasks: Vec<(&str, String)> = SOURCES
        .iter()
        .flat_map(|&(s, k)| (0..k).map(move |i| (s, format!("{}_task{i:03}", s.to_lowercase()))))
        .collect();
    for enc in ["gz", "parquet"] {
        std::fs::create_dir_all(dir.join(enc)).unwrap();
    }
    let per_file = n / (SOURCES.len() * TYPES.len());
    for (si, &(source, _)) in SOURCES.iter().enumerate() {
        let mine: Vec<&String> = tasks
            .iter()
            .filter(|t| t.0 == source)
            .map(|t| &t.1)
            .collect();
        for (ti, tt) in TYPES.iter().enumerate() {
            let rows: Vec<Row> = (0..per_file)
                .map(|i| {
                    let (q, a) = &texts[(i * 31 + si * 7 + ti) % texts.len()];
                    // Zipf-like task sizes, so that caps bite on the large tasks.
                    let task = mine[(i * i / 7 + i) % mine.len()];
                    Row {
                        inputs: if tt.starts_with("fs") {
                            format!("{q}\n\n{a}\n\n\n{q}")
                        } else {
                            q.clone()
                        },
                        targets: a.clone(),
                        source: source.into(),
                        task: task.clone(),
                        template_type: tt.to_string(),
                    }
                })
                .collect();
            let stem = format!("{}_{tt}", source.to_lowercase());
            write_jsonl_gz(&dir.join(format!("gz/{stem}.jsonl.gz")), &rows, si % 2 == 0);
            write_parquet(
                &dir.join(format!("parquet/{stem}.parquet")),
                &rows,
                si % 2 == 1,
                10_000,
            );
        }
    }
    std::fs::write(dir.join("done"), "").unwrap();
    dir
}

fn tokenizer(texts: &[(String, String)]) -> Tokenizer {
    std::fs::create_dir_all(root()).unwrap();
    let cache = root().join("unigram32k.json");
    if let Ok(tok) = Tokenizer::from_file(&cache) {
        return tok;
    }
    let corpus = texts.iter().flat_map(|(q, a)| [q.clone(), a.clone()]);
    let tok = Tokenizer::train_unigram(corpus, 32_000, 100).expect("training the tokenizer");
    tok.save(&cache).expect("caching the tokenizer");
    tok
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One configuration, in this process.
fn run(enc: &str, n: usize) {
    let dir = root().join(n.to_string());
    let index = dir.join(format!("index-{enc}"));
    let _ = std::fs::remove_dir_all(&index);
    let spec = MixtureSpec::from_toml(
        &format!(
            "input_len = 512\ntarget_len = 256\n[[tasks]]\nformat = \"flan_collection\"\npath = \"{}\"\nindex_dir = \"{}\"\n",
            dir.join(enc).display(),
            index.display()
        ),
        "bench",
    )
    .unwrap();
    let t = Instant::now();
    let mixture = Arc::new(Mixture::from_spec(&spec, Path::new("/")).unwrap());
    let index_s = t.elapsed().as_secs_f64();
    let tok = Tokenizer::from_file(root().join("unigram32k.json")).unwrap();
    let mut stream = mixture.stream(0);
    let mut packer = Packer::new(64, 512, 256).unwrap();
    let t = Instant::now();
    let (mut done, mut batches) = (0usize, 0usize);
    while done < n {
        let chunk = stream
            .next_batch_with(CHUNK.min(n - done), |e| {
                tokenize_example(&tok, &e, 512, 256)
            })
            .unwrap();
        done += chunk.len();
        for ex in &chunk {
            batches += usize::from(packer.push(ex).is_some());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{enc:<8} {n:>9} {:>12.0} {:>10.1} {:>10.2} {:>8}",
        n as f64 / secs,
        peak_rss_mb(),
        index_s * 1e6 / n as f64,
        batches
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "run") {
        run(&args[at + 1], args[at + 2].parse().unwrap());
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` runs benches as tests: nothing to check here.
    }
    let texts = texts();
    let tok = tokenizer(&texts);
    println!(
        "tokenizer: {} ids; texts: {}",
        tok.vocab_size(),
        texts.len()
    );
    for n in SIZES {
        let t = Instant::now();
        generate(n, &texts);
        eprintln!("generated {n} rows in {:.0} s", t.elapsed().as_secs_f64());
    }
    println!(
        "{:<8} {:>9} {:>12} {:>10} {:>10} {:>8}",
        "encoding", "examples", "examples/s", "peak MB", "index s/M", "batches"
    );
    for n in SIZES {
        for enc in ["gz", "parquet"] {
            let status = std::process::Command::new(&args[0])
                .args(["run", enc, &n.to_string()])
                .env("RAYON_NUM_THREADS", "2")
                .status()
                .expect("running a configuration");
            assert!(status.success(), "{enc} {n}: {status}");
        }
    }
}
