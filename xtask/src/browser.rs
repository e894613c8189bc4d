//! Debian's Chromium, for the headless test of `flan eval compare`'s rating page
//! (`flan-cli/tests/compare_cli.rs` renders it with `/usr/bin/chromium --headless`).
//!
//! `setup` and `ci` install it with apt-get when `/usr/bin/chromium` is missing: non-interactive,
//! without recommended packages (a headless renderer needs none of them), and with `apt-get
//! update` first only when the install fails (stale or absent package lists). apt-get needs root;
//! a user who is not root installs the `chromium` package once by other means.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

use crate::process;

/// Where Debian's `chromium` package puts the browser; the test looks there.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `apt-get ARGS` that never asks a question.
fn apt_get(args: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Installs Debian's `chromium` unless [`CHROMIUM`] exists; prints what it does.
pub fn setup() -> Result<()> {
    if Path::new(CHROMIUM).exists() {
        eprintln!("browser: {CHROMIUM} is installed");
        return Ok(());
    }
    eprintln!("browser: {CHROMIUM} is missing; installing Debian's chromium with apt-get");
    let install = ["install", "-y", "--no-install-recommends", "chromium"];
    if let Err(first) = process::run(&mut apt_get(&install)) {
        eprintln!("browser: {first:#}; updating the package lists and trying again");
        process::run(&mut apt_get(&["update"]))
            .context("apt-get needs root: install Debian's `chromium` package as root")?;
        process::run(&mut apt_get(&install))
            .context("apt-get needs root: install Debian's `chromium` package as root")?;
    }
    if !Path::new(CHROMIUM).exists() {
        bail!("apt-get installed chromium but {CHROMIUM} is still missing");
    }
    eprintln!("browser: installed {CHROMIUM}");
    Ok(())
}
