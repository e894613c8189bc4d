//! Gives the `flan` and `flan-bench` binaries (and this package's tests) a run-time path to the
//! libtorch they link, so a built `flan` starts without `eval "$(cargo xtask env)"`.

fn main() {
    let libtorch = flan_build::libtorch_dir("flan-cli");
    flan_build::rpath_to_libtorch(&libtorch);
}
