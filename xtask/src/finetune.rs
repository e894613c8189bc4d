//! `cargo xtask finetune [--nproc N] [ARGS]`: build `flan` in release and run `flan train ARGS`.
//!
//! Without `--config`, the checked-in default run is used (configs/finetune-default/train.toml:
//! a tiny T5 trained from scratch on the synthetic suite, evaluated before and after; with
//! `--model DIR|HUB_ID`, pretrained.toml: the Flan recipe on that checkpoint, same suite); without
//! `--output-dir` (or `--set output_dir=...`), each run gets a new directory
//! `runs/finetune-<UTC date>-<time>`. `--nproc N` starts N local processes with the environment
//! `torchrun` would give them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{libtorch, process};

/// The default run's config, relative to the workspace root: training from scratch...
const DEFAULT_CONFIG: &str = "configs/finetune-default/train.toml";
/// ...or, when `--model` names a checkpoint (a directory or a hub id), the Flan recipe for finetuning it.
const PRETRAINED_CONFIG: &str = "configs/finetune-default/pretrained.toml";

pub fn run(args: &[String]) -> Result<()> {
    // `cargo xtask finetune -- --model DIR` and `cargo xtask finetune --model DIR` both work
    // (take_nproc drops the separator).
    let (nproc, mut train_args) = take_nproc(args)?;
    let has = |args: &[String], flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    if !has(&train_args, "--config") && !has(&train_args, "-c") {
        let default = if has(&train_args, "--model") {
            PRETRAINED_CONFIG
        } else {
            DEFAULT_CONFIG
        };
        let config = process::workspace_root().join(default);
        train_args.splice(0..0, ["--config".to_string(), config.display().to_string()]);
    }
    let sets_output = train_args
        .windows(2)
        .any(|w| w[0] == "--set" && w[1].trim_start().starts_with("output_dir"));
    if !has(&train_args, "--output-dir") && !sets_output && !has(&train_args, "--print-config") {
        let dir =
            std::path::absolute(PathBuf::from("runs").join(format!("finetune-{}", utc_stamp())))
                .context("resolving the output directory")?;
        train_args.extend(["--output-dir".to_string(), dir.display().to_string()]);
    }

    let libtorch = libtorch::setup(libtorch::Verbosity::Quiet)?;
    let flan = process::build_release_bin(&libtorch, "flan")?;
    let command = |rank: usize| {
        let mut train = Command::new(&flan);
        train.arg("train").args(&train_args);
        libtorch.apply(&mut train);
        if rank > 0 {
            // One progress display is enough; the primary rank owns the terminal.
            train.stdout(std::process::Stdio::null());
        }
        train
    };
    if nproc == 1 {
        let mut train = command(0);
        eprintln!("$ {}", process::display(&train));
        let code = process::run_status(&mut train)?;
        if code != 0 {
            std::process::exit(code);
        }
        return Ok(());
    }

    // N local ranks: the environment torchrun sets, a free port on loopback, and the cores
    // shared out so the ranks do not oversubscribe the machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for the rendezvous")?
        .port();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / nproc).max(1).to_string();
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut train = command(rank);
        train
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            train.env("OMP_NUM_THREADS", &threads);
        }
        if rank == 0 {
            eprintln!(
                "$ RANK=0..{} WORLD_SIZE={nproc} MASTER_ADDR=127.0.0.1 MASTER_PORT={port} {}",
                nproc - 1,
                process::display(&train)
            );
        }
        let child = train
            .spawn()
            .with_context(|| format!("starting rank {rank}: {}", process::display(&train)))?;
        children.push((rank, child));
    }
    // Wait for all; the first failure stops the others (they would wait for it until their
    // collective timeout otherwise).
    let mut failed: Option<(usize, std::process::ExitStatus)> = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (rank, _) = children.remove(i);
                    if !status.success() && failed.is_none() {
                        failed = Some((rank, status));
                        for (_, other) in &mut children {
                            let _ = other.kill();
                        }
                    }
                }
                Ok(None) => i += 1,
                Err(e) => bail!("waiting for rank {}: {e}", children[i].0),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some((rank, status)) = failed {
        bail!("rank {rank} of {nproc} failed ({status}); the other ranks were stopped");
    }
    Ok(())
}

/// Splits `--nproc N` (or `--nproc=N`) off the arguments for `flan train`.
fn take_nproc(args: &[String]) -> Result<(usize, Vec<String>)> {
    let mut nproc = 1;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        // `cargo xtask finetune --nproc 2 -- --model DIR`: the separator is ours, not flan's.
        if a == "--" {
            continue;
        }
        let value = if a == "--nproc" {
            Some(
                it.next()
                    .context("--nproc needs a number of processes")?
                    .clone(),
            )
        } else {
            a.strip_prefix("--nproc=").map(str::to_string)
        };
        match value {
            Some(v) => {
                nproc = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .with_context(|| format!("--nproc expects a number >= 1, got `{v}`"))?;
            }
            None => rest.push(a.clone()),
        }
    }
    Ok((nproc, rest))
}

/// Now as `YYYYMMDD-HHMMSS` in UTC.
pub fn utc_stamp() -> String {
    stamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Seconds since the epoch as `YYYYMMDD-HHMMSS` (days to civil date: Howard Hinnant's algorithm).
fn stamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nproc_is_taken_out_and_checked() {
        let args: Vec<String> = ["--nproc", "2", "--", "--steps", "5", "--nproc=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (n, rest) = take_nproc(&args).unwrap();
        assert_eq!(n, 3);
        assert_eq!(rest, ["--steps", "5"]);
        assert!(take_nproc(&["--nproc".into(), "0".into()]).is_err());
        assert!(take_nproc(&["--nproc".into()]).is_err());
    }

    #[test]
    fn stamps_are_utc_dates_and_times() {
        assert_eq!(stamp(0), "19700101-000000");
        // A leap day, and a date in the 2020s with a time of day.
        assert_eq!(stamp(951_782_400), "20000229-000000");
        assert_eq!(stamp(1_795_478_400 + 3723), "20261124-010203");
        assert_eq!(utc_stamp().len(), 15);
    }
}
