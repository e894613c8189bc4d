//! How much memory a model call will take, estimated before it is made, and how much there is.
//!
//! T5's relative positions take inputs of any length, at a cost quadratic in it: the encoder's
//! position bias and each layer's attention scores are `batch × heads × len²` values. A 280,000
//! token input asks libtorch for over a terabyte; the allocation fails deep in the model and, in
//! a process that does not expect it, aborts the run with a half-written output. A batch that
//! does fit in address space but not in RAM is worse: the kernel's OOM killer ends the process
//! (or a neighbour) without a word. So callers estimate first ([`MemoryEstimate`]) and refuse what
//! cannot fit in [`MemoryBudget::detect`], naming the record and the limit that would help.
//!
//! The estimate counts the transient tensors of the call (the weights are already loaded, and the
//! budget is read after loading). Its constants follow what the code allocates at its peak: the
//! int64 temporaries of the position-bucket grid, the shared bias, one layer's scores and softmax,
//! the feed-forward activations, the KV cache, the logits and their log-softmax. It aims to be an
//! upper bound within a small factor. Measured with `flan score` on the v1_1 test fixture (peak
//! RSS above a run with an 8-token input, debug build, 2-core Xeon): inputs of 2,000, 4,000 and
//! 8,000 tokens were estimated at 256 MB, 1.0 GB and 4.1 GB and took 251 MB, 995 MB and 3.97 GB.

use tch::Kind;

use crate::config::T5Config;

/// Bytes of one element of `kind` (f32 for anything else).
fn element_bytes(kind: Kind) -> u64 {
    match kind {
        Kind::Half | Kind::BFloat16 => 2,
        Kind::Double => 8,
        _ => 4,
    }
}

/// The shape of one model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Encode, then decode up to `max_new_tokens` steps with a KV cache, `rows_per_input`
    /// decoder rows per input (beams, or sequences sampled per input).
    Generate {
        /// Inputs in the batch.
        batch: u64,
        /// Longest input, in tokens (the padded width).
        input_len: u64,
        /// Decoding steps at most.
        max_new_tokens: u64,
        /// Beams or returned samples per input (1 for greedy).
        rows_per_input: u64,
        /// Beam search also takes the top 2k of `k × vocab` scores per input.
        beam: bool,
    },
    /// Encode, then one teacher-forced decoder pass over the targets (scoring).
    Score {
        /// Inputs in the batch.
        batch: u64,
        /// Longest input, in tokens.
        input_len: u64,
        /// Longest target, in tokens.
        target_len: u64,
    },
}

/// Estimated peak bytes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryEstimate {
    /// Bytes at the call's peak, weights not included.
    pub bytes: u64,
}

