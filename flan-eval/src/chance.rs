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
//! - **otherwise (a free-form answer), how often its family's majority answer, estimated
//!   without it, is its gold answer**: the answer a model that ignores the question would
//!   give is the one most frequent among the *other* examples of the same task (free-form
//!   ones); the item's baseline is 1 when its gold answers include it, 0 when not, and the
//!   share of its gold answers among them when several answers tie. No answer that ignores
//!   the question does better in expectation, so it measures what the answer distribution
//!   alone gives away: about 1/2 for yes/no, about 1/7 for weekdays, 0 for sorted lists, whose
//!   answers do not repeat.
//!
//! Why leave the item out: the share of the most frequent answer within the evaluated set
//! itself counts every item in its own favour, so it is at least 1 over the number of distinct
//! answers (1/8 for eight sorted lists that share no answer) and errs high on small sets. Left
//! out is the item's whole *example* ([`SampleRecord::example`]): the synthetic suite renders
//! each eval example of a family in every template set and mode, and copies of an item in
//! other prompts would vote for its own answer. Records without an example id are each an
//! example of their own.
//!
//! Both are computed from the records alone, within the evaluated set: the baseline of a run
//! depends on nothing but the items it ran (and is the same before and after training).
//!
//! Some items have no baseline ([`missing_chances`]): an item without a gold answer (nothing
//! to be right about), and a free-form item whose task has no other free-form example with a
//! gold answer (no majority to take; a run with `--limit 1` on a free-form benchmark). For
//! them [`item_chances`] gives 0, which is what a format-only model scores on them, but a
//! report must not present it as a baseline: it says they have none.

use std::collections::{BTreeMap, BTreeSet};

use flan_data::synthetic::normalize_whitespace;
use serde::{Deserialize, Serialize};

use crate::runner::SampleRecord;

/// The chance baseline of each record, in record order, as a fraction in [0, 1] (see the
/// module documentation for the definition).
pub fn item_chances(samples: &[SampleRecord]) -> Vec<f64> {
    let tasks = free_form_answers(samples);
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| match s.options {
            0 => tasks[s.task.as_str()].leave_one_out_majority(example_key(i, s), s),
            k => 1.0 / k as f64,
        })
        .collect()
}

/// Why an item has no chance baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingChance {
    /// The item has no gold answer.
    NoGoldAnswer,
    /// A free-form item whose task has no other free-form example with a gold answer, so
    /// there is no majority answer to take.
    NoOtherExample,
}

impl MissingChance {
    /// Why, in words, for reports.
    pub fn reason(self) -> &'static str {
        match self {
            MissingChance::NoGoldAnswer => "no gold answer",
            MissingChance::NoOtherExample => {
                "a free-form answer and no other example of its task to take the majority \
                 answer from"
            }
        }
    }
}

/// For each record, in record order, why it has no chance baseline; `None` when it has one
/// (see the module documentation).
pub fn missing_chances(samples: &[SampleRecord]) -> Vec<Option<MissingChance>> {
    let tasks = free_form_answers(samples);
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.targets.is_empty() {
                Some(MissingChance::NoGoldAnswer)
            } else if s.options == 0 && !tasks[s.task.as_str()].has_other_example(example_key(i, s))
            {
                Some(MissingChance::NoOtherExample)
            } else {
                None
            }
        })
        .collect()
}

/// Which example a record renders: its example id, or (without one) the record itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ExampleKey {
    Example(usize),
    Record(usize),
}

fn example_key(position: usize, s: &SampleRecord) -> ExampleKey {
    s.example
        .map_or(ExampleKey::Record(position), ExampleKey::Example)
}

/// A record's gold answers as the scorer compares them (whitespace-normalised, each once).
fn gold_answers(s: &SampleRecord) -> BTreeSet<String> {
    s.targets.iter().map(|t| normalize_whitespace(t)).collect()
}

/// The free-form examples of one task and how many of them each answer is gold for, counted
/// once so that each record's leave-one-out majority only subtracts its own example.
#[derive(Default)]
struct TaskAnswers {
    /// Each example's gold answers (an example rendered in several prompts: all of theirs).
    examples: BTreeMap<ExampleKey, BTreeSet<String>>,
    /// Examples each answer is gold for.
    counts: BTreeMap<String, usize>,
    /// Answers per count (how many answers are gold for exactly `c` examples).
    answers_per_count: BTreeMap<usize, usize>,
    /// Examples with at least one gold answer.
    answered: usize,
}

impl TaskAnswers {
    /// Whether an example other than `own` has a gold answer.
    fn has_other_example(&self, own: ExampleKey) -> bool {
        let own_answered = self.examples.get(&own).is_some_and(|a| !a.is_empty());
        self.answered > usize::from(own_answered)
    }

