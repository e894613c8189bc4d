//! Compiles the C++ shims for what tch does not bind: per-device autocast (`csrc/autocast.cpp`;
//! tch has only the CUDA fp16 switch, and T5 v1.1/Flan needs bf16), inference mode
//! (`csrc/inference_mode.cpp`), flushing denormals on every intra-op thread
//! (`csrc/denormals.cpp`) and MKL's packed GEMM for decoding steps (`csrc/prepacked_linear.cpp`).

fn main() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/inference_mode.cpp");
    println!("cargo:rerun-if-changed=csrc/denormals.cpp");
    println!("cargo:rerun-if-changed=csrc/prepacked_linear.cpp");
    let libtorch = flan_build::libtorch_dir("flan-model");
    flan_build::libtorch_cpp_build(&libtorch)
        .file("csrc/autocast.cpp")
        .file("csrc/inference_mode.cpp")
        .file("csrc/denormals.cpp")
        .file("csrc/prepacked_linear.cpp")
        .compile("flan_model_shim");
    flan_build::link_libtorch(&libtorch, &["torch_cpu", "c10"]);
}
