//! Flushing fp32 denormals to zero during training, on every thread libtorch computes on.
//!
//! Why: x86 cores handle denormal operands (magnitudes below 1.2e-38) in microcode, tens of
//! times slower than normal ones, and a T5 training step makes them (tiny gradients, attention
//! weights near zero, their products). On the small bench shape, flushing them sped a packed
//! training step up 1.75x (190 -> 332 real tokens/s, one run each). Numbers that never leave
//! the normal range are unchanged, so results only move where a value would have been a
//! denormal, which no fp32 training can resolve anyway. This is what `torch.set_flush_denormal`
//! does, except that it sets only the calling thread; the guard also sets libtorch's intra-op
//! threads. Off by default outside training: inference keeps transformers' exact numerics. (The
//! one exception is generation's log-softmax for the chosen tokens' scores, where flushing
//! provably changes nothing; see `generate`.)
//!
//! Errors: switching fails, with the shim's message as [`crate::Error::Libtorch`], only on a CPU
//! without the mode (libtorch has it on x86 with SSE3 only), which is why the tests cannot
//! provoke it on x86; a test on other architectures checks the message.

use std::marker::PhantomData;

use crate::ffi;
use crate::Result;

fn set(on: bool) -> Result<()> {
    // SAFETY: a plain integer in; the shim catches every C++ exception.
    let message = unsafe { ffi::flan_model_set_flush_denormal(i32::from(on)) };
    ffi::check(
        message,
        ffi::libtorch("switching the flushing of denormals"),
    )
}

/// Denormals flushed to zero from [`FlushDenormals::enter`] until the guard drops, on this thread
/// and libtorch's intra-op threads; the previous mode comes back on drop (guards nest).
#[must_use = "denormals are flushed only while the guard lives"]
pub struct FlushDenormals {
    previous: bool,
    _thread_bound: PhantomData<*const ()>,
}

impl FlushDenormals {
    /// Starts flushing; an error on CPUs without the mode.
    pub fn enter() -> Result<Self> {
        let previous = Self::is_enabled();
        set(true)?;
        Ok(FlushDenormals {
            previous,
            _thread_bound: PhantomData,
        })
    }

    /// Whether this thread flushes denormals (inputs and results).
    pub fn is_enabled() -> bool {
        // SAFETY: no arguments, reads a register; cannot fail.
        unsafe { ffi::flan_model_flush_denormal_is_on() == 1 }
    }

    /// `(threads, flushing)`: how many of libtorch's intra-op threads (this one included) ran a
    /// probe, and how many of those flush denormals.
    pub fn intra_op_threads() -> (u32, u32) {
        let (mut seen, mut on) = (0i64, 0i64);
        // SAFETY: two valid out-pointers; the shim writes each once and cannot fail.
        unsafe { ffi::flan_model_flush_denormal_threads(&mut seen, &mut on) };
        (seen.count_ones(), on.count_ones())
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        if !self.previous {
            // Switching off cannot fail where switching on succeeded.
            let _ = set(false);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Where libtorch has no flush-denormal mode (not x86), the shim's message reaches Rust.
    #[cfg(not(target_arch = "x86_64"))]
    #[test]
    fn a_cpu_without_the_mode_gets_the_shims_message() {
        match super::FlushDenormals::enter() {
            Err(crate::Error::Libtorch { message, .. }) => {
                assert!(message.contains("cannot flush denormals"), "{message}")
            }
            other => panic!("expected a libtorch error, got {:?}", other.map(|_| ())),
        }
    }
}
