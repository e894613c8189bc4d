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

use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};

use tch::{Device, Kind};

use crate::{Error, Result};

extern "C" {
    fn flan_autocast_last_error() -> *const c_char;
    fn flan_autocast_enter(
        device_type: c_int,
        scalar_type: c_int,
        prev_enabled: *mut c_int,
        prev_scalar_type: *mut c_int,
    ) -> c_int;
    fn flan_autocast_exit(
        device_type: c_int,
        prev_enabled: c_int,
        prev_scalar_type: c_int,
    ) -> c_int;
    fn flan_autocast_is_enabled(device_type: c_int) -> c_int;
}

/// An autocast region: on from [`Autocast::enter`] until the guard drops, which restores the
/// previous state (regions nest).
#[must_use = "autocast is on only while the guard lives"]
pub struct Autocast {
    device_type: c_int,
    prev_enabled: c_int,
    prev_scalar_type: c_int,
    // libtorch keeps autocast state per thread: the guard must be dropped where it was made.
    _thread_bound: PhantomData<*const ()>,
}

impl Autocast {
    /// Turns autocast on for `device`'s type with `dtype` (`BFloat16` or `Half`) as the lower
    /// precision.
    pub fn enter(device: Device, dtype: Kind) -> Result<Self> {
        let device_type = device_type(device)?;
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
        // SAFETY: plain ints in and out; the shim catches every C++ exception.
        let rc = unsafe {
            flan_autocast_enter(
                device_type,
                scalar_type,
                &mut prev_enabled,
                &mut prev_scalar_type,
            )
        };
        check(rc)?;
        Ok(Autocast {
            device_type,
            prev_enabled,
            prev_scalar_type,
            _thread_bound: PhantomData,
        })
    }

    /// Whether autocast is on, on this thread, for `device`'s type.
    pub fn is_enabled(device: Device) -> Result<bool> {
        // SAFETY: an int in, an int out; the shim catches every C++ exception.
        let rc = unsafe { flan_autocast_is_enabled(device_type(device)?) };
        check(rc).map(|_| rc == 1)
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`. Restoring plain switches fails only if libtorch's own state is
        // broken, which a destructor cannot report; there is nothing better to do than go on.
        let _ = unsafe {
            flan_autocast_exit(self.device_type, self.prev_enabled, self.prev_scalar_type)
        };
    }
}

/// The `c10::DeviceType` of `device`.
fn device_type(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        Device::Mps => Ok(13),
        other => Err(Error::Autocast(format!("no autocast for device {other:?}"))),
    }
}

fn check(rc: c_int) -> Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated buffer.
    let message = unsafe { CStr::from_ptr(flan_autocast_last_error()) };
    Err(Error::Autocast(message.to_string_lossy().into_owned()))
}
