//! Accuracy against chance, before and after training, with intervals: for every cell of an
//! evaluation (all items, each exposure setting, each setting and prompt form, each family
//! overall and per setting) the items, the [`crate::chance`] baseline, each run's accuracy and
//! its margin over chance, and the change after − before, each with a [`Bootstrap`] interval.
//!
//! A cell's chance is the mean of its items' baselines. The change is paired: the two runs are
//! matched item by item ([`pair`]), and each resample draws the same items for both, so the
//! interval reflects the spread of the difference, not of two independent accuracies. Runs
//! that did not evaluate the same items are not paired at all (no change intervals, and
//! [`Scorecard::unpaired`] says why) rather than compared on whatever happens to match.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::breakdown::{Breakdown, ItemKey, Outcome};
use crate::interval::{Bootstrap, Estimate, Interval, Side};
use crate::item::Exposure;
use crate::{Error, Result};

/// The key under which a family's cell over all its settings is kept in
/// [`Scorecard::by_family`].
pub const ALL_SETTINGS: &str = "all";

/// One run in one cell. Fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunScore {
    /// Items in the cell.
    pub items: usize,
    /// Items answered right.
    pub correct: usize,
    /// `correct / items`.
    pub accuracy: f64,
    /// Its bootstrap interval.
    pub accuracy_interval: Interval,
    /// The mean chance baseline of the items.
    pub chance: f64,
    /// `accuracy - chance`.
    pub above_chance: f64,
    /// Its bootstrap interval.
    pub above_chance_interval: Interval,
    /// Where that interval lies: `above` chance by more than the interval, `below` it, or
    /// `within` (not distinguishable from a model that learned only the answer format).
    pub versus_chance: Side,
}

/// The paired change of a cell, after − before over the same items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    /// After-training accuracy minus before-training accuracy.
    pub difference: f64,
    /// Its paired bootstrap interval.
    pub interval: Interval,
    /// Where that interval lies: `above` zero (training raised the score by more than the
    /// interval), `below`, or `within`.
    pub direction: Side,
}

/// One cell. Its top-level fields are the trained model's ([`RunScore`], flattened), so
/// `accuracy`, `chance` and `items` of a cell are those after training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellScore {
    /// After training (absent when that run has no items in the cell).
    #[serde(flatten)]
    pub after: Option<RunScore>,
    /// Before training.
    pub before: Option<RunScore>,
    /// After − before, when the runs are paired.
    pub change: Option<Change>,
}

/// Every cell of a before/after evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scorecard {
    /// How the intervals were computed.
    pub bootstrap: Bootstrap,
    /// Why the runs could not be paired item by item (no change intervals then); `None` when
    /// they were.
    pub unpaired: Option<String>,
    /// Every item.
    pub overall: Option<CellScore>,
    /// By exposure setting.
    pub by_setting: BTreeMap<String, CellScore>,
    /// By exposure setting, then prompt form ([`crate::Mode::label`]).
    pub by_setting_mode: BTreeMap<String, BTreeMap<String, CellScore>>,
    /// By family (task), then exposure setting, and [`ALL_SETTINGS`] for all its items.
    pub by_family: BTreeMap<String, BTreeMap<String, CellScore>>,
}

/// Matches the outcomes of two runs item by item: for each item after, the index of the same
/// item before. Refused, with every kind of mismatch counted and the first of each named, when
/// an item occurs twice in a run, occurs in only one run, or has a different chance baseline
/// in the two (different answer options or gold answers: not the same item).
pub fn pair(before: &[Outcome], after: &[Outcome]) -> Result<Vec<usize>> {
    let mut problems = Vec::new();
    let mut index: HashMap<&ItemKey, usize> = HashMap::with_capacity(before.len());
    let mut twice = Vec::new();
    for (i, o) in before.iter().enumerate() {
        if index.insert(&o.key, i).is_some() {
            twice.push(&o.key);
        }
    }
    describe(
        &mut problems,
        "listed twice in the run before training",
        &twice,
    );
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    let mut only_after = Vec::new();
    let mut differ = Vec::new();
    let mut partner = Vec::with_capacity(after.len());
    for o in after {
        if !seen.insert(&o.key) {
            twice.push(&o.key);
        }
        match index.get(&o.key) {
            Some(&j) => {
                if before[j].chance.to_bits() != o.chance.to_bits() {
                    differ.push(&o.key);
                }
                partner.push(j);
            }
            None => only_after.push(&o.key),
        }
    }
    let only_before: Vec<&ItemKey> = before
        .iter()
        .map(|o| &o.key)
        .filter(|k| !seen.contains(k))
        .collect();
    describe(
        &mut problems,
        "listed twice in the run after training",
        &twice,
    );
    describe(&mut problems, "evaluated only after training", &only_after);
    describe(
        &mut problems,
        "evaluated only before training",
        &only_before,
    );
    describe(
        &mut problems,
        "with different answer options or gold answers in the two runs",
        &differ,
    );
    if problems.is_empty() {
        Ok(partner)
    } else {
        Err(Error::Unpaired(problems.join("; ")))
    }
}

