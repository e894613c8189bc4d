//! The standard evaluation of the suite: which prompts to run (every family, seen and held-out
//! templates, held-out families, each prompting mode), and the held-out level each prompt
//! measures. Scoring and the accuracies per family, level and mode are flan-eval's (its runner
//! and `Breakdown`), as for every other benchmark.

use super::eval::{EvalPrompt, EvalRequest, TemplateSet};
use super::templates::Suite;
use super::{FamilyDef, FAMILIES};
use crate::error::{Error, Result};
use crate::mode::Mode;
use serde::{Deserialize, Serialize};

/// How much of an item training saw: the paper's held-out settings, at the suite's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// A trained family with a template it was trained on (new examples only).
    SeenTemplates,
    /// A trained family with a template it never saw.
    HeldOutTemplates,
    /// A family never trained on.
    HeldOutFamily,
}

impl Exposure {
    /// All three, in the order reports show them.
    pub const ALL: [Exposure; 3] = [
        Exposure::SeenTemplates,
        Exposure::HeldOutTemplates,
        Exposure::HeldOutFamily,
    ];

    /// The exposure of a prompt.
    pub fn of(prompt: &EvalPrompt) -> Exposure {
        if prompt.held_out_family {
            Exposure::HeldOutFamily
        } else if prompt.held_out_template {
            Exposure::HeldOutTemplates
        } else {
            Exposure::SeenTemplates
        }
    }

    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Exposure::SeenTemplates => "seen_templates",
            Exposure::HeldOutTemplates => "held_out_templates",
            Exposure::HeldOutFamily => "held_out_family",
        }
    }
}

/// Sizes of the standard evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardEval {
    /// Seed of the eval examples and renderings.
    pub seed: u64,
    /// Items per (family, template set, mode) cell.
    pub items_per_cell: usize,
    /// Exemplars in few-shot modes (0: no few-shot modes).
    pub shots: usize,
}

impl Suite {
    /// The standard evaluation set: for each trained family, seen and held-out templates; for
    /// each held-out family, all templates; each in zero-shot, few-shot (`shots` > 0), and for
    /// families with rationales zero-shot CoT and few-shot CoT. Families in [`FAMILIES`] order.
    pub fn standard_eval(&self, plan: &StandardEval) -> Result<Vec<EvalPrompt>> {
        self.cells(plan, |def| {
            let mut modes = vec![(Mode::Direct, 0)];
            if plan.shots > 0 {
                modes.push((Mode::Direct, plan.shots));
            }
            if def.has_rationale {
                modes.push((Mode::ZeroShotCot, 0));
                if plan.shots > 0 {
                    modes.push((Mode::Cot, plan.shots));
                }
            }
            modes
        })
    }

    /// The cells of the standard evaluation in one mode: direct with `plan.shots` exemplars
    /// (zero-shot when 0), few-shot CoT with `plan.shots` (at least 1), or zero-shot CoT. CoT
    /// modes take the families with rationales only.
    pub fn mode_eval(&self, plan: &StandardEval, mode: Mode) -> Result<Vec<EvalPrompt>> {
        if mode == Mode::Cot && plan.shots == 0 {
            return Err(Error::config(
                "synthetic evaluation in mode cot",
                "few-shot chain-of-thought needs at least 1 exemplar (zero-shot-cot has none)",
            ));
        }
        self.cells(plan, |def| {
            if mode.is_cot() && !def.has_rationale {
                Vec::new()
            } else {
                vec![(
                    mode,
                    if mode == Mode::ZeroShotCot {
                        0
                    } else {
                        plan.shots
                    },
                )]
            }
        })
    }

    /// Every family's template sets, each in the `(mode, shots)` cells `modes_of` gives it.
    fn cells(
        &self,
        plan: &StandardEval,
        modes_of: impl Fn(&FamilyDef) -> Vec<(Mode, usize)>,
    ) -> Result<Vec<EvalPrompt>> {
        if plan.items_per_cell == 0 {
            return Err(Error::config(
                "standard synthetic evaluation",
                "items_per_cell must be at least 1",
            ));
        }
        let mut items = Vec::new();
        for def in FAMILIES {
            let sets: &[TemplateSet] = if def.held_out {
                &[TemplateSet::All]
            } else {
                &[TemplateSet::Seen, TemplateSet::HeldOut]
            };
            let modes = modes_of(def);
            for &templates in sets {
                for &(mode, shots) in &modes {
                    let request = EvalRequest {
                        seed: plan.seed,
                        n: plan.items_per_cell,
                        templates,
                        mode,
                        shots,
                    };
                    items.extend(self.eval_items(def.name, &request)?);
                }
            }
        }
        Ok(items)
    }
}
