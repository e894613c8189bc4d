//! `cargo xtask replicate [--quick] [--plan FILE] [--output DIR]`: build `flan` in release and
//! run `flan replicate` with the checked-in plan (configs/replicate/full.toml, or quick.toml),
//! writing `runs/replicate-<UTC date>-<time>/` (report.md, figures/, points.json). Runs are
//! kept in the run cache, so an interrupted replication continues where it stopped.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;

use crate::{finetune, libtorch, process};

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// One seed, fewer points, shorter runs (configs/replicate/quick.toml): within 20 minutes
    /// on two cores.
    #[arg(long, conflicts_with = "plan")]
    quick: bool,
    /// Another plan (see configs/replicate/full.toml).
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Where the report goes (default: runs/replicate-<UTC date>-<time>).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

pub fn run(args: ReplicateArgs) -> Result<()> {
    let plan = match (&args.plan, args.quick) {
        (Some(plan), _) => plan.clone(),
        (None, true) => process::workspace_root().join("configs/replicate/quick.toml"),
        (None, false) => process::workspace_root().join("configs/replicate/full.toml"),
    };
    let output = match &args.output {
        Some(dir) => dir.clone(),
        None => std::path::absolute(
            PathBuf::from("runs").join(format!("replicate-{}", finetune::utc_stamp())),
        )
        .context("resolving the output directory")?,
    };
    let libtorch = libtorch::setup(libtorch::Verbosity::Quiet)?;
    let flan = process::build_release_bin(&libtorch, "flan")?;
    let mut replicate = Command::new(&flan);
    replicate
        .arg("replicate")
        .arg("--plan")
        .arg(&plan)
        .arg("--output")
        .arg(&output)
        .env(
            "FLAN_REPLICATE_COMMAND",
            if args.quick {
                "cargo xtask replicate --quick"
            } else {
                "cargo xtask replicate"
            },
        );
    libtorch.apply(&mut replicate);
    eprintln!("$ {}", process::display(&replicate));
    let code = process::run_status(&mut replicate)?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