fn describe(problems: &mut Vec<String>, what: &str, keys: &[&ItemKey]) {
    if let Some(first) = keys.first() {
        let items = if keys.len() == 1 { "item" } else { "items" };
        problems.push(format!("{} {items} {what} (first: {first})", keys.len()));
    }
}

/// Two runs of an evaluation, paired item by item when they can be.
#[derive(Debug)]
pub struct BeforeAfter<'a> {
    before: &'a [Outcome],
    after: &'a [Outcome],
    partner: std::result::Result<Vec<usize>, String>,
}

impl<'a> BeforeAfter<'a> {
    /// Pairs the outcomes of `before` and `after`.
    pub fn new(before: &'a Breakdown, after: &'a Breakdown) -> BeforeAfter<'a> {
        BeforeAfter {
            before: &before.outcomes,
            after: &after.outcomes,
            partner: pair(&before.outcomes, &after.outcomes).map_err(|e| match e {
                Error::Unpaired(why) => why,
                other => other.to_string(),
            }),
        }
    }

    /// Why the runs are not paired; `None` when they are.
    pub fn unpaired(&self) -> Option<&str> {
        self.partner.as_ref().err().map(String::as_str)
    }

    /// The cell of the items `keep` selects; `None` when neither run has any.
    pub fn cell(
        &self,
        keep: impl Fn(&ItemKey) -> bool,
        bootstrap: &Bootstrap,
    ) -> Result<Option<CellScore>> {
        let select = |run: &[Outcome]| -> Vec<usize> {
            (0..run.len()).filter(|&i| keep(&run[i].key)).collect()
        };
        let after = select(self.after);
        match &self.partner {
            Ok(partner) => {
                if after.is_empty() {
                    return Ok(None);
                }
                // Paired items have the same key, so `keep` selects the partners before.
                let before: Vec<usize> = after.iter().map(|&i| partner[i]).collect();
                let (ac, am) = columns(self.after, &after);
                let (bc, bm) = columns(self.before, &before);
                let change: Vec<f64> = ac.iter().zip(&bc).map(|(a, b)| a - b).collect();
                let e = bootstrap.means(&[&ac, &am, &bc, &bm, &change])?;
                Ok(Some(CellScore {
                    after: Some(RunScore::from_estimates(self.after, &after, e[0], e[1])),
                    before: Some(RunScore::from_estimates(self.before, &before, e[2], e[3])),
                    change: Some(Change {
                        difference: e[4].mean,
                        interval: e[4].interval,
                        direction: e[4].interval.side_of_zero(),
                    }),
                }))
            }
            Err(_) => {
                let before = select(self.before);
                if after.is_empty() && before.is_empty() {
                    return Ok(None);
                }
                Ok(Some(CellScore {
                    after: RunScore::of(self.after, &after, bootstrap)?,
                    before: RunScore::of(self.before, &before, bootstrap)?,
                    change: None,
                }))
            }
        }
    }
}

/// Correctness (0 or 1) and margin over chance of the rows of a run.
fn columns(run: &[Outcome], rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
    rows.iter()
        .map(|&i| {
            let correct = f64::from(u8::from(run[i].correct));
            (correct, correct - run[i].chance)
        })
        .unzip()
}

