//! Cutting token sequences to a length limit, and counting what was cut.
//!
//! flan shortens a sequence only where a limit is set (a mixture's `input_len` / `target_len`,
//! `--max-input-tokens`, an evaluation's prompt budget), and every cut is counted here so the
//! command that made it can report it: nothing is truncated silently. A limit can also refuse
//! over-long sequences instead ([`Overlong::Error`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What to do with a sequence longer than its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlong {
    /// Keep the first `limit - 1` tokens and the last one (the EOS), as seqio's
    /// `append_eos_after_trim` does, and count the cut.
    #[default]
    Truncate,
    /// Refuse the sequence: the caller reports an error naming it and the limit.
    Error,
}

impl FromStr for Overlong {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "truncate" => Ok(Overlong::Truncate),
            "error" => Ok(Overlong::Error),
            other => Err(format!("expected `truncate` or `error`, got `{other}`")),
        }
    }
}

impl fmt::Display for Overlong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overlong::Truncate => "truncate",
            Overlong::Error => "error",
        })
    }
}

/// A sequence over its limit that the policy refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// Its length in tokens.
    pub len: usize,
    /// The limit.
    pub limit: usize,
}

/// A limit on the length of token sequences (EOS included) and what happens beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthLimit {
    /// Most tokens a sequence may keep (at least 1).
    pub max_tokens: usize,
    /// What happens to longer sequences.
    pub overlong: Overlong,
}

impl LengthLimit {
    /// Cuts `ids` to the limit, keeping its last token (the EOS), and counts it in `counts`;
    /// `Err` (with `ids` and `counts` untouched) when the limit refuses over-long sequences.
    pub fn apply<T: Copy>(
        &self,
        ids: &mut Vec<T>,
        counts: &mut TruncationCounts,
    ) -> std::result::Result<(), TooLong> {
        if ids.len() > self.max_tokens && self.overlong == Overlong::Error {
            return Err(TooLong {
                len: ids.len(),
                limit: self.max_tokens,
            });
        }
        counts.record(ids.len(), self.max_tokens);
        truncate_keep_last(ids, self.max_tokens);
        Ok(())
    }
}

/// Shortens `ids` to at most `len` tokens, keeping its last token (the EOS) last.
pub fn truncate_keep_last<T: Copy>(ids: &mut Vec<T>, len: usize) {
    if ids.len() <= len {
        return;
    }
    if len == 0 {
        ids.clear();
        return;
    }
    let last = ids[ids.len() - 1];
    ids.truncate(len - 1);
    ids.push(last);
}

/// What one truncation point (inputs, or targets) cut, over the sequences it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncationCounts {
    /// Sequences seen.
    pub sequences: u64,
    /// Sequences longer than the limit, and cut to it.
    pub cut: u64,
    /// Tokens removed from those, in all.
    pub tokens_removed: u64,
    /// Length of the longest sequence seen, before any cut.
    pub longest: u64,
}

impl TruncationCounts {
    /// Counts a sequence of `len` tokens under a limit of `limit` tokens.
    pub fn record(&mut self, len: usize, limit: usize) {
        self.sequences += 1;
        self.longest = self.longest.max(len as u64);
        if len > limit {
            self.cut += 1;
            self.tokens_removed += (len - limit) as u64;
        }
    }

    /// Adds another set of counts (another rank, another batch).
    pub fn add(&mut self, other: &TruncationCounts) {
        self.sequences += other.sequences;
        self.cut += other.cut;
        self.tokens_removed += other.tokens_removed;
        self.longest = self.longest.max(other.longest);
    }

    /// One line for people, `None` when nothing was cut: "3 of 120 inputs were cut to 512
    /// tokens (1024 tokens removed; the longest had 2048)".
    pub fn describe(&self, what: &str, limit: usize) -> Option<String> {
        (self.cut > 0).then(|| {
            format!(
                "{} of {} {what} were cut to {limit} tokens ({} tokens removed; the longest had {})",
                self.cut, self.sequences, self.tokens_removed, self.longest
            )
        })
    }
}

/// What cutting examples (inputs and targets) to their limits amounted to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// The inputs' limit, in tokens.
    pub input_limit: usize,
    /// The targets' limit, in tokens.
    pub target_limit: usize,
    /// Examples cut (inputs, targets or both).
    pub truncated: u64,
    /// What was cut from the inputs.
    pub inputs: TruncationCounts,
    /// What was cut from the targets.
    pub targets: TruncationCounts,
}

impl Truncation {
    /// Nothing counted yet, under `(input, target)` limits.
    pub fn new((input_limit, target_limit): (usize, usize)) -> Truncation {
        Truncation {
            input_limit,
            target_limit,
            ..Truncation::default()
        }
    }

    /// Counts an example of `(inputs, targets)` tokens.
    pub fn record(&mut self, (inputs, targets): (usize, usize)) {
        self.truncated += u64::from(inputs > self.input_limit || targets > self.target_limit);
        self.inputs.record(inputs, self.input_limit);
        self.targets.record(targets, self.target_limit);
    }

    /// The lines of [`TruncationCounts::describe`] for inputs and targets (none when nothing
    /// was cut).
    pub fn describe(&self) -> Vec<String> {
        [
            self.inputs.describe("inputs", self.input_limit),
            self.targets.describe("targets", self.target_limit),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_error_limit_refuses_and_leaves_everything_as_it_was() {
        let limit = LengthLimit {
            max_tokens: 3,
            overlong: Overlong::Error,
        };
        let mut ids = vec![5u32, 6, 7, 1];
        let mut counts = TruncationCounts::default();
        assert_eq!(
            limit.apply(&mut ids, &mut counts),
            Err(TooLong { len: 4, limit: 3 })
        );
        assert_eq!(ids, [5, 6, 7, 1]);
        assert_eq!(counts, TruncationCounts::default());
        let mut short = vec![5u32, 1];
        limit.apply(&mut short, &mut counts).unwrap();
        assert_eq!(counts.sequences, 1);
        assert_eq!(counts.describe("inputs", 3), None);
    }

    #[test]
    fn descriptions_name_counts_limit_and_longest() {
        let mut counts = TruncationCounts::default();
        for len in [10, 600, 2048] {
            counts.record(len, 512);
        }
        assert_eq!(
            counts.describe("inputs", 512).unwrap(),
            "2 of 3 inputs were cut to 512 tokens (1624 tokens removed; the longest had 2048)"
        );
        assert_eq!("error".parse::<Overlong>(), Ok(Overlong::Error));
        assert!("cut"
            .parse::<Overlong>()
            .unwrap_err()
            .contains("`truncate` or `error`"));
    }

    proptest! {
        #[test]
        fn truncation_keeps_the_last_token_and_counts_exactly_what_it_removed(
            ids in proptest::collection::vec(0u32..50, 0..40),
            max_tokens in 1usize..45,
        ) {
            let limit = LengthLimit { max_tokens, overlong: Overlong::Truncate };
            let mut cut = ids.clone();
            let mut counts = TruncationCounts::default();
            limit.apply(&mut cut, &mut counts).unwrap();
            prop_assert_eq!(cut.len(), ids.len().min(max_tokens));
            prop_assert_eq!(&cut[..cut.len().saturating_sub(1)], &ids[..cut.len().saturating_sub(1)]);
            prop_assert_eq!(cut.last(), ids.last());
            prop_assert_eq!(counts.tokens_removed as usize, ids.len() - cut.len());
            prop_assert_eq!(counts.cut, u64::from(ids.len() > max_tokens));
            prop_assert_eq!(counts.longest as usize, ids.len());
        }
    }
}
