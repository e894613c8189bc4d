//! `cargo xtask`: the project's automation, in plain Rust.
//!
//! Every task that builds or runs code linked against libtorch first makes sure libtorch is
//! installed (see [`libtorch`]) and then runs cargo with one fixed environment, so that cargo's
//! fingerprints for `torch-sys` never change between commands and it is built once.

mod bench;
mod ci;
mod finetune;
mod fixtures;
mod fuzz;
mod install;
mod libtorch;
mod process;
mod test;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  setup [--cuda]     install libtorch (PyPI torch==2.13.0) into the per-user cache, once;
                     --cuda also installs the CUDA headers that `--features nccl` builds need
  env                print the `export` lines that make plain cargo use that libtorch:
                         eval \"$(cargo xtask env)\"
  test [ARGS]        setup if needed, then `cargo test --workspace ARGS`
  finetune [ARGS]    setup if needed, build `flan` in release, run `flan train ARGS`
  install [--prefix DIR]
                     build `flan` in release and copy it to DIR/bin (default ~/.cargo/bin);
                     it finds libtorch on its own
  fixtures [NAME...] install transformers into the venv, rerun xtask/fixtures/*.py (parity data)
  bench [--quick] [--threads N] [--out DIR] [--shapes tiny,small] [--reps N]
                     speed next to transformers/tokenizers, same data and weights;
                     writes results.json and results.md (default target/bench/)
  fuzz [--cases N] [--seed S]
                     every fuzz target (readers, specs, configs, tokenizer files) with N
                     inputs each (default 1000), seeded from the commit; prints the counts
  ci                 what CI runs: setup, rustfmt check, clippy -D warnings,
                     `cargo check -p flan-cli --features nccl`, tests, the tests again
                     with AVX2-only kernels, the fuzz targets
";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("setup") => {
            let cuda = match rest.as_slice() {
                [] => false,
                [flag] if flag == "--cuda" => true,
                _ => bail!("`cargo xtask setup` takes only `--cuda`, got {rest:?}"),
            };
            let libtorch = libtorch::setup(libtorch::Verbosity::Normal)?;
            if cuda {
                libtorch::setup_cuda_headers(&libtorch, libtorch::Verbosity::Normal)?;
            }
            Ok(())
        }
        Some("env") => {
            no_args("env", &rest)?;
            libtorch::print_env()
        }
        Some("test") => test::run(&rest),
        Some("finetune") => finetune::run(&rest),
        Some("fixtures") => fixtures::run(&rest),
        Some("install") => install::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("ci") => {
            no_args("ci", &rest)?;
            ci::run()
        }
        Some("help" | "-h" | "--help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

fn no_args(task: &str, rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`cargo xtask {task}` takes no arguments, got {rest:?}");
    }
    Ok(())
}
