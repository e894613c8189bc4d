//! LoRA through the CLI: `flan train` with `[lora]` writes a PEFT adapter directory as its model;
//! `flan score`/`flan generate` apply it with `--adapter` or take the adapter directory as
//! `--model`; `flan merge` folds it into a plain checkpoint that scores as the adapter does; a
//! peft-made adapter applies through `--adapter` too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures")
}

fn flan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .output()
        .expect("flan runs")
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

fn write_run(dir: &Path) -> PathBuf {
    let rows: String = (0..40)
        .map(|i| serde_json::json!({"inputs": format!("add {i} and {}", i % 7), "targets": format!("{}", i + i % 7)}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("sums.jsonl"), &rows).unwrap();
    std::fs::write(
        dir.join("score.jsonl"),
        rows.lines().take(6).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
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
         [optimizer]\nkind = \"adamw\"\n\
         [schedule]\nlr = 0.05\n\
         [lora]\nr = 4\nlora_alpha = 8\ntarget_modules = [\"q\", \"v\", \"wo\"]\n\
         [checkpoint]\nevery = 2\nkeep_last = 2\n\
         [log]\nprogress = \"lines\"\n",
        fixtures().join("v1_1").display().to_string()
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_lora_run_gives_an_adapter_that_scores_merges_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path());
    let out = flan(&["train", "--config", config.to_str().unwrap()]);
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
    let base = fixtures().join("v1_1");
    let (base_s, adapter_s) = (base.to_str().unwrap(), adapter.to_str().unwrap());
    let input = dir.path().join("score.jsonl");
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

#[test]
fn a_peft_adapter_applies_through_the_cli_and_a_wrong_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"inputs\": \"abc\", \"targets\": \"de\"}\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let base = fixtures().join("v1_0");
    let run = |adapter: &Path| {
        flan(&[
            "score",
            "--model",
            base.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
    };
    ok(&run(&fixtures().join("lora/v1_0_all_linear")));
    // An adapter made for another model: the error names the file and the tensor that does not
    // fit, with both shapes.
    let out = run(&fixtures().join("lora/odd_regex"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("adapter_model.safetensors")
            && stderr.contains("lora_B.weight` has shape [36, 3]"),
        "{stderr}"
    );
}
