//! Accuracies of a run grouped finer than its tasks: by how much of each item training saw
//! ([`Exposure`]: seen templates, held-out templates, held-out families) and by prompt form
//! (mode and shots). The synthetic suite's items carry an exposure; items of benchmarks that
//! do not (nobody knows what a pretrained model saw) count in `overall` only.
//!
//! It also keeps every item's [`Outcome`] (right or wrong, and its [`crate::chance`] baseline),
//! from which [`crate::scorecard`] puts chance and intervals next to the accuracies.

use crate::chance::item_chances;
use crate::item::{Exposure, Mode};
use crate::metrics::Tally;
use crate::runner::SampleRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What identifies an item across runs of the same evaluation (before and after training).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemKey {
    /// Task (the synthetic suite's family).
    pub task: String,
    /// Index within the task.
    pub index: usize,
    /// How the prompt was formed.
    pub mode: Mode,
    /// Exemplars in the prompt.
    pub n_shot: usize,
    /// How much of the item training saw.
    pub exposure: Option<Exposure>,
}

impl ItemKey {
    /// The key of a record.
    pub fn of(s: &SampleRecord) -> ItemKey {
        ItemKey {
            task: s.task.clone(),
            index: s.index,
            mode: s.mode,
            n_shot: s.n_shot,
            exposure: s.exposure,
        }
    }

    /// The prompt form ([`Mode::label`]).
    pub fn form(&self) -> String {
        self.mode.label(self.n_shot)
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} #{} ({}, {})",
            self.task,
            self.index,
            self.form(),
            self.exposure.map_or("no exposure", Exposure::name)
        )
    }
}

/// One item of a run: which it was, whether it was answered right, and its chance baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The item.
    pub key: ItemKey,
    /// Whether the answer was right.
    pub correct: bool,
    /// Its chance baseline in [0, 1] ([`crate::chance`]).
    pub chance: f64,
}

/// Accuracies of one run by exposure, prompt form and task (family).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// By exposure name, then prompt form ([`crate::Mode::label`]).
    pub by_setting: BTreeMap<String, BTreeMap<String, Tally>>,
    /// By exposure name, all prompt forms together.
    pub by_setting_all_modes: BTreeMap<String, Tally>,
    /// By task (the synthetic suite's family), then exposure name.
    pub by_family: BTreeMap<String, BTreeMap<String, Tally>>,
    /// Every item.
    pub overall: Tally,
    /// Every item's outcome, in run order: what chance baselines and intervals are computed
    /// from. Not written with the rest (the predictions files hold every item), so a breakdown
    /// read back from JSON has none, and reports made from it say so.
    #[serde(skip)]
    pub outcomes: Vec<Outcome>,
}

impl Breakdown {
    /// Groups the records of a run.
    pub fn of(samples: &[SampleRecord]) -> Breakdown {
        let mut b = Breakdown::default();
        for (s, chance) in samples.iter().zip(item_chances(samples)) {
            b.outcomes.push(Outcome {
                key: ItemKey::of(s),
                correct: s.correct,
                chance,
            });
            b.overall.add(s.correct);
            let Some(exposure) = s.exposure else {
                continue;
            };
            let setting = exposure.name().to_string();
            b.by_setting
                .entry(setting.clone())
                .or_default()
                .entry(s.mode.label(s.n_shot))
                .or_default()
                .add(s.correct);
            b.by_setting_all_modes
                .entry(setting.clone())
                .or_default()
                .add(s.correct);
            b.by_family
                .entry(s.task.clone())
                .or_default()
                .entry(setting)
                .or_default()
                .add(s.correct);
        }
        b
    }

    /// The mean chance baseline of the items `keep` selects; `None` when it selects none.
    pub fn chance(&self, keep: impl Fn(&ItemKey) -> bool) -> Option<f64> {
        let chances: Vec<f64> = self
            .outcomes
            .iter()
            .filter(|o| keep(&o.key))
            .map(|o| o.chance)
            .collect();
        (!chances.is_empty()).then(|| chances.iter().sum::<f64>() / chances.len() as f64)
    }

    /// Whether any item had an exposure.
    pub fn has_exposures(&self) -> bool {
        !self.by_setting_all_modes.is_empty()
    }

    /// The tally of one exposure, all prompt forms together.
    pub fn exposure(&self, exposure: Exposure) -> Option<Tally> {
        self.by_setting_all_modes.get(exposure.name()).copied()
    }

    /// The tally of one exposure in one prompt form.
    pub fn form(&self, exposure: Exposure, form: &str) -> Option<Tally> {
        self.by_setting.get(exposure.name())?.get(form).copied()
    }

    /// The tally of one family at one exposure.
    pub fn family(&self, family: &str, exposure: Exposure) -> Option<Tally> {
        self.by_family.get(family)?.get(exposure.name()).copied()
    }

    /// A family's tally over all its items.
    pub fn family_total(&self, family: &str) -> Tally {
        let mut total = Tally::default();
        for t in self
            .by_family
            .get(family)
            .into_iter()
            .flat_map(|m| m.values())
        {
            total.merge(*t);
        }
        total
    }

    /// The prompt forms present, in a stable order (zero-shot, few-shot, CoT, few-shot CoT).
    pub fn forms(&self) -> Vec<String> {
        let mut forms: Vec<String> = self
            .by_setting
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect();
        forms.sort_by_key(|m| (!m.starts_with("zero"), m.contains("cot"), m.clone()));
        forms.dedup();
        forms
    }
}
