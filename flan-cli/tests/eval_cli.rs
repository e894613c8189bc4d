//! `flan eval` end to end through the binary: re-scoring saved predictions prints the JSON
//! summary, `run` evaluates flan-model's tiny fixture and writes its reports, `average` needs
//! all six settings.

use std::path::{Path, PathBuf};
use std::process::Command;

fn flan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .output()
        .expect("flan runs")
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn rescore_prints_accuracy_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let preds = dir.path().join("p.jsonl");
    std::fs::write(
        &preds,
        concat!(
            r#"{"prediction": "Steps. So the answer is (A).", "target": "(A)"}"#,
            "\n",
            r#"{"prediction": "So the answer is (B)", "target": "(A)"}"#,
            "\n",
            r#"{"prediction": "(A)", "target": "(A)"}"#,
            "\n",
            r#"{"prediction": "So the answer is valid.", "target": "valid"}"#,
            "\n",
        ),
    )
    .unwrap();
    let p = preds.to_str().unwrap();
    let out = flan(&[
        "eval",
        "rescore",
        "--benchmark",
        "bbh",
        "--mode",
        "cot",
        "--predictions",
        p,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accuracy"], 50.0);
    assert_eq!(v["n"], 4);
    assert_eq!(v["no_answer"], 1);
    // The same file scored as direct answers: only the bare "(A)" matches.
    let out = flan(&[
        "eval",
        "rescore",
        "--benchmark",
        "bbh",
        "--mode",
        "direct",
        "--predictions",
        p,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accuracy"], 25.0);
    // Per-record scores carry the records' ids.
    std::fs::write(
        &preds,
        concat!(
            r#"{"id": "x-1", "prediction": "(A)", "target": "(A)", "source": "m"}"#,
            "\n",
            r#"{"id": 2, "prediction": "(C)", "target": "(A)"}"#,
            "\n",
        ),
    )
    .unwrap();
    let records = dir.path().join("records.jsonl");
    let out = flan(&[
        "eval",
        "rescore",
        "--benchmark",
        "bbh",
        "--mode",
        "direct",
        "--predictions",
        p,
        "--records",
        records.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ignored_fields"]["source"], 1);
    let scored: Vec<serde_json::Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(scored.len(), 2);
    assert_eq!(
        (&scored[0]["id"], &scored[0]["correct"]),
        (&"x-1".into(), &true.into())
    );
    assert_eq!(
        (&scored[1]["id"], &scored[1]["answer"]),
        (&2.into(), &"(C)".into())
    );
    // A bad line is named.
    std::fs::write(&preds, "{\"target\": \"1\"}\n").unwrap();
    let out = flan(&[
        "eval",
        "rescore",
        "--benchmark",
        "gsm8k",
        "--mode",
        "cot",
        "--predictions",
        p,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("p.jsonl:1:") && err.contains("prediction"),
        "{err}"
    );
}

#[test]
fn run_on_the_tiny_fixture_writes_reports_and_average_needs_six_settings() {
    let out_dir = tempfile::tempdir().unwrap();
    let model = repo_path("flan-model/tests/fixtures/v1_1");
    let data = repo_path("../shared/data/mgsm");
    let out = flan(&[
        "eval",
        "run",
        "--model",
        model.to_str().unwrap(),
        "--benchmark",
        "mgsm",
        "--mode",
        "cot",
        "--data",
        data.to_str().unwrap(),
        "--tasks",
        "en,de",
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--shots",
        "2",
        "--output",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("results_mgsm_cot.json")).unwrap(),
    )
    .unwrap();
    for task in ["mgsm_en", "mgsm_de"] {
        assert!(results["results"][task]["exact_match,strict-match"].is_number());
        assert_eq!(results["n-samples"][task]["effective"], 2);
    }
    assert_eq!(results["flan"]["setting"], "MgsmCot");
    let samples = std::fs::read_to_string(out_dir.path().join("samples_mgsm_cot.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 4);
    let md = std::fs::read_to_string(out_dir.path().join("results_mgsm_cot.md")).unwrap();
    assert!(md.contains("| mgsm_de | 2 |"), "{md}");

    let r = out_dir.path().join("results_mgsm_cot.json");
    let out = flan(&["eval", "average", r.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing MmluDirect"));
}

#[test]
fn the_synthetic_suite_runs_without_data_and_reports_its_exposures() {
    let out_dir = tempfile::tempdir().unwrap();
    let model = repo_path("flan-model/tests/fixtures/v1_1");
    let out = flan(&[
        "eval",
        "run",
        "--model",
        model.to_str().unwrap(),
        "--benchmark",
        "synthetic",
        "--mode",
        "zero-shot-cot",
        // A trained family (seen and held-out templates) and a held-out one.
        "--tasks",
        "day_after,day_before",
        "--limit",
        "1",
        "--max-new-tokens",
        "4",
        "--output",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("results_synthetic_zero-shot-cot.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(results["n-samples"]["day_after"]["effective"], 2);
    assert_eq!(results["n-samples"]["day_before"]["effective"], 1);
    for exposure in ["seen_templates", "held_out_templates", "held_out_family"] {
        assert_eq!(
            results["breakdown"]["by_setting"][exposure]["cot"]["n"], 1,
            "{exposure}: {results}"
        );
    }
    let samples =
        std::fs::read_to_string(out_dir.path().join("samples_synthetic_zero-shot-cot.jsonl"))
            .unwrap();
    assert_eq!(samples.lines().count(), 3);
    assert!(
        samples.contains(r#""exposure":"held_out_family""#),
        "{samples}"
    );

    // A benchmark read from files still needs --data.
    let out = flan(&[
        "eval",
        "run",
        "--model",
        model.to_str().unwrap(),
        "--benchmark",
        "bbh",
        "--mode",
        "cot",
        "--output",
        out_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
}

/// `--dtype bf16` loads the model in bf16 (the fixture is stored in bf16), records the dtype in
/// the results JSON, and generates what `flan generate --dtype bf16` generates for the same
/// prompts on this machine (no pinned bf16 numbers: the kernels differ between CPUs).
#[test]
fn eval_run_in_bf16_records_its_dtype_and_generates_as_flan_generate_does() {
    let model = repo_path("flan-model/tests/fixtures/v1_1");
    let run = |dtype: Option<&str>| {
        let out_dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "eval",
            "run",
            "--model",
            model.to_str().unwrap(),
            "--benchmark",
            "synthetic",
            "--mode",
            "direct",
            "--tasks",
            "day_after",
            "--limit",
            "2",
            "--max-new-tokens",
            "6",
            // One prompt per call, as `flan generate --batch-size 1` below.
            "--batch-size",
            "1",
            "--output",
            out_dir.path().to_str().unwrap(),
        ];
        if let Some(dtype) = dtype {
            args.extend(["--dtype", dtype]);
        }
        let out = flan(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.path().join("results_synthetic_direct.json")).unwrap(),
        )
        .unwrap();
        let samples: Vec<serde_json::Value> =
            std::fs::read_to_string(out_dir.path().join("samples_synthetic_direct.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        (results, samples)
    };
    let (results, _) = run(None);
    assert_eq!(results["config"]["dtype"], "f32");
    let (results, samples) = run(Some("bf16"));
    assert_eq!(results["config"]["dtype"], "bf16");
    assert!(samples.len() >= 2, "{samples:?}");

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("prompts.jsonl");
    let text: String = samples
        .iter()
        .map(|s| format!("{}\n", serde_json::json!({ "inputs": s["prompt"] })))
        .collect();
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("generated.jsonl");
    let out = flan(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--dtype",
        "bf16",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--max-new-tokens",
        "6",
        "--batch-size",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(generated.len(), samples.len());
    for (g, s) in generated.iter().zip(&samples) {
        assert_eq!(g["text"], s["outputs"][0], "prompt {}", s["prompt"]);
    }
}
