//! The last line of defence around a model call: a libtorch failure becomes an [`Error`], not a
//! panic.
//!
//! The network is written with tch's panicking operations (`matmul`, `softmax`, ...), as STYLE.md
//! allows once inputs are checked: callers check shapes, token ids and, with
//! [`crate::memory`], the memory a call will take. What no check foresees (an allocation that
//! fails all the same, a CUDA error, a kernel that refuses a shape) makes tch panic with
//! libtorch's message. [`catch`] turns that panic into [`Error::Libtorch`], with the message's
//! first line (libtorch appends kilobytes of C++ stack frames), so a command fails with an error
//! and an exit status instead of Rust's 101 and a backtrace. Tensors made in the call are freed
//! as the panic unwinds; the model's weights are not touched by a forward pass, so the model
//! stays usable.
//!
//! Rust prints a panic's message through the panic hook before it unwinds. A binary that wants
//! the caught ones silent installs [`flan_contain::install_quiet_hook`] once at start: it
//! hides the panics caught here and passes every other panic (a real bug) to the previous hook.

use crate::{Error, Result};

/// Runs `f`, turning a panic inside it into [`Error::Libtorch`] naming `during` (what the call
/// was doing: "generating", "scoring", ...).
pub fn catch<T>(during: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match flan_contain::catch_panic(f) {
        Ok(result) => result,
        Err(panic) => Err(Error::Libtorch {
            during,
            message: first_line(&panic),
        }),
    }
}

/// The useful part of a tch panic message: what libtorch said, without tch's `unwrap` wrapper,
/// the Debug quoting and the C++ stack frames after the first line.
fn first_line(text: &str) -> String {
    let inner = text
        .split_once("Torch(\"")
        .map(|(_, rest)| rest.strip_suffix("\")").unwrap_or(rest))
        .unwrap_or(text);
    // The message is Debug-quoted inside the wrapper: newlines are the two characters `\n`.
    let line = inner
        .split("\\n")
        .next()
        .unwrap_or(inner)
        .lines()
        .next()
        .unwrap_or_default()
        .trim();
    if line.is_empty() {
        "libtorch failed without a message".into()
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_libtorch_failure_is_an_error_with_its_first_line() {
        let a = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::ones([4, 5], (Kind::Float, tch::Device::Cpu));
        let err = catch("multiplying", || Ok(a.matmul(&b))).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("libtorch failed while multiplying: "),
            "{text}"
        );
        assert!(text.contains("cannot be multiplied"), "{text}");
        assert!(!text.contains("frame #"), "{text}");
        assert!(!flan_contain::is_catching());
        // The library keeps working after a caught failure.
        let ok = catch("multiplying", || Ok(a.matmul(&a.transpose(0, 1)))).unwrap();
        assert_eq!(ok.size(), [2, 2]);
    }

    #[test]
    fn wrapper_and_frames_are_trimmed() {
        let tch_style = "called `Result::unwrap()` on an `Err` value: Torch(\"index 99 is out of \
                         bounds\\nException raised from foo at bar.cpp:1\\nframe #0: x\")";
        assert_eq!(first_line(tch_style), "index 99 is out of bounds");
        assert_eq!(first_line("plain\nsecond"), "plain");
        assert_eq!(first_line(""), "libtorch failed without a message");
    }
}
