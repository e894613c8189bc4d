//! Compiles the c10d shim (`csrc/c10d_shim.cpp`) against the headers of the libtorch that tch
//! links, with the flags torch-sys uses for its own shim, and links it to libtorch_cpu (which
//! exports c10d, Gloo included).
//!
//! Where libtorch is and the compiler flags come from flan-build, shared with flan-model's shim.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/c10d_shim.h");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-env-changed=FLAN_DIST_CUDA_INCLUDE");

    let libtorch = flan_build::libtorch_dir("flan-dist");
    let include = libtorch.join("include");
    if !include
        .join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
        .is_file()
    {
        panic!(
            "flan-dist: {} has no c10d headers (torch/csrc/distributed/c10d); \
             it needs a libtorch built with distributed support, such as the PyPI wheel \
             that `cargo xtask setup` installs",
            include.display()
        );
    }
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));

    let mut build = flan_build::libtorch_cpp_build(&libtorch);
    build
        // ProcessGroupGloo.hpp is empty unless this is set (the wheel was built with it).
        .define("USE_C10D_GLOO", None)
        .include(manifest.join("include"))
        .file(manifest.join("csrc/c10d_shim.cpp"));

    if env::var_os("CARGO_FEATURE_NCCL").is_some() {
        build
            .define("USE_C10D_NCCL", None)
            .define("FLAN_DIST_NCCL", None)
            .define("USE_CUDA", None);
        for dir in cuda_include_dirs(&libtorch) {
            build.include(dir);
        }
    }
    build.compile("flan_dist_c10d");

    let mut libs = vec!["torch_cpu", "c10"];
    if env::var_os("CARGO_FEATURE_NCCL").is_some() {
        libs.push("torch_cuda");
    }
    flan_build::link_libtorch(&libtorch, &libs);
}

/// NCCL and CUDA headers for the `nccl` feature: the directories in `FLAN_DIST_CUDA_INCLUDE` (a
/// path list) first, then the `nvidia/*/include` directories of the pip packages installed next
/// to the torch wheel (NCCL and the CUDA runtime come with it; CUDA's `crt/` and `nv/` headers are
/// in the `nvidia-cuda-crt` and `nvidia-cuda-cccl` packages, which the wheel does not pull in),
/// then `/usr/local/cuda/include`.
fn cuda_include_dirs(libtorch: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("FLAN_DIST_CUDA_INCLUDE")
        .map(|list| env::split_paths(&list).collect())
        .unwrap_or_default();
    if let Some(site_packages) = libtorch.parent() {
        if let Ok(entries) = std::fs::read_dir(site_packages.join("nvidia")) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("include"))
                .filter(|p| p.is_dir())
                .collect();
            found.sort();
            dirs.extend(found);
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs
}
