//! Raw declarations of the C++ shims (`csrc/flan_model_shim.h`) and the helpers that turn their
//! error strings into [`Error`]s.
//!
//! The convention is flan-dist's: a function that can fail returns null on success or an owned,
//! NUL-terminated message (the C++ exception's, without its backtrace), which [`check`] copies
//! into an [`Error`] and frees with `flan_model_free_error`; results come back through
//! out-parameters. Functions that cannot fail return their result directly. The safe wrappers
//! live in [`crate::autocast`], [`crate::denormals`], [`crate::inference_mode`],
//! [`crate::prepacked_linear`] and [`crate::fma_linear`].

use std::ffi::{c_char, c_void, CStr};

use crate::{Error, Result};

extern "C" {
    pub(crate) fn flan_model_free_error(message: *mut c_char);

    // csrc/autocast.cpp
    pub(crate) fn flan_model_autocast_enter(
        device_type: i32,
        scalar_type: i32,
        prev_enabled: *mut i32,
        prev_scalar_type: *mut i32,
    ) -> *mut c_char;
    pub(crate) fn flan_model_autocast_exit(
        device_type: i32,
        prev_enabled: i32,
        prev_scalar_type: i32,
    ) -> *mut c_char;
    pub(crate) fn flan_model_autocast_is_enabled(device_type: i32, out: *mut i32) -> *mut c_char;

    // csrc/denormals.cpp
    pub(crate) fn flan_model_set_flush_denormal(on: i32) -> *mut c_char;
    pub(crate) fn flan_model_flush_denormal_is_on() -> i32;
    pub(crate) fn flan_model_flush_denormal_threads(seen: *mut i64, on: *mut i64);

    // csrc/inference_mode.cpp
    pub(crate) fn flan_model_inference_mode_enter(out: *mut *mut c_void) -> *mut c_char;
    pub(crate) fn flan_model_inference_mode_exit(guard: *mut c_void);
    pub(crate) fn flan_model_inference_mode_is_enabled() -> i32;

    // csrc/prepacked_linear.cpp
    pub(crate) fn flan_model_prepacked_linear_available() -> i32;
    pub(crate) fn flan_model_prepacked_linear_pack(
        weight: *mut c_void,
        rows: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn flan_model_prepacked_linear_forward(
        x: *mut c_void,
        packed: *mut c_void,
        weight: *mut c_void,
        rows: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn flan_model_onednn_linear_available() -> i32;
    pub(crate) fn flan_model_onednn_linear_pack(
        weight: *mut c_void,
        rows: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn flan_model_onednn_linear_forward(
        x: *mut c_void,
        packed: *mut c_void,
        weight: *mut c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;

    // csrc/fma_linear.cpp
    pub(crate) fn flan_model_fma_linear_panel_width(scalar_type: i32) -> i64;
    pub(crate) fn flan_model_fma_linear_pack(
        weight: *mut c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn flan_model_fma_linear_forward(
        x: *mut c_void,
        packed: *mut c_void,
        out_features: i64,
        k_block: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn flan_model_fma_linear_four_lanes(
        x: *mut c_void,
        packed: *mut c_void,
        out_features: i64,
        head: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;

    // csrc/bf16_dot_linear.cpp
    pub(crate) fn flan_model_bf16_dot_linear_available() -> i32;
    pub(crate) fn flan_model_bf16_dot_linear_forward(
        x: *mut c_void,
        weight: *mut c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;

    // csrc/rms_norm.cpp
    #[cfg(test)]
    pub(crate) fn flan_model_rms_norm_lanes() -> i32;
    pub(crate) fn flan_model_rms_norm_forward(
        x: *mut c_void,
        weight: *mut c_void,
        eps: f64,
        lanes: i32,
        out: *mut *mut c_void,
        variance: *mut *mut c_void,
    ) -> *mut c_char;
}

/// Converts a shim's return value: null is success, anything else an owned error message, which
/// `error` turns into this crate's error (e.g. `Error::Autocast`, or [`libtorch`]`("...")`).
pub(crate) fn check(message: *mut c_char, error: impl FnOnce(String) -> Error) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: the shim returns either null or a NUL-terminated string from malloc that we own.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed exactly once, with the shim's own deallocator.
    unsafe { flan_model_free_error(message) };
    Err(error(text))
}

/// The error of a shim call that failed in libtorch while doing `during`: for [`check`].
pub(crate) fn libtorch(during: &'static str) -> impl FnOnce(String) -> Error {
    move |message| Error::Libtorch { during, message }
}

/// The at::Tensor* behind `t` (tch's C_tensor), for the shim to read during a call.
pub(crate) fn tensor_ptr(t: &tch::Tensor) -> *mut c_void {
    t.as_ptr() as *mut c_void
}

/// Takes ownership of an at::Tensor* the shim handed back (null: none).
///
/// # Safety
/// `ptr` is null or a fresh `new at::Tensor` from the shim that nothing else owns.
pub(crate) unsafe fn owned_tensor(ptr: *mut c_void) -> Option<tch::Tensor> {
    // SAFETY: per this function's contract, a non-null pointer is tch's C_tensor, which the
    // returned Tensor frees exactly once.
    (!ptr.is_null()).then(|| unsafe { tch::Tensor::from_ptr(ptr as *mut torch_sys::C_tensor) })
}
