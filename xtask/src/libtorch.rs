//! libtorch for `tch`: install it once per user, and describe it to cargo the same way every time.
//!
//! `tch` 0.26 needs PyTorch 2.13.0. The PyPI wheel `torch==2.13.0` carries libtorch (CPU and CUDA
//! in one; it runs on machines without a GPU), so `setup` makes a virtual environment in the
//! per-user cache (`$FLAN_CACHE_DIR`, else `$XDG_CACHE_HOME/flan`, else `~/.cache/flan`), installs
//! that wheel with pip and records where libtorch is in `libtorch.env`. The record is written only
//! after the install was checked, so its presence means "installed and working".
//!
//! A user who already has libtorch sets `LIBTORCH` (and, if needed, `LIBTORCH_CXX11_ABI`); then
//! nothing is installed.
//!
//! The environment handed to cargo is always the same three variables with the same values, so
//! `torch-sys` (whose build script reruns when they change) is built once and cargo's cache holds
//! across `cargo xtask test`, `cargo xtask ci` and a shell prepared with `eval "$(cargo xtask env)"`.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process;

/// The PyTorch version `tch` 0.26 is built for.
pub const TORCH_VERSION: &str = "2.13.0";

/// The PyPI packages with CUDA's `crt/` and `nv/` headers, which the NCCL process group's headers
/// include and the torch wheel does not pull in, at the versions torch 2.13.0's
/// `cuda-toolkit==13.0.3` requirement pins for its `crt` and `cccl` extras (CUDA 13.0). They
/// install into `nvidia/cu13/include` next to the wheel's own CUDA headers, where flan-dist's
/// build script looks. Header-only: nothing here is loaded at run time.
pub const CUDA_HEADER_PACKAGES: [(&str, &str); 2] = [
    ("nvidia-cuda-crt", "13.0.88"),
    ("nvidia-cuda-cccl", "13.0.85"),
];

/// What flan-dist's `nccl` feature includes that is not in libtorch's own headers, relative to
/// the wheel's `site-packages`: NCCL (from the wheel's `nvidia-nccl-cu13`), the CUDA runtime
/// (`nvidia-cuda-runtime`) and the two header packages above.
const CUDA_HEADERS: [&str; 4] = [
    "nvidia/nccl/include/nccl.h",
    "nvidia/cu13/include/cuda_runtime.h",
    "nvidia/cu13/include/crt/host_config.h",
    "nvidia/cu13/include/nv/target",
];

/// Name of the record that `setup` writes once libtorch works.
const RECORD: &str = "libtorch.env";

/// Where libtorch is and how it was built: what torch-sys needs to know.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// Directory with `include/` and `lib/` (the `torch` package directory of the wheel).
    pub dir: PathBuf,
    /// `1` for the C++11 ABI (every PyPI wheel since 2.7), `0` for the old one.
    pub cxx11_abi: String,
}

impl Libtorch {
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib")
    }

    /// The variables cargo and the built binaries need, in a fixed order.
    pub fn env_vars(&self) -> Vec<(&'static str, OsString)> {
        // `cargo run` (how `cargo xtask` starts us) prepends its own target and toolchain
        // directories to LD_LIBRARY_PATH; those must not leak into the user's shell.
        let inherited = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
        let cargo_added = cargo_library_dirs();
        let mut dirs = vec![self.lib_dir()];
        for dir in std::env::split_paths(&inherited) {
            let from_cargo = cargo_added.iter().any(|prefix| dir.starts_with(prefix));
            if !dir.as_os_str().is_empty() && !from_cargo && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let ld_path = std::env::join_paths(dirs).unwrap_or_else(|_| self.lib_dir().into());
        vec![
            ("LIBTORCH", self.dir.clone().into_os_string()),
            ("LIBTORCH_CXX11_ABI", self.cxx11_abi.clone().into()),
            ("LD_LIBRARY_PATH", ld_path),
        ]
    }

    /// Applies [`Libtorch::env_vars`] to a command.
    pub fn apply(&self, cmd: &mut Command) {
        for (key, value) in self.env_vars() {
            cmd.env(key, value);
        }
        // These would change torch-sys's build (and force a rebuild) if inherited by accident.
        cmd.env_remove("LIBTORCH_USE_PYTORCH");
    }

    fn check(&self) -> Result<()> {
        let lib = self.lib_dir().join("libtorch_cpu.so");
        let header = self
            .dir
            .join("include/torch/csrc/api/include/torch/torch.h");
        if !lib.is_file() || !header.is_file() {
            bail!(
                "{} is not a libtorch directory (expected {} and {})",
                self.dir.display(),
                lib.display(),
                header.display()
            );
        }
        Ok(())
    }
}

