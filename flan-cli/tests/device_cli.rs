//! `--device` of the inference commands: one parser for every command (`auto` accepted), and the
//! launcher's local rank choosing the GPU. Runs `flan score` on flan-model's tiny fixture model;
//! the cases hold on machines with and without CUDA.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

/// `flan score --device DEVICE` on one record, with `env` as the only launcher variables.
fn score(dir: &Path, device: &str, env: &[(&str, &str)]) -> Output {
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        "{\"inputs\": \"add 1 and 2\", \"targets\": \"3\"}\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flan"));
    cmd.args(["score", "--model"])
        .arg(fixture_model())
        .arg("--input")
        .arg(&input)
        .args(["--device", device]);
    for var in ["LOCAL_RANK", "SLURM_LOCALID", "RANK", "WORLD_SIZE"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("flan runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn auto_and_cpu_score_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    for (device, env) in [
        ("auto", &[][..]),
        ("auto", &[("LOCAL_RANK", "0")][..]),
        // The local rank does not matter on the CPU, even when it is malformed.
        ("cpu", &[("LOCAL_RANK", "x")][..]),
    ] {
        let out = score(dir.path(), device, env);
        assert!(out.status.success(), "{device} {env:?}: {}", stderr(&out));
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(line["logprob"].as_f64().unwrap() < 0.0, "{line}");
    }
}

#[test]
fn unknown_devices_and_bad_local_ranks_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = score(dir.path(), "gpu", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown device `gpu`") && err.contains("cuda:N") && err.contains("auto"),
        "{err}"
    );

    let out = score(dir.path(), "cuda", &[("SLURM_LOCALID", "x")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("SLURM_LOCALID=\"x\""), "{err}");

    // No machine has 4097 GPUs: the rank, its variable and the device count are named.
    let out = score(dir.path(), "cuda", &[("LOCAL_RANK", "4096")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("local rank 4096 (LOCAL_RANK=4096)") && err.contains("CUDA device"),
        "{err}"
    );
}
