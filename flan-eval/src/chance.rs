//! The chance baseline of an evaluated item: what a model that learned only the output format,
//! and nothing of the task, scores on it in expectation.
//!
//! Finetuning teaches the format first. A model that has learned to answer a two-way choice
//! with one of its two options, but not which one is right, scores about 50% on it; one that
//! has learned that a weekday question is answered with a weekday scores about 1/7. Accuracy
//! means skill only as far as it rises above this baseline, so reports show the two side by
//! side ([`crate::scorecard`]). The baseline of an item is:
//!
//! - **1/k for an item offering k answers** (the options its prompt lists, or its
//!   rank-classification candidates: [`SampleRecord::options`]): a format-only model picks one
//!   of them, and without knowing which is right it is right once in k;
//! - **the majority-answer share of its family otherwise** (a free-form answer): the share of
//!   the evaluated items of the same task, themselves free-form, whose gold answers include
//!   that task's most frequent gold answer. No answer that ignores the question scores more
//!   on these items (whatever one answer it gives, or however it mixes answers, it is right at
//!   most as often as the most frequent one is gold), so it measures what the answer
//!   distribution alone gives away: about 1/2 for yes/no, about 1/7 for weekdays, about 0 for
//!   sorted lists, whose answers rarely repeat.
//!
//! Both are computed from the records alone, within the evaluated set: the baseline of a run
//! depends on nothing but the items it ran (and is the same before and after training). On a
//! small set the majority share errs upwards (it is at least 1 over the number of distinct
//! answers, 1/8 for eight sorted lists that share no answer), which makes a claim of skill
//! above it conservative, never generous.

use std::collections::{BTreeMap, BTreeSet};

use flan_data::synthetic::normalize_whitespace;

use crate::runner::SampleRecord;

/// The chance baseline of each record, in record order, as a fraction in [0, 1] (see the
/// module documentation for the definition).
pub fn item_chances(samples: &[SampleRecord]) -> Vec<f64> {
    let shares = majority_shares(samples);
    samples
        .iter()
        .map(|s| match s.options {
            0 => shares.get(s.task.as_str()).copied().unwrap_or(0.0),
            k => 1.0 / k as f64,
        })
        .collect()
}

/// The majority-answer share of each task among its free-form records: the most items whose
/// gold answers include one answer, over the task's free-form items. Gold answers are compared
/// after whitespace normalisation, as the scorer compares them; a record's answer counts once
/// however many of its gold answers equal it.
pub fn majority_shares(samples: &[SampleRecord]) -> BTreeMap<&str, f64> {
    let mut counts: BTreeMap<&str, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.options == 0) {
        let (items, answers) = counts.entry(s.task.as_str()).or_default();
        *items += 1;
        let distinct: BTreeSet<String> =
            s.targets.iter().map(|t| normalize_whitespace(t)).collect();
        for answer in distinct {
            *answers.entry(answer).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(task, (items, answers))| {
            let most = answers.values().copied().max().unwrap_or(0);
            (task, most as f64 / items as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Mode;
    use proptest::prelude::*;

    fn record(task: &str, target: &str, options: usize) -> SampleRecord {
        SampleRecord {
            task: task.into(),
            index: 0,
            n_shot: 0,
            mode: Mode::Direct,
            exposure: None,
            prompt: String::new(),
            prompt_tokens_cut: 0,
            outputs: Vec::new(),
            extracted: Vec::new(),
            answer: None,
            targets: vec![target.into()],
            options,
            correct: false,
            f1: None,
            choice_logits: None,
            toxicity: None,
        }
    }

    #[test]
    fn options_give_one_in_k_and_free_form_answers_their_family_s_majority_share() {
        let weekdays = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
        ];
        let mut samples: Vec<SampleRecord> =
            weekdays.iter().map(|d| record("day_after", d, 0)).collect();
        // Monday twice: the majority answer is right on 2 of 7.
        samples.push(record("day_after", " Monday ", 0));
        samples.push(record("even_odd", "(A)", 2));
        samples.push(record("topic", "sports", 4));
        samples.push(record("even_odd", "even", 0));
        samples.push(record("even_odd", "odd", 0));
        samples.push(record("even_odd", "odd", 0));
        samples.push(record("sort", "1, 2, 3", 0));
        samples.push(record("sort", "1, 3, 9", 0));
        let chances = item_chances(&samples);
        assert_eq!(chances.len(), samples.len());
        for c in &chances[..7] {
            assert!((c - 2.0 / 7.0).abs() < 1e-12, "{c}");
        }
        assert_eq!(chances[7], 0.5);
        assert_eq!(chances[8], 0.25);
        // The lettered item does not count in even_odd's free-form majority.
        for c in &chances[9..12] {
            assert!((c - 2.0 / 3.0).abs() < 1e-12, "{c}");
        }
        assert_eq!(&chances[12..], &[0.5, 0.5]);
    }

    #[test]
    fn an_item_with_several_gold_answers_counts_once_per_answer() {
        let mut a = record("qa", "the Nile", 0);
        a.targets.push("the  Nile".into());
        a.targets.push("Nile".into());
        let b = record("qa", "Nile", 0);
        let c = record("qa", "Amazon", 0);
        let samples = [a, b, c];
        let shares = majority_shares(&samples);
        assert!((shares["qa"] - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn items_without_gold_answers_have_no_chance() {
        let mut r = record("continuation", "", 0);
        r.targets.clear();
        assert_eq!(item_chances(&[r]), vec![0.0]);
    }

    proptest! {
        /// Chances are probabilities; a task's free-form chance is at least 1 over its number of
        /// distinct answers (the pigeonhole bound) and 1 when all answers are the same.
        #[test]
        fn chances_are_probabilities_bounded_by_the_answer_spread(
            answers in proptest::collection::vec((0usize..2, 0u8..6, 0usize..5), 1..60)
        ) {
            let samples: Vec<SampleRecord> = answers
                .iter()
                .map(|&(task, answer, options)| {
                    record(["a", "b"][task], &format!("x{answer}"), options)
                })
                .collect();
            let chances = item_chances(&samples);
            for (s, c) in samples.iter().zip(&chances) {
                prop_assert!((0.0..=1.0).contains(c));
                if s.options > 0 {
                    prop_assert_eq!(*c, 1.0 / s.options as f64);
                } else {
                    let same: Vec<&SampleRecord> = samples
                        .iter()
                        .filter(|o| o.task == s.task && o.options == 0)
                        .collect();
                    let distinct: BTreeSet<&String> = same.iter().map(|o| &o.targets[0]).collect();
                    prop_assert!(*c >= 1.0 / distinct.len() as f64 - 1e-12);
                    prop_assert_eq!(distinct.len() == 1, *c == 1.0);
                }
            }
        }
    }
}
