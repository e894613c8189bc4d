//! flan-data's synthetic instruction suite as one more benchmark: flan-data generates and
//! renders the prompts (as the other readers parse theirs from files), this module turns them
//! into [`EvalItem`]s with the suite's rule ([`AnswerRule::ExactMatch`]) and exposure, and the
//! runner, [`Breakdown`](crate::breakdown::Breakdown) and reports do the rest. `cargo xtask
//! finetune` evaluates the [`standard_items`] before and after training; `flan eval run
//! --benchmark synthetic --mode M` evaluates one mode.
//!
//! Items are decoded in batches of similar reference length, and a batch generates at most its
//! longest reference plus [`REFERENCE_SLACK`] tokens ([`run_options`]): an output that runs
//! further past the reference cannot match it once its answer is cut off, and the untrained
//! model (which never says EOS) would otherwise cost the full generation budget on every item.

use std::collections::BTreeMap;

use flan_data::synthetic::{EvalPrompt, Exposure, StandardEval, Suite};

use crate::item::{AnswerRule, EvalItem, Mode};
use crate::runner::RunOptions;
use crate::Result;

/// New tokens allowed beyond the longest reference of a batch.
pub const REFERENCE_SLACK: usize = 16;

/// The evaluator's items of rendered prompts: the task is the family, the index counts within
/// it, the gold answer is the prompt's answer, the reference its whole target, and the options
/// those the prompt lists (for the item's chance baseline, [`crate::chance`]).
pub fn items(prompts: Vec<EvalPrompt>) -> Vec<EvalItem> {
    let mut next_index: BTreeMap<String, usize> = BTreeMap::new();
    prompts
        .into_iter()
        .map(|p| {
            let index = next_index.entry(p.family.clone()).or_default();
            let item = EvalItem {
                task: p.family.clone(),
                index: *index,
                options: p.options,
                example: Some(p.example),
                exposure: Some(Exposure::of(&p)),
                prompt: p.inputs,
                targets: vec![p.answer],
                rule: AnswerRule::ExactMatch {
                    answer_phrases: p.answer_phrases,
                },
                n_shot: p.shots,
                mode: p.mode,
                choices: None,
                reference: Some(p.targets),
            };
            *index += 1;
            item
        })
        .collect()
}

/// Every cell of the standard evaluation (all families, template sets and prompt forms).
pub fn standard_items(suite: &Suite, plan: &StandardEval) -> Result<Vec<EvalItem>> {
    Ok(items(suite.standard_eval(plan)?))
}

/// The cells of one mode ([`Suite::mode_eval`]), only the `families` given (all when `None`).
pub fn mode_items(
    suite: &Suite,
    plan: &StandardEval,
    mode: Mode,
    families: Option<&[String]>,
) -> Result<Vec<EvalItem>> {
    let mut prompts = suite.mode_eval(plan, mode)?;
    if let Some(families) = families {
        prompts.retain(|p| families.contains(&p.family));
    }
    Ok(items(prompts))
}

