//! Which records of a synthetic-suite evaluation each series reads, and self-consistency at
//! any k from one run of k_max samples.
//!
//! The replication evaluates every model once on the standard evaluation (every family,
//! template set and prompt form; `flan train`'s `eval/before.json` and `eval/after.json`) and
//! cuts that run into the series the experiments plot: a [`Slice`] names one cut. Families with
//! a rationale are the "reasoning" families (the paper's CoT benchmarks): only they have CoT
//! prompts, so direct and CoT prompting are compared on them alone.

use flan_data::synthetic::family_def;

use crate::runner::SampleRecord;
use crate::vote::majority_vote;
use crate::{Error, Result};
use crate::{EvalItem, Exposure, Mode};

/// A cut of one evaluation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// Every prompt form of the items of one exposure (seen templates, held-out templates,
    /// held-out families).
    Exposure(Exposure),
    /// The families with rationales, prompted with this mode and number of exemplars.
    Reasoning {
        /// Direct, CoT or zero-shot CoT.
        mode: Mode,
        /// Exemplars in the prompt.
        shots: usize,
    },
    /// One exposure's direct prompts (`cot: false`, any number of exemplars) or CoT prompts
    /// (few-shot and zero-shot CoT): a setting of the normalised average.
    Setting {
        /// Which items.
        exposure: Exposure,
        /// CoT prompt forms rather than direct ones.
        cot: bool,
    },
}

impl Slice {
    /// Whether `record` belongs to the cut.
    pub fn contains(&self, record: &SampleRecord) -> bool {
        match *self {
            Slice::Exposure(e) => record.exposure == Some(e),
            Slice::Reasoning { mode, shots } => {
                record.mode == mode && record.n_shot == shots && has_rationale(&record.task)
            }
            Slice::Setting { exposure, cot } => {
                record.exposure == Some(exposure) && record.mode.is_cot() == cot
            }
        }
    }

    /// The records of `samples` in the cut, in their order.
    pub fn select(&self, samples: &[SampleRecord]) -> Vec<SampleRecord> {
        samples
            .iter()
            .filter(|r| self.contains(r))
            .cloned()
            .collect()
    }

    /// The series name of a [`Slice::Setting`] in the normalised average
    /// (`held_out_family/direct`); other cuts are named by their experiment's series.
    pub fn setting_name(exposure: Exposure, cot: bool) -> String {
        format!("{}/{}", exposure.name(), if cot { "cot" } else { "direct" })
    }
}

/// Whether the suite's family `task` has a worked rationale (unknown names: no).
fn has_rationale(task: &str) -> bool {
    family_def(task).is_ok_and(|d| d.has_rationale)
}

