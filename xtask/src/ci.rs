//! `cargo xtask ci`: exactly what `.ci/run` runs, so a contributor can run it locally.

use anyhow::{bail, Result};

use crate::isa::Isa;
use crate::{browser, fuzz, libtorch, process, test};

/// The kernel caps of the second pass: libtorch's kernels of an AVX2-only CPU (ATen's AVX2 loops,
/// ATen's own bf16 GEMM since oneDNN is capped below AVX-512, MKL's AVX2 code), whatever CPU CI
/// runs on. Results that depend on the CPU's kernels must hold there too.
const LOWER_ISA: Isa = Isa::Avx2;

/// The test binaries whose results depend on the CPU's kernels: every comparison with
/// transformers' numbers (model parity, autocast, optimisers, generation through the CLI), and
/// the server's outputs against batch-1 generation (its batches sum in another order).
const NUMERICS_TESTS: [&[&str]; 3] = [
    &["--package", "flan-model", "--package", "flan-train"],
    &["--package", "flan-cli", "--test", "generate_score"],
    &["--package", "flan-serve", "--test", "serve"],
];

pub fn run() -> Result<()> {
    let libtorch = libtorch::setup(libtorch::Verbosity::Normal)?;

    let mut fmt = process::cargo();
    fmt.args(["fmt", "--all", "--check"]);
    process::run(&mut fmt)?;

    // Same environment as the tests, so clippy reuses torch-sys's build script output.
    let mut clippy = process::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    libtorch.apply(&mut clippy);
    process::run(&mut clippy)?;

    // The NCCL process group must keep compiling although no CI machine has a GPU: its shim
    // is built against the CUDA headers `setup --cuda` installs. Only flan-dist, flan-train
    // and flan-cli change features, so torch-sys is not rebuilt.
    libtorch::setup_cuda_headers(&libtorch, libtorch::Verbosity::Normal)?;
    let mut nccl = process::cargo();
    nccl.args(["check", "--package", "flan-cli", "--features", "nccl"]);
    libtorch.apply(&mut nccl);
    process::run(&mut nccl)?;

    // flan-cli's compare_cli test renders the rating page in a real headless browser.
    browser::setup()?;
    let code = test::run_tests(&[])?;
    if code != 0 {
        bail!("tests failed (exit code {code})");
    }

    // The caps are read by libtorch at run time only. Selecting these packages alone builds a
    // few workspace crates again (cargo unifies features over the selection, about 45 s here);
    // torch-sys and the other dependencies are reused.
    for packages in NUMERICS_TESTS {
        let mut cmd = process::cargo();
        cmd.arg("test").args(packages);
        libtorch.apply(&mut cmd);
        for (key, value) in LOWER_ISA.kernel_caps() {
            cmd.env(key, value);
        }
        eprintln!(
            "ci: again with the kernels of an AVX2-only CPU ({})",
            LOWER_ISA.caps_display()
        );
        let code = process::run_status(&mut cmd)?;
        if code != 0 {
            bail!("tests failed under the lower ISA (exit code {code})");
        }
    }

    // `cargo test` runs each fuzz target on a few inputs; here each gets more, new at each
    // commit, in a bounded time.
    fuzz::fuzz(&libtorch, fuzz::CI_CASES, &fuzz::commit_seed()?)
}