/// Greedy decoding in batches of `batch_size`, bounded by each batch's references.
pub fn run_options(batch_size: usize) -> RunOptions {
    RunOptions {
        batch_size,
        reference_slack: Some(REFERENCE_SLACK),
        ..RunOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breakdown::Breakdown;
    use crate::model::{Decoding, EvalModel, GenerateRequest};
    use crate::runner::{self, item_seed};
    use crate::scripted::ScriptedModel;
    use flan_data::synthetic::{normalize_whitespace, EvalRequest, TemplateSet, FAMILIES};
    use std::collections::HashMap;

    fn plan() -> StandardEval {
        StandardEval {
            seed: 3,
            items_per_cell: 2,
            shots: 1,
        }
    }

    fn reference(item: &EvalItem) -> &str {
        item.reference.as_deref().unwrap()
    }

    fn judge(item: &EvalItem, output: &str) -> bool {
        let answer = item.rule.extract(output);
        item.rule.is_correct(answer.as_deref(), &item.targets)
    }

    #[test]
    fn a_model_that_knows_the_references_scores_everything_and_one_that_does_not_scores_nothing() {
        let suite = Suite::new().unwrap();
        let items = standard_items(&suite, &plan()).unwrap();
        let answers: HashMap<String, String> = items
            .iter()
            .map(|i| (i.prompt.clone(), reference(i).to_string()))
            .collect();
        let mut oracle = ScriptedModel::new(move |prompt, _, _| answers[prompt].clone());
        let mut calls = Vec::new();
        let options = RunOptions {
            reference_slack: Some(4),
            ..run_options(7)
        };
        let run = runner::run(&mut oracle, &items, &options, &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
        let summary = Breakdown::of(&run.samples);
        assert_eq!(summary.overall.n, items.len());
        assert_eq!(summary.overall.correct, items.len());
        assert!(run.samples.iter().all(|p| p.correct));
        // Plan order is kept although batches were sorted by length.
        for (p, item) in run.samples.iter().zip(&items) {
            assert_eq!(
                (&p.task, p.index, &p.prompt),
                (&item.task, item.index, &item.prompt)
            );
        }
        assert_eq!(calls.last(), Some(&(items.len(), items.len())));
        assert_eq!(calls.len(), items.len().div_ceil(7));
        for setting in Exposure::ALL {
            assert!(summary.by_setting_all_modes[setting.name()].n > 0);
        }

        let mut wrong = ScriptedModel::new(|_, _, _| "no idea".to_string());
        let run = runner::run(&mut wrong, &items, &options, &mut |_, _| {}).unwrap();
        let summary = Breakdown::of(&run.samples);
        assert_eq!(summary.overall.correct, 0);
        assert_eq!(summary.overall.n, items.len());
    }

    #[test]
    fn generation_is_bounded_by_the_batch_s_longest_reference_plus_the_slack() {
        let suite = Suite::new().unwrap();
        let items = standard_items(&suite, &plan()).unwrap();
        let mut budgets = Vec::new();
        let mut longest_seen = Vec::new();
        struct Recorder<'a> {
            budgets: &'a mut Vec<usize>,
            longest: &'a mut Vec<usize>,
            by_prompt: HashMap<String, usize>,
        }
        impl EvalModel for Recorder<'_> {
            fn name(&self) -> String {
                "recorder".into()
            }
            fn max_input_tokens(&self) -> usize {
                usize::MAX
            }
            fn count_tokens(&mut self, text: &str) -> Result<usize> {
                Ok(text.split_whitespace().count())
            }
            fn generate(
                &mut self,
                requests: &[GenerateRequest],
                config: &Decoding,
            ) -> Result<Vec<Vec<String>>> {
                self.budgets.push(config.max_new_tokens);
                let longest = requests.iter().map(|r| self.by_prompt[&r.prompt]).max();
                self.longest.push(longest.unwrap_or(0));
                Ok(requests.iter().map(|_| vec![String::new()]).collect())
            }
            fn score(&mut self, _: &[String], _: &[String]) -> Result<Vec<f64>> {
                Ok(Vec::new())
            }
            fn first_token_logits(&mut self, _: &[String], _: &[String]) -> Result<Vec<Vec<f32>>> {
                Ok(Vec::new())
            }
        }
        let by_prompt = items
            .iter()
            .map(|i| (i.prompt.clone(), reference(i).split_whitespace().count()))
            .collect();
        let mut model = Recorder {
            budgets: &mut budgets,
            longest: &mut longest_seen,
            by_prompt,
        };
        runner::run(&mut model, &items, &run_options(16), &mut |_, _| {}).unwrap();
        for (budget, longest) in budgets.iter().zip(&longest_seen) {
            assert_eq!(*budget, (*longest + REFERENCE_SLACK).min(256));
        }
        // Sorted by reference length: the budgets never fall.
        assert!(budgets.windows(2).all(|w| w[0] <= w[1]), "{budgets:?}");
    }

    #[test]
    fn every_reference_scores_and_something_else_does_not() {
        let suite = Suite::new().unwrap();
        for def in FAMILIES {
            let mut modes = vec![(Mode::Direct, 0), (Mode::Direct, 2)];
            if def.has_rationale {
                modes.extend([(Mode::ZeroShotCot, 0), (Mode::Cot, 1)]);
            }
            for (mode, shots) in modes {
                let request = EvalRequest {
                    seed: 3,
                    n: 8,
                    templates: TemplateSet::All,
                    mode,
                    shots,
                };
                for item in items(suite.eval_items(def.name, &request).unwrap()) {
                    assert!(judge(&item, reference(&item)), "{item:?}");
                    assert!(!judge(&item, "zzz"));
                }
            }
        }
    }

    #[test]
    fn scorer_normalises_whitespace_only() {
        let suite = Suite::new().unwrap();
        let request = EvalRequest {
            seed: 1,
            n: 1,
            templates: TemplateSet::Seen,
            mode: Mode::Direct,
            shots: 0,
        };
        let item = &items(suite.eval_items("sort_numbers", &request).unwrap())[0];
        let answer = &item.targets[0];
        let spaced = format!("  {}  ", answer.replace(", ", " ,  ").replace(" ,", ","));
        assert!(judge(item, &spaced), "{spaced:?} vs {answer:?}");
        assert!(!judge(item, &answer.to_uppercase().replace(',', ";")));
        assert!(!judge(item, &format!("{answer}.")));

        let request = EvalRequest {
            mode: Mode::ZeroShotCot,
            ..request
        };
        let item = &items(suite.eval_items("day_after", &request).unwrap())[0];
        let answer = &item.targets[0];
        assert!(judge(
            item,
            &format!("Some steps. So the answer is {answer}")
        ));
        assert!(!judge(
            item,
            &format!("Some steps. So the answer is {answer}.")
        ));
        assert!(judge(
            item,
            &format!("The answer is Monday. Final answer: {answer}")
        ));
        assert!(!judge(item, answer), "CoT needs an answer phrase");
        assert_eq!(normalize_whitespace(" a \n b\t"), "a b");
    }

    #[test]
    fn the_standard_plan_summarizes_honestly() {
        let suite = Suite::new().unwrap();
        let plan = StandardEval {
            seed: 2,
            items_per_cell: 3,
            shots: 2,
        };
        let items = standard_items(&suite, &plan).unwrap();
        // Outputs by item position, found from the seed the runner derives per item.
        let runs = |outputs: &dyn Fn(usize, &EvalItem) -> String| {
            let by_seed: HashMap<u64, String> = items
                .iter()
                .enumerate()
                .map(|(i, it)| (item_seed(0, &it.task, it.index), outputs(i, it)))
                .collect();
            let mut model = ScriptedModel::new(move |_, seed, _| by_seed[&seed].clone());
            let run = runner::run(&mut model, &items, &run_options(64), &mut |_, _| {}).unwrap();
            Breakdown::of(&run.samples)
        };
        // The reference answers score 100%; empty outputs score 0% (no option task gets free
        // credit from an empty string).
        let summary = runs(&|_, it| reference(it).to_string());
        assert_eq!(summary.overall.correct, items.len());
        for setting in Exposure::ALL {
            let score = summary.by_setting_all_modes[setting.name()];
            assert!(score.n > 0 && score.fraction() == 1.0, "{setting:?}");
            assert!(summary.by_setting[setting.name()].contains_key("cot"));
            assert!(summary.by_setting[setting.name()].contains_key("few_shot_2"));
        }
        let summary = runs(&|_, _| String::new());
        assert_eq!(summary.overall.correct, 0);
        assert_eq!(summary.by_family.len(), FAMILIES.len());
        // Half right: exactly the even-indexed items.
        let summary = runs(&|i, it| {
            if i % 2 == 0 {
                reference(it).to_string()
            } else {
                String::new()
            }
        });
        assert_eq!(summary.overall.correct, items.len().div_ceil(2));
    }

    #[test]
    fn one_mode_of_some_families() {
        let suite = Suite::new().unwrap();
        let families = vec!["day_after".to_string()];
        let items = mode_items(&suite, &plan(), Mode::Cot, Some(&families)).unwrap();
        assert_eq!(items.len(), 2 * plan().items_per_cell);
        assert!(items
            .iter()
            .all(|i| i.task == "day_after" && i.mode == Mode::Cot && i.n_shot == 1));
    }
}
