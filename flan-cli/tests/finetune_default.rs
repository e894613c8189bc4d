//! The default run of `cargo xtask finetune` (configs/finetune-default/train.toml) end to end
//! with a tiny budget: tokenizer trained on the synthetic suite, T5 from scratch, evaluation
//! before and after, report. Checks that the loss fell and that every output file exists and
//! parses; and that `--model DIR` turns the same config into finetuning a checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;

use flan_model::T5ForConditionalGeneration;

fn default_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/finetune-default/train.toml")
}

/// The budget of the test: a few small steps, one prompt per evaluation cell and no few-shot
/// cells, a small tokenizer corpus.
const SMALL: [&str; 16] = [
    "--set",
    "train.steps=12",
    "--set",
    "batch.size=4",
    "--set",
    "schedule.warmup_steps=3",
    "--set",
    "eval.synthetic.items_per_cell=1",
    "--set",
    "eval.synthetic.shots=0",
    "--set",
    "model.train_tokenizer.rendered=2000",
    "--set",
    "log.progress=off",
    "--set",
    "checkpoint.every=6",
];

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// `flan train ARGS --print-config`: the resolved config, after checking the command succeeded.
fn print_config(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flan"))
        .arg("train")
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `flan train` on the default config with the test's budget (and `extra` flags) into
/// `out_dir`, after checking it succeeded; its stderr.
fn train_default(out_dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flan"))
        .arg("train")
        .arg("--config")
        .arg(default_config())
        .arg("--output-dir")
        .arg(out_dir)
        .args(SMALL)
        .args(extra)
        .output()
        .expect("flan runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "flan train failed:\n{stderr}");
    stderr
}

#[test]
fn the_default_run_trains_evaluates_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let stderr = train_default(&out_dir, &[]);
    for line in ["report:", "results:", "model:", "held-out families"] {
        assert!(stderr.contains(line), "`{line}` missing from:\n{stderr}");
    }

    // The loss fell: the last steps against the first ones.
    let records: Vec<serde_json::Value> = jsonl(&out_dir.join("metrics.jsonl"))
        .into_iter()
        .filter(|r| r["kind"] == "train")
        .collect();
    assert_eq!(records.len(), 12);
    let mean = |rs: &[serde_json::Value]| {
        rs.iter().map(|r| r["loss"].as_f64().unwrap()).sum::<f64>() / rs.len() as f64
    };
    let (first, last) = (mean(&records[..3]), mean(&records[9..]));
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");

    // The checkpoint in HF layout loads with its tokenizer.
    let model_dir = out_dir.join("model");
    for f in ["config.json", "generation_config.json"] {
        json(&model_dir.join(f));
    }
    let (model, _) =
        T5ForConditionalGeneration::from_pretrained(&model_dir, tch::Device::Cpu, tch::Kind::Float)
            .unwrap();
    let tokenizer = flan_data::Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    assert!(tokenizer.vocab_size() as i64 <= model.config().vocab_size);
    assert_eq!(json(&out_dir.join("summary.json"))["steps"], 12);
    // Its model card says how it was made, with the evaluation after training.
    let card = std::fs::read_to_string(model_dir.join("README.md")).unwrap();
    for needle in [
        "library_name: \"transformers\"",
        "Trained from scratch",
        "synthetic-mixture.toml",
        "synthetic suite on the saved model",
        "| all (",
        "| held_out_family (",
        "chance ",
        "after − chance",
    ] {
        assert!(card.contains(needle), "{needle} missing from:\n{card}");
    }

    // Evaluation outputs and the report.
    let eval = out_dir.join("eval");
    let results = json(&eval.join("results.json"));
    let n = results["after"]["overall"]["n"].as_u64().unwrap();
    assert!(n > 50, "{n} items");
    assert_eq!(results["before"]["overall"]["n"].as_u64().unwrap(), n);
    for setting in ["seen_templates", "held_out_templates", "held_out_family"] {
        assert!(
            results["after"]["by_setting_all_modes"][setting]["n"]
                .as_u64()
                .unwrap()
                > 0,
            "{setting}"
        );
    }
    assert!(results["held_out_family_verdict"]
        .as_str()
        .unwrap()
        .starts_with("On entirely held-out families"));
    for what in ["before", "after"] {
        assert_eq!(
            jsonl(&eval.join(format!("predictions-{what}.jsonl"))).len() as u64,
            n
        );
        json(&eval.join(format!("{what}.json")));
    }
    let report = std::fs::read_to_string(eval.join("report.md")).unwrap();
    for chart in ["loss", "families", "settings"] {
        assert!(report.contains(&format!("charts/{chart}.svg")));
        let svg = std::fs::read_to_string(eval.join(format!("charts/{chart}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    // The same config finetunes an existing checkpoint when given --model (the tokenizer then
    // comes from the checkpoint; no evaluation this time, to keep the test short).
    let tuned = dir.path().join("tuned");
    let printed = print_config(&[
        "--config".as_ref(),
        default_config().as_os_str(),
        "--model".as_ref(),
        model_dir.as_os_str(),
        "--output-dir".as_ref(),
        tuned.as_os_str(),
        "--steps".as_ref(),
        "100".as_ref(),
    ]);
    assert!(printed.contains("pretrained = "), "{printed}");
    assert!(!printed.contains("train_tokenizer"), "{printed}");
    assert!(!printed.contains("config = "), "{printed}");

    // The checked-in config for `cargo xtask finetune -- --model DIR` (the Flan recipe) is valid.
    let pretrained = default_config().with_file_name("pretrained.toml");
    let printed = print_config(&[
        "--config".as_ref(),
        pretrained.as_os_str(),
        "--model".as_ref(),
        model_dir.as_os_str(),
    ]);
    assert!(printed.contains("kind = \"adafactor\""), "{printed}");
}

/// Same config, same seed, same run: every stage of the default run (tokenizer training, the
/// mixture, initialisation, training, evaluation) is reproducible from its seed, or a
/// replication's seeds mean nothing. Two runs in two directories give a byte-identical
/// tokenizer.json, identical per-step losses, learning rates and gradient norms, and identical predictions.
#[test]
fn the_same_seed_gives_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out_dir = dir.path().join(name);
        train_default(
            &out_dir,
            &["--set", "train.steps=6", "--set", "checkpoint.every=3"],
        );
        out_dir
    };
    let (a, b) = (run("a"), run("b"));

    let tokenizer = |d: &Path| std::fs::read(d.join("tokenizer.json")).unwrap();
    assert!(
        tokenizer(&a) == tokenizer(&b),
        "the two runs trained different tokenizers"
    );
    let steps = |d: &Path| -> Vec<(u64, u64, u64, u64)> {
        jsonl(&d.join("metrics.jsonl"))
            .into_iter()
            .filter(|r| r["kind"] == "train")
            .map(|r| {
                (
                    r["step"].as_u64().unwrap(),
                    r["loss"].as_f64().unwrap().to_bits(),
                    r["learning_rate"].as_f64().unwrap().to_bits(),
                    r["grad_norm"].as_f64().unwrap().to_bits(),
                )
            })
            .collect()
    };
    let (sa, sb) = (steps(&a), steps(&b));
    assert_eq!(sa.len(), 6);
    assert_eq!(
        sa, sb,
        "per-step losses, learning rates or gradient norms differ"
    );
    for what in ["before", "after"] {
        let predictions = |d: &Path| -> Vec<serde_json::Value> {
            jsonl(&d.join("eval").join(format!("predictions-{what}.jsonl")))
        };
        assert_eq!(
            predictions(&a),
            predictions(&b),
            "predictions-{what} differ"
        );
    }
}
