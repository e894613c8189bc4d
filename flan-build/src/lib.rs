//! Build-script helpers shared by the crates that compile a C++ shim against libtorch
//! (flan-dist binds c10d, flan-model binds autocast): where libtorch is, and a `cc::Build` with
//! the flags torch-sys uses for its own shim, so that both sides agree on the C++ ABI.
//!
//! Where libtorch is: `LIBTORCH` (what `cargo xtask env` exports), else the `links` metadata of
//! torch-sys (`DEP_TCH_LIBTORCH_LIB`, the `lib/` directory it linked against; a crate sees it
//! only if it depends on torch-sys directly).

use std::env;
use std::path::{Path, PathBuf};

/// The libtorch directory (the one holding `include/` and `lib/`).
///
/// Panics (the build script's way to fail) with what to do when neither source names one.
pub fn libtorch_dir(crate_name: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(dir) = env::var_os("LIBTORCH").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(lib) = env::var_os("DEP_TCH_LIBTORCH_LIB") {
        if let Some(parent) = Path::new(&lib).parent() {
            return parent.to_path_buf();
        }
    }
    panic!(
        "{crate_name}: LIBTORCH is not set and torch-sys reported no libtorch directory; \
         run cargo through `cargo xtask` or after `eval \"$(cargo xtask env)\"`"
    );
}

/// A C++17 `cc::Build` against the headers of `libtorch`, with the C++11 ABI setting libtorch
/// was built with (`LIBTORCH_CXX11_ABI`, default 1 as in the PyPI wheels), and this crate's
/// `csrc/` on the include path for `flan_shim_error.h`, the shims' one error convention.
pub fn libtorch_cpp_build(libtorch: &Path) -> cc::Build {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("csrc");
    println!(
        "cargo:rerun-if-changed={}",
        shared.join("flan_shim_error.h").display()
    );
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    let include = libtorch.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(shared);
    build
}

/// Links the libtorch libraries a shim's archive refers to. torch-sys already links them for
/// tch; naming them after the archive keeps its references resolvable whatever order the linker
/// sees the libraries in. The package's own executables (tests, examples, benches) find them
/// at run time through [`rpath_to_libtorch`].
pub fn link_libtorch(libtorch: &Path, libs: &[&str]) {
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    for lib in libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    rpath_to_libtorch(libtorch);
}

/// Records libtorch's `lib/` as the run-time search path (DT_RUNPATH) of the calling package's
/// executables (binaries, tests, examples, benches), so that a built `flan` starts in a fresh
/// shell without `LD_LIBRARY_PATH`; libtorch's own libraries find theirs through their
/// `$ORIGIN` run paths. `LD_LIBRARY_PATH`, when set, still comes first. The path is absolute:
/// moving or deleting that libtorch breaks the binaries, as it would with any dynamic library.
pub fn rpath_to_libtorch(libtorch: &Path) {
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,{}",
        libtorch.join("lib").display()
    );
}
