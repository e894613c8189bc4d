//! Integration tests of flan-eval, one binary split by topic: prompts against the real BBH files,
//! end-to-end runs with scripted models, reports, and property tests of the extractors.

use flan_eval::bbh::{self, CotPromptFile};
use flan_eval::mmlu::MmluAnswering;
use flan_eval::report::{self, RunInfo};
use flan_eval::runner::{self, RunOptions, SelfConsistency};
use flan_eval::scripted::ScriptedModel;
use flan_eval::suite::{self, SuiteOptions};
use flan_eval::{Benchmark, EvalItem, EvalModel, Mode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

fn items_for(opts: &SuiteOptions, model: &mut dyn EvalModel) -> Vec<EvalItem> {
    suite::build_items(opts, &mut |t| model.count_tokens(t)).unwrap()
}

/// A model that answers every prompt with `answer(gold target)`.
fn oracle(items: &[EvalItem], answer: impl Fn(&str) -> String + 'static) -> ScriptedModel {
    let gold: HashMap<String, String> = items
        .iter()
        .map(|i| (i.prompt.clone(), i.targets[0].clone()))
        .collect();
    ScriptedModel::new(move |prompt, _, _| answer(gold.get(prompt).map_or("", String::as_str)))
}

fn run(model: &mut dyn EvalModel, items: &[EvalItem], opts: &RunOptions) -> runner::RunResult {
    runner::run(model, items, opts, &mut |_, _| {}).unwrap()
}

#[path = "eval/rai.rs"]
mod rai;

#[path = "support/hub_fixtures.rs"]
mod hub_fixtures;

#[path = "eval/hub.rs"]
mod hub;

mod bbh_prompts {
    use super::*;

    #[test]
    fn cot_prompt_of_every_task_is_the_prompt_file_then_the_question() {
        let dir = shared_data().join("bbh");
        let names = bbh::task_names(&dir).unwrap();
        assert_eq!(names.len(), 27);
        for name in &names {
            let (task_path, prompt_path) = bbh::task_paths(&dir, name);
            let raw = std::fs::read_to_string(&prompt_path).unwrap();
            let after_dashes = raw.split_once("-----\n").unwrap().1;
            let first = &bbh::read_task(&task_path).unwrap().examples[0];
            let expected = format!(
                "{after_dashes}\n\nQ: {}\nA: Let's think step by step.",
                first.input
            );
            let items = bbh::build_items(&dir, name, Mode::Cot, Some(1)).unwrap();
            assert_eq!(items[0].prompt, expected, "task {name}");
            assert_eq!(items[0].targets, std::slice::from_ref(&first.target));

            // Direct: same description and questions, rationales replaced by the answers.
            let file = CotPromptFile::read(&prompt_path).unwrap();
            assert_eq!(file.exemplars.len(), 3, "task {name}");
            let direct = bbh::build_items(&dir, name, Mode::Direct, Some(1)).unwrap();
            let p = &direct[0].prompt;
            assert!(p.starts_with(&file.description), "task {name}");
            assert!(!p.contains("Let's think step by step"), "task {name}");
            assert!(
                p.ends_with(&format!("\n\nQ: {}\nA:", first.input)),
                "task {name}"
            );
            for e in &file.exemplars {
                assert!(p.contains(&format!("Q: {}\nA: {}\n\n", e.question, e.answer)));
            }
        }
    }
}

mod end_to_end {
    use super::*;

    #[test]
    fn bbh_cot_oracle_scores_100_and_wrong_model_0() {
        let mut opts = SuiteOptions::new(Benchmark::Bbh, Mode::Cot, shared_data().join("bbh"));
        opts.limit = Some(3);
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        assert_eq!(items.len(), 27 * 3);
        let mut gold = oracle(&items, |t| format!("Reasoning. So the answer is {t}."));
        let result = run(&mut gold, &items, &RunOptions::default());
        assert_eq!(result.tasks.len(), 27);
        assert_eq!(result.headline(Benchmark::Bbh), 100.0);
        // Right answer, wrong form: BBH compares strings, so "(A)" without the phrase is wrong.
        let mut no_phrase = oracle(&items, |t| t.to_string());
        let result = run(&mut no_phrase, &items, &RunOptions::default());
        assert_eq!(result.headline(Benchmark::Bbh), 0.0);
        assert!(result.tasks.values().all(|t| t.no_answer == t.n));
        let opts = RunOptions {
            batch_size: 5,
            ..RunOptions::default()
        };
        let mut wrong = oracle(&items, |t| format!("So the answer is not {t}."));
        assert_eq!(run(&mut wrong, &items, &opts).micro_accuracy(), 0.0);
        assert_eq!(wrong.calls, items.len().div_ceil(5));
    }

    #[test]
    fn bbh_direct_oracle() {
        let mut opts = SuiteOptions::new(Benchmark::Bbh, Mode::Direct, shared_data().join("bbh"));
        opts.limit = Some(2);
        opts.tasks = Some(vec!["date_understanding".into(), "word_sorting".into()]);
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        assert_eq!(items.len(), 4);
        let mut gold = oracle(&items, |t| format!(" {t}\n"));
        assert_eq!(
            run(&mut gold, &items, &RunOptions::default()).macro_accuracy(),
            100.0
        );
        opts.tasks = Some(vec!["no_such_task".into()]);
        assert!(suite::build_items(&opts, &mut |_| Ok(1)).is_err());
    }

    #[test]
    fn mgsm_eight_shot_from_gsm8k_train_and_self_consistency() {
        let mut opts = SuiteOptions::new(Benchmark::Mgsm, Mode::Cot, shared_data().join("mgsm"));
        opts.limit = Some(4);
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        assert_eq!(items.len(), 11 * 4);
        assert!(items.iter().all(|i| i.n_shot == 8));
        // The first GSM8K training problem opens every prompt, annotations removed.
        assert!(items[0].prompt.starts_with("Q: Natalia sold clips"));
        assert!(!items[0].prompt.contains("<<"));
        assert!(items[0].prompt.ends_with("\nA:"));

        let mut gold = oracle(&items, |t| format!("Some steps. The answer is {t}."));
        let result = run(&mut gold, &items, &RunOptions::default());
        assert_eq!(result.headline(Benchmark::Mgsm), 100.0);

        // Self-consistency: samples 0 and 1 are wrong, 2.. right. Vote accuracy by k rises to 100.
        let gold: HashMap<String, String> = items
            .iter()
            .map(|i| (i.prompt.clone(), i.targets[0].clone()))
            .collect();
        let mut sampler = ScriptedModel::new(move |p, _, k| {
            let t: i64 = gold[p].parse().unwrap();
            let guess = if k < 2 { t + 1 + k as i64 } else { t };
            format!("The answer is {guess}.")
        });
        let opts = RunOptions {
            self_consistency: Some(SelfConsistency {
                k: 5,
                ..SelfConsistency::default()
            }),
            ..RunOptions::default()
        };
        let result = run(&mut sampler, &items, &opts);
        assert_eq!(result.micro_accuracy(), 100.0);
        let info = RunInfo {
            model: sampler.name(),
            benchmark: Benchmark::Mgsm,
            mode: Mode::Cot,
            limit: Some(4),
            options: opts.clone(),
            dtype: None,
        };
        let md = report::markdown(&info, &result);
        assert!(
            md.contains("| 1 | 0.00 |") && md.contains("| 5 | 100.00 |"),
            "{md}"
        );
        let by_k = result.tasks["mgsm_de"].accuracy_by_k.clone().unwrap();
        // k=1: wrong; k=2: two different wrong answers; k=3: tie of three, smallest string wins;
        // k=4 and 5: the right answer has the majority.
        assert_eq!(by_k[0], 0.0);
        assert_eq!(by_k[3..], [100.0, 100.0]);
    }

    #[test]
    fn gsm8k_with_user_exemplars_and_zero_shot_cot() {
        let dir = tempfile::tempdir().unwrap();
        let ex = dir.path().join("ex.jsonl");
        std::fs::write(
            &ex,
            "{\"question\": \"1+1?\", \"rationale\": \"One and one is two.\", \"answer\": \"2\"}\n",
        )
        .unwrap();
        let mut opts = SuiteOptions::new(
            Benchmark::Gsm8k,
            Mode::Cot,
            shared_data().join("gsm8k/test.jsonl"),
        );
        opts.limit = Some(5);
        opts.exemplars = Some(ex);
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        assert!(items[0]
            .prompt
            .starts_with("Q: 1+1?\nA: One and one is two. The answer is 2.\n\nQ: Janet"));
        assert_eq!(items[0].targets, ["18"]);
        opts.mode = Mode::ZeroShotCot;
        let items = items_for(&opts, &mut counter);
        assert!(items[0].prompt.ends_with("A: Let's think step by step."));
        assert_eq!(items[0].n_shot, 0);
        // Without a phrase the last number counts.
        let mut gold = oracle(&items, |t| format!("so {t}"));
        assert_eq!(
            run(&mut gold, &items, &RunOptions::default()).micro_accuracy(),
            100.0
        );
    }

    fn write_mmlu(dir: &Path) {
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        std::fs::create_dir_all(dir.join("test")).unwrap();
        let dev: String = (0..5)
            .map(|i| {
                format!(
                    "Dev question {i} with some words?,w,x,y,z,{}\n",
                    ["A", "B", "C", "D"][i % 4]
                )
            })
            .collect();
        std::fs::write(dir.join("dev/college_biology_dev.csv"), &dev).unwrap();
        std::fs::write(dir.join("dev/anatomy_dev.csv"), &dev).unwrap();
        std::fs::write(
            dir.join("test/college_biology_test.csv"),
            "\"Which, of these?\",cell,atom,\"quark, charm\",gluon,A\nWhat?,1,2,3,4,D\n",
        )
        .unwrap();
        std::fs::write(dir.join("test/anatomy_test.csv"), "Bone?,a,b,c,d,C\n").unwrap();
    }

    #[test]
    fn mmlu_rank_classification_and_budget() {
        let dir = tempfile::tempdir().unwrap();
        write_mmlu(dir.path());
        let mut opts = SuiteOptions::new(Benchmark::Mmlu, Mode::Direct, dir.path());
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].task, "mmlu_anatomy");
        assert_eq!(items[0].n_shot, 5);
        assert!(items[1]
            .prompt
            .starts_with("The following are multiple choice questions (with answers) about  college biology.\n\nDev question 0"));
        assert!(items[1]
            .prompt
            .ends_with("Which, of these?\nA. cell\nB. atom\nC. quark, charm\nD. gluon\nAnswer:"));
        let mut gold = oracle(&items, |t| t.to_string());
        let result = run(&mut gold, &items, &RunOptions::default());
        assert_eq!(result.headline(Benchmark::Mmlu), 100.0);
        assert!(result.samples.iter().all(|s| s.choice_logits.is_some()));
        let mut wrong = oracle(&items, |t| if t == "A" { "B".into() } else { "A".into() });
        assert_eq!(
            run(&mut wrong, &items, &RunOptions::default()).micro_accuracy(),
            0.0
        );

        // A tight budget drops trailing exemplars.
        let mut small = ScriptedModel::new(|_, _, _| String::new()).with_max_input_tokens(40);
        opts.max_input_tokens = small.max_input_tokens();
        let items = items_for(&opts, &mut small);
        assert!(items.iter().all(|i| i.n_shot < 5));
        assert!(items
            .iter()
            .all(|i| i.n_shot == 0 || small.count_tokens(&i.prompt).unwrap() <= 40));

        // A budget below even the zero-shot prompt: the model gets the prompt cut to its limit,
        // and every cut is counted; or, by choice, the run is refused before it starts.
        let mut tiny = oracle(&items, |t| t.to_string()).with_max_input_tokens(5);
        opts.max_input_tokens = 5;
        let items = items_for(&opts, &mut tiny);
        assert!(items.iter().all(|i| i.n_shot == 0));
        let result = run(&mut tiny, &items, &RunOptions::default());
        assert_eq!((result.input_limit, result.prompts.cut), (5, 3));
        for s in &result.samples {
            let len = tiny.count_tokens(&s.prompt).unwrap();
            assert_eq!(s.prompt_tokens_cut, len - 5);
        }
        assert_eq!(
            result.prompts.tokens_removed as usize,
            result
                .samples
                .iter()
                .map(|s| s.prompt_tokens_cut)
                .sum::<usize>()
        );
        let refuse = RunOptions {
            overlong: flan_data::Overlong::Error,
            ..RunOptions::default()
        };
        let err = runner::run(&mut tiny, &items, &refuse, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("mmlu_anatomy item 0: the prompt has"), "{err}");
        assert!(err.contains("over the input limit of 5"), "{err}");

        // Generation instead of ranking.
        opts.max_input_tokens = 2048;
        opts.mmlu_answering = MmluAnswering::Generate;
        let items = items_for(&opts, &mut counter);
        assert!(items.iter().all(|i| i.choices.is_none()));
        let mut gold = oracle(&items, |t| format!(" {t}"));
        assert_eq!(
            run(&mut gold, &items, &RunOptions::default()).micro_accuracy(),
            100.0
        );
        // Whole-sequence log-probabilities through `EvalModel::score`.
        opts.mmlu_answering = MmluAnswering::Score;
        let items = items_for(&opts, &mut counter);
        let mut gold = oracle(&items, |t| t.to_string());
        let result = run(&mut gold, &items, &RunOptions::default());
        assert_eq!(result.micro_accuracy(), 100.0);
        assert!(result.samples.iter().all(|s| s.choice_logits.is_some()));
        let mut wrong = oracle(&items, |t| if t == "A" { "B".into() } else { "A".into() });
        assert_eq!(
            run(&mut wrong, &items, &RunOptions::default()).micro_accuracy(),
            0.0
        );
    }

    #[test]
    fn tydiqa_exact_match_and_f1_per_language() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("goldp.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"id": "finnish-1-0", "context": "Helsinki on Suomen pääkaupunki.", "question": "Mikä on Suomen pääkaupunki?", "answers": {"text": ["Helsinki"], "answer_start": [0]}}"#, "\n",
                r#"{"id": "finnish-2-0", "context": "Turku on vanha.", "question": "Mikä on vanha?", "answers": {"text": ["Turku"], "answer_start": [0]}}"#, "\n",
                r#"{"id": "english-3-0", "context": "The Nile is long.", "question": "What is long?", "answers": {"text": ["The Nile", "Nile"], "answer_start": [0, 4]}}"#, "\n",
            ),
        )
        .unwrap();
        let opts = SuiteOptions::new(Benchmark::Tydiqa, Mode::Direct, &path);
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        let mut gold = oracle(&items, |t| format!("{t}."));
        let result = run(&mut gold, &items, &RunOptions::default());
        assert_eq!(result.macro_accuracy(), 100.0);
        assert_eq!(result.macro_f1(), Some(100.0));
        let mut partial = oracle(&items, |t| format!("{t} city"));
        let result = run(&mut partial, &items, &RunOptions::default());
        assert_eq!(result.macro_accuracy(), 0.0);
        let f1 = result.tasks["tydiqa_finnish"].f1.unwrap();
        assert!((f1 - 200.0 / 3.0).abs() < 1e-9, "{f1}");
        assert!(suite::build_items(
            &SuiteOptions::new(Benchmark::Tydiqa, Mode::Cot, &path),
            &mut |_| Ok(1)
        )
        .is_err());
    }

    #[test]
    fn reports_are_written_in_lm_eval_shape() {
        let mut opts = SuiteOptions::new(Benchmark::Bbh, Mode::Cot, shared_data().join("bbh"));
        opts.limit = Some(2);
        opts.tasks = Some(vec!["navigate".into(), "snarks".into()]);
        let mut counter = ScriptedModel::new(|_, _, _| String::new());
        let items = items_for(&opts, &mut counter);
        let mut half = ScriptedModel::new(|p, _, _| {
            if p.len() % 2 == 0 {
                "So the answer is Yes.".into()
            } else {
                "no idea".into()
            }
        });
        let run_opts = RunOptions::default();
        let result = run(&mut half, &items, &run_opts);
        let info = RunInfo {
            model: half.name(),
            benchmark: Benchmark::Bbh,
            mode: Mode::Cot,
            limit: Some(2),
            options: run_opts,
            dtype: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let paths = report::write_outputs(dir.path(), &info, &items, &result).unwrap();
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&paths.results).unwrap()).unwrap();
        let nav = &results["results"]["bbh_navigate"];
        assert_eq!(results["truncation"]["prompts"]["sequences"], items.len());
        assert_eq!(results["truncation"]["prompts"]["cut"], 0);
        let acc = nav["exact_match,strict-match"].as_f64().unwrap();
        assert!((acc * 100.0 - result.tasks["bbh_navigate"].accuracy).abs() < 1e-9);
        assert_eq!(results["n-shot"]["bbh_snarks"], 3);
        assert_eq!(results["flan"]["setting"], "BbhCot");
        let lines = std::fs::read_to_string(&paths.samples).unwrap();
        assert_eq!(lines.lines().count(), 4);
        let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        for key in ["prompt", "outputs", "answer", "targets", "correct"] {
            assert!(first.get(key).is_some(), "{key}");
        }
        let md = std::fs::read_to_string(&paths.markdown).unwrap();
        assert!(md.contains("| bbh_navigate | 2 | 3 |"), "{md}");
        // The normalised average needs all six settings.
        assert!(report::normalized_average_of(&[results]).is_err());
    }
}

