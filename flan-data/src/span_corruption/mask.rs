//! Which tokens are noise: `random_spans_noise_mask` of T5 (`t5/data/preprocessors.py`) and the
//! length arithmetic of `random_spans_helper` / `compute_input_and_target_lengths`.

use crate::error::{Error, Result};
use rand::seq::SliceRandom;
use rand::Rng;

/// How many noise tokens and spans a sequence of a given length gets, as T5 computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseShape {
    /// The length the mask is computed for: T5 raises lengths below 2 to 2 ("to avoid
    /// degeneracy") and cuts the mask back to the real length afterwards.
    pub length: usize,
    /// `round(length × noise_density)` (half to even, in `f32` as TensorFlow computes it),
    /// clamped to `[1, length − 1]`.
    pub noise_tokens: usize,
    /// `max(1, round(noise_tokens / mean_noise_span_length))`.
    pub noise_spans: usize,
}

impl NoiseShape {
    /// The shape for `length` tokens. T5 would fail on a shape with fewer non-noise tokens than
    /// spans (each non-noise span needs a token); that is an error here.
    pub fn new(length: usize, noise_density: f64, mean_noise_span_length: f64) -> Result<Self> {
        check_settings(noise_density, mean_noise_span_length)?;
        let length = length.max(2);
        // TensorFlow: tf.round(tf.cast(length, tf.float32) * noise_density), half to even.
        let noise = (length as f32 * noise_density as f32).round_ties_even() as usize;
        let noise_tokens = noise.clamp(1, length - 1);
        let spans =
            (noise_tokens as f32 / mean_noise_span_length as f32).round_ties_even() as usize;
        let noise_spans = spans.max(1);
        if length - noise_tokens < noise_spans {
            return Err(Error::config(
                "span corruption",
                format!(
                    "noise_density {noise_density} and mean_noise_span_length \
                     {mean_noise_span_length} leave {} non-noise tokens for {noise_spans} spans \
                     of a {length}-token sequence; T5's mask needs one per span",
                    length - noise_tokens
                ),
            ));
        }
        Ok(NoiseShape {
            length,
            noise_tokens,
            noise_spans,
        })
    }
}

fn check_settings(noise_density: f64, mean_noise_span_length: f64) -> Result<()> {
    if !(noise_density > 0.0 && noise_density < 1.0) {
        return Err(Error::config(
            "span corruption",
            format!("noise_density must be in (0, 1), got {noise_density}"),
        ));
    }
    if !(mean_noise_span_length >= 1.0 && mean_noise_span_length.is_finite()) {
        return Err(Error::config(
            "span corruption",
            format!("mean_noise_span_length must be at least 1, got {mean_noise_span_length}"),
        ));
    }
    Ok(())
}

/// `num_items` split into `num_segments` non-empty segments, uniformly over the ways to place
/// the cuts (T5's `_random_segmentation`: a shuffled vector with `num_segments − 1` ones among
/// `num_items − 1` gaps). Needs `1 <= num_segments <= num_items`.
fn random_segmentation(num_items: usize, num_segments: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut cut = vec![false; num_items - 1];
    cut[..num_segments - 1].fill(true);
    cut.shuffle(rng);
    let mut lengths = Vec::with_capacity(num_segments);
    let mut current = 1;
    for c in cut {
        if c {
            lengths.push(current);
            current = 1;
        } else {
            current += 1;
        }
    }
    lengths.push(current);
    lengths
}

/// T5's noise mask for `length` tokens: non-noise and noise spans alternate, starting with
/// non-noise (so the sequence ends with noise), with the counts of [`NoiseShape`]; each kind is
/// split into its spans by a uniform random segmentation (every span at least one token).
/// Randomness comes from `rng` (TensorFlow's stateless shuffle is not reproduced bit for bit;
/// the distribution is the same).
pub fn random_spans_noise_mask(
    length: usize,
    noise_density: f64,
    mean_noise_span_length: f64,
    rng: &mut impl Rng,
) -> Result<Vec<bool>> {
    let shape = NoiseShape::new(length, noise_density, mean_noise_span_length)?;
    let noise = random_segmentation(shape.noise_tokens, shape.noise_spans, rng);
    let nonnoise = random_segmentation(shape.length - shape.noise_tokens, shape.noise_spans, rng);
    let mut mask = Vec::with_capacity(shape.length);
    for (keep, drop) in nonnoise.iter().zip(&noise) {
        mask.extend(std::iter::repeat_n(false, *keep));
        mask.extend(std::iter::repeat_n(true, *drop));
    }
    mask.truncate(length);
    Ok(mask)
}

