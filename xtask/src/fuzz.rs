//! `cargo xtask fuzz [--cases N] [--seed S]`: every fuzz target of the workspace (the `fuzz` test
//! of flan-data, flan-eval, flan-train, flan-cli and flan-serve; see flan-fuzz) with N inputs each, then a table of how
//! many inputs each target ran. The seed defaults to the commit's, so CI explores new inputs at
//! every commit and a failure replays with the seed it prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{libtorch, process};

/// The crates with a `fuzz` test target.
const FUZZED: [&str; 5] = [
    "flan-data",
    "flan-eval",
    "flan-train",
    "flan-cli",
    "flan-serve",
];

/// Inputs per target in CI: about a minute for all targets on a 2-core machine.
pub const CI_CASES: u32 = 1000;

/// `cargo xtask fuzz` arguments.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Inputs per target (the targets that run a process per input take a sixteenth).
    #[arg(long, default_value_t = CI_CASES, value_parser = clap::value_parser!(u32).range(1..))]
    cases: u32,
    /// The seed (a number, or `random`; default: from the commit).
    #[arg(long)]
    seed: Option<String>,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let seed = match args.seed {
        Some(seed) => seed,
        None => commit_seed()?,
    };
    fuzz(
        &libtorch::setup(libtorch::Verbosity::Quiet)?,
        args.cases,
        &seed,
    )
}

/// A seed from the checked-out commit: the first 16 hex digits of HEAD, as a number.
pub fn commit_seed() -> Result<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(process::workspace_root())
        .output()
        .context("running git rev-parse HEAD")?;
    let head = String::from_utf8_lossy(&out.stdout);
    match head.get(..16).map(|hex| u64::from_str_radix(hex, 16)) {
        Some(Ok(seed)) if out.status.success() => Ok(seed.to_string()),
        // Not a git checkout (a source tarball): a fixed seed.
        _ => Ok("0".into()),
    }
}

/// Runs the targets with `cases` inputs each and prints their counts.
pub fn fuzz(libtorch: &libtorch::Libtorch, cases: u32, seed: &str) -> Result<()> {
    let mut cmd = process::cargo();
    cmd.arg("test");
    for package in FUZZED {
        cmd.args(["--package", package]);
    }
    // Every target runs even when one fails, so the table counts them all.
    cmd.args(["--no-fail-fast", "--test", "fuzz", "--", "--nocapture"])
        .env("FLAN_FUZZ_CASES", cases.to_string())
        .env("FLAN_FUZZ_SEED", seed)
        .stderr(Stdio::piped());
    libtorch.apply(&mut cmd);
    eprintln!("fuzz: {cases} inputs per target, FLAN_FUZZ_SEED={seed}");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", process::display(&cmd)))?;
    let mut counts = Vec::new();
    let stderr = child.stderr.take().context("the test's stderr")?;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading the test's stderr")?;
        eprintln!("{line}");
        if let Some(count) = target_count(&line) {
            counts.push(count);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    eprintln!(
        "fuzz: {} targets, {} inputs in {:.0} s",
        counts.len(),
        counts.iter().map(|(_, n)| n).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    for (target, n) in &counts {
        eprintln!("  {target:<32} {n:>7} inputs");
    }
    if !status.success() {
        bail!("a fuzz target failed (its input and seed are printed above)");
    }
    Ok(())
}

/// `fuzz <target>: <n> inputs (...)` as printed by flan-fuzz.
fn target_count(line: &str) -> Option<(String, u64)> {
    let rest = line.strip_prefix("fuzz ")?;
    let (target, rest) = rest.split_once(": ")?;
    let n = rest.split_once(" inputs")?.0.parse().ok()?;
    Some((target.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_flan_fuzzs_lines() {
        assert_eq!(
            target_count("fuzz jsonl: 1000 inputs (seed 7; FLAN_FUZZ_SEED=7 replays it)"),
            Some(("jsonl".into(), 1000))
        );
        assert_eq!(target_count("test jsonl ... ok"), None);
        assert_eq!(target_count("fuzz x: many inputs"), None);
    }
}
