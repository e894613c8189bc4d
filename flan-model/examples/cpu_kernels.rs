//! Prints [`flan_model::CpuKernels`] of this process as one JSON line: what selects libtorch's CPU
//! kernels here and the digest of its probe. `xtask/fixtures/t5_autocast.py` records it beside
//! the results transformers computed under the same environment.
//!
//! usage: cargo run -p flan-model --example cpu_kernels

fn main() {
    match flan_model::CpuKernels::detect() {
        Ok(kernels) => match serde_json::to_string(&kernels) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("cpu_kernels: {e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("cpu_kernels: {e}");
            std::process::exit(1);
        }
    }
}