mod properties {
    use super::*;
    use flan_eval::extract;
    use flan_eval::vote::majority_vote;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn extractors_never_panic(s in "\\PC*") {
            let _ = extract::bbh_cot_answer(&s);
            let _ = extract::bbh_direct_answer(&s);
            let _ = extract::math_answer(&s, &["The answer is", "答えは", "Ответ —"]);
            let _ = extract::find_numbers(&s);
            let _ = extract::canonical_number(&s);
            let _ = extract::mmlu_cot_letter(&s);
            let _ = flan_eval::squad::f1(&s, "x y");
            for rule in [flan_eval::AnswerRule::BbhCot, flan_eval::AnswerRule::Squad] {
                let _ = rule.is_correct(rule.extract(&s).as_deref(), std::slice::from_ref(&s));
            }
        }

        #[test]
        fn extractors_never_panic_on_answer_like_text(s in "[0-9,.$ -]{0,20}(So the answer is |The answer is )?[0-9,.()A-D -]{0,12}") {
            let _ = extract::bbh_cot_answer(&s);
            let _ = extract::math_answer(&s, &["The answer is"]);
            let _ = extract::mmlu_cot_letter(&s);
        }

        #[test]
        fn bbh_cot_recovers_any_answer_after_the_phrase(
            prefix in "[a-z ,]{0,30}",
            answer in "[A-Za-z0-9()\\[\\]<>-][A-Za-z0-9()\\[\\]<> -]{0,10}[A-Za-z0-9()\\[\\]<>-]",
        ) {
            let out = format!("{prefix}. So the answer is {answer}.");
            prop_assert_eq!(extract::bbh_cot_answer(&out), Some(answer));
        }

