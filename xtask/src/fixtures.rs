//! `cargo xtask fixtures [NAME...]`: regenerate the parity fixtures that tests compare against.
//!
//! Installs `transformers` (and what it needs) into the xtask virtual environment, then runs every
//! `xtask/fixtures/*.py` (or only the named ones) with that interpreter as
//! `python SCRIPT OUTDIR`. Outputs are small and committed, so `cargo xtask test` itself needs no
//! Python package beyond torch. Each script's output directory is listed in [`OUTPUTS`]; a new
//! script not listed there writes under `target/fixtures/<name>/` until it is added.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

use crate::{libtorch, process};

/// Python packages the fixture scripts import besides torch.
const PACKAGES: [&str; 9] = [
    "transformers",
    // t5_lora.py makes LoRA adapters with peft and loads flan's in it.
    "peft",
    "safetensors",
    "tokenizers",
    "numpy",
    // tokenizer_truncation.py makes a SentencePiece model and converts it as T5's was.
    "sentencepiece",
    "protobuf",
    // tensorboard_events.py writes an event file with TensorBoard's own writer.
    "tensorboard",
    // openai_client.py drives `flan serve` with the official OpenAI client.
    "openai",
];

/// `(script stem, output directory relative to the workspace root)`.
const OUTPUTS: [(&str, &str); 9] = [
    ("t5", "flan-model/tests/fixtures"),
    // Runs after t5.py (scripts run in name order): resaves its models with flan-model and
    // loads them in transformers.
    ("t5_roundtrip", "flan-model/tests/fixtures"),
    // Also after t5.py: the same models and batch under torch.autocast (CPU, bf16).
    ("t5_autocast", "flan-model/tests/fixtures"),
    // After t5.py too: peft adapters on its models.
    ("t5_lora", "flan-model/tests/fixtures/lora"),
    ("adafactor", "flan-train/tests/fixtures"),
    ("adamw", "flan-train/tests/fixtures"),
    (
        "tokenizer_truncation",
        "flan-data/tests/fixtures/saved_truncation",
    ),
    (
        "tensorboard_events",
        "flan-train/tests/fixtures/tensorboard",
    ),
    ("openai_client", "flan-serve/tests/fixtures"),
];

/// Runs the fixture scripts (all, or those whose stem is in `names`).
pub fn run(names: &[String]) -> Result<()> {
    let libtorch = libtorch::setup(libtorch::Verbosity::Quiet)?;
    let python = libtorch::venv_python()?;
    let root = process::workspace_root();
    let scripts_dir = root.join("xtask").join("fixtures");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&scripts_dir)
        .with_context(|| format!("reading {}", scripts_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    scripts.sort();
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for name in names {
        if !scripts.iter().any(|s| &stem(s) == name) {
            bail!(
                "no fixture script `{name}.py` in {} (have: {})",
                scripts_dir.display(),
                scripts.iter().map(stem).collect::<Vec<_>>().join(", ")
            );
        }
    }
    libtorch::pip_install(&PACKAGES)?;
    for script in scripts
        .iter()
        .filter(|s| names.is_empty() || names.contains(&stem(s)))
    {
        let name = stem(script);
        let out = match OUTPUTS.iter().find(|(s, _)| *s == name) {
            Some((_, dir)) => root.join(dir),
            None => root.join("target").join("fixtures").join(&name),
        };
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut cmd = Command::new(&python);
        cmd.arg(script).arg(&out).current_dir(&root);
        // Scripts may run cargo (the round trip does); give them the one libtorch environment
        // so that torch-sys is not rebuilt.
        libtorch.apply(&mut cmd);
        process::run(&mut cmd)?;
        eprintln!("fixtures: {name} -> {}", out.display());
    }
    Ok(())
}