/// Directories that `cargo run` adds to the library path of the program it runs: the target
/// directory and the toolchain's sysroot (the parent of the `bin/` that holds `$CARGO`).
fn cargo_library_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| process::workspace_root().join("target"))];
    if let Some(cargo) = std::env::var_os("CARGO") {
        if let Some(sysroot) = Path::new(&cargo).parent().and_then(Path::parent) {
            dirs.push(sysroot.to_path_buf());
        }
    }
    dirs
}

/// How much `setup` says when libtorch is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// One line when nothing needs doing (the `setup` task).
    Normal,
    /// Nothing when nothing needs doing (tasks that call setup first).
    Quiet,
}

/// The per-user cache directory of the project.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLAN_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("flan"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("flan")),
        None => bail!("neither FLAN_CACHE_DIR, XDG_CACHE_HOME nor HOME is set: cannot place the libtorch cache"),
    }
}

/// Directory of our torch install: `<cache>/torch-2.13.0/`.
pub fn install_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("torch-{TORCH_VERSION}")))
}

/// The Python interpreter of our virtual environment (also used by fixture and bench tasks).
pub fn venv_python() -> Result<PathBuf> {
    Ok(install_dir()?.join("venv").join("bin").join("python"))
}

/// Makes sure libtorch is available and returns where it is.
pub fn setup(verbosity: Verbosity) -> Result<Libtorch> {
    if let Some(dir) = std::env::var_os("LIBTORCH").filter(|d| !d.is_empty()) {
        let libtorch = Libtorch {
            dir: PathBuf::from(dir),
            cxx11_abi: std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into()),
        };
        libtorch
            .check()
            .context("LIBTORCH is set but does not point at libtorch; unset it to let `cargo xtask setup` install one")?;
        if verbosity == Verbosity::Normal {
            eprintln!(
                "libtorch: using LIBTORCH={} (set by you); installing nothing",
                libtorch.dir.display()
            );
        }
        return Ok(libtorch);
    }

    let dir = install_dir()?;
    if let Some(libtorch) = read_record(&dir)? {
        if verbosity == Verbosity::Normal {
            eprintln!(
                "libtorch {TORCH_VERSION}: already installed at {}",
                libtorch.dir.display()
            );
        }
        return Ok(libtorch);
    }
    install(&dir)
}

/// Makes sure the headers that flan-dist's `nccl` feature compiles against are next to
/// `libtorch` (see [`CUDA_HEADER_PACKAGES`]); pip runs only when a pinned package or a header is
/// missing. A libtorch the user provides (`LIBTORCH`) is left alone: its CUDA headers are theirs
/// to provide (a CUDA toolkit in /usr/local/cuda, or `FLAN_DIST_CUDA_INCLUDE`).
pub fn setup_cuda_headers(libtorch: &Libtorch, verbosity: Verbosity) -> Result<()> {
    if !libtorch.dir.starts_with(install_dir()?) {
        eprintln!(
            "cuda headers: LIBTORCH={} is yours; installing nothing (flan-dist's nccl feature \
             looks in FLAN_DIST_CUDA_INCLUDE, in nvidia/*/include next to libtorch, then in \
             /usr/local/cuda/include)",
            libtorch.dir.display()
        );
        return Ok(());
    }
    let site_packages = libtorch
        .dir
        .parent()
        .context("libtorch's directory has no parent (site-packages)")?;
    let pinned: Vec<String> = CUDA_HEADER_PACKAGES
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing_cuda_headers(site_packages).is_empty() {
        if verbosity == Verbosity::Normal {
            eprintln!(
                "cuda headers: already installed ({}) in {}",
                pinned.join(", "),
                site_packages.display()
            );
        }
        return Ok(());
    }
    eprintln!(
        "cuda headers: installing {} into {}",
        pinned.join(", "),
        site_packages.display()
    );
    pip_install(&pinned.iter().map(String::as_str).collect::<Vec<_>>())?;
    let missing = missing_cuda_headers(site_packages);
    if !missing.is_empty() {
        bail!(
            "after installing {}, these are still missing: {}",
            pinned.join(", "),
            missing.join(", ")
        );
    }
    Ok(())
}

/// The pinned packages (by their `.dist-info` directory, as pip names it) and headers that are
/// not in `site_packages`.
fn missing_cuda_headers(site_packages: &Path) -> Vec<String> {
    let packages = CUDA_HEADER_PACKAGES.iter().filter_map(|(name, version)| {
        let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
        (!site_packages.join(&dist_info).is_dir()).then_some(dist_info)
    });
    let headers = CUDA_HEADERS
        .iter()
        .filter(|h| !site_packages.join(h).exists())
        .map(|h| h.to_string());
    packages.chain(headers).collect()
}