        #[test]
        fn math_recovers_any_integer(n in -1_000_000_000i64..1_000_000_000, noise in 0u32..1000) {
            let out = format!("{noise} + 1 = {}. The answer is {n}.", noise + 1);
            prop_assert_eq!(extract::math_answer(&out, &["The answer is"]), Some(n.to_string()));
        }

        #[test]
        fn majority_vote_is_invariant_to_sample_order(
            votes in proptest::collection::vec(proptest::option::of("[a-c]"), 0..12),
            seed in any::<u64>(),
        ) {
            let mut shuffled = votes.clone();
            // Fisher-Yates with a small LCG keyed by the proptest seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (state >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            prop_assert_eq!(majority_vote(&votes), majority_vote(&shuffled));
        }

        #[test]
        fn oracle_scores_100_and_contrarian_0_on_arbitrary_targets(
            targets in proptest::collection::vec("[A-Za-z0-9()]{1,8}", 1..20),
        ) {
            let items: Vec<EvalItem> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| EvalItem {
                    task: format!("t{}", i % 3),
                    index: i,
                    prompt: format!("prompt {i}"),
                    targets: vec![t.clone()],
                    rule: flan_eval::AnswerRule::BbhCot,
                    n_shot: 0,
                    mode: flan_eval::Mode::Cot,
                    choices: None,
                    options: 0,
                    example: None,
                    exposure: None,
                    reference: None,
                })
                .collect();
            let mut gold = oracle(&items, |t| format!("So the answer is {t}."));
            prop_assert_eq!(run(&mut gold, &items, &RunOptions::default()).micro_accuracy(), 100.0);
            let mut never = oracle(&items, |t| format!("So the answer is {t}x."));
            prop_assert_eq!(run(&mut never, &items, &RunOptions::default()).micro_accuracy(), 0.0);
        }
    }
}

