//! flan-data's synthetic instruction suite through an [`EvalModel`]: greedy decoding of every
//! item of a plan (seen templates, held-out templates of trained families, held-out families;
//! zero-shot, few-shot, CoT), exact-match scoring by the suite's own rule, and the grouped
//! accuracies. This is the evaluation `cargo xtask finetune` runs before and after training.
//!
//! Items are decoded in batches of similar reference length, and a batch generates at most its
//! longest reference plus [`SyntheticOptions::slack_tokens`]: an output that runs further past
//! the reference cannot match it once its answer is cut off, and the untrained model (which
//! never says EOS) would otherwise cost the full generation budget on every item.

use std::time::Instant;

use flan_data::synthetic::{EvalItem, EvalSummary, Suite};
use serde::{Deserialize, Serialize};

use crate::model::{EvalModel, GenerateRequest, Decoding};
use crate::{Error, Result};

/// How the items are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticOptions {
    /// Prompts per `generate` call.
    pub batch_size: usize,
    /// New tokens allowed beyond the longest reference target of a batch.
    pub slack_tokens: usize,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        SyntheticOptions {
            batch_size: 64,
            slack_tokens: 16,
        }
    }
}

/// One item with what the model said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticPrediction {
    /// The item (prompt, reference, family, setting flags).
    #[serde(flatten)]
    pub item: EvalItem,
    /// The decoded output.
    pub prediction: String,
    /// Whether it matched under the suite's rule.
    pub correct: bool,
}

/// The outcome of one evaluation of the suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticRun {
    /// Accuracies by setting, mode and family.
    pub summary: EvalSummary,
    /// Every item with its output, in plan order.
    pub predictions: Vec<SyntheticPrediction>,
    /// Wall-clock seconds of the decoding.
    pub seconds: f64,
}

/// Decodes `items` greedily with `model` and scores them with `suite`; `progress(done, total)`
/// is called after each batch.
pub fn run_synthetic(
    model: &mut dyn EvalModel,
    suite: &Suite,
    items: &[EvalItem],
    options: &SyntheticOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SyntheticRun> {
    if options.batch_size == 0 {
        return Err(Error::Config("batch_size must be at least 1".into()));
    }
    let start = Instant::now();
    let mut lengths = Vec::with_capacity(items.len());
    for item in items {
        lengths.push(model.count_tokens(&item.targets)?);
    }
    // Batches of similar reference length waste the least decoding.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut outputs: Vec<Option<String>> = vec![None; items.len()];
    let mut done = 0;
    for batch in order.chunks(options.batch_size) {
        let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        let config = Decoding::greedy(longest + options.slack_tokens);
        let requests: Vec<GenerateRequest> = batch
            .iter()
            .map(|&i| GenerateRequest {
                prompt: items[i].inputs.clone(),
                seed: 0,
            })
            .collect();
        let answers = model.generate(&requests, &config)?;
        if answers.len() != batch.len() {
            return Err(Error::Model(format!(
                "{} outputs for {} prompts",
                answers.len(),
                batch.len()
            )));
        }
        for (&i, mut answer) in batch.iter().zip(answers) {
            if answer.len() != 1 {
                return Err(Error::Model(format!(
                    "{} outputs for one greedy prompt",
                    answer.len()
                )));
            }
            outputs[i] = answer.pop();
        }
        done += batch.len();
        progress(done, items.len());
    }
    let outputs: Vec<String> = outputs.into_iter().map(Option::unwrap_or_default).collect();
    let summary = suite.summarize(items, &outputs)?;
    let predictions = items
        .iter()
        .zip(outputs)
        .map(|(item, prediction)| SyntheticPrediction {
            correct: suite.score(item, &prediction),
            item: item.clone(),
            prediction,
        })
        .collect();
    Ok(SyntheticRun {
        summary,
        predictions,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::ScriptedModel;
    use flan_data::synthetic::{Setting, StandardEval};
    use std::collections::HashMap;

    fn plan() -> StandardEval {
        StandardEval {
            seed: 3,
            items_per_cell: 2,
            shots: 1,
        }
    }

    #[test]
    fn a_model_that_knows_the_references_scores_everything_and_one_that_does_not_scores_nothing() {
        let suite = Suite::new().unwrap();
        let items = suite.standard_eval(&plan()).unwrap();
        let answers: HashMap<String, String> = items
            .iter()
            .map(|i| (i.inputs.clone(), i.targets.clone()))
            .collect();
        let mut oracle = ScriptedModel::new(move |prompt, _, _| answers[prompt].clone());
        let mut calls = Vec::new();
        let options = SyntheticOptions {
            batch_size: 7,
            slack_tokens: 4,
        };
        let run = run_synthetic(&mut oracle, &suite, &items, &options, &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
        assert_eq!(run.summary.overall.n, items.len());
        assert_eq!(run.summary.overall.correct, items.len());
        assert!(run.predictions.iter().all(|p| p.correct));
        // Plan order is kept although batches were sorted by length.
        for (p, item) in run.predictions.iter().zip(&items) {
            assert_eq!(&p.item, item);
        }
        assert_eq!(calls.last(), Some(&(items.len(), items.len())));
        assert_eq!(calls.len(), items.len().div_ceil(7));
        for setting in [
            Setting::SeenTemplates,
            Setting::HeldOutTemplates,
            Setting::HeldOutFamily,
        ] {
            assert!(run.summary.by_setting_all_modes[setting.name()].n > 0);
        }

        let mut wrong = ScriptedModel::new(|_, _, _| "no idea".to_string());
        let run = run_synthetic(&mut wrong, &suite, &items, &options, &mut |_, _| {}).unwrap();
        assert_eq!(run.summary.overall.correct, 0);
        assert_eq!(run.summary.overall.n, items.len());
    }

    #[test]
    fn a_model_answering_the_wrong_number_of_outputs_is_an_error() {
        struct Mute;
        impl EvalModel for Mute {
            fn name(&self) -> String {
                "mute".into()
            }
            fn max_input_tokens(&self) -> usize {
                usize::MAX
            }
            fn count_tokens(&mut self, text: &str) -> Result<usize> {
                Ok(text.len())
            }
            fn generate(
                &mut self,
                _: &[GenerateRequest],
                _: &Decoding,
            ) -> Result<Vec<Vec<String>>> {
                Ok(Vec::new())
            }
            fn score(&mut self, _: &[String], _: &[String]) -> Result<Vec<f64>> {
                Ok(Vec::new())
            }
            fn first_token_logits(&mut self, _: &[String], _: &[String]) -> Result<Vec<Vec<f32>>> {
                Ok(Vec::new())
            }
        }
        let suite = Suite::new().unwrap();
        let items = suite.standard_eval(&plan()).unwrap();
        let err = run_synthetic(
            &mut Mute,
            &suite,
            &items[..3],
            &SyntheticOptions::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("0 outputs for 3 prompts"), "{err}");
    }
}
