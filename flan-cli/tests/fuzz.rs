//! Fuzz targets of the `flan` binary's entry points (see the `flan-fuzz` crate): each input runs
//! the real binary, so these take a sixteenth of `FLAN_FUZZ_CASES` (at least 4). Inputs: argument
//! lists from the flags of every command with odd values; `flan score` on mutated JSONL (the
//! tiny fixture model); `flan eval rescore` on mutated predictions; `flan train --print-config`
//! on mutated configs. No input may make `flan` panic (exit 101, a panic message or libtorch's
//! C++ frames); a data error (exit 3) must name the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flan_fuzz::{cases, documents, fuzz_cases, names_file, Scratch};
use proptest::prelude::*;

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

/// Inputs per target: each runs a process (and some load a model).
fn process_cases() -> u32 {
    (cases() / 16).max(4)
}

fn flan(args: &[String]) -> Result<Output, String> {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("SLURM_NTASKS")
        .output()
        .map_err(|e| format!("running flan: {e}"))
}

/// The promise: no panic; exit 3 names `file` when there is one.
fn no_panic(out: &Output, file: Option<&Path>) -> Result<(), String> {
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(101) || err.contains("panicked") || err.contains("frame #") {
        return Err(format!("flan panicked ({:?}): {err}", out.status));
    }
    if out.status.code().is_none() {
        return Err(format!(
            "flan was killed by a signal ({:?}): {err}",
            out.status
        ));
    }
    match file {
        Some(file) if out.status.code() == Some(3) => names_file(&err, file),
        _ => Ok(()),
    }
}

#[test]
fn arguments() {
    let word = prop_oneof![
        Just("train"),
        Just("score"),
        Just("generate"),
        Just("eval"),
        Just("run"),
        Just("rescore"),
        Just("average"),
        Just("compare"),
        Just("--ratings"),
        Just("--pairs"),
        Just("--prompts"),
        Just("--decoding"),
        Just("--samples"),
        Just("--format"),
        Just("mixture"),
        Just("--model"),
        Just("--input"),
        Just("--output"),
        Just("--config"),
        Just("--set"),
        Just("--spec"),
        Just("--stats"),
        Just("--sample"),
        Just("--num-beams"),
        Just("--top-p"),
        Just("--top-k"),
        Just("--temperature"),
        Just("--length-penalty"),
        Just("--max-new-tokens"),
        Just("--max-input-tokens"),
        Just("--batch-size"),
        Just("--benchmark"),
        Just("--mode"),
        Just("--predictions"),
        Just("--device"),
        Just("--dtype"),
        Just("--log-format"),
        Just("json"),
        Just("0"),
        Just("-1"),
        Just("nan"),
        Just("1e999"),
        Just("18446744073709551616"),
        Just("cuda:7"),
        Just("bbh"),
        Just("cot"),
        Just("train.steps=0"),
        Just("="),
        Just(""),
        Just("/dev/null"),
        Just("/nonexistent"),
    ];
    let args = proptest::collection::vec(
        prop_oneof![4 => word.prop_map(String::from), 1 => "\\PC{0,12}"],
        0..8,
    );
    fuzz_cases("flan arguments", process_cases(), args, |args| {
        no_panic(&flan(&args)?, None)
    });
}

#[test]
fn score_input() {
    let scratch = Scratch::new();
    let model = fixture_model().to_str().unwrap().to_string();
    let seed = b"{\"inputs\": \"add 2 and 3\", \"targets\": \"5\", \"id\": 1}\n\
                 \xEF\xBB\xBF{\"inputs\": \"x\", \"targets\": \"\"}\n"
        .to_vec();
    fuzz_cases(
        "flan score input",
        process_cases(),
        documents(vec![seed]),
        |bytes| {
            let input = scratch.file("input.jsonl", &bytes);
            let output = scratch.dir().join("scores.jsonl");
            let args = [
                "score",
                "--model",
                &model,
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--max-input-tokens",
                "512",
            ]
            .map(String::from);
            no_panic(&flan(&args)?, Some(&input))
        },
    );
}

#[test]
fn rescore_predictions() {
    let scratch = Scratch::new();
    let seed =
        br#"{"id": 1, "prediction": "So the answer is (A).", "target": "(A)", "task": "navigate"}
{"id": "b", "predictions": ["The answer is 42.", "The answer is 41.", null], "target": "42"}
"#
        .to_vec();
    let benchmark = prop_oneof![
        Just("bbh"),
        Just("mmlu"),
        Just("mgsm"),
        Just("gsm8k"),
        Just("tydiqa")
    ];
    let mode = prop_oneof![Just("direct"), Just("cot"), Just("zero-shot-cot")];
    fuzz_cases(
        "flan eval rescore",
        process_cases(),
        (documents(vec![seed]), benchmark, mode),
        |(bytes, benchmark, mode)| {
            let predictions = scratch.file("predictions.jsonl", &bytes);
            let args = [
                "eval",
                "rescore",
                "--benchmark",
                benchmark,
                "--mode",
                mode,
                "--predictions",
                predictions.to_str().unwrap(),
            ]
            .map(String::from);
            no_panic(&flan(&args)?, Some(&predictions))
        },
    );
}

/// `flan eval compare --ratings` on mutated ratings against a fixed pairs file.
#[test]
fn compare_ratings() {
    let scratch = Scratch::new();
    let pairs = scratch.file(
        "pairs.jsonl",
        br#"{"id":"q1","prompt":"p","model_a":"a","model_b":"b","output_a":"x","output_b":"y","left":"B","order_seed":0}
{"id":"2","prompt":"p","model_a":"a","model_b":"b","output_a":"x","output_b":"y","left":"A","order_seed":0}
"#,
    );
    let seed = br#"{"id": "q1", "preferred": "B"}
{"id": 2, "preferred": "tie"}
"#
    .to_vec();
    fuzz_cases(
        "flan eval compare --ratings",
        process_cases(),
        documents(vec![seed]),
        |bytes| {
            let ratings = scratch.file("ratings.jsonl", &bytes);
            let args = [
                "eval",
                "compare",
                "--ratings",
                ratings.to_str().unwrap(),
                "--pairs",
                pairs.to_str().unwrap(),
            ]
            .map(String::from);
            no_panic(&flan(&args)?, Some(&ratings))
        },
    );
}

#[test]
fn train_config() {
    let scratch = Scratch::new();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/finetune-default");
    let seeds = ["train.toml", "pretrained.toml"]
        .map(|name| std::fs::read(shipped.join(name)).unwrap())
        .to_vec();
    // The shipped configs start from common.toml (`base`), which sits beside the input.
    scratch.file(
        "common.toml",
        &std::fs::read(shipped.join("common.toml")).unwrap(),
    );
    fuzz_cases(
        "flan train config",
        process_cases(),
        documents(seeds),
        |bytes| {
            let config = scratch.file("train.toml", &bytes);
            let args = [
                "train",
                "--config",
                config.to_str().unwrap(),
                "--print-config",
            ]
            .map(String::from);
            no_panic(&flan(&args)?, Some(&config))
        },
    );
}
