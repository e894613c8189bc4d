//! `flan train` end to end: finetune flan-model's tiny fixture model (a Hugging Face directory
//! with its tokenizer) on a small JSONL mixture from a config file, continue the run by raising
//! the step count (automatic resume), refuse a config with an unknown key by naming it,
//! freeze parameters by glob (`train.freeze`), and checkpoint activations
//! (`train.activation_checkpointing`) with the losses of the run without.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

fn flan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .output()
        .expect("flan runs")
}

fn write_run(dir: &Path) -> PathBuf {
    let rows: String = (0..40)
        .map(|i| serde_json::json!({"inputs": format!("add {i} and {}", i % 7), "targets": format!("{}", i + i % 7)}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("sums.jsonl"), rows).unwrap();
    std::fs::write(
        dir.join("mixture.toml"),
        "input_len = 32\ntarget_len = 8\n[submixtures.flan]\nweight = 1.0\ncap = 100\nfew_shot_ratio = 0.0\n\
         [[tasks]]\nformat = \"jsonl\"\npath = \"sums.jsonl\"\nsubmixture = \"flan\"\n",
    )
    .unwrap();
    let config = format!(
        "output_dir = \"out\"\nseed = 3\ndevice = \"cpu\"\n\
         [model]\npretrained = {:?}\n\
         [data]\nmixture = \"mixture.toml\"\n\
         [batch]\nsize = 2\n\
         [train]\nsteps = 4\n\
         [checkpoint]\nevery = 2\nkeep_last = 2\n\
         [log]\nprogress = \"lines\"\n",
        fixture_model().display().to_string()
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn flan_train_finetunes_resumes_and_names_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path());
    let config = config.to_str().unwrap();

    let out = flan(&["train", "--config", config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flan train failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 4);
    assert!(summary["final_loss"].as_f64().unwrap().is_finite());
    let run = dir.path().join("out");
    assert!(
        run.join("model/model.safetensors").is_file() && run.join("model/tokenizer.json").is_file()
    );
    assert!(run
        .join("checkpoints/step-00000004/trainer_state.json")
        .is_file());
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    // Raising the step count continues from the latest checkpoint.
    let out = flan(&["train", "--config", config, "--set", "train.steps=6"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming from") && stderr.contains("step-00000004"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["resumed_from"].as_u64(), summary["steps"].as_u64()),
        (Some(4), Some(6))
    );
    let kept: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "keep_last = 2: {kept:?}");

    // Unknown keys, in the file or in --set, are named.
    let out = flan(&[
        "train",
        "--config",
        config,
        "--set",
        "optimizer.beta_one=0.9",
    ]);
    // A usage error: the same invocation would fail again (exit status 2, see the README).
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--set optimizer.beta_one=0.9")
            && stderr.contains("unknown field `beta_one`"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("bad.toml"), "[trainer]\nsteps = 3\n").unwrap();
    let out = flan(&[
        "train",
        "--config",
        dir.path().join("bad.toml").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("bad.toml") && stderr.contains("`trainer`"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn flan_train_freezes_by_glob_and_names_the_parameters_of_a_glob_that_matches_none() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path());
    let config = config.to_str().unwrap();
    let out_dir = format!(
        "output_dir={:?}",
        dir.path().join("frozen").display().to_string()
    );

    // A usage error (exit status 2) that lists the names there are.
    let out = flan(&[
        "train",
        "--config",
        config,
        "--set",
        &out_dir,
        "--set",
        r#"train.freeze=["encoder.*", "encoder.block.99.*"]"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`encoder.block.99.*` matches none")
            && stderr.contains("encoder.block.0.layer.0.SelfAttention.q.weight"),
        "{stderr}"
    );

    let out = flan(&[
        "train",
        "--config",
        config,
        "--set",
        &out_dir,
        "--set",
        r#"train.freeze=["encoder.*"]"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (trainable, frozen) = (
        summary["parameters"]["trainable"].as_u64().unwrap(),
        summary["parameters"]["frozen"].as_u64().unwrap(),
    );
    assert!(trainable > 0 && frozen > 0, "{summary}");
    assert!(
        stderr.contains(&format!("{trainable} parameters trained ({frozen} frozen)")),
        "{stderr}"
    );
}

/// The `loss` of each line of a run's `metrics.jsonl`.
fn step_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn flan_train_with_activation_checkpointing_has_the_losses_of_the_plain_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path());
    let config = config.to_str().unwrap();
    let run = |name: &str, on: &str| {
        let out_dir = format!(
            "output_dir={:?}",
            dir.path().join(name).display().to_string()
        );
        let out = flan(&[
            "train",
            "--config",
            config,
            "--set",
            &out_dir,
            "--set",
            "model.dropout=0.1",
            "--set",
            &format!("train.activation_checkpointing={on}"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        step_losses(&dir.path().join(name))
    };
    let (plain, checkpointed) = (run("plain", "false"), run("checkpointed", "true"));
    assert_eq!(plain.len(), 4);
    assert_eq!(checkpointed.len(), 4);
    assert_eq!(plain[0].to_bits(), checkpointed[0].to_bits());
    for (a, b) in checkpointed.iter().zip(&plain) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "{a} vs {b}");
    }

    // Not a boolean: a usage error naming the key.
    let out = flan(&[
        "train",
        "--config",
        config,
        "--set",
        "train.activation_checkpointing=\"yes\"",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("activation_checkpointing"), "{stderr}");
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn scores(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["logprob"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_lora_run_gives_an_adapter_that_scores_merges_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path());
    let out = flan(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--set",
        "optimizer.kind=\"adamw\"",
        "--set",
        "schedule.lr=0.05",
        "--set",
        "lora.r=4",
        "--set",
        r#"lora.target_modules=["q", "v", "wo"]"#,
    ]);
    let stderr = ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trainable = summary["parameters"]["trainable"].as_u64().unwrap();
    assert!(
        trainable > 0 && trainable < summary["parameters"]["frozen"].as_u64().unwrap(),
        "{stderr}"
    );
    let adapter = dir.path().join("out/model");
    assert!(
        adapter.join("adapter_config.json").is_file() && adapter.join("tokenizer.json").is_file()
    );
    assert!(!adapter.join("model.safetensors").exists());
    let base = fixture_model();
    let (base_s, adapter_s) = (base.to_str().unwrap(), adapter.to_str().unwrap());
    let input = dir.path().join("score.jsonl");
    let rows = std::fs::read_to_string(dir.path().join("sums.jsonl")).unwrap();
    std::fs::write(&input, rows.lines().take(6).collect::<Vec<_>>().join("\n")).unwrap();
    let input_s = input.to_str().unwrap();

    let score = |name: &str, args: &[&str]| -> Vec<f64> {
        let output = dir.path().join(name);
        let mut all = vec![
            "score",
            "--input",
            input_s,
            "--output",
            output.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        ok(&flan(&all));
        scores(&output)
    };
    let plain = score("plain.jsonl", &["--model", base_s]);
    let with_flag = score("flag.jsonl", &["--model", base_s, "--adapter", adapter_s]);
    let as_model = score("dir.jsonl", &["--model", adapter_s]);
    assert_eq!(
        with_flag, as_model,
        "the adapter directory as --model is the same model"
    );
    assert_ne!(plain, with_flag, "the adapter changes the scores");

    let merged = dir.path().join("merged");
    ok(&flan(&[
        "merge",
        "--model",
        adapter_s,
        "--output",
        merged.to_str().unwrap(),
    ]));
    assert!(merged.join("model.safetensors").is_file() && merged.join("tokenizer.json").is_file());
    let merged_scores = score("merged.jsonl", &["--model", merged.to_str().unwrap()]);
    for (m, a) in merged_scores.iter().zip(&with_flag) {
        assert!(
            (m - a).abs() <= 1e-4 * a.abs().max(1.0),
            "merged {m} vs adapter {a}"
        );
    }
    // Nothing to merge, or an output that is in use: usage errors.
    let again = flan(&[
        "merge",
        "--model",
        adapter_s,
        "--output",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    let nothing = flan(&[
        "merge",
        "--model",
        base_s,
        "--output",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing to merge"));

    let generated = dir.path().join("gen.jsonl");
    let stderr = ok(&flan(&[
        "generate",
        "--model",
        base_s,
        "--adapter",
        adapter_s,
        "--input",
        input_s,
        "--output",
        generated.to_str().unwrap(),
        "--max-new-tokens",
        "4",
    ]));
    assert!(stderr.contains("LoRA adapter"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&generated).unwrap().lines().count(),
        6
    );
}
