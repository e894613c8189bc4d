//! `FlushDenormals`: a binary of its own without the test harness, so that the checks run on the
//! process's main thread, as training does: libtorch's intra-op pool belongs to the thread that
//! starts parallel work, and in the harness's test threads it ran single-threaded, which would
//! hide a worker thread that does not flush.

use flan_model::FlushDenormals;
use tch::{Device, Kind, Tensor};

/// Doubles a million denormals (large enough for libtorch to split the work over its threads)
/// and counts the results that stayed non-zero.
fn surviving_denormals() -> i64 {
    let tiny = Tensor::full([1 << 20], 1e-39, (Kind::Float, Device::Cpu));
    (tiny * 2.0).ne(0.0).sum(Kind::Int64).int64_value(&[])
}

fn main() {
    if !cfg!(target_arch = "x86_64") {
        // libtorch has the mode on x86 only; flan-train does not ask for it elsewhere.
        println!("test flushing_zeroes_denormals_on_every_thread_until_the_guard_drops ... ignored (not x86_64)");
        return;
    }
    flushing_zeroes_denormals_on_every_thread_until_the_guard_drops();
    println!("test flushing_zeroes_denormals_on_every_thread_until_the_guard_drops ... ok");
}

fn flushing_zeroes_denormals_on_every_thread_until_the_guard_drops() {
    tch::set_num_threads(2);
    assert!(!FlushDenormals::is_enabled());
    assert_eq!(surviving_denormals(), 1 << 20, "denormals kept by default");
    {
        let _outer = FlushDenormals::enter().unwrap();
        assert!(FlushDenormals::is_enabled());
        assert_eq!(FlushDenormals::intra_op_threads(), (2, 2));
        assert_eq!(surviving_denormals(), 0, "a thread did not flush");
        {
            let _inner = FlushDenormals::enter().unwrap();
        }
        assert!(
            FlushDenormals::is_enabled(),
            "the inner guard kept the outer's mode"
        );
        assert_eq!(surviving_denormals(), 0);
    }
    assert!(!FlushDenormals::is_enabled());
    assert_eq!(FlushDenormals::intra_op_threads(), (2, 0));
    assert_eq!(surviving_denormals(), 1 << 20, "a thread still flushes");
    // Normal numbers are untouched.
    let _guard = FlushDenormals::enter().unwrap();
    let x = Tensor::from_slice(&[1.5f32, -2.25e-30, 3.0e30]);
    assert!((&x * 2.0).equal(&Tensor::from_slice(&[3.0f32, -4.5e-30, 6.0e30])));
}