    /// The chance that the majority answer of the examples other than `own` is one of
    /// `record`'s gold answers (ties broken uniformly); 0 when no other example exists.
    fn leave_one_out_majority(&self, own: ExampleKey, record: &SampleRecord) -> f64 {
        let empty = BTreeSet::new();
        let own_answers = self.examples.get(&own).unwrap_or(&empty);
        let count = |answer: &str| {
            self.counts.get(answer).copied().unwrap_or(0)
                - usize::from(own_answers.contains(answer))
        };
        // Leaving `own` out moves each of its answers one count down; every other answer keeps
        // its count, so the majority count is the top count or one below it.
        let mut moved: BTreeMap<usize, isize> = BTreeMap::new();
        for answer in own_answers {
            let c = self.counts[answer];
            *moved.entry(c).or_default() -= 1;
            *moved.entry(c - 1).or_default() += 1;
        }
        let answers_at = |c: usize| {
            self.answers_per_count.get(&c).map_or(0, |&n| n as isize)
                + moved.get(&c).copied().unwrap_or(0)
        };
        let top = self
            .answers_per_count
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        let Some(most) = [top, top.saturating_sub(1)]
            .into_iter()
            .find(|&c| c > 0 && answers_at(c) > 0)
        else {
            return 0.0;
        };
        let tied = answers_at(most) as f64;
        let gold_tied = gold_answers(record)
            .iter()
            .filter(|g| count(g) == most)
            .count();
        gold_tied as f64 / tied
    }
}