/// The records of a self-consistency run of k_max samples per item as if it had drawn only the
/// first `k`: each answer is the majority of the first `k` extracted answers (the runner's vote)
/// and is judged by the item's rule. `items` are the run's items in its order.
///
/// Errors: a record that does not belong to its item, or has fewer than `k` samples.
pub fn first_k_votes(
    items: &[EvalItem],
    samples: &[SampleRecord],
    k: usize,
) -> Result<Vec<SampleRecord>> {
    if items.len() != samples.len() {
        return Err(Error::InvalidPoints(format!(
            "a self-consistency run has {} records for {} items",
            samples.len(),
            items.len()
        )));
    }
    items
        .iter()
        .zip(samples)
        .map(|(item, record)| {
            if !record.is_of(item) {
                return Err(Error::InvalidPoints(format!(
                    "record {}#{} of a self-consistency run is not of item {}#{}",
                    record.task, record.index, item.task, item.index
                )));
            }
            if k == 0 || record.extracted.len() < k {
                return Err(Error::InvalidPoints(format!(
                    "{}#{}: {} samples, cannot vote over {k}",
                    record.task,
                    record.index,
                    record.extracted.len()
                )));
            }
            let answer = majority_vote(&record.extracted[..k]);
            Ok(SampleRecord {
                outputs: record.outputs[..k.min(record.outputs.len())].to_vec(),
                extracted: record.extracted[..k].to_vec(),
                correct: item.rule.is_correct(answer.as_deref(), &item.targets),
                answer,
                ..record.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{self, RunOptions, SelfConsistency};
    use crate::scripted::ScriptedModel;
    use crate::synthetic;
    use flan_data::synthetic::{StandardEval, Suite};

    fn plan() -> StandardEval {
        StandardEval {
            seed: 5,
            items_per_cell: 2,
            shots: 2,
        }
    }

    #[test]
    fn slices_cut_the_standard_evaluation_as_named() {
        let suite = Suite::new().unwrap();
        let items = synthetic::standard_items(&suite, &plan()).unwrap();
        let samples: Vec<SampleRecord> = items.iter().map(|i| SampleRecord::of(i, 0)).collect();
        let by_exposure: usize = Exposure::ALL
            .iter()
            .map(|&e| Slice::Exposure(e).select(&samples).len())
            .sum();
        assert_eq!(by_exposure, samples.len());
        let by_setting: usize = Exposure::ALL
            .iter()
            .flat_map(|&e| [false, true].map(|cot| (e, cot)))
            .map(|(exposure, cot)| Slice::Setting { exposure, cot }.select(&samples).len())
            .sum();
        assert_eq!(by_setting, samples.len());
        let direct = Slice::Reasoning {
            mode: Mode::Direct,
            shots: 2,
        }
        .select(&samples);
        let cot = Slice::Reasoning {
            mode: Mode::Cot,
            shots: 2,
        }
        .select(&samples);
        // Every reasoning family is prompted both ways, on as many items.
        assert!(!cot.is_empty());
        assert_eq!(direct.len(), cot.len());
        assert!(direct.iter().all(|r| has_rationale(&r.task)));
        assert!(samples
            .iter()
            .filter(|r| r.mode == Mode::Cot)
            .all(|r| has_rationale(&r.task)));
    }

    #[test]
    fn voting_over_the_first_k_samples_matches_a_run_that_drew_k() {
        let suite = Suite::new().unwrap();
        let items: Vec<EvalItem> = synthetic::standard_items(&suite, &plan())
            .unwrap()
            .into_iter()
            .filter(|i| i.mode == Mode::Cot)
            .take(12)
            .collect();
        // A scripted model whose i-th sample of every prompt answers from a fixed list:
        // right for samples 0, 3, 4, wrong otherwise, so the vote flips with k.
        let answers: std::collections::HashMap<String, String> = items
            .iter()
            .map(|i| (i.prompt.clone(), i.targets[0].clone()))
            .collect();
        // A scripted model whose i-th sample of every prompt is right for samples 0, 3 and 4
        // and wrong otherwise (two different wrong answers), so the vote changes with k.
        let run_with = |k: usize| {
            let answers = answers.clone();
            let mut model = ScriptedModel::new(move |prompt: &str, _seed: u64, sample: usize| {
                let answer = if matches!(sample, 0 | 3 | 4) {
                    answers[prompt].clone()
                } else {
                    format!("wrong{}", sample % 2)
                };
                format!("Because. So the answer is {answer}")
            });
            let opts = RunOptions {
                self_consistency: Some(SelfConsistency {
                    k,
                    ..SelfConsistency::default()
                }),
                ..RunOptions::default()
            };
            runner::run(&mut model, &items, &opts, &mut |_, _| {}).unwrap()
        };
        let full = run_with(8);
        for k in [1, 2, 3, 5, 8] {
            let revoted = first_k_votes(&items, &full.samples, k).unwrap();
            let direct = run_with(k);
            let a: Vec<(Option<String>, bool)> = revoted
                .iter()
                .map(|r| (r.answer.clone(), r.correct))
                .collect();
            let b: Vec<(Option<String>, bool)> = direct
                .samples
                .iter()
                .map(|r| (r.answer.clone(), r.correct))
                .collect();
            assert_eq!(a, b, "k = {k}");
        }
        assert!(first_k_votes(&items, &full.samples, 9).is_err());
        assert!(first_k_votes(&items, &full.samples, 0).is_err());
        assert!(first_k_votes(&items[1..], &full.samples[1..], 1).is_ok());
        assert!(first_k_votes(&items[1..], &full.samples[..11], 1).is_err());
    }
}
