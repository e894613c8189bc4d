//! The replication report: the paper's experiments (Chung et al., 2022, "Scaling
//! Instruction-Finetuned Language Models") rerun at micro scale on the synthetic suite, each
//! point over several seeds, and for each of the paper's claims a figure, a table and one
//! sentence saying whether it reproduced here.
//!
//! The runs (training and evaluating tiny T5s) happen elsewhere and record what they measured as
//! [`Point`]s in one `points.json` ([`Points`]: a version, what ran, and one record per
//! experiment, series, x value and seed, with accuracy, items, chance baseline and optionally
//! every item's correctness). From that file alone this module
//!
//! - aggregates each cell over its seeds ([`aggregate`]: mean, min–max spread, a Student-t
//!   interval over seeds when there are at least [`MIN_SEEDS`], and a pooled item bootstrap when
//!   per-item outcomes exist, always saying which is which);
//! - decides each claim from the numbers ([`verdict`]: the decision rules are written out there;
//!   the caller never chooses a verdict);
//! - draws the paper's figures ([`figures`]) and writes `report.md`, `results.json` and
//!   `figures/*.svg` whole or not at all ([`write_replication_report`]).
//!
//! The six experiments and what each claims are [`Experiment`]'s variants.

pub mod aggregate;
pub mod figures;
pub mod measure;
pub mod points;
mod report;
pub mod stats;
pub mod verdict;

use serde::{Deserialize, Serialize};
use std::fmt;

pub use points::{Point, Points, POINTS_VERSION, X};
pub use report::{write_replication_report, ReplicationFiles, Settings};
pub use verdict::{Status, Verdict};

/// Seeds a point needs for an interval over seeds (and that the replication asks for). With
/// fewer, a cell still has its mean and spread, and its interval comes from the items alone.
pub const MIN_SEEDS: usize = 3;

/// The paper's experiments, in the order the report shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Experiment {
    /// Scaling the number of finetuning task families (the paper's Figure 4, right): x is the
    /// number of families in the finetuning mixture (0: not finetuned); series are the
    /// evaluation settings `held_out_family` (decides the verdict), `held_out_templates` and
    /// `seen_templates`.
    TaskScaling,
    /// Scaling model size (Figure 4, left, and the "pretrained, prompted" baselines): x is the
    /// number of parameters; series `finetuned` and `not_finetuned` (the same model before
    /// instruction finetuning); y is held-out accuracy.
    ModelScaling,
    /// Chain-of-thought data in the finetuning mixture (Section 4.2, Figure 5): x is
    /// `without_cot_data` or `with_cot_data`; series `direct` and `cot` are the prompting modes,
    /// on the families with rationales.
    CotMixture,
    /// Zero-shot chain-of-thought, "Let's think step by step" (Section 4.3, Figure 6): x is
    /// `before_finetuning` or `after_finetuning` (on a mixture with CoT data); series
    /// `zero_shot_cot` (decides the verdict) and `zero_shot_direct` (no trigger).
    ZeroShotCot,
    /// Self-consistency (Section 4.2 and Table 4): x is the number of sampled rationales k
    /// that vote; series `self_consistency`, and `greedy` (one greedy output, at x = 1).
    SelfConsistency,
    /// The paper's normalised average (Section 2.3): x is `not_finetuned` or `finetuned`; each
    /// series is one evaluation setting (any name, e.g. `held_out_family/cot`), every setting
    /// measured at both.
    NormalizedAverage,
}