impl MemoryEstimate {
    /// The estimate for `call` on a model of `config` computing in `kind`. Saturates at
    /// `u64::MAX` instead of overflowing (absurd lengths then compare as "too big").
    pub fn of(config: &T5Config, kind: Kind, call: Call) -> MemoryEstimate {
        let s = element_bytes(kind);
        // Softmax and log-softmax run in f32 at least.
        let s32 = s.max(4);
        let heads = config.num_heads.max(1) as u64;
        let inner = (config.num_heads.max(1) * config.d_kv.max(1)) as u64;
        let d_model = config.d_model.max(1) as u64;
        let d_ff = config.d_ff.max(1) as u64;
        let vocab = config.vocab_size.max(1) as u64;
        let dec_layers = config.num_decoder_layers().max(1) as u64;
        let m = |a: u64, b: u64| a.saturating_mul(b);
        let mm = |xs: &[u64]| xs.iter().fold(1u64, |acc, &x| acc.saturating_mul(x));

        // Encoder over `batch × len`: first the bucket grid (a handful of int64 `len²`
        // temporaries, about 6 alive at once) and the `heads × len²` bias looked up from it; then
        // the shared bias `batch × heads × len²`, plus one layer's scores and softmax, plus the
        // feed-forward activations (the gated FFN holds 3 `d_ff` wide tensors).
        let encoder = |batch: u64, len: u64| -> u64 {
            let sq = m(len, len);
            let grid = m(48, sq).saturating_add(mm(&[heads, sq, s]));
            let bias = mm(&[batch, heads, sq, s]);
            let layer = mm(&[2, batch, heads, sq, s32]);
            let ffn = mm(&[
                batch,
                len,
                d_ff.saturating_mul(3).saturating_add(4 * d_model),
                s,
            ]);
            grid.max(bias.saturating_add(layer).saturating_add(ffn))
        };
        let bytes = match call {
            Call::Generate {
                batch,
                input_len,
                max_new_tokens,
                rows_per_input,
                beam,
            } => {
                let rows = m(batch, rows_per_input.max(1));
                let steps = max_new_tokens.max(1);
                let enc = encoder(batch, input_len);
                // Kept for the whole decode: the encoder output (expanded to every row), the
                // cross-attention keys and values of every layer, the self-attention cache and
                // the prefix ids. The cache counts twice (regrown by doubling past its first
                // capacity), four times for beam search, which copies it to reorder its rows
                // every step: 20,000 beams of 100 steps on the v1_1 fixture peaked 3.5 GiB above
                // the baseline for 4 such copies of 1.0 GB.
                let cache_copies = if beam { 4 } else { 2 };
                let kept = mm(&[rows, input_len, d_model, s])
                    .saturating_add(mm(&[dec_layers, 2, rows, input_len, inner, s]))
                    .saturating_add(mm(&[dec_layers, 2, rows, steps, cache_copies, inner, s]))
                    .saturating_add(mm(&[rows, steps, 8]));
                // One step: cross-attention scores over the input, the FFN of one position, and
                // the logits with their f32 copy, log-softmax and (beam search) the summed scores
                // and the top-2k; sampling copies them to the host as well.
                let logit_copies = if beam { 5 } else { 4 };
                let step = mm(&[2, rows, heads, input_len, s32])
                    .saturating_add(mm(&[rows, d_ff.saturating_mul(3), s]))
                    .saturating_add(mm(&[logit_copies, rows, vocab, s32]));
                enc.max(kept.saturating_add(step))
                    .saturating_add(mm(&[batch, input_len, d_model, s]))
            }
            Call::Score {
                batch,
                input_len,
                target_len,
            } => {
                let enc = encoder(batch, input_len);
                // The teacher-forced decoder: its own quadratic self-attention over the target,
                // cross-attention scores `target × input`, activations, and the logits with their
                // f32 log-softmax and gathered values.
                let dec = encoder(batch, target_len)
                    .saturating_add(mm(&[2, batch, heads, target_len, input_len, s32]))
                    .saturating_add(mm(&[3, batch, target_len, vocab, s32]));
                enc.max(dec)
                    .saturating_add(mm(&[batch, input_len, d_model, s]))
            }
        };
        MemoryEstimate { bytes }
    }
}

/// How much memory a call may take, and where that figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure comes from (`MemAvailable in /proc/meminfo`, the cgroup limit, or
    /// `FLAN_MEMORY_LIMIT`), for messages.
    pub source: String,
}

/// The environment variable that sets the budget by hand (bytes, or with a K/M/G/T suffix in
/// powers of 1024): for machines without `/proc/meminfo`, for a GPU (whose memory this module
/// does not query), or to keep a run well below what is free.
pub const LIMIT_VAR: &str = "FLAN_MEMORY_LIMIT";

impl MemoryBudget {
    /// The budget of this process now: [`LIMIT_VAR`] when set, otherwise the smaller of
    /// `MemAvailable` and the room left under the cgroup (v2) memory limit, which is what a
    /// container's OOM killer enforces. `Ok(None)` when neither can be read (no check is made).
    /// A malformed [`LIMIT_VAR`] is an error naming it.
    pub fn detect() -> std::result::Result<Option<MemoryBudget>, String> {
        if let Some(value) = std::env::var_os(LIMIT_VAR) {
            let text = value.to_string_lossy();
            let bytes = parse_bytes(&text).ok_or_else(|| {
                format!("{LIMIT_VAR}={text:?}: expected a number of bytes, e.g. 8000000000 or 8G")
            })?;
            return Ok(Some(MemoryBudget {
                bytes,
                source: format!("{LIMIT_VAR}={text}"),
            }));
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| mem_available(&t))
            .map(|bytes| MemoryBudget {
                bytes,
                source: "MemAvailable in /proc/meminfo".into(),
            });
        let cgroup = cgroup_room().map(|bytes| MemoryBudget {
            bytes,
            source: "the cgroup's memory.max less memory.current".into(),
        });
        Ok(match (meminfo, cgroup) {
            (Some(a), Some(b)) => Some(if b.bytes < a.bytes { b } else { a }),
            (a, b) => a.or(b),
        })
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => value.checked_mul(1024),
        _ => None,
    }
}

