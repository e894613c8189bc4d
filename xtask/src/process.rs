//! Running child processes: arguments passed separately (never through a shell), the command
//! echoed before it runs, and a failure that names the command.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// `cargo` as invoked by the user (`CARGO` is set by `cargo run`), run from the workspace root.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Human-readable form of a command for progress lines and errors.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Builds `bin` of the `flan-cli` package in release with libtorch's environment and returns the
/// path of the built executable.
pub fn build_release_bin(libtorch: &crate::libtorch::Libtorch, bin: &str) -> Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "--release", "--package", "flan-cli", "--bin", bin]);
    libtorch.apply(&mut build);
    run(&mut build)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target_dir.join("release").join(bin))
}

/// Runs `cmd` with inherited stdio; an unsuccessful exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` like [`run`] with its standard output sent to our standard error: for installers
/// (venv, pip) run on the way to printing something a shell reads, such as `cargo xtask env`'s
/// export lines, which their progress lines would otherwise corrupt.
pub fn run_to_stderr(cmd: &mut Command) -> Result<()> {
    run(cmd.stdout(std::io::stderr()))
}

/// Runs `cmd` and returns its exit code (for commands whose code we pass on, like tests).
pub fn run_status(cmd: &mut Command) -> Result<i32> {
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    Ok(status.code().unwrap_or(1))
}