/// What the x value of an experiment's points means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XKind {
    /// A whole number of finetuning families, 0 or more.
    Families,
    /// A number of parameters, more than 0.
    Parameters,
    /// A whole number of samples, 1 or more.
    Samples,
    /// One of two named conditions, the baseline first.
    Condition([&'static str; 2]),
}

impl Experiment {
    /// All six, in report order.
    pub const ALL: [Experiment; 6] = [
        Experiment::TaskScaling,
        Experiment::ModelScaling,
        Experiment::CotMixture,
        Experiment::ZeroShotCot,
        Experiment::SelfConsistency,
        Experiment::NormalizedAverage,
    ];

    /// The name in points.json and results.json (`task_scaling`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Experiment::TaskScaling => "task_scaling",
            Experiment::ModelScaling => "model_scaling",
            Experiment::CotMixture => "cot_mixture",
            Experiment::ZeroShotCot => "zero_shot_cot",
            Experiment::SelfConsistency => "self_consistency",
            Experiment::NormalizedAverage => "normalized_average",
        }
    }

    /// The section title in the report.
    pub fn title(self) -> &'static str {
        match self {
            Experiment::TaskScaling => "Scaling the number of finetuning task families",
            Experiment::ModelScaling => "Scaling model size",
            Experiment::CotMixture => "Chain-of-thought data in the finetuning mixture",
            Experiment::ZeroShotCot => "Zero-shot chain-of-thought",
            Experiment::SelfConsistency => "Self-consistency",
            Experiment::NormalizedAverage => "Normalised average over the settings",
        }
    }

    /// The paper's claim, as the report states it.
    pub fn claim(self) -> &'static str {
        match self {
            Experiment::TaskScaling => {
                "Finetuning on more tasks improves performance on held-out tasks."
            }
            Experiment::ModelScaling => {
                "Instruction finetuning improves held-out performance at every model size, and \
                 larger models score higher."
            }
            Experiment::CotMixture => {
                "Without chain-of-thought data in the finetuning mixture, CoT prompting does \
                 worse than direct prompting; with CoT data, CoT prompting is kept (no worse than \
                 direct) and the gap closes."
            }
            Experiment::ZeroShotCot => {
                "CoT finetuning enables zero-shot CoT: accuracy with \"Let's think step by \
                 step\" rises after finetuning."
            }
            Experiment::SelfConsistency => {
                "Voting over more sampled rationales (self-consistency) beats one sample or \
                 greedy decoding."
            }
            Experiment::NormalizedAverage => {
                "Instruction finetuning raises the normalised average over the evaluation \
                 settings."
            }
        }
    }

    /// What x means.
    pub fn x_kind(self) -> XKind {
        match self {
            Experiment::TaskScaling => XKind::Families,
            Experiment::ModelScaling => XKind::Parameters,
            Experiment::SelfConsistency => XKind::Samples,
            Experiment::CotMixture => XKind::Condition(["without_cot_data", "with_cot_data"]),
            Experiment::ZeroShotCot => XKind::Condition(["before_finetuning", "after_finetuning"]),
            Experiment::NormalizedAverage => XKind::Condition(["not_finetuned", "finetuned"]),
        }
    }

    /// The series a point may have, the one the verdict rests on first; `None`: any name (the
    /// normalised average's settings).
    pub fn series(self) -> Option<&'static [&'static str]> {
        match self {
            Experiment::TaskScaling => {
                Some(&["held_out_family", "held_out_templates", "seen_templates"])
            }
            Experiment::ModelScaling => Some(&["finetuned", "not_finetuned"]),
            Experiment::CotMixture => Some(&["direct", "cot"]),
            Experiment::ZeroShotCot => Some(&["zero_shot_cot", "zero_shot_direct"]),
            Experiment::SelfConsistency => Some(&["self_consistency", "greedy"]),
            Experiment::NormalizedAverage => None,
        }
    }

    /// A series as the report names it.
    pub fn series_label(self, series: &str) -> String {
        match series {
            "held_out_family" => "held-out families".into(),
            "held_out_templates" => "trained families, held-out templates".into(),
            "seen_templates" => "trained families, seen templates".into(),
            "finetuned" => "instruction-finetuned".into(),
            "not_finetuned" => "not finetuned (pretrained, prompted)".into(),
            "direct" => "direct prompting".into(),
            "cot" => "CoT prompting".into(),
            "zero_shot_cot" => "zero-shot, \"Let's think step by step\"".into(),
            "zero_shot_direct" => "zero-shot, no trigger".into(),
            "self_consistency" => "self-consistency (majority of k samples)".into(),
            "greedy" => "greedy decoding".into(),
            other => other.to_string(),
        }
    }

    /// A condition as the report names it.
    pub fn condition_label(condition: &str) -> String {
        match condition {
            "without_cot_data" => "without CoT data".into(),
            "with_cot_data" => "with CoT data".into(),
            "before_finetuning" => "before finetuning".into(),
            "after_finetuning" => "after finetuning".into(),
            "not_finetuned" => "not finetuned".into(),
            "finetuned" => "finetuned".into(),
            other => other.to_string(),
        }
    }

    /// The figure's file name under `figures/`.
    pub fn figure_file(self) -> String {
        format!("{}.svg", self.name())
    }
}

impl fmt::Display for Experiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_and_every_experiment_says_what_it_claims() {
        for e in Experiment::ALL {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.name()));
            assert_eq!(serde_json::from_str::<Experiment>(&json).unwrap(), e);
            assert!(e.claim().ends_with('.'), "{e}");
            assert!(!e.title().is_empty());
            if let XKind::Condition(names) = e.x_kind() {
                for n in names {
                    assert!(
                        !Experiment::condition_label(n).contains('_'),
                        "{n} has no label"
                    );
                }
            }
            for s in e.series().unwrap_or(&[]) {
                assert_ne!(e.series_label(s), *s, "{s} has no label");
            }
        }
        // The task-scaling series are the suite's exposure names.
        let names: Vec<&str> = crate::Exposure::ALL.iter().map(|e| e.name()).collect();
        for n in names {
            assert!(Experiment::TaskScaling.series().unwrap().contains(&n));
        }
    }
}
