//! Accuracies of a run grouped finer than its tasks: by how much of each item training saw
//! ([`Exposure`]: seen templates, held-out templates, held-out families) and by prompt form
//! (mode and shots). The synthetic suite's items carry an exposure; items of benchmarks that
//! do not (nobody knows what a pretrained model saw) count in `overall` only.

use crate::item::Exposure;
use crate::metrics::Tally;
use crate::runner::SampleRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

impl Breakdown {
    /// Groups the records of a run.
    pub fn of(samples: &[SampleRecord]) -> Breakdown {
        let mut b = Breakdown::default();
        for s in samples {
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
