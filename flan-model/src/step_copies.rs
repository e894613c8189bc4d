//! Memory for the decoding steps' copies of weights: MKL's packed copies, oneDNN's reordered
//! ones, our kernels' panels ([`crate::prepacked_linear`]) and stacked weights
//! ([`crate::stacked_linears`]). A copy is made only where it leaves the call its room.
//!
//! Why: the copies cost about the decoder's and the head's weights again, per row count, and
//! while a plan tries its candidates two of them at once. Callers check a call's own memory
//! ([`crate::memory`]) against what is free after loading, so copies made during the call take
//! memory that check counted on. By the arithmetic of its shapes, Flan-T5-XL in fp32 (11.4 GB;
//! a step reads 5.7 GB of it, and stacks 3.2 GB of that) would ask for about 15 GB more at its
//! first batched step (MKL's packed copy and our panels on trial, and the stacks): more than a
//! 24 GB machine has left. The kernels are only faster, never different (every one gives the
//! plain product's bits), so without the room the step takes the plain product, and the plans
//! count how often that happened ([`crate::prepacked_linear::PrepackedStats::short_of_memory`]).
//!
//! The room is [`MemoryBudget::detect`]'s: `MemAvailable` and the cgroup's limit, which already
//! count the copies made so far, or `FLAN_MEMORY_LIMIT` less the copies this process holds. A
//! copy needs its own size plus the current call's reserve: [`CopyReserve`], which
//! [`crate::generate`] sets to its call's [`crate::memory::MemoryEstimate`] (and `flan serve`'s
//! worker to its fullest batch's), or [`DEFAULT_RESERVE`] where nothing set one.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::config::T5Config;
use crate::memory::{Call, MemoryBudget, MemoryEstimate, LIMIT_VAR};

/// What a copy leaves free outside a call that set its own reserve.
pub const DEFAULT_RESERVE: u64 = 1 << 30;

/// Bytes of the copies alive in this process.
static HELD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The reserve of the call running on this thread (decoding steps run on the caller's).
    static RESERVE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The memory the current call keeps for itself while it lives: copies made on this thread
/// leave at least this much free. Restores the previous reserve when dropped.
#[derive(Debug)]
pub struct CopyReserve {
    previous: Option<u64>,
}

impl CopyReserve {
    /// Keeps `bytes` free for the call (a [`crate::memory::MemoryEstimate`]'s bytes).
    pub fn keep(bytes: u64) -> CopyReserve {
        CopyReserve {
            previous: RESERVE.with(|r| r.replace(Some(bytes))),
        }
    }

    /// Keeps free what `call` on a model of `config` in `kind` may take
    /// ([`MemoryEstimate`]), and at least [`DEFAULT_RESERVE`].
    pub fn for_call(config: &T5Config, kind: Kind, call: Call) -> CopyReserve {
        CopyReserve::keep(
            MemoryEstimate::of(config, kind, call)
                .bytes
                .max(DEFAULT_RESERVE),
        )
    }
}

impl Drop for CopyReserve {
    fn drop(&mut self) {
        RESERVE.with(|r| r.set(self.previous));
    }
}

/// Whether a copy of `bytes` fits: `room` (None: unknown, so nothing is checked) must hold it
/// and `reserve` besides.
pub(crate) fn fits(bytes: u64, room: Option<u64>, reserve: u64) -> bool {
    room.is_none_or(|room| bytes.checked_add(reserve).is_some_and(|need| need <= room))
}

/// The room for copies: under [`LIMIT_VAR`] its budget less the copies held (`held`), which it
/// cannot see; otherwise the machine's free memory, which already counts them. A malformed
/// [`LIMIT_VAR`] leaves no room (callers report it when they read the budget).
pub(crate) fn room(
    budget: Result<Option<MemoryBudget>, String>,
    by_limit: bool,
    held: u64,
) -> Option<u64> {
    match budget {
        Ok(Some(budget)) if by_limit => Some(budget.bytes.saturating_sub(held)),
        Ok(Some(budget)) => Some(budget.bytes),
        Ok(None) => None,
        Err(_) => Some(0),
    }
}

/// Accounts for one copy while alive (shared by the candidates that use the same copy).
#[derive(Debug)]
struct Held(u64);

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// A copy of a weight that a decoding step uses, counted while alive.
#[derive(Debug)]
pub(crate) struct WeightCopy {
    pub(crate) tensor: Tensor,
    _held: Arc<Held>,
}

impl WeightCopy {
    /// Another handle on the same copy (the same storage, counted once).
    pub(crate) fn share(&self) -> WeightCopy {
        WeightCopy {
            tensor: self.tensor.shallow_clone(),
            _held: Arc::clone(&self._held),
        }
    }

    /// `tensor` counted as a copy while this and its shares live.
    pub(crate) fn counted(tensor: Tensor) -> WeightCopy {
        let bytes = copy_bytes(&tensor);
        HELD.fetch_add(bytes, Ordering::Relaxed);
        WeightCopy {
            tensor,
            _held: Arc::new(Held(bytes)),
        }
    }
}

/// The bytes of `t`'s elements.
pub(crate) fn copy_bytes(t: &Tensor) -> u64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as u64
}

