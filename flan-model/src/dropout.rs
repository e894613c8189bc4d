//! Training-time dropout whose CPU mask comes from a counter-based generator.
//!
//! Why not libtorch's: on CPU, `dropout` fills its Bernoulli mask one element at a time from a
//! Mersenne twister in a serial loop (`bernoulli_` with a scalar probability). A T5 training step
//! draws tens of millions of such elements (the attention weights of every layer dominate), and
//! on the tiny bench shape that was about 30% of the step (1,450 real tokens/s with dropout 0.1
//! against 2,050 with 0). Here each element's keep/drop decision is one half of a splitmix64
//! output at its index, so a mask costs about a nanosecond per element, is the same whatever the
//! thread count, and its seed is one draw from libtorch's default generator: `tch::manual_seed`
//! still makes a training run reproducible, as it did with libtorch's dropout.
//!
//! Semantics are libtorch's `dropout(x, p, train=true)`: each element is kept with probability
//! `1 - p` and scaled by `1 / (1 - p)`, dropped elements are 0, and the gradient flows through the
//! same mask (the output is `x * mask`, so autograd's `mul` carries it). Off the CPU the fused
//! libtorch kernel is already fast and is used.
//!
//! Activation checkpointing recomputes a block's forward pass in the backward pass, and the
//! recomputed dropout must drop what the first pass dropped. Since a CPU mask is a function of
//! its one seed, [`record_seeds`] keeps the seeds a region draws and [`replay_seeds`] hands them
//! back, in the same order, to the same calls: the masks are the first pass's, and the replay
//! draws nothing from libtorch's generator, whose stream stays the one of a run without
//! checkpointing. (libtorch's fused dropout off the CPU has no seed to keep; a region that ran
//! one cannot be replayed and says so.)

use std::cell::RefCell;

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 32-bit threshold below which a uniform `u32` means "drop": `p * 2^32`, rounded.
fn drop_threshold(p: f64) -> u64 {
    ((p * 4_294_967_296.0).round() as u64).min(1 << 32)
}

/// Fills `mask` with `0.0` (dropped) or `scale` (kept). Element `i` takes the low (even `i`) or
/// high (odd `i`) half of the `i / 2`-th output of splitmix64 started at `seed`, and is dropped
/// when that half is below `threshold`.
pub fn fill_mask(mask: &mut [f32], seed: u64, threshold: u64, scale: f32) {
    let word =
        |j: usize| mix(seed.wrapping_add((j as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)));
    let keep = |half: u64| if half >= threshold { scale } else { 0.0 };
    let n = mask.len();
    let mut pairs = mask.chunks_exact_mut(2);
    for (j, pair) in pairs.by_ref().enumerate() {
        let w = word(j);
        pair[0] = keep(w & 0xffff_ffff);
        pair[1] = keep(w >> 32);
    }
    if let [last] = pairs.into_remainder() {
        *last = keep(word(n / 2) & 0xffff_ffff);
    }
}

/// What the dropouts of a region drew, in call order ([`record_seeds`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedRecord {
    seeds: Vec<u64>,
    /// Dropouts that ran off the CPU (libtorch's fused kernel, whose mask cannot be replayed).
    off_cpu: usize,
}

impl SeedRecord {
    /// The seeds drawn, in order.
    pub fn seeds(&self) -> &[u64] {
        &self.seeds
    }
}

/// This thread's tape while a region records or replays.
enum Tape {
    Record(SeedRecord),
    Replay {
        seeds: Vec<u64>,
        next: usize,
        /// Calls that wanted a seed after the recorded ones ran out (they drew fresh ones).
        overrun: usize,
        off_cpu: usize,
    },
}

thread_local! {
    static TAPE: RefCell<Option<Tape>> = const { RefCell::new(None) };
}

/// Puts the tape that was active before a region back when the region ends, also when it
/// unwinds, so that a panic inside a model call leaves no tape behind for the next call.
struct Restore(Option<Option<Tape>>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            TAPE.with(|t| *t.borrow_mut() = previous);
        }
    }
}

/// Runs `f` with `tape` as this thread's tape; returns `f`'s result and the tape as it ended.
fn with_tape<R>(tape: Tape, f: impl FnOnce() -> R) -> (R, Tape) {
    let previous = TAPE.with(|t| t.borrow_mut().replace(tape));
    let mut restore = Restore(Some(previous));
    let out = f();
    let previous = restore.0.take().flatten();
    let tape = TAPE.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
    (
        out,
        tape.expect("the region's tape is in place until the region ends"),
    )
}

