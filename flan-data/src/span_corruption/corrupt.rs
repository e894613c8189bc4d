//! Inputs and targets of a masked sequence: T5's `noise_span_to_unique_sentinel` (inputs) and
//! `nonnoise_span_to_unique_sentinel` (targets), then EOS on both as seqio appends it.

use crate::error::{Error, Result};
use crate::pack::TokenizedExample;
use crate::tokenizer::Tokenizer;

/// The sentinel ids, `<extra_id_0>`, `<extra_id_1>`, ..., and EOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    ids: Vec<u32>,
    eos: u32,
}

impl Sentinels {
    /// The sentinels of a tokenizer, looked up by their strings `<extra_id_N>`: in T5's
    /// vocabularies (and those [`Tokenizer::train_unigram`] makes) sentinel N is
    /// `vocab_size − 1 − N`, which is what T5's `sentinel_id` computes; looking them up by name
    /// also serves a vocabulary that places them elsewhere, and refuses one without them rather
    /// than overwriting real pieces with "sentinels".
    pub fn of(tokenizer: &Tokenizer) -> Result<Sentinels> {
        let ids: Vec<u32> = (0..tokenizer.count_sentinels())
            .filter_map(|n| tokenizer.sentinel_id(n))
            .collect();
        if ids.is_empty() {
            return Err(Error::Tokenizer {
                path: None,
                message: "span corruption needs sentinel tokens `<extra_id_0>`, `<extra_id_1>`, \
                          ...; this vocabulary has none"
                    .into(),
            });
        }
        Ok(Sentinels {
            ids,
            eos: tokenizer.eos_id(),
        })
    }

    /// Explicit ids (sentinel N is `ids[N]`).
    pub fn new(ids: Vec<u32>, eos: u32) -> Sentinels {
        Sentinels { ids, eos }
    }

    /// How many there are: the most noise spans one example can have.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of sentinel `n`.
    pub fn id(&self, n: usize) -> Option<u32> {
        self.ids.get(n).copied()
    }

    /// The EOS id.
    pub fn eos(&self) -> u32 {
        self.eos
    }
}

/// Each run of tokens where `mask` is true replaced by one sentinel, numbered in order.
fn spans_to_sentinels(tokens: &[u32], mask: &[bool], sentinels: &Sentinels) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut span = 0;
    let mut previous = false;
    for (&token, &masked) in tokens.iter().zip(mask) {
        if !masked {
            out.push(token);
        } else if !previous {
            let id = sentinels.id(span).ok_or_else(|| {
                Error::config(
                    "span corruption",
                    format!(
                        "a sequence has more than {} spans, the sentinels the vocabulary has",
                        sentinels.len()
                    ),
                )
            })?;
            out.push(id);
            span += 1;
        }
        previous = masked;
    }
    Ok(out)
}

/// Span corruption of `tokens` (without EOS) under `mask` (same length): inputs are the tokens
/// with each noise span replaced by the next sentinel, targets each noise span after the
/// sentinel that replaced it, both followed by EOS. With T5's masks (which start with a
/// non-noise span and end with a noise span) the targets start with `<extra_id_0>` and have no
/// trailing sentinel: T5's targets are the non-noise spans replaced by sentinels, and the last
/// non-noise span comes before the last noise span.
pub fn corrupt(tokens: &[u32], mask: &[bool], sentinels: &Sentinels) -> Result<TokenizedExample> {
    if tokens.len() != mask.len() {
        return Err(Error::config(
            "span corruption",
            format!("{} tokens but a mask of {}", tokens.len(), mask.len()),
        ));
    }
    let inverse: Vec<bool> = mask.iter().map(|m| !m).collect();
    let mut inputs = spans_to_sentinels(tokens, mask, sentinels)?;
    let mut targets = spans_to_sentinels(tokens, &inverse, sentinels)?;
    inputs.push(sentinels.eos);
    targets.push(sentinels.eos);
    Ok(TokenizedExample { inputs, targets })
}

/// The original tokens back from a corrupted example: each sentinel of the inputs replaced by
/// the tokens that follow the same sentinel in the targets (EOS dropped). For tests and for
/// users checking their data.
pub fn uncorrupt(example: &TokenizedExample, sentinels: &Sentinels) -> Vec<u32> {
    let strip = |s: &[u32]| -> Vec<u32> { s.strip_suffix(&[sentinels.eos]).unwrap_or(s).to_vec() };
    let (inputs, targets) = (strip(&example.inputs), strip(&example.targets));
    let is_sentinel = |t: u32| sentinels.ids.contains(&t);
    // Both sides alternate: a sentinel on one side stands for the run that follows the same
    // sentinel on the other.
    let runs = |seq: &[u32]| -> Vec<(Option<u32>, Vec<u32>)> {
        let mut out: Vec<(Option<u32>, Vec<u32>)> = vec![(None, Vec::new())];
        for &t in seq {
            if is_sentinel(t) {
                out.push((Some(t), Vec::new()));
            } else if let Some(last) = out.last_mut() {
                last.1.push(t);
            }
        }
        out
    };
    let target_runs = runs(&targets);
    let mut tokens = Vec::new();
    for (sentinel, run) in runs(&inputs) {
        if let Some(s) = sentinel {
            if let Some((_, noise)) = target_runs.iter().find(|(t, _)| *t == Some(s)) {
                tokens.extend_from_slice(noise);
            }
        }
        tokens.extend_from_slice(&run);
    }
    tokens
}
