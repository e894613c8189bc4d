//! `cargo xtask install [--prefix DIR]`: build `flan` in release and put it in `DIR/bin`
//! (default: `$CARGO_HOME/bin`, else `~/.cargo/bin`, where `cargo install` puts programs).
//!
//! The binary finds libtorch through the run path its build recorded (flan-cli's build script),
//! so the installed copy runs from any shell as long as the libtorch it was built against (the
//! per-user cache of `cargo xtask setup`, or `LIBTORCH`) stays where it is.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

use crate::{libtorch, process};

pub fn run(prefix: Option<PathBuf>) -> Result<()> {
    let prefix = match prefix {
        Some(dir) => dir,
        None => default_prefix()?,
    };
    let libtorch = libtorch::setup(libtorch::Verbosity::Quiet)?;
    let built = process::build_release_bin(&libtorch, "flan")?;
    let bin_dir = prefix.join("bin");
    std::fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    // Copy beside the target and rename over it: a running `flan` keeps its old file.
    let target = bin_dir.join("flan");
    let partial = bin_dir.join(".flan.partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("moving {} to {}", partial.display(), target.display()))?;

    // The installed copy must start with nothing from this environment.
    let check = Command::new(&target)
        .arg("--version")
        .env_clear()
        .output()
        .with_context(|| format!("running {}", target.display()))?;
    if !check.status.success() {
        bail!(
            "{} was installed but does not start: {}",
            target.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    eprintln!(
        "installed {} ({}); it loads libtorch from {}",
        target.display(),
        String::from_utf8_lossy(&check.stdout).trim(),
        libtorch.lib_dir().display()
    );
    if !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|p| p == bin_dir) {
        eprintln!("note: {} is not on your PATH", bin_dir.display());
    }
    Ok(())
}

fn default_prefix() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cargo")),
        None => bail!("neither CARGO_HOME nor HOME is set: pass --prefix DIR"),
    }
}