impl RunScore {
    /// The score of one run on its outcomes `rows` (indices into `run`), with intervals by
    /// `bootstrap`; `None` when `rows` is empty. A single run's report
    /// ([`crate::run_scorecard`]) and an unpaired before/after cell are made of these.
    pub fn of(run: &[Outcome], rows: &[usize], bootstrap: &Bootstrap) -> Result<Option<RunScore>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let (correct, margin) = columns(run, rows);
        let e = bootstrap.means(&[&correct, &margin])?;
        Ok(Some(RunScore::from_estimates(run, rows, e[0], e[1])))
    }

    /// The score of `rows` of `run` from the bootstrap estimates of their correctness and
    /// margin over chance ([`columns`]), which a paired cell resamples together with the other
    /// run's.
    fn from_estimates(
        run: &[Outcome],
        rows: &[usize],
        accuracy: Estimate,
        margin: Estimate,
    ) -> RunScore {
        let correct = rows.iter().filter(|&&i| run[i].correct).count();
        let chance = rows.iter().map(|&i| run[i].chance).sum::<f64>() / rows.len() as f64;
        RunScore {
            items: rows.len(),
            correct,
            accuracy: accuracy.mean,
            accuracy_interval: accuracy.interval,
            chance,
            above_chance: margin.mean,
            above_chance_interval: margin.interval,
            versus_chance: margin.interval.side_of_zero(),
        }
    }
}

/// Points with a sign, never "-0.0" (a rounding residue of an exact zero).
pub(crate) fn signed(points: f64) -> String {
    let points = if points.abs() < 0.05 { 0.0 } else { points };
    format!("{points:+.1}")
}

/// An interval of a difference, in points.
pub(crate) fn signed_range(interval: Interval) -> String {
    let i = interval.scaled(100.0);
    format!("{} to {}", signed(i.low), signed(i.high))
}

/// The level of the intervals, as reports say it ("95%").
pub(crate) fn level(bootstrap: &Bootstrap) -> String {
    format!("{:.0}%", 100.0 * bootstrap.level)
}

/// A difference (a fraction) in points with its interval, bold when the interval lies wholly
/// on one side of zero: `**+9.4** (+1.2 to +17.6)`.
pub(crate) fn points_cell(difference: f64, interval: Interval) -> String {
    let value = signed(100.0 * difference);
    let value = match interval.side_of_zero() {
        Side::Within => value,
        Side::Above | Side::Below => format!("**{value}**"),
    };
    format!("{value} ({})", signed_range(interval))
}

impl Scorecard {
    /// Every cell of the two runs (cells that only one run has included).
    pub fn of(before: &Breakdown, after: &Breakdown, bootstrap: &Bootstrap) -> Result<Scorecard> {
        bootstrap.validate()?;
        let runs = BeforeAfter::new(before, after);
        let keys: Vec<&ItemKey> = after
            .outcomes
            .iter()
            .chain(&before.outcomes)
            .map(|o| &o.key)
            .collect();
        let settings: BTreeSet<Exposure> = keys.iter().filter_map(|k| k.exposure).collect();
        let forms: BTreeSet<(Exposure, String)> = keys
            .iter()
            .filter_map(|k| Some((k.exposure?, k.form())))
            .collect();
        let families: BTreeSet<(&str, Exposure)> = keys
            .iter()
            .filter_map(|k| Some((k.task.as_str(), k.exposure?)))
            .collect();

        let mut card = Scorecard {
            bootstrap: *bootstrap,
            unpaired: runs.unpaired().map(str::to_string),
            overall: runs.cell(|_| true, bootstrap)?,
            by_setting: BTreeMap::new(),
            by_setting_mode: BTreeMap::new(),
            by_family: BTreeMap::new(),
        };
        for setting in settings {
            if let Some(c) = runs.cell(|k| k.exposure == Some(setting), bootstrap)? {
                card.by_setting.insert(setting.name().to_string(), c);
            }
        }
        for (setting, form) in forms {
            let keep = |k: &ItemKey| k.exposure == Some(setting) && k.form() == form;
            if let Some(c) = runs.cell(keep, bootstrap)? {
                card.by_setting_mode
                    .entry(setting.name().to_string())
                    .or_default()
                    .insert(form, c);
            }
        }
        for (family, setting) in &families {
            let keep = |k: &ItemKey| k.task == *family && k.exposure == Some(*setting);
            if let Some(c) = runs.cell(keep, bootstrap)? {
                card.by_family
                    .entry(family.to_string())
                    .or_default()
                    .insert(setting.name().to_string(), c);
            }
        }
        let names: BTreeSet<&str> = families.iter().map(|(f, _)| *f).collect();
        for family in names {
            let keep = |k: &ItemKey| k.task == family && k.exposure.is_some();
            if let Some(c) = runs.cell(keep, bootstrap)? {
                card.by_family
                    .entry(family.to_string())
                    .or_default()
                    .insert(ALL_SETTINGS.to_string(), c);
            }
        }
        Ok(card)
    }

