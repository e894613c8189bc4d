//! How an evaluation prompt is formed: the prompting modes of the paper's evaluations. One type
//! for the whole workspace: flan-data renders the synthetic suite's prompts in these modes, and
//! flan-eval's benchmark readers, runner and reports use the same type (re-exported as
//! `flan_eval::Mode`). The mixture's training forms are [`crate::Form`], a different thing
//! (they include input inversion, and chain-of-thought there is a property of the template).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the model is prompted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Answer only, after zero or more solved exemplars.
    Direct,
    /// Few-shot chain-of-thought: exemplars with rationales, then the query.
    Cot,
    /// No exemplars; a chain-of-thought trigger ("Let's think step by step.") after the query.
    ZeroShotCot,
}

impl Mode {
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Cot => "cot",
            Mode::ZeroShotCot => "zero-shot-cot",
        }
    }

    /// Whether outputs carry a rationale before the answer.
    pub fn is_cot(self) -> bool {
        !matches!(self, Mode::Direct)
    }

    /// The name of this mode with `shots` exemplars in reports that tell prompt forms apart:
    /// `zero_shot`, `few_shot_3`, `cot` (zero-shot CoT), `few_shot_cot_3`.
    pub fn label(self, shots: usize) -> String {
        match (self, shots) {
            (Mode::Direct, 0) => "zero_shot".into(),
            (Mode::Direct, k) => format!("few_shot_{k}"),
            (Mode::ZeroShotCot, _) => "cot".into(),
            (Mode::Cot, k) => format!("few_shot_cot_{k}"),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "direct" => Mode::Direct,
            "cot" => Mode::Cot,
            "zero-shot-cot" => Mode::ZeroShotCot,
            other => {
                return Err(Error::config(
                    "mode",
                    format!("unknown mode {other:?}; expected direct, cot or zero-shot-cot"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_labels_tell_forms_apart() {
        for m in ["direct", "cot", "zero-shot-cot"] {
            assert_eq!(m.parse::<Mode>().unwrap().name(), m);
        }
        assert!("cot-3".parse::<Mode>().is_err());
        let labels = [
            Mode::Direct.label(0),
            Mode::Direct.label(3),
            Mode::ZeroShotCot.label(0),
            Mode::Cot.label(3),
        ];
        assert_eq!(labels, ["zero_shot", "few_shot_3", "cot", "few_shot_cot_3"]);
    }
}
