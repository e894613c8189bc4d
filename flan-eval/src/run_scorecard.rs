//! Accuracy against chance in a single run: for all items, each task, and (on the synthetic
//! suite) each exposure setting and prompt form, the items, accuracy and its bootstrap interval,
//! the mean [`crate::chance`] baseline, and accuracy − chance with its interval, so a reader of
//! one `flan eval run` can tell skill from format as the finetune report
//! ([`crate::scorecard`]) lets them before and after training. Each cell is a
//! [`RunScore`], built as that report builds the score of one run ([`RunScore::of`]).
//!
//! Items without a chance baseline ([`crate::chance::missing_chances`]) are in no cell:
//! they are counted by task and reason in [`RunScorecard::without_chance`], so a reader sees
//! that they are missing and why rather than a baseline of 0.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::breakdown::Breakdown;
use crate::chance::{missing_chances, MissingChance};
use crate::interval::Bootstrap;
use crate::item::Exposure;
use crate::runner::SampleRecord;
use crate::scorecard::RunScore;
use crate::Result;

/// Every cell of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunScorecard {
    /// How the intervals were computed.
    pub bootstrap: Bootstrap,
    /// Every item with a chance baseline; `None` when there is none.
    pub overall: Option<RunScore>,
    /// By task (the synthetic suite's family); a task none of whose items has a baseline is
    /// absent (and in `without_chance`).
    pub by_task: BTreeMap<String, RunScore>,
    /// By exposure setting, then prompt form ([`crate::Mode::label`]); only for runs whose
    /// items carry an exposure (the synthetic suite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_exposure_form: Option<BTreeMap<String, BTreeMap<String, RunScore>>>,
    /// Items left out of every cell for want of a chance baseline: by task, how many for each
    /// reason. Empty when every item has one.
    pub without_chance: BTreeMap<String, BTreeMap<MissingChance, usize>>,
}

impl RunScorecard {
    /// The cells of the run whose records are `samples`, with intervals by `bootstrap`.
    ///
    /// Errors: invalid bootstrap settings.
    pub fn of(samples: &[SampleRecord], bootstrap: &Bootstrap) -> Result<RunScorecard> {
        bootstrap.validate()?;
        let outcomes = Breakdown::of(samples).outcomes;
        let mut scored = Vec::with_capacity(samples.len());
        let mut by_task: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut by_exposure_form: BTreeMap<(Exposure, String), Vec<usize>> = BTreeMap::new();
        let mut without_chance: BTreeMap<String, BTreeMap<MissingChance, usize>> = BTreeMap::new();
        for (i, (s, missing)) in samples.iter().zip(missing_chances(samples)).enumerate() {
            if let Some(why) = missing {
                *without_chance
                    .entry(s.task.clone())
                    .or_default()
                    .entry(why)
                    .or_default() += 1;
                continue;
            }
            scored.push(i);
            by_task.entry(&s.task).or_default().push(i);
            if let Some(exposure) = s.exposure {
                by_exposure_form
                    .entry((exposure, s.mode.label(s.n_shot)))
                    .or_default()
                    .push(i);
            }
        }
        let score = |rows: &[usize]| RunScore::of(&outcomes, rows, bootstrap);
        let mut card = RunScorecard {
            bootstrap: *bootstrap,
            overall: score(&scored)?,
            by_task: BTreeMap::new(),
            by_exposure_form: samples
                .iter()
                .any(|s| s.exposure.is_some())
                .then(BTreeMap::new),
            without_chance,
        };
        for (task, rows) in by_task {
            if let Some(s) = score(&rows)? {
                card.by_task.insert(task.to_string(), s);
            }
        }
        if let Some(cells) = &mut card.by_exposure_form {
            for ((exposure, form), rows) in by_exposure_form {
                if let Some(s) = score(&rows)? {
                    cells
                        .entry(exposure.name().to_string())
                        .or_default()
                        .insert(form, s);
                }
            }
        }
        Ok(card)
    }

    /// The cell of one task.
    pub fn task(&self, task: &str) -> Option<&RunScore> {
        self.by_task.get(task)
    }

    /// The cell of one exposure setting in one prompt form.
    pub fn form(&self, exposure: Exposure, form: &str) -> Option<&RunScore> {
        self.by_exposure_form
            .as_ref()?
            .get(exposure.name())?
            .get(form)
    }