/// Runs `f` and returns, with its result, the seeds its dropouts drew from libtorch's default
/// generator, in order. The draws are the ones `f` makes without recording.
pub fn record_seeds<R>(f: impl FnOnce() -> R) -> (R, SeedRecord) {
    match with_tape(Tape::Record(SeedRecord::default()), f) {
        (out, Tape::Record(record)) => (out, record),
        (_, Tape::Replay { .. }) => unreachable!("a region's tape keeps its mode"),
    }
}

/// Runs `f` with its dropouts taking the seeds of `record` in order instead of drawing from
/// libtorch's generator, so that each call makes the mask of the recorded call at its place.
/// Errors ([`Error::ActivationCheckpointing`]) when `f` made a different number of dropout calls
/// than the recorded region, or when either ran a dropout off the CPU: then the masks were not
/// the recorded ones.
pub fn replay_seeds<R>(record: &SeedRecord, f: impl FnOnce() -> R) -> Result<R> {
    let tape = Tape::Replay {
        seeds: record.seeds.clone(),
        next: 0,
        overrun: 0,
        off_cpu: 0,
    };
    match with_tape(tape, f) {
        (
            out,
            Tape::Replay {
                seeds,
                next,
                overrun,
                off_cpu,
            },
        ) => {
            if record.off_cpu + off_cpu > 0 {
                return Err(Error::ActivationCheckpointing(
                    "dropout ran off the CPU, where libtorch's fused kernel draws a mask that \
                     cannot be drawn again"
                        .into(),
                ));
            }
            if next != seeds.len() || overrun > 0 {
                return Err(Error::ActivationCheckpointing(format!(
                    "the recomputed pass made {} dropout calls, the first pass {}",
                    next + overrun,
                    seeds.len()
                )));
            }
            Ok(out)
        }
        (_, Tape::Record(_)) => unreachable!("a region's tape keeps its mode"),
    }
}

/// One draw from the default generator; `randint`'s bound keeps it non-negative.
fn fresh_seed() -> u64 {
    Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64
}

/// The seed of the next CPU dropout: replayed, or drawn (and recorded when recording).
fn next_seed() -> u64 {
    TAPE.with(|t| match &mut *t.borrow_mut() {
        None => fresh_seed(),
        Some(Tape::Record(record)) => {
            let seed = fresh_seed();
            record.seeds.push(seed);
            seed
        }
        Some(Tape::Replay {
            seeds,
            next,
            overrun,
            ..
        }) => match seeds.get(*next) {
            Some(&seed) => {
                *next += 1;
                seed
            }
            None => {
                *overrun += 1;
                fresh_seed()
            }
        },
    })
}

/// Notes on the tape, if any, that a dropout ran off the CPU.
fn note_off_cpu() {
    TAPE.with(|t| match &mut *t.borrow_mut() {
        None => {}
        Some(Tape::Record(record)) => record.off_cpu += 1,
        Some(Tape::Replay { off_cpu, .. }) => *off_cpu += 1,
    })
}

/// `x` with each element zeroed with probability `p` and the rest scaled by `1 / (1 - p)` (training
/// dropout); `p <= 0` returns `x` itself. `p` must be below 1 (the configs check it); `p >= 1`
/// gives zeros, as libtorch does.
pub fn dropout(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    if p >= 1.0 {
        return x * 0.0;
    }
    if x.device() != Device::Cpu {
        note_off_cpu();
        return x.dropout(p, true);
    }
    let seed = next_seed();
    let mask = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
    let n = mask.numel();
    if n > 0 {
        // SAFETY: `mask` is a freshly allocated, contiguous CPU float tensor of `n` elements that
        // nothing else references while the slice lives.
        let data = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, n) };
        fill_mask(data, seed, drop_threshold(p), (1.0 / (1.0 - p)) as f32);
    }
    let mask = if x.kind() == Kind::Float {
        mask
    } else {
        mask.to_kind(x.kind())
    };
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_covers_the_ends() {
        assert_eq!(drop_threshold(0.0), 0);
        assert_eq!(drop_threshold(0.5), 1 << 31);
        assert_eq!(drop_threshold(1.0), 1 << 32);
    }

    #[test]
    fn odd_lengths_fill_every_element_and_prefixes_agree() {
        let mut long = vec![f32::NAN; 1001];
        let mut short = vec![f32::NAN; 998];
        fill_mask(&mut long, 7, drop_threshold(0.3), 2.0);
        fill_mask(&mut short, 7, drop_threshold(0.3), 2.0);
        assert!(long.iter().all(|&m| m == 0.0 || m == 2.0));
        assert_eq!(&long[..998], &short[..]);
    }
}
