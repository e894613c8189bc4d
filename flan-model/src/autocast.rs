//! Mixed precision through libtorch's autocast: inside an [`Autocast`] region, matmuls and
//! linear layers run in bf16 (or fp16) over fp32 weights, while the ops autocast keeps in fp32
//! (reductions, softmax, norms) stay there. Gradients flow back through the casts, so the
//! weights, their gradients and the optimiser state stay fp32: this is `torch.autocast`.
//!
//! tch binds only the old CUDA-only switch with fp16 as its sole dtype, which T5 v1.1/Flan
//! overflows; the shim in `csrc/autocast.cpp` reaches the per-device switches and dtype, so the
//! same guard serves CUDA and CPU (where bf16 runs on AVX-512-BF16/AMX hardware).
//!
//! Autocast state is thread-local in libtorch, so the guard is neither `Send` nor `Sync`.
//!
//! Errors: libtorch's messages, as [`Error::Autocast`], for a device type it has no autocast for
//! (Vulkan) and for a lower precision other than bf16 and f16.

use std::marker::PhantomData;

use tch::{Device, Kind};

use crate::ffi;
use crate::{Error, Result};

/// An autocast region: on from [`Autocast::enter`] until the guard drops, which restores the
/// previous state (regions nest).
#[must_use = "autocast is on only while the guard lives"]
pub struct Autocast {
    device_type: i32,
    prev_enabled: i32,
    prev_scalar_type: i32,
    // libtorch keeps autocast state per thread: the guard must be dropped where it was made.
    _thread_bound: PhantomData<*const ()>,
}

impl Autocast {
    /// Turns autocast on for `device`'s type with `dtype` (`BFloat16` or `Half`) as the lower
    /// precision.
    pub fn enter(device: Device, dtype: Kind) -> Result<Self> {
        let device_type = device_type(device);
        let scalar_type = match dtype {
            Kind::Half => 5,
            Kind::BFloat16 => 15,
            other => {
                return Err(Error::Autocast(format!(
                    "the lower precision must be bf16 or f16, got {other:?}"
                )))
            }
        };
        let (mut prev_enabled, mut prev_scalar_type) = (0, 0);
        // SAFETY: plain ints in, two valid out-pointers; the shim catches every C++ exception.
        let message = unsafe {
            ffi::flan_model_autocast_enter(
                device_type,
                scalar_type,
                &mut prev_enabled,
                &mut prev_scalar_type,
            )
        };
        ffi::check(message, Error::Autocast)?;
        Ok(Autocast {
            device_type,
            prev_enabled,
            prev_scalar_type,
            _thread_bound: PhantomData,
        })
    }

    /// Whether autocast is on, on this thread, for `device`'s type.
    pub fn is_enabled(device: Device) -> Result<bool> {
        let mut enabled = 0;
        // SAFETY: an int in, a valid out-pointer; the shim catches every C++ exception.
        let message =
            unsafe { ffi::flan_model_autocast_is_enabled(device_type(device), &mut enabled) };
        ffi::check(message, Error::Autocast).map(|()| enabled == 1)
    }
}

impl Autocast {
    /// The lower precision autocast runs in on this thread for `device`'s type, or `None` when
    /// it is off: what a pass recomputed later (activation checkpointing) must enter again.
    pub fn current(device: Device) -> Result<Option<Kind>> {
        // The shim reads the state on entry, and the guard's drop restores it unchanged.
        let probe = Autocast::enter(device, Kind::BFloat16)?;
        if probe.prev_enabled == 0 {
            return Ok(None);
        }
        match probe.prev_scalar_type {
            5 => Ok(Some(Kind::Half)),
            15 => Ok(Some(Kind::BFloat16)),
            other => Err(Error::Autocast(format!(
                "autocast is on with a lower precision other than bf16 and f16 (scalar type {other})"
            ))),
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: plain ints in; the shim catches every C++ exception. Restoring plain switches
        // fails only if libtorch's own state is broken, which a destructor cannot report; there
        // is nothing better to do than free the message and go on.
        let message = unsafe {
            ffi::flan_model_autocast_exit(
                self.device_type,
                self.prev_enabled,
                self.prev_scalar_type,
            )
        };
        let _ = ffi::check(message, Error::Autocast);
    }
}

/// The `c10::DeviceType` of `device`; libtorch decides which have autocast.
fn device_type(device: Device) -> i32 {
    match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        Device::Vulkan => 10,
        Device::Mps => 13,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vulkan has no autocast in libtorch: entering says so (the shim's check), asking whether it
    /// is on fails in libtorch itself, and both messages reach Rust.
    #[test]
    fn libtorchs_error_for_a_device_without_autocast_reaches_rust() {
        match Autocast::enter(Device::Vulkan, Kind::BFloat16) {
            Err(Error::Autocast(message)) => assert!(
                message.contains("autocast is not available for device type vulkan"),
                "{message}"
            ),
            other => panic!("expected an autocast error, got {:?}", other.map(|_| ())),
        }
        match Autocast::is_enabled(Device::Vulkan) {
            Err(Error::Autocast(message)) => {
                assert!(message.contains("unknown device type"), "{message}")
            }
            other => panic!("expected an autocast error, got {other:?}"),
        }
        assert!(
            !Autocast::is_enabled(Device::Cpu).unwrap(),
            "state untouched"
        );
    }
}
