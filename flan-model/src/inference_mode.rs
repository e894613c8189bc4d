//! libtorch's inference mode: `no_grad` plus no autograd dispatch and no view/version tracking
//! on the tensors made inside it. For code that only reads results out (generation, scoring),
//! where the per-op overhead of a decoding step's many small calls is what costs.
//!
//! Tensors made inside the region are inference tensors: autograd refuses them later, so
//! nothing made here may outlive the region into training code. The guard is thread-bound, as
//! the mode is.
//!
//! Errors: entering cannot fail short of running out of memory for the guard (the shim reports
//! that as [`crate::Error::Libtorch`]); there is no error a test could provoke.

use std::ffi::c_void;
use std::marker::PhantomData;

use crate::ffi;
use crate::Result;

/// Inference mode from [`InferenceMode::enter`] until the guard drops (regions nest).
#[must_use = "inference mode is on only while the guard lives"]
pub struct InferenceMode {
    guard: *mut c_void,
    _thread_bound: PhantomData<*const ()>,
}

impl InferenceMode {
    /// Turns inference mode on for this thread.
    pub fn enter() -> Result<Self> {
        let mut guard = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the shim catches every C++ exception.
        let message = unsafe { ffi::flan_model_inference_mode_enter(&mut guard) };
        ffi::check(message, ffi::libtorch("entering inference mode"))?;
        Ok(InferenceMode {
            guard,
            _thread_bound: PhantomData,
        })
    }

    /// Whether inference mode is on, on this thread.
    pub fn is_enabled() -> bool {
        // SAFETY: no arguments; cannot fail.
        unsafe { ffi::flan_model_inference_mode_is_enabled() == 1 }
    }

    /// Runs `f` in inference mode.
    pub fn run<T>(f: impl FnOnce() -> T) -> Result<T> {
        let _guard = InferenceMode::enter()?;
        Ok(f())
    }
}

impl Drop for InferenceMode {
    fn drop(&mut self) {
        // SAFETY: `guard` came from flan_model_inference_mode_enter and is freed once, on the
        // thread that made it (the type is not Send).
        unsafe { ffi::flan_model_inference_mode_exit(self.guard) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn the_guard_nests_and_restores_and_its_tensors_need_no_grad() {
        assert!(!InferenceMode::is_enabled());
        let w = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        {
            let _outer = InferenceMode::enter().unwrap();
            assert!(InferenceMode::is_enabled());
            {
                let _inner = InferenceMode::enter().unwrap();
                assert!(InferenceMode::is_enabled());
            }
            assert!(InferenceMode::is_enabled());
            // No graph is recorded, even from a parameter that wants gradients.
            assert!(!(&w * 2.0).requires_grad());
        }
        assert!(!InferenceMode::is_enabled());
        assert!((&w * 2.0).requires_grad());
    }
}
