//! Compiles the autocast shim (`csrc/autocast.cpp`): tch binds only the deprecated CUDA-only,
//! fp16-only autocast switch, and T5 v1.1/Flan needs bf16 (fp16 overflows its activations).

fn main() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    let libtorch = flan_build::libtorch_dir("flan-model");
    flan_build::libtorch_cpp_build(&libtorch)
        .file("csrc/autocast.cpp")
        .compile("flan_model_autocast");
    flan_build::link_libtorch(&libtorch, &["torch_cpu", "c10"]);
}