/// Installs Python `packages` (the reference side of fixtures and benchmarks) into our venv.
pub fn pip_install(packages: &[&str]) -> Result<()> {
    let mut pip = Command::new(venv_python()?);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(packages);
    process::run_to_stderr(&mut pip).with_context(|| {
        format!("pip could not install {packages:?} into the xtask venv: is PyPI reachable?")
    })
}

/// Prints `export` lines for `eval "$(cargo xtask env)"`.
pub fn print_env() -> Result<()> {
    let libtorch = setup(Verbosity::Quiet)?;
    for (key, value) in libtorch.env_vars() {
        println!("export {key}={}", shell_quote(&value.to_string_lossy()));
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Reads the record of a finished install; `None` when there is none or it no longer matches
/// the files on disk (then we install again).
fn read_record(dir: &Path) -> Result<Option<Libtorch>> {
    let path = dir.join(RECORD);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut libtorch_dir = None;
    let mut abi = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("LIBTORCH", v)) => libtorch_dir = Some(PathBuf::from(v)),
            Some(("LIBTORCH_CXX11_ABI", v)) => abi = Some(v.to_string()),
            _ => {}
        }
    }
    let (Some(dir), Some(cxx11_abi)) = (libtorch_dir, abi) else {
        eprintln!("libtorch: {} is incomplete; reinstalling", path.display());
        return Ok(None);
    };
    let libtorch = Libtorch { dir, cxx11_abi };
    if let Err(e) = libtorch.check() {
        eprintln!("libtorch: recorded install is broken ({e:#}); reinstalling");
        return Ok(None);
    }
    Ok(Some(libtorch))
}

fn install(dir: &Path) -> Result<Libtorch> {
    eprintln!(
        "libtorch {TORCH_VERSION}: installing PyPI torch=={TORCH_VERSION} into {} \
         (first run only; a download of about 3 GB)",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let python = venv_python()?;
    if !python.is_file() {
        let system_python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let mut venv = Command::new(&system_python);
        venv.arg("-m").arg("venv").arg(dir.join("venv"));
        match venv.stdout(std::io::stderr()).status() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{}` was not found: install Python 3.9 or newer with venv support \
                 (Debian/Ubuntu: `apt-get install python3 python3-venv`), or point PYTHON at \
                 an interpreter, or set LIBTORCH to an existing libtorch {TORCH_VERSION}",
                system_python.to_string_lossy()
            ),
            Err(e) => return Err(e).context("starting python3 -m venv"),
            Ok(s) if !s.success() => bail!(
                "`{}` failed ({s}): is the venv module installed? \
                 (Debian/Ubuntu: `apt-get install python3-venv`)",
                process::display(&venv)
            ),
            Ok(_) => {}
        }
    }

    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        &format!("torch=={TORCH_VERSION}"),
    ]);
    process::run_to_stderr(&mut pip).context(
        "pip could not install torch: check that PyPI is reachable (or that pip is configured \
         for your mirror) and that the cache directory has about 6 GB free; \
         FLAN_CACHE_DIR moves the cache",
    )?;

    let libtorch = query_torch(&python)?;
    libtorch.check()?;
    write_record(dir, &libtorch)?;
    eprintln!(
        "libtorch {TORCH_VERSION}: installed at {}",
        libtorch.dir.display()
    );
    Ok(libtorch)
}

/// Asks the installed torch package where it lives and how it was built.
fn query_torch(python: &Path) -> Result<Libtorch> {
    const PROBE: &str = "import os, torch\n\
        print(os.path.dirname(torch.__file__))\n\
        print(torch.__version__)\n\
        print(int(torch._C._GLIBCXX_USE_CXX11_ABI))\n";
    let output = Command::new(python)
        .args(["-c", PROBE])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "the installed torch does not import: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let [dir, version, abi] = lines[..] else {
        bail!("unexpected answer from torch: {stdout:?}");
    };
    let base_version = version.split('+').next().unwrap_or(version);
    if base_version != TORCH_VERSION {
        bail!("pip installed torch {version}, but tch needs {TORCH_VERSION}");
    }
    Ok(Libtorch {
        dir: PathBuf::from(dir),
        cxx11_abi: abi.trim().to_string(),
    })
}

/// Writes the record atomically: a crash never leaves a record of a half-finished install.
fn write_record(dir: &Path, libtorch: &Libtorch) -> Result<()> {
    let tmp = dir.join(format!("{RECORD}.tmp"));
    let text = format!(
        "LIBTORCH={}\nLIBTORCH_CXX11_ABI={}\nTORCH_VERSION={TORCH_VERSION}\n",
        libtorch.dir.display(),
        libtorch.cxx11_abi
    );
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(RECORD)).context("recording the libtorch install")?;
    Ok(())
}