/// Every reader takes a file that starts with a UTF-8 byte-order mark exactly as the same file
/// without it (editors and spreadsheet exports write one).
mod byte_order_mark {
    use super::*;
    use flan_eval::{math, mmlu, tydiqa};

    /// Writes `body` twice, plain and after a byte-order mark.
    fn both(dir: &Path, name: &str, body: &[u8]) -> (PathBuf, PathBuf) {
        let plain = dir.join(format!("plain-{name}"));
        std::fs::write(&plain, body).unwrap();
        let marked = dir.join(format!("bom-{name}"));
        std::fs::write(&marked, [b"\xEF\xBB\xBF".as_slice(), body].concat()).unwrap();
        (plain, marked)
    }

    fn head(path: &Path, lines: usize) -> Vec<u8> {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().take(lines).collect();
        format!("{}\n", lines.join("\n")).into_bytes()
    }

    #[test]
    fn every_reader_accepts_a_byte_order_mark() {
        let data = shared_data();
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();

        let task = std::fs::read(data.join("bbh/tasks/navigate.json")).unwrap();
        let (p, m) = both(dir, "navigate.json", &task);
        let (a, b) = (bbh::read_task(&p).unwrap(), bbh::read_task(&m).unwrap());
        assert!(!a.examples.is_empty());
        assert_eq!(a.examples.len(), b.examples.len());
        assert_eq!(a.examples[0].input, b.examples[0].input);

        let prompts = std::fs::read(data.join("bbh/cot-prompts/navigate.txt")).unwrap();
        let (p, m) = both(dir, "navigate.txt", &prompts);
        let (a, b) = (
            CotPromptFile::read(&p).unwrap(),
            CotPromptFile::read(&m).unwrap(),
        );
        assert_eq!(a.description, b.description);
        assert_eq!(a.exemplars.len(), b.exemplars.len());

        let (p, m) = both(dir, "mgsm_de.tsv", &head(&data.join("mgsm/mgsm_de.tsv"), 4));
        let a = math::read_mgsm(&p).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(math::read_mgsm(&m).unwrap(), a);

        let (p, m) = both(dir, "test.jsonl", &head(&data.join("gsm8k/test.jsonl"), 3));
        let a = math::read_gsm8k(&p).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(math::read_gsm8k(&m).unwrap(), a);

        let csv = b"\"What is 1+1?\",1,2,3,4,B\nSecond,a,b,c,d,D\n";
        let (p, m) = both(dir, "x_test.csv", csv);
        let a = mmlu::read_csv(&p).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].question, "What is 1+1?");
        assert_eq!(mmlu::read_csv(&m).unwrap(), a);

        let line = br#"{"id": "finnish-1", "context": "Helsinki on Suomen p\u00e4\u00e4kaupunki.", "question": "Mik\u00e4 on Suomen p\u00e4\u00e4kaupunki?", "answers": {"text": ["Helsinki"]}}"#;
        let (p, m) = both(dir, "tydiqa.jsonl", line);
        let a = tydiqa::read_jsonl(&p).unwrap();
        assert_eq!(a[0].language, "finnish");
        assert_eq!(tydiqa::read_jsonl(&m).unwrap(), a);
    }
}