/// The free-form examples of each task with their answers' counts.
fn free_form_answers(samples: &[SampleRecord]) -> BTreeMap<&str, TaskAnswers> {
    let mut out: BTreeMap<&str, TaskAnswers> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if s.options == 0 {
            out.entry(s.task.as_str())
                .or_default()
                .examples
                .entry(example_key(i, s))
                .or_default()
                .extend(gold_answers(s));
        }
    }
    for task in out.values_mut() {
        task.answered = task.examples.values().filter(|a| !a.is_empty()).count();
        for answer in task.examples.values().flatten() {
            *task.counts.entry(answer.clone()).or_default() += 1;
        }
        for &c in task.counts.values() {
            *task.answers_per_count.entry(c).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(task: &str, target: &str, options: usize) -> SampleRecord {
        SampleRecord::for_test(task, 0, target, options, false)
    }

    #[test]
    fn options_give_one_in_k_and_free_form_answers_the_others_majority() {
        let days = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            " Monday ",
        ];
        let mut samples: Vec<SampleRecord> =
            days.iter().map(|d| record("day_after", d, 0)).collect();
        samples.push(record("even_odd", "(A)", 2));
        samples.push(record("topic", "sports", 4));
        samples.push(record("even_odd", "even", 0));
        samples.push(record("even_odd", "odd", 0));
        samples.push(record("even_odd", "odd", 0));
        samples.push(record("sort", "1, 2, 3", 0));
        samples.push(record("sort", "1, 3, 9", 0));
        let chances = item_chances(&samples);
        assert_eq!(chances.len(), samples.len());
        // A Monday: the other six answers tie, Monday among them. Any other day: the others'
        // majority is Monday (twice).
        let sixth = 1.0 / 6.0;
        let expected = [sixth, 0.0, 0.0, 0.0, 0.0, 0.0, sixth];
        for (c, e) in chances[..7].iter().zip(expected) {
            assert!((c - e).abs() < 1e-12, "{c} != {e}");
        }
        assert_eq!(chances[7], 0.5);
        assert_eq!(chances[8], 0.25);
        // even: the others say odd; odd: the others tie between even and odd. The lettered
        // item does not count among the free-form answers.
        assert_eq!(&chances[9..12], &[0.0, 0.5, 0.5]);
        // Answers that never repeat give nothing away.
        assert_eq!(&chances[12..], &[0.0, 0.0]);
    }

    #[test]
    fn copies_of_an_example_in_other_prompts_do_not_vote_for_it() {
        // Example 0 rendered in three prompts, example 1 in one; their answers differ.
        let mut samples: Vec<SampleRecord> = (0..3)
            .map(|_| record("sort", "1, 2, 3", 0))
            .chain([record("sort", "1, 3, 9", 0)])
            .collect();
        for (r, example) in samples.iter_mut().zip([0, 0, 0, 1]) {
            r.example = Some(example);
        }
        assert_eq!(item_chances(&samples), vec![0.0; 4]);
        // Without example ids every record is an example, and example 0's copies make its
        // answer the others' majority.
        for r in &mut samples {
            r.example = None;
        }
        assert_eq!(item_chances(&samples), vec![1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn an_item_with_several_gold_answers_counts_once_per_answer() {
        let mut a = record("qa", "the Nile", 0);
        a.targets.push("the  Nile".into());
        a.targets.push("Nile".into());
        let b = record("qa", "Nile", 0);
        let c = record("qa", "Amazon", 0);
        let chances = item_chances(&[a, b, c]);
        // a: Nile and Amazon tie among the others, Nile is gold; b: three answers tie, one
        // gold; c: the others' majority is Nile.
        let expected = [0.5, 1.0 / 3.0, 0.0];
        for (c, e) in chances.iter().zip(expected) {
            assert!((c - e).abs() < 1e-12, "{c} != {e}");
        }
    }

    #[test]
    fn items_without_gold_answers_or_other_examples_have_no_chance() {
        let mut r = record("continuation", "", 0);
        r.targets.clear();
        assert_eq!(item_chances(&[r.clone()]), vec![0.0]);
        assert_eq!(item_chances(&[record("alone", "yes", 0)]), vec![0.0]);
        // Reports are told these zeros are no baseline.
        let mut copies = vec![record("alone", "yes", 0), record("alone", "no", 0)];
        for c in &mut copies {
            c.example = Some(7);
        }
        let samples = [
            r,
            record("alone", "yes", 0),
            record("paired", "yes", 0),
            record("paired", "no", 0),
            record("choice", "(A)", 2),
        ];
        assert_eq!(
            missing_chances(&samples),
            vec![
                Some(MissingChance::NoGoldAnswer),
                Some(MissingChance::NoOtherExample),
                None,
                None,
                None
            ]
        );
        // One example rendered in two prompts is still the task's only example.
        assert_eq!(
            missing_chances(&copies),
            vec![Some(MissingChance::NoOtherExample); 2]
        );
    }

    /// The definition, counted from scratch for each record (what [`TaskAnswers`] computes
    /// from counts made once).
    fn brute_force(samples: &[SampleRecord], i: usize) -> f64 {
        let s = &samples[i];
        if s.options > 0 {
            return 1.0 / s.options as f64;
        }
        let mut examples: BTreeMap<ExampleKey, BTreeSet<String>> = BTreeMap::new();
        for (j, o) in samples.iter().enumerate() {
            if o.options == 0 && o.task == s.task {
                examples
                    .entry(example_key(j, o))
                    .or_default()
                    .extend(gold_answers(o));
            }
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, answers) in examples.iter().filter(|(k, _)| **k != example_key(i, s)) {
            for a in answers {
                *counts.entry(a.as_str()).or_default() += 1;
            }
        }
        let Some(most) = counts.values().copied().max() else {
            return 0.0;
        };
        let tied: Vec<&str> = counts
            .iter()
            .filter(|(_, &n)| n == most)
            .map(|(a, _)| *a)
            .collect();
        let gold = gold_answers(s);
        tied.iter().filter(|a| gold.contains(**a)).count() as f64 / tied.len() as f64
    }

    proptest! {
        /// Counting once and subtracting each record's own example gives what counting the
        /// other examples from scratch gives, with and without example ids.
        #[test]
        fn counts_made_once_agree_with_the_definition(
            records in proptest::collection::vec(
                (0usize..2, 0u8..4, 0u8..3, 0usize..3, proptest::option::of(0usize..5)),
                1..40,
            )
        ) {
            let samples: Vec<SampleRecord> = records
                .iter()
                .map(|&(task, answer, extra, options, example)| {
                    let mut r = record(["a", "b"][task], &format!("x{answer}"), options);
                    if extra > 0 {
                        r.targets.push(format!("x{}", (answer + extra) % 4));
                    }
                    r.example = example;
                    r
                })
                .collect();
            let chances = item_chances(&samples);
            for (i, c) in chances.iter().enumerate() {
                prop_assert!((c - brute_force(&samples, i)).abs() < 1e-12);
            }
            // An item lacks a baseline exactly when it is free-form and no record of its task
            // renders another free-form example (every record here has a gold answer).
            for (i, missing) in missing_chances(&samples).into_iter().enumerate() {
                let s = &samples[i];
                let other = samples.iter().enumerate().any(|(j, o)| {
                    o.task == s.task && o.options == 0 && example_key(j, o) != example_key(i, s)
                });
                let expected = (s.options == 0 && !other).then_some(MissingChance::NoOtherExample);
                prop_assert_eq!(missing, expected);
            }
        }
    }

    proptest! {
        /// Chances are probabilities, 1/k with options; a task whose free-form answers are all
        /// the same has chance 1 on each (given another example), all different 0; and no
        /// record's chance depends on the order of the records.
        #[test]
        fn chances_are_probabilities_independent_of_record_order(
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
                    if same.len() >= 2 && distinct.len() == 1 {
                        prop_assert_eq!(*c, 1.0);
                    }
                    if distinct.len() == same.len() {
                        prop_assert_eq!(*c, 0.0);
                    }
                }
            }
            let reversed: Vec<SampleRecord> = samples.iter().rev().cloned().collect();
            let mut again = item_chances(&reversed);
            again.reverse();
            prop_assert_eq!(again, chances);
        }
    }
}
