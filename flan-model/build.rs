//! Compiles the C++ shims for what tch does not bind: per-device autocast (`csrc/autocast.cpp`;
//! tch has only the CUDA fp16 switch, and T5 v1.1/Flan needs bf16), inference mode
//! (`csrc/inference_mode.cpp`), flushing denormals on every intra-op thread
//! (`csrc/denormals.cpp`), MKL's packed GEMM and oneDNN's reordered bf16 weights for decoding
//! steps (`csrc/prepacked_linear.cpp`), our own products for them (`csrc/fma_linear.cpp`,
//! `csrc/bf16_dot_linear.cpp`), and T5's layer norm in one call (`csrc/rms_norm.cpp`).
//! `csrc/flan_model_shim.h` declares their C interface and its error
//! convention, which flan-build's `csrc/flan_shim_error.h` (shared with
//! flan-dist) and `csrc/shim_error.cpp` implement; `src/ffi.rs` is the Rust side.

const SOURCES: [&str; 8] = [
    "csrc/shim_error.cpp",
    "csrc/autocast.cpp",
    "csrc/inference_mode.cpp",
    "csrc/denormals.cpp",
    "csrc/prepacked_linear.cpp",
    "csrc/fma_linear.cpp",
    "csrc/bf16_dot_linear.cpp",
    "csrc/rms_norm.cpp",
];

fn main() {
    println!("cargo:rerun-if-changed=csrc/flan_model_shim.h");
    println!("cargo:rerun-if-changed=csrc/intra_op_pool.h");
    println!("cargo:rerun-if-changed=csrc/fma_linear_tile.h");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let libtorch = flan_build::libtorch_dir("flan-model");
    flan_build::libtorch_cpp_build(&libtorch)
        .files(SOURCES)
        // fma_linear.cpp's kernel is the point of compiling it; unoptimised (a test build's
        // default) its accumulators would live in memory.
        .opt_level(2)
        // Its four-lane kernel rounds each product before adding it, as the order it follows
        // does: GCC would otherwise fuse a multiply and an add into an FMA.
        .flag("-ffp-contract=off")
        .compile("flan_model_shim");
    flan_build::link_libtorch(&libtorch, &["torch_cpu", "c10"]);
}
