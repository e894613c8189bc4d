//! Stopping a run cleanly on SIGTERM or SIGINT.
//!
//! Schedulers preempt with a signal and a grace period (Kubernetes sends SIGTERM and waits
//! `terminationGracePeriodSeconds`, 30 s by default; Slurm sends SIGTERM before SIGKILL, with
//! `--signal` to choose when). Exiting at once would throw away everything since the last
//! checkpoint, so [`StopSignals`] turns the first signal into a request that the trainer reads
//! between steps: it finishes the step, writes a checkpoint and its metrics, and stops with
//! [`crate::Error::Preempted`] (the CLI's exit status 75, `EX_TEMPFAIL`: rerun to resume). A
//! second signal exits at once with the status a shell reports for death by that signal (130
//! for SIGINT, 143 for SIGTERM): a person pressing Ctrl-C twice means it.
//!
//! The handlers only swap and store atomics (async-signal-safe); the second-signal exit is
//! signal-hook's `_exit`. Under data parallelism the ranks may see the
//! signal at different steps (or only some of them see it), so the trainer sums the ranks' flags
//! after every step and all stop at the first step any of them was asked to, which keeps the
//! checkpoint consistent (see [`crate::trainer::Trainer::with_stop_flag`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::{Error, Result};

/// A request to stop after the current step, as set by a signal (or by [`StopFlag::request`]).
#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    /// The signal number that asked, 0 while none has.
    signal: Arc<AtomicUsize>,
}

impl StopFlag {
    /// A flag nobody has set yet.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks the run to stop after its current step, as `signal` would (embedding code, tests).
    pub fn request(&self, signal: i32) {
        self.signal.store(signal as usize, Ordering::SeqCst);
    }

    /// The signal that asked for a stop, if one has.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

/// `SIGTERM`, `SIGINT`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        SIGTERM => "SIGTERM".into(),
        SIGINT => "SIGINT".into(),
        other => format!("signal {other}"),
    }
}

/// The process's SIGTERM and SIGINT handlers: the first signal sets a [`StopFlag`], the second
/// exits at once. Installed for the rest of the process (signal-hook cannot restore the default
/// action); dropping this, or [`StopSignals::exit_on_next_signal`], makes the next signal exit
/// at once, for the phases after training where there is nothing to save.
pub struct StopSignals {
    flag: StopFlag,
    /// Set by the first signal; once set, a signal exits the process.
    armed: Arc<AtomicBool>,
}

impl StopSignals {
    /// Installs the handlers.
    pub fn install() -> Result<StopSignals> {
        let flag = StopFlag::new();
        let armed = Arc::new(AtomicBool::new(false));
        let fail = |source| Error::Signals { source };
        for (signal, status) in [(SIGTERM, 143), (SIGINT, 130)] {
            let armed = Arc::clone(&armed);
            let requested = Arc::clone(&flag.signal);
            // One swap decides which signal is the first. SIGINT and SIGTERM can be handled at
            // the same moment on two threads; with a separate check and set, both handlers could
            // check before either set, and neither would exit.
            let action = move || {
                if armed.swap(true, Ordering::SeqCst) {
                    signal_hook::low_level::exit(status);
                }
                requested.store(signal as usize, Ordering::SeqCst);
            };
            // SAFETY: the action only swaps and stores atomics and calls `_exit`, all
            // async-signal-safe; it allocates nothing and takes no lock.
            unsafe { signal_hook::low_level::register(signal, action) }.map_err(fail)?;
        }
        Ok(StopSignals { flag, armed })
    }

    /// The flag the first signal sets (give it to [`crate::trainer::Trainer::with_stop_flag`]).
    pub fn flag(&self) -> StopFlag {
        self.flag.clone()
    }

    /// From now on a signal exits at once (with 130 or 143).
    pub fn exit_on_next_signal(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        // Nobody reads the flag any more: a signal must not be swallowed.
        self.exit_on_next_signal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_seen_with_its_signal() {
        let flag = StopFlag::new();
        assert_eq!(flag.requested(), None);
        let seen_by_the_trainer = flag.clone();
        flag.request(SIGTERM);
        assert_eq!(seen_by_the_trainer.requested(), Some(SIGTERM));
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
        assert_eq!(signal_name(SIGINT), "SIGINT");
    }
}