/// Raw tokens per example and target length for an input length, as T5's
/// `random_spans_helper` and transformers' `compute_input_and_target_lengths` compute them:
/// the most raw tokens whose corrupted inputs (non-noise tokens, one sentinel per span, EOS)
/// fit in `inputs_length`, and the targets' length then (noise tokens, one sentinel per span,
/// EOS). Rounding is Python's (half to even). 512 → (568, 114) at density 0.15, span 3.
pub fn compute_input_and_target_lengths(
    inputs_length: usize,
    noise_density: f64,
    mean_noise_span_length: f64,
) -> Result<(usize, usize)> {
    check_settings(noise_density, mean_noise_span_length)?;
    let lengths = |tokens: usize| {
        let noise = (tokens as f64 * noise_density).round_ties_even() as usize;
        let nonnoise = tokens - noise;
        let spans = (noise as f64 / mean_noise_span_length).round_ties_even() as usize;
        (nonnoise + spans + 1, noise + spans + 1)
    };
    let mut tokens = inputs_length;
    // Bounded: each raw token adds at least (1 − density) − density / span ≥ 0 input tokens on
    // average; stop at 100 × the input length whatever the settings.
    while tokens < inputs_length.saturating_mul(100) && lengths(tokens + 1).0 <= inputs_length {
        tokens += 1;
    }
    let (_, mut targets) = lengths(tokens);
    // T5's "minor hack" so that targets are not longer than inputs at density 0.5.
    if noise_density == 0.5 && targets > inputs_length {
        tokens -= 1;
        targets -= 1;
    }
    Ok((tokens, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_t5s_published_figures() {
        // T5 (and transformers' run_t5_mlm_flax): inputs_length 512 → 568 raw tokens, 114
        // target tokens; the T5 paper's 512-token inputs at density 0.15, span 3.
        assert_eq!(
            compute_input_and_target_lengths(512, 0.15, 3.0).unwrap(),
            (568, 114)
        );
        // The definition, for other lengths: the raw length is the largest whose corrupted
        // inputs (plus EOS) fit.
        let inputs = |raw: usize| {
            let noise = (raw as f64 * 0.15).round_ties_even() as usize;
            let spans = (noise as f64 / 3.0).round_ties_even() as usize;
            (raw - noise + spans + 1, noise + spans + 1)
        };
        for len in [16, 64, 128, 256, 1024] {
            let (raw, targets) = compute_input_and_target_lengths(len, 0.15, 3.0).unwrap();
            assert!(inputs(raw).0 <= len && inputs(raw + 1).0 > len, "{len}");
            assert_eq!(targets, inputs(raw).1);
        }
    }

    #[test]
    fn short_sequences_follow_t5s_edge_cases() {
        // Length 1 is raised to 2, masked [keep, noise], then cut back: no noise at all.
        let mut rng = rand::rngs::mock::StepRng::new(0, 1);
        assert_eq!(
            random_spans_noise_mask(1, 0.15, 3.0, &mut rng).unwrap(),
            vec![false]
        );
        assert_eq!(
            random_spans_noise_mask(2, 0.15, 3.0, &mut rng).unwrap(),
            vec![false, true]
        );
        assert!(random_spans_noise_mask(10, 0.95, 1.0, &mut rng).is_err());
        // Half to even: 10 × 0.15 = 1.5 → 2; 30 × 0.15 = 4.5 → 4.
        assert_eq!(NoiseShape::new(10, 0.15, 3.0).unwrap().noise_tokens, 2);
        assert_eq!(NoiseShape::new(30, 0.15, 3.0).unwrap().noise_tokens, 4);
    }
}
