//! Panics of code we do not own, contained at the call into it.
//!
//! Our own code returns errors for bad input; some libraries we call do not always. The
//! `tokenizers` crate, given a `tokenizer.json` whose `decoder` section is malformed, panics
//! (`expect("Helper")` inside its deserializer) instead of returning its error, and tch panics on
//! any libtorch failure. [`catch_panic`] runs such a call and turns a panic into the panic's
//! message, which the caller wraps in its own error type, naming the file or the call.
//!
//! Rust prints a panic through the panic hook before unwinding, whether or not it is caught. A
//! binary installs [`install_quiet_hook`] once at start: it stays silent for panics caught here
//! and hands every other panic (a bug of ours) to the hook that was there before.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// How many [`catch_panic`] calls are active on this thread.
    static CATCHING: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f`; a panic inside it becomes `Err` with the panic's message. Only for calls into code
/// that may panic on bad input and whose state is not shared with the caller (parsing a file,
/// a forward pass): after a caught panic, nothing half-updated may be used again.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    outcome.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// Whether this thread is inside [`catch_panic`].
pub fn is_catching() -> bool {
    CATCHING.with(|c| c.get() > 0)
}

/// Installs a panic hook that says nothing for the panics [`catch_panic`] contains and hands
/// every other panic to the hook that was there before.
pub fn install_quiet_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_catching() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_depth_is_restored() {
        assert_eq!(catch_panic(|| 3), Ok(3));
        let err = catch_panic(|| -> u8 { panic!("bad {}", 7) }).unwrap_err();
        assert_eq!(err, "bad 7");
        let err = catch_panic(|| -> u8 { std::panic::panic_any(5u8) }).unwrap_err();
        assert_eq!(err, "a panic without a message");
        assert!(!is_catching());
        assert!(catch_panic(is_catching).unwrap());
    }
}
