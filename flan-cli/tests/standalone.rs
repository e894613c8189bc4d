//! A built `flan` starts in a fresh shell: no `LD_LIBRARY_PATH`, no `LIBTORCH`, nothing from
//! `cargo xtask env`. It finds libtorch through the run path its build recorded.

use std::process::Command;

#[test]
fn flan_runs_with_an_empty_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_flan"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("flan starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: flan"));
    // A command that reaches libtorch itself, not only the argument parser.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"inputs\": \"continue: Tom\"}\n").unwrap();
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1");
    let out = Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(["generate", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .args(["--max-new-tokens", "2"])
        .env_clear()
        .output()
        .expect("flan starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