    /// The cell of one setting.
    pub fn setting(&self, setting: Exposure) -> Option<&CellScore> {
        self.by_setting.get(setting.name())
    }

    /// The cell of one setting in one prompt form.
    pub fn form(&self, setting: Exposure, form: &str) -> Option<&CellScore> {
        self.by_setting_mode.get(setting.name())?.get(form)
    }

    /// The cell of one family over all its settings.
    pub fn family(&self, family: &str) -> Option<&CellScore> {
        self.by_family.get(family)?.get(ALL_SETTINGS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::SampleRecord;
    use proptest::prelude::*;

    fn record(
        task: &str,
        index: usize,
        exposure: Exposure,
        target: &str,
        options: usize,
        correct: bool,
    ) -> SampleRecord {
        SampleRecord {
            exposure: Some(exposure),
            ..SampleRecord::for_test(task, index, target, options, correct)
        }
    }

    /// A held-out two-way family of `n` items (options listed), `right` of them answered right.
    fn two_way(n: usize, right: usize) -> Vec<SampleRecord> {
        (0..n)
            .map(|i| record("parity", i, Exposure::HeldOutFamily, "(A)", 2, i < right))
            .collect()
    }

    #[test]
    fn a_coin_flip_on_two_options_is_chance_and_all_right_is_above_it() {
        let before = Breakdown::of(&two_way(60, 0));
        let after = Breakdown::of(&two_way(60, 30));
        let card = Scorecard::of(&before, &after, &Bootstrap::default()).unwrap();
        assert_eq!(card.unpaired, None);
        let cell = card.setting(Exposure::HeldOutFamily).unwrap();
        let a = cell.after.unwrap();
        assert_eq!(
            (a.items, a.correct, a.accuracy, a.chance),
            (60, 30, 0.5, 0.5)
        );
        assert_eq!(a.above_chance, 0.0);
        assert_eq!(a.versus_chance, Side::Within);
        assert!(a.accuracy_interval.contains(0.5) && a.accuracy_interval.half_width() > 0.05);
        // The untrained model answered nothing right: below chance, and the change is real.
        let b = cell.before.unwrap();
        assert_eq!(b.versus_chance, Side::Below);
        let change = cell.change.unwrap();
        assert_eq!(change.difference, 0.5);
        assert_eq!(change.direction, Side::Above);

        let after = Breakdown::of(&two_way(60, 60));
        let card = Scorecard::of(&before, &after, &Bootstrap::default()).unwrap();
        let a = card.family("parity").unwrap().after.unwrap();
        assert_eq!(a.accuracy_interval, Interval::from([1.0, 1.0]));
        assert_eq!(a.versus_chance, Side::Above);
        assert_eq!(card.by_family["parity"].len(), 2, "held_out_family and all");
        assert_eq!(
            card.by_setting_mode["held_out_family"]["zero_shot"],
            card.by_setting["held_out_family"]
        );
    }

    #[test]
    fn cells_take_their_items_chance_and_json_has_accuracy_chance_and_items() {
        let mut samples = two_way(4, 2);
        // Free-form weekdays: each Monday's other examples say Monday, Friday's do too, so
        // chance is 3 of 4.
        for (i, day) in ["Monday", "Monday", "Monday", "Friday"].iter().enumerate() {
            samples.push(record(
                "day_after",
                i,
                Exposure::SeenTemplates,
                day,
                0,
                true,
            ));
        }
        let run = Breakdown::of(&samples);
        let card = Scorecard::of(&run, &run, &Bootstrap::default()).unwrap();
        // With the four two-way items at 1/2.
        assert_eq!(card.overall.as_ref().unwrap().after.unwrap().chance, 0.625);
        let seen = card.setting(Exposure::SeenTemplates).unwrap();
        assert_eq!(seen.after.unwrap().above_chance, 0.25);
        // The same run twice: no change, exactly.
        assert_eq!(seen.change.unwrap().interval, Interval::from([0.0, 0.0]));
        let json = serde_json::to_value(&card).unwrap();
        let cell = &json["by_setting"]["seen_templates"];
        assert_eq!(cell["accuracy"], 1.0);
        assert_eq!(cell["chance"], 0.75);
        assert_eq!(cell["items"], 4);
        assert_eq!(cell["accuracy_interval"], serde_json::json!([1.0, 1.0]));
        // Only Friday is above its chance (1 − 0 against 1 − 1 for the Mondays): a resample
        // without it is at chance, so the margin is within the interval.
        assert_eq!(cell["versus_chance"], "within");
        assert_eq!(cell["before"]["accuracy"], 1.0);
        assert_eq!(cell["change"]["direction"], "within");
        assert_eq!(json["by_family"]["day_after"]["all"]["items"], 4);
        assert_eq!(json["bootstrap"]["resamples"], 1000);
        assert!(json["unpaired"].is_null());
    }

    #[test]
    fn runs_of_different_items_are_not_paired_and_say_why() {
        let before = Breakdown::of(&two_way(5, 1));
        let mut other = two_way(6, 3);
        other.remove(0);
        other[0].options = 3;
        let after = Breakdown::of(&other);
        let card = Scorecard::of(&before, &after, &Bootstrap::default()).unwrap();
        let why = card.unpaired.as_deref().unwrap();
        assert!(why.contains("1 item evaluated only after training (first: parity #5 (zero_shot, held_out_family))"), "{why}");
        assert!(
            why.contains("1 item evaluated only before training (first: parity #0"),
            "{why}"
        );
        assert!(
            why.contains("1 item with different answer options"),
            "{why}"
        );
        let cell = card.setting(Exposure::HeldOutFamily).unwrap();
        assert_eq!(cell.change, None);
        assert_eq!(cell.before.unwrap().items, 5);
        assert_eq!(cell.after.unwrap().correct, 2);

        let mut twice = two_way(3, 1);
        twice.push(twice[0].clone());
        let run = Breakdown::of(&twice);
        let err = pair(&run.outcomes, &Breakdown::of(&two_way(3, 1)).outcomes).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 item listed twice in the run before training"),
            "{err}"
        );
    }

    #[test]
    fn no_outcomes_no_cells() {
        let empty = Breakdown::default();
        let card = Scorecard::of(&empty, &empty, &Bootstrap::default()).unwrap();
        assert_eq!(card.overall, None);
        assert!(card.by_setting.is_empty() && card.unpaired.is_none());
        let bad = Bootstrap {
            resamples: 0,
            ..Bootstrap::default()
        };
        assert!(Scorecard::of(&empty, &empty, &bad).is_err());
    }

    proptest! {
        /// Whatever the answers, a paired cell's numbers agree with its counts: the change is
        /// the difference of the accuracies, each interval contains its estimate or is a point,
        /// and the same seed gives the same card.
        #[test]
        fn paired_cells_agree_with_their_counts(
            answers in proptest::collection::vec((any::<bool>(), any::<bool>(), 0usize..4), 1..80),
            seed in any::<u64>(),
        ) {
            let run = |after: bool| -> Vec<SampleRecord> {
                answers
                    .iter()
                    .enumerate()
                    .map(|(i, &(b, a, k))| {
                        record("fam", i, Exposure::HeldOutTemplates, &format!("x{}", i % 3), k, if after { a } else { b })
                    })
                    .collect()
            };
            let (before, after) = (Breakdown::of(&run(false)), Breakdown::of(&run(true)));
            let bootstrap = Bootstrap { seed, resamples: 200, level: 0.9 };
            let card = Scorecard::of(&before, &after, &bootstrap).unwrap();
            prop_assert_eq!(&card, &Scorecard::of(&before, &after, &bootstrap).unwrap());
            let cell = card.setting(Exposure::HeldOutTemplates).unwrap();
            let (a, b, change) = (cell.after.unwrap(), cell.before.unwrap(), cell.change.unwrap());
            prop_assert_eq!(a.correct, after.overall.correct);
            prop_assert_eq!(b.correct, before.overall.correct);
            prop_assert_eq!(a.chance, b.chance);
            prop_assert!((change.difference - (a.accuracy - b.accuracy)).abs() < 1e-12);
            prop_assert!((a.above_chance - (a.accuracy - a.chance)).abs() < 1e-12);
            for (estimate, interval) in [
                (a.accuracy, a.accuracy_interval),
                (a.above_chance, a.above_chance_interval),
                (b.accuracy, b.accuracy_interval),
                (change.difference, change.interval),
            ] {
                prop_assert!(interval.low <= interval.high);
                prop_assert!(interval.contains(estimate), "{} not in {:?}", estimate, interval);
            }
        }
    }
}