/// Room under this process's cgroup v2 memory limit, when it has one.
fn cgroup_room() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: a single line `0::/path`.
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let max = std::fs::read_to_string(dir.join("memory.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" (no limit) does not parse
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

/// `123`, `512K`, `8G`, `1.5T` (powers of 1024; a trailing `B` or `iB` is accepted).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    let bytes = value * scale as f64;
    (value.is_finite() && value >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `1.3 GB`-style text (powers of 1000, as people read them).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The longest input (in tokens, at least 1) for which `estimate(len)` stays within `budget`,
/// or `None` when even one token does not fit. `estimate` must grow with the length.
pub fn longest_that_fits(budget: u64, estimate: impl Fn(u64) -> u64) -> Option<u64> {
    if estimate(1) > budget {
        return None;
    }
    let (mut lo, mut hi) = (1u64, 2u64);
    while estimate(hi) <= budget {
        lo = hi;
        if hi >= 1 << 40 {
            return Some(hi);
        }
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if estimate(mid) <= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> T5Config {
        T5Config::new_small(32128, 512, 64, 1024, 8, 8, 6, "gated-gelu", false)
    }

    #[test]
    fn the_encoder_term_is_quadratic_and_beams_multiply_the_decoder() {
        let cfg = small();
        let at = |len| {
            MemoryEstimate::of(
                &cfg,
                Kind::Float,
                Call::Score {
                    batch: 1,
                    input_len: len,
                    target_len: 4,
                },
            )
            .bytes
        };
        // Doubling a long input quadruples (about) the estimate.
        let ratio = at(40_000) as f64 / at(20_000) as f64;
        assert!((3.5..=4.1).contains(&ratio), "{ratio}");
        // The input (about 283,000 tokens) needs far more than any machine has.
        assert!(at(283_000) > 1 << 40, "{}", human_bytes(at(283_000)));
        let gen = |beams| {
            MemoryEstimate::of(
                &cfg,
                Kind::Float,
                Call::Generate {
                    batch: 1,
                    input_len: 16,
                    max_new_tokens: 64,
                    rows_per_input: beams,
                    beam: beams > 1,
                },
            )
            .bytes
        };
        assert!(
            gen(100_000) > 100 * gen(100),
            "{} {}",
            gen(100_000),
            gen(100)
        );
        // Nothing overflows: absurd sizes saturate.
        assert_eq!(at(u64::MAX), u64::MAX);
        // Half precision takes less than f32.
        let half = MemoryEstimate::of(
            &cfg,
            Kind::BFloat16,
            Call::Score {
                batch: 1,
                input_len: 20_000,
                target_len: 4,
            },
        );
        assert!(half.bytes < at(20_000));
    }

    #[test]
    fn the_longest_input_that_fits_is_found_exactly() {
        let est = |len: u64| len * len;
        assert_eq!(longest_that_fits(100, est), Some(10));
        assert_eq!(longest_that_fits(99, est), Some(9));
        assert_eq!(longest_that_fits(0, est), None);
        assert_eq!(longest_that_fits(u64::MAX, |_| 0), Some(1 << 40));
    }

    #[test]
    fn byte_counts_parse_and_print() {
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("8GiB"), Some(8 << 30));
        assert_eq!(parse_bytes("512k"), Some(512 << 10));
        assert_eq!(parse_bytes("1.5T"), Some(3 << 39));
        for bad in ["", "G", "-1", "nan", "8X", "1e300T"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_280_000_000_000), "1.3 TB");
        let info = "MemTotal:       16 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(mem_available(info), Some(2048 * 1024));
        assert_eq!(mem_available("MemTotal: 3 kB\n"), None);
    }
}