/// Makes a copy expected to take `bytes` with `make`, if it fits (see the module docs): not at
/// all (`make` not called) if `bytes` would not, and dropped again if the copy turns out larger
/// than fits (a packed copy's size is the library's). `Ok(None)` if `make` gives none.
pub(crate) fn make_copy(
    bytes: u64,
    make: impl FnOnce() -> Option<Tensor>,
) -> Result<Option<WeightCopy>, ShortOfMemory> {
    let by_limit = std::env::var_os(LIMIT_VAR).is_some();
    let reserve = RESERVE.with(Cell::get).unwrap_or(DEFAULT_RESERVE);
    let room = || {
        room(
            MemoryBudget::detect(),
            by_limit,
            HELD.load(Ordering::Relaxed),
        )
    };
    if !fits(bytes, room(), reserve) {
        return Err(ShortOfMemory);
    }
    let Some(tensor) = make() else {
        return Ok(None);
    };
    let made = copy_bytes(&tensor);
    // Free memory counts the copy by now; a limit's room does not until it is held.
    if !fits(if by_limit { made } else { 0 }, room(), reserve) {
        return Err(ShortOfMemory);
    }
    Ok(Some(WeightCopy::counted(tensor)))
}

/// A copy was not made: it would not have left the call its reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortOfMemory;

/// Bytes of the step copies this process holds now.
pub fn held_copy_bytes() -> u64 {
    HELD.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> Result<Option<MemoryBudget>, String> {
        Ok(Some(MemoryBudget {
            bytes,
            source: "test".into(),
        }))
    }

    #[test]
    fn a_copy_fits_only_with_the_reserve_left_over() {
        assert!(fits(100, Some(1100), 1000));
        assert!(!fits(101, Some(1100), 1000));
        assert!(!fits(u64::MAX, Some(u64::MAX), 1));
        // Nothing known about memory: nothing is refused.
        assert!(fits(u64::MAX, None, u64::MAX));
    }

    #[test]
    fn the_room_under_a_limit_leaves_out_the_copies_held() {
        // A limit cannot see the process's own copies; free memory already counts them.
        assert_eq!(room(budget(1000), true, 300), Some(700));
        assert_eq!(room(budget(1000), true, 3000), Some(0));
        assert_eq!(room(budget(1000), false, 300), Some(1000));
        assert_eq!(room(Ok(None), false, 300), None);
        assert_eq!(room(Err("bad limit".into()), true, 0), Some(0));
    }

    #[test]
    fn a_reserve_holds_for_its_scope_and_nests() {
        let get = || RESERVE.with(Cell::get);
        assert_eq!(get(), None);
        {
            let _outer = CopyReserve::keep(10);
            assert_eq!(get(), Some(10));
            {
                let _inner = CopyReserve::keep(20);
                assert_eq!(get(), Some(20));
            }
            assert_eq!(get(), Some(10));
        }
        assert_eq!(get(), None);
    }

    /// A call's reserve is its estimate, or the default where that is smaller.
    #[test]
    fn a_calls_reserve_is_its_estimate_at_least_the_default() {
        let config = T5Config::new_small(32128, 512, 64, 1024, 8, 8, 6, "gated-gelu", false);
        let call = |batch, input_len| Call::Generate {
            batch,
            input_len,
            max_new_tokens: 64,
            rows_per_input: 1,
            beam: false,
        };
        let reserve = |c| {
            let _kept = CopyReserve::for_call(&config, Kind::Float, c);
            RESERVE.with(Cell::get)
        };
        assert_eq!(reserve(call(1, 16)), Some(DEFAULT_RESERVE));
        let large = call(64, 4096);
        let estimate = MemoryEstimate::of(&config, Kind::Float, large).bytes;
        assert!(estimate > DEFAULT_RESERVE, "{estimate}");
        assert_eq!(reserve(large), Some(estimate));
    }
}