    /// Items without a chance baseline, for each reason, over all tasks.
    pub fn missing(&self) -> BTreeMap<MissingChance, usize> {
        let mut total = BTreeMap::new();
        for (&why, &n) in self.without_chance.values().flatten() {
            *total.entry(why).or_default() += n;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interval::{Interval, Side};
    use crate::item::Mode;
    use proptest::prelude::*;

    fn record(
        task: &str,
        index: usize,
        target: &str,
        options: usize,
        correct: bool,
    ) -> SampleRecord {
        SampleRecord::for_test(task, index, target, options, correct)
    }

    /// A two-option task of `n` items, every other one answered right when `half`, all right
    /// otherwise.
    fn two_way(task: &str, n: usize, half: bool) -> Vec<SampleRecord> {
        (0..n)
            .map(|i| record(task, i, "(A)", 2, !half || i % 2 == 0))
            .collect()
    }

    #[test]
    fn a_coin_flip_on_two_options_is_at_chance_and_always_right_is_above_it() {
        let mut samples = two_way("coin", 80, true);
        samples.extend(two_way("sure", 40, false));
        let card = RunScorecard::of(&samples, &Bootstrap::default()).unwrap();
        let coin = card.task("coin").unwrap();
        assert_eq!(
            (coin.items, coin.correct, coin.accuracy, coin.chance),
            (80, 40, 0.5, 0.5)
        );
        assert_eq!(coin.above_chance, 0.0);
        assert!(coin.above_chance_interval.contains(0.0));
        assert!(coin.above_chance_interval.low < -0.05 && coin.above_chance_interval.high > 0.05);
        assert_eq!(coin.versus_chance, Side::Within);
        assert!(coin.accuracy_interval.contains(0.5));

        let sure = card.task("sure").unwrap();
        assert_eq!((sure.accuracy, sure.chance), (1.0, 0.5));
        assert_eq!(sure.accuracy_interval, Interval::from([1.0, 1.0]));
        assert_eq!(sure.above_chance_interval, Interval::from([0.5, 0.5]));
        assert_eq!(sure.versus_chance, Side::Above);

        let all = card.overall.unwrap();
        assert_eq!((all.items, all.correct, all.chance), (120, 80, 0.5));
        assert_eq!(all.versus_chance, Side::Above);
        // No exposures: no exposure cells, not even an empty map.
        assert_eq!(card.by_exposure_form, None);
        assert!(card.without_chance.is_empty());
        let json = serde_json::to_value(&card).unwrap();
        assert!(json.get("by_exposure_form").is_none());
        assert_eq!(json["by_task"]["coin"]["chance"], 0.5);
        assert_eq!(json["overall"]["items"], 120);
        assert_eq!(json["bootstrap"]["resamples"], 1000);
    }

    #[test]
    fn exposure_form_cells_split_the_synthetic_items() {
        let mut samples = two_way("parity", 6, true);
        for (i, s) in samples.iter_mut().enumerate() {
            s.exposure = Some(if i < 4 {
                Exposure::SeenTemplates
            } else {
                Exposure::HeldOutFamily
            });
            if i % 2 == 1 {
                s.mode = Mode::ZeroShotCot;
            }
        }
        let card = RunScorecard::of(&samples, &Bootstrap::default()).unwrap();
        let cells = card.by_exposure_form.as_ref().unwrap();
        assert_eq!(cells["seen_templates"].len(), 2);
        assert_eq!(
            card.form(Exposure::SeenTemplates, "zero_shot")
                .unwrap()
                .accuracy,
            1.0
        );
        assert_eq!(
            card.form(Exposure::SeenTemplates, "cot").unwrap().accuracy,
            0.0
        );
        assert_eq!(card.form(Exposure::HeldOutFamily, "cot").unwrap().items, 1);
        assert_eq!(card.form(Exposure::HeldOutTemplates, "cot"), None);
    }

    #[test]
    fn items_without_a_baseline_are_counted_not_scored() {
        let mut samples = vec![
            // The only free-form example of its task, and an item without a gold answer.
            record("alone", 0, "Paris", 0, true),
            record("coin", 0, "(A)", 2, true),
            record("coin", 1, "(A)", 2, false),
        ];
        let mut gold_less = record("coin", 2, "", 2, false);
        gold_less.targets.clear();
        samples.push(gold_less);
        let card = RunScorecard::of(&samples, &Bootstrap::default()).unwrap();
        assert_eq!(card.task("alone"), None);
        assert_eq!(card.task("coin").unwrap().items, 2);
        assert_eq!(card.overall.unwrap().items, 2);
        assert_eq!(
            card.without_chance["alone"],
            BTreeMap::from([(MissingChance::NoOtherExample, 1)])
        );
        assert_eq!(
            card.without_chance["coin"],
            BTreeMap::from([(MissingChance::NoGoldAnswer, 1)])
        );
        assert_eq!(card.missing().values().sum::<usize>(), 2);
        let json = serde_json::to_value(&card).unwrap();
        assert_eq!(json["without_chance"]["alone"]["no_other_example"], 1);

        // Nothing with a baseline: no cells at all, and the reason is kept.
        let card = RunScorecard::of(&samples[..1], &Bootstrap::default()).unwrap();
        assert_eq!(card.overall, None);
        assert!(card.by_task.is_empty());
        assert_eq!(card.missing()[&MissingChance::NoOtherExample], 1);
        let bad = Bootstrap {
            level: 1.5,
            ..Bootstrap::default()
        };
        assert!(RunScorecard::of(&samples, &bad).is_err());
    }

    proptest! {
        /// The same records give the same card; every cell agrees with its counts, its
        /// intervals contain its estimates, and the task cells partition the overall one.
        #[test]
        fn cards_are_deterministic_and_agree_with_their_counts(
            answers in proptest::collection::vec((0usize..3, any::<bool>(), 0usize..4, 0u8..3), 1..80),
            seed in any::<u64>(),
        ) {
            let samples: Vec<SampleRecord> = answers
                .iter()
                .enumerate()
                .map(|(i, &(task, correct, options, answer))| {
                    record(["a", "b", "c"][task], i, &format!("x{answer}"), options, correct)
                })
                .collect();
            let bootstrap = Bootstrap { seed, resamples: 200, level: 0.9 };
            let card = RunScorecard::of(&samples, &bootstrap).unwrap();
            prop_assert_eq!(&card, &RunScorecard::of(&samples, &bootstrap).unwrap());
            let scored: usize = card.by_task.values().map(|s| s.items).sum();
            let missing: usize = card.missing().values().sum();
            prop_assert_eq!(scored + missing, samples.len());
            prop_assert_eq!(card.overall.map_or(0, |s| s.items), scored);
            for s in card.by_task.values().chain(&card.overall) {
                prop_assert!((s.accuracy - s.correct as f64 / s.items as f64).abs() < 1e-12);
                prop_assert!((s.above_chance - (s.accuracy - s.chance)).abs() < 1e-12);
                prop_assert!(s.accuracy_interval.contains(s.accuracy));
                prop_assert!(s.above_chance_interval.contains(s.above_chance));
            }
        }
    }
}
