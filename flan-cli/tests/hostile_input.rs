//! `flan score` and `flan generate` given what a hostile tester gives them, through the binary on
//! flan-model's tiny fixture model: a 2 MB input line, numeric options out of range, a beam count
//! that cannot fit in memory, NaN weights, a full disk. Each ends in a clear error with its exit
//! status (or in a counted cut, when asked), never in a panic, and never leaves a half-written
//! output in place of a good one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

fn flan(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("flan runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No panic: Rust's panic message and libtorch's C++ frames are absent.
fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("frame #"),
        "{err}"
    );
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("small.jsonl"),
            "{\"inputs\": \"hello\", \"targets\": \"yes\"}\n",
        )
        .unwrap();
        // 400,000 words: a 2 MB line, 2,000,002 tokens for the fixture's tokenizer.
        let big = serde_json::json!({"inputs": "word ".repeat(400_000), "targets": "yes"});
        std::fs::write(dir.path().join("big.jsonl"), format!("{big}\n")).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// The names in the directory (a leftover temporary would show here).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn a_2mb_input_is_refused_by_name_or_cut_and_counted_and_the_old_output_stays() {
    let files = Files::new();
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let (small, big, out) = (
        files.path("small.jsonl"),
        files.path("big.jsonl"),
        files.path("scores.jsonl"),
    );
    let good = flan(
        &[
            "score", "--model", model, "--input", &small, "--output", &out,
        ],
        &[],
    );
    assert!(good.status.success(), "{}", stderr(&good));
    let before = std::fs::read(&out).unwrap();
    let names = files.names();

    for command in ["score", "generate"] {
        let mut args = vec![command, "--model", model, "--input", &big, "--output", &out];
        if command == "generate" {
            args.extend(["--max-new-tokens", "2"]);
        }
        let refused = flan(&args, &[]);
        let err = stderr(&refused);
        assert_no_panic(&refused);
        assert_eq!(refused.status.code(), Some(3), "{command}: {err}");
        assert!(
            err.contains("big.jsonl:1:") && err.contains("--max-input-tokens"),
            "{command}: {err}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), before, "{command}");
        assert_eq!(files.names(), names, "{command}: no temporary is left");
    }

    let cut = flan(
        &[
            "score",
            "--model",
            model,
            "--input",
            &big,
            "--max-input-tokens",
            "64",
        ],
        &[],
    );
    assert!(cut.status.success(), "{}", stderr(&cut));
    let line: serde_json::Value = serde_json::from_slice(&cut.stdout).unwrap();
    assert_eq!(line["input_tokens_cut"], 2_000_002 - 64);
    assert!(line["logprob"].as_f64().unwrap().is_finite());
    assert!(stderr(&cut).contains("1 of 1 inputs were cut to 64 tokens"));
}

#[test]
fn numeric_options_out_of_range_are_usage_errors_naming_the_range() {
    let files = Files::new();
    let model = fixture_model();
    let small = files.path("small.jsonl");
    for (flags, needle) in [
        (&["--num-beams", "0"][..], "must be at least 1"),
        (
            &["--sample", "--top-p", "2"][..],
            "must be in (0, 1], got 2",
        ),
        (
            &["--sample", "--top-p", "nan"][..],
            "must be in (0, 1], got NaN",
        ),
        (
            &["--sample", "--temperature", "inf"][..],
            "must be a finite number, got inf",
        ),
        (
            &["--length-penalty", "nan"][..],
            "must be a finite number, got NaN",
        ),
        (&["--max-new-tokens", "0"][..], "must be at least 1"),
    ] {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            &small,
        ];
        if !flags.contains(&"--max-new-tokens") {
            args.extend(["--max-new-tokens", "3"]);
        }
        args.extend(flags);
        let out = flan(&args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
}

#[test]
fn beams_that_cannot_fit_in_memory_are_refused_before_any_output() {
    let files = Files::new();
    let model = fixture_model();
    let out = files.path("generated.jsonl");
    let run = flan(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--input",
            &files.path("small.jsonl"),
            "--max-new-tokens",
            "4",
            "--num-beams",
            "100000",
            "--output",
            &out,
        ],
        &[("FLAN_MEMORY_LIMIT", "100MB")],
    );
    let err = stderr(&run);
    assert_no_panic(&run);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--num-beams 100000") && err.contains("FLAN_MEMORY_LIMIT=100MB"),
        "{err}"
    );
    assert!(!Path::new(&out).exists());
}

#[test]
fn a_model_with_a_nan_weight_is_refused_at_load() {
    let files = Files::new();
    let model = files.dir.path().join("nan-model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(fixture_model()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        }
    }
    // One bf16 NaN as the first value of a tensor, found through the safetensors header.
    let file = model.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let tensor = "decoder.block.0.layer.0.SelfAttention.k.weight";
    assert_eq!(header[tensor]["dtype"], "BF16");
    let at = 8 + header_len + header[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 2].copy_from_slice(&[0xC0, 0x7F]);
    std::fs::write(&file, bytes).unwrap();

    let small = files.path("small.jsonl");
    for command in ["score", "generate"] {
        let mut args = vec![
            command,
            "--model",
            model.to_str().unwrap(),
            "--input",
            &small,
        ];
        if command == "generate" {
            args.extend(["--max-new-tokens", "2"]);
        }
        let out = flan(&args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{command}: {err}");
        assert!(
            err.contains(tensor) && err.contains("1 non-finite value"),
            "{command}: {err}"
        );
        assert!(out.stdout.is_empty(), "{command}: nothing written");
    }
}

#[test]
fn write_errors_name_the_path_and_causes_are_printed_once() {
    let files = Files::new();
    let model = fixture_model();
    let model = model.to_str().unwrap();
    if Path::new("/dev/full").exists() {
        let full = flan(
            &[
                "score",
                "--model",
                model,
                "--input",
                &files.path("small.jsonl"),
                "--output",
                "/dev/full",
            ],
            &[],
        );
        let err = stderr(&full);
        assert_eq!(full.status.code(), Some(1), "{err}");
        assert!(
            err.contains("/dev/full") && err.matches("No space left on device").count() == 1,
            "{err}"
        );
    }
    let missing = flan(
        &[
            "score",
            "--model",
            model,
            "--input",
            &files.path("nope.jsonl"),
        ],
        &[],
    );
    let err = stderr(&missing);
    assert_eq!(missing.status.code(), Some(3), "{err}");
    assert!(
        err.contains("nope.jsonl") && err.matches("(os error 2)").count() == 1,
        "{err}"
    );
}
