//! `cargo xtask`: the project's automation, in plain Rust.
//!
//! Every task that builds or runs code linked against libtorch first makes sure libtorch is
//! installed (see [`libtorch`]) and then runs cargo with one fixed environment, so that cargo's
//! fingerprints for `torch-sys` never change between commands and it is built once.

mod bench;
mod browser;
mod ci;
mod finetune;
mod fixtures;
mod fuzz;
mod install;
mod isa;
mod libtorch;
mod process;
mod replicate;
mod test;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The project's automation. Tasks that build against libtorch install it first (once per user).
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Install libtorch (PyPI torch==2.13.0) into the per-user cache, once, and Debian's
    /// chromium (for the rating page's headless test) when /usr/bin/chromium is missing.
    Setup {
        /// Also install the CUDA headers that `--features nccl` builds need.
        #[arg(long)]
        cuda: bool,
    },
    /// Print the `export` lines that make plain cargo use that libtorch:
    /// eval "$(cargo xtask env)".
    Env,
    /// Setup if needed, then `cargo test --workspace ARGS` (e.g. `-p flan-data -- --nocapture`).
    Test {
        /// Arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup if needed, build `flan` in release and run `flan train ARGS` (the default run without
    /// a --config); `--nproc N` starts N local ranks with torchrun's environment.
    Finetune {
        /// Arguments for `flan train`, and `--nproc N`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup if needed, build `flan` in release and run `flan replicate`: the paper's
    /// experiments at micro scale (configs/replicate/full.toml, or quick.toml with --quick).
    Replicate(replicate::ReplicateArgs),
    /// Build `flan` in release and copy it to DIR/bin; it finds libtorch on its own.
    Install {
        /// Where to install (default: $CARGO_HOME, else ~/.cargo).
        #[arg(long, value_name = "DIR")]
        prefix: Option<PathBuf>,
    },
    /// Install transformers into the venv and rerun xtask/fixtures/*.py (the parity data).
    Fixtures {
        /// Only these fixtures (default: all).
        names: Vec<String>,
    },
    /// Speed next to transformers/tokenizers on the same data and weights; writes results.json
    /// and results.md.
    Bench(bench::BenchArgs),
    /// Every fuzz target (readers, specs, configs, tokenizer files, the binary's entry points),
    /// seeded from the commit; prints how many inputs each ran.
    Fuzz(fuzz::FuzzArgs),
    /// What CI runs: setup, rustfmt check, clippy -D warnings, the NCCL build check, the tests,
    /// the numerics tests again with AVX2-only kernels, the fuzz targets.
    Ci,
}

fn main() {
    let xtask = Xtask::parse();
    if let Err(err) = run(xtask.task) {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup { cuda } => {
            let libtorch = libtorch::setup(libtorch::Verbosity::Normal)?;
            if cuda {
                libtorch::setup_cuda_headers(&libtorch, libtorch::Verbosity::Normal)?;
            }
            browser::setup()
        }
        Task::Env => libtorch::print_env(),
        Task::Test { args } => test::run(&args),
        Task::Finetune { args } => finetune::run(&args),
        Task::Replicate(args) => replicate::run(args),
        Task::Fixtures { names } => fixtures::run(&names),
        Task::Install { prefix } => install::run(prefix),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Ci => ci::run(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_answers_help_and_test_passes_cargos_arguments_through() {
        use clap::CommandFactory;
        Xtask::command().debug_assert();
        for task in [
            "setup",
            "env",
            "test",
            "finetune",
            "replicate",
            "install",
            "fixtures",
            "bench",
            "fuzz",
            "ci",
        ] {
            let err = Xtask::try_parse_from(["xtask", task, "--help"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{task}");
        }
        let parsed =
            Xtask::try_parse_from(["xtask", "test", "-p", "flan-data", "--", "--nocapture"])
                .unwrap();
        match parsed.task {
            Task::Test { args } => assert_eq!(args, ["-p", "flan-data", "--", "--nocapture"]),
            other => panic!("{other:?}"),
        }
        let parsed =
            Xtask::try_parse_from(["xtask", "finetune", "--", "--config", "x.toml"]).unwrap();
        match parsed.task {
            Task::Finetune { args } => assert_eq!(args, ["--config", "x.toml"]),
            other => panic!("{other:?}"),
        }
    }
}
