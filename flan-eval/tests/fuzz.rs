//! Fuzz targets of flan-eval's readers (see the `flan-fuzz` crate): BBH tasks and CoT prompt
//! files, MMLU CSVs and CoT exemplars, hub datasets' Parquet rows (MMLU, MGSM, BBH, TyDiQA), MGSM TSVs, GSM8K and math exemplars, TyDiQA (JSONL and
//! SQuAD JSON), Winogender TSVs, toxicity JSONL, toxic-degeneration prompts and saved
//! predictions for `flan eval rescore`, the replication's points.json (and the report made from
//! it); then whole suites built from mutated files and run with
//! a scripted model whose outputs are arbitrary text, so that prompt building, answer
//! extraction, voting and the reports see any input. No input may panic; an error about a file
//! must name it.
//!
//! `FLAN_FUZZ_CASES=2000 cargo test -p flan-eval --test fuzz -- --nocapture` runs more inputs.

use flan_eval::bbh::{self, CotPromptFile};
use flan_eval::replication::{write_replication_report, Points, Settings};
use flan_eval::report::{self, RunInfo};
use flan_eval::rescore::{read_predictions, rescore_file};
use flan_eval::runner::{self, RunOptions, SelfConsistency};
use flan_eval::scripted::ScriptedModel;
use flan_eval::suite::{self, SuiteOptions};
use flan_eval::{math, mmlu, toxicity, tydiqa, winogender, Benchmark, Error, Mode};
use flan_fuzz::{documents, fuzz, head, names_file, shared_data, Scratch};
use proptest::prelude::*;
use std::path::Path;

#[path = "support/hub_fixtures.rs"]
mod hub_fixtures;

fn check<T>(file: &Path, result: Result<T, Error>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => names_file(&flan_data::error::chain(&e), file),
    }
}

fn bbh_task_seeds() -> Vec<Vec<u8>> {
    ["navigate.json", "date_understanding.json"]
        .iter()
        .map(|f| {
            // The first examples only: a task file holds 250 of them.
            let text = std::fs::read_to_string(shared_data().join("bbh/tasks").join(f)).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let few: Vec<_> = v["examples"].as_array().unwrap()[..3].to_vec();
            serde_json::to_vec_pretty(&serde_json::json!({"examples": few})).unwrap()
        })
        .collect()
}

fn bbh_prompt_seeds() -> Vec<Vec<u8>> {
    ["navigate.txt", "date_understanding.txt"]
        .iter()
        .map(|f| std::fs::read(shared_data().join("bbh/cot-prompts").join(f)).unwrap())
        .collect()
}

#[test]
fn bbh_task() {
    let scratch = Scratch::new();
    fuzz("flan-eval bbh_task", documents(bbh_task_seeds()), |bytes| {
        let path = scratch.file("task.json", &bytes);
        check(&path, bbh::read_task(&path))
    });
}

#[test]
fn bbh_cot_prompts() {
    let scratch = Scratch::new();
    fuzz(
        "flan-eval bbh_cot_prompts",
        documents(bbh_prompt_seeds()),
        |bytes| {
            let path = scratch.file("prompts.txt", &bytes);
            if let Ok(file) = CotPromptFile::read(&path) {
                let _ = file.cot_prompt("Q?");
                let _ = file.direct_prompt("Q?");
                let _ = file.zero_shot_cot_prompt("Q?");
                return Ok(());
            }
            check(&path, CotPromptFile::read(&path))
        },
    );
}

const TOXIC_PROMPTS: &[u8] = br#"{"filename": "a", "challenging": true, "prompt": {"text": "You are such a", "toxicity": 0.75, "profanity": 0.1}, "continuation": {"text": " thing", "toxicity": 0.2}}
{"prompt": {"text": "Unscored", "toxicity": null}}
{"prompt": "Plain prompt"}
"#;

/// Toxic-degeneration prompts: any file reads or is refused by name; whatever reads becomes
/// items, is continued by a scripted model, scored and summarised without a panic.
#[test]
fn toxic_degeneration_prompts() {
    use flan_eval::toxic_degeneration::{self, DegenerationMetrics, ToxicityScorer};
    struct ByLength;
    impl ToxicityScorer for ByLength {
        fn name(&self) -> String {
            "by-length".into()
        }
        fn score(&self, texts: &[String]) -> Result<Vec<f64>, Error> {
            Ok(texts.iter().map(|t| (t.len() % 11) as f64 / 10.0).collect())
        }
    }
    let scratch = Scratch::new();
    fuzz(
        "flan-eval toxic_degeneration_prompts",
        documents(vec![TOXIC_PROMPTS.to_vec()]),
        |bytes| {
            let path = scratch.file("prompts.jsonl", &bytes);
            let prompts = match toxic_degeneration::read_prompts(&path) {
                Ok(p) => p,
                Err(e) => return check(&path, Err::<(), _>(e)),
            };
            let items = toxic_degeneration::build_items(&prompts, None, Some(3))
                .map_err(|e| e.to_string())?;
            let mut model =
                ScriptedModel::new(|p, seed, k| format!("{p}{}", (seed as usize + k) % 7));
            let opts = RunOptions {
                self_consistency: Some(SelfConsistency {
                    k: 2,
                    ..toxic_degeneration::paper_sampling()
                }),
                ..RunOptions::default()
            };
            let mut result = runner::run(&mut model, &items, &opts, &mut |_, _| {})
                .map_err(|e| e.to_string())?;
            toxic_degeneration::score_samples(&mut result.samples, &ByLength)
                .map_err(|e| e.to_string())?;
            match DegenerationMetrics::of(&result.samples) {
                Some(m) if !(0.0..=1.0).contains(&m.overall.expected_max_toxicity) => {
                    Err(format!("expected maximum toxicity out of range: {m:?}"))
                }
                _ => Ok(()),
            }
        },
    );
}

const MMLU_CSV: &[u8] =
    b"\"Which is prime?\",4,6,7,9,C\n\"A \"\"quoted\"\", comma, question\",a,b,c,d,A\n";
const MMLU_COT: &[u8] =
    b"{\"question\": \"Which is prime?\", \"choices\": [\"4\", \"6\", \"7\", \"9\"], \
    \"answer\": \"C\", \"rationale\": \"7 has no divisors but 1 and 7.\", \"subject\": \"math\"}\n";

#[test]
fn mmlu_csv() {
    let scratch = Scratch::new();
    fuzz(
        "flan-eval mmlu_csv",
        documents(vec![MMLU_CSV.to_vec()]),
        |bytes| {
            let path = scratch.file("algebra_test.csv", &bytes);
            check(&path, mmlu::read_csv(&path))
        },
    );
}

#[test]
fn mmlu_cot_exemplars() {
    let scratch = Scratch::new();
    fuzz(
        "flan-eval mmlu_cot_exemplars",
        documents(vec![MMLU_COT.to_vec()]),
        |bytes| {
            let path = scratch.file("mmlu_cot.jsonl", &bytes);
            check(&path, mmlu::read_cot_exemplars(&path))
        },
    );
}

#[test]
fn mgsm() {
    let scratch = Scratch::new();
    let seeds = vec![
        head(&shared_data().join("mgsm/mgsm_de.tsv"), 4),
        head(&shared_data().join("mgsm/mgsm_zh.tsv"), 3),
    ];
    fuzz("flan-eval mgsm", documents(seeds), |bytes| {
        let path = scratch.file("mgsm_xx.tsv", &bytes);
        check(&path, math::read_mgsm(&path))
    });
}

#[test]
fn gsm8k_and_exemplars() {
    let scratch = Scratch::new();
    let seeds = vec![
        head(&shared_data().join("gsm8k/test.jsonl"), 3),
        b"{\"question\": \"1+1?\", \"rationale\": \"One and one.\", \"answer\": \"2\"}\n".to_vec(),
    ];
    fuzz("flan-eval gsm8k_and_exemplars", documents(seeds), |bytes| {
        let path = scratch.file("math.jsonl", &bytes);
        check(&path, math::read_gsm8k(&path))?;
        check(&path, math::gsm8k_exemplars(&path, 8))?;
        check(&path, math::read_exemplars(&path))
    });
}

const TYDIQA_JSONL: &[u8] = br#"{"id": "finnish-1", "context": "Helsinki on Suomen paakaupunki.", "question": "Mika on paakaupunki?", "answers": {"text": ["Helsinki"], "answer_start": [0]}}
{"id": "x-2", "language": "swahili", "passage": "Nairobi ni mji.", "question": "Mji?", "answers": [{"text": "Nairobi"}]}
"#;
const TYDIQA_SQUAD: &[u8] = br#"{"data": [{"paragraphs": [{"context": "Tokyo is big.", "qas": [{"id": "japanese-1", "question": "Big?", "answers": [{"text": "Tokyo", "answer_start": 0}]}]}]}]}"#;

#[test]
fn tydiqa() {
    let scratch = Scratch::new();
    let seeds = vec![TYDIQA_JSONL.to_vec(), TYDIQA_SQUAD.to_vec()];
    fuzz("flan-eval tydiqa", documents(seeds), |bytes| {
        let path = scratch.file("tydiqa-goldp.jsonl", &bytes);
        check(&path, tydiqa::read_jsonl(&path))
    });
}

const PREDICTIONS: &[u8] =
    br#"{"id": 1, "prediction": "So the answer is (A).", "target": "(A)", "task": "navigate"}
{"id": "b", "predictions": ["The answer is 42.", "The answer is 41.", null], "target": "42"}
{"prediction": "Die Antwort lautet 1.000,5", "target": "1000.5", "extra": [1]}
"#;

fn benchmark_and_mode() -> impl Strategy<Value = (Benchmark, Mode)> {
    (
        prop_oneof![
            Just(Benchmark::Bbh),
            Just(Benchmark::Mmlu),
            Just(Benchmark::Mgsm),
            Just(Benchmark::Gsm8k),
            Just(Benchmark::Tydiqa),
        ],
        prop_oneof![Just(Mode::Direct), Just(Mode::Cot), Just(Mode::ZeroShotCot)],
    )
}

#[test]
fn rescore_predictions() {
    let scratch = Scratch::new();
    let bbh_outputs = std::fs::read(shared_data().join("bbh/tasks/navigate.json"))
        .map(|b| b[..b.len().min(3000)].to_vec())
        .unwrap();
    let input = (
        documents(vec![PREDICTIONS.to_vec(), bbh_outputs]),
        benchmark_and_mode(),
        proptest::option::of("(mgsm_)?(de|zh|ja|xx|)"),
    );
    fuzz(
        "flan-eval rescore",
        input,
        |(bytes, (benchmark, mode), task)| {
            let path = scratch.file("predictions.jsonl", &bytes);
            check(&path, read_predictions(&path))?;
            match rescore_file(&path, benchmark, mode, task.as_deref()) {
                Ok(report) => {
                    // Counts add up whatever the predictions were.
                    let n = report.n;
                    if report.correct > n
                        || report.no_answer > n
                        || !(0.0..=100.0).contains(&report.accuracy) && n > 0
                    {
                        return Err(format!(
                            "inconsistent counts: n {n}, correct {}, no answer {}, accuracy {}",
                            report.correct, report.no_answer, report.accuracy
                        ));
                    }
                    serde_json::to_string(&report).map_err(|e| e.to_string())?;
                    Ok(())
                }
                Err(Error::Unsupported(_)) => Ok(()),
                Err(e) => names_file(&flan_data::error::chain(&e), &path),
            }
        },
    );
}

const POINTS: &[u8] = br#"{"version": 1, "machine": "2 cores", "seconds": 12.5, "points": [
{"experiment": "task_scaling", "series": "held_out_family", "x": 0, "seed": 1, "accuracy": 0.25, "items": 4, "chance": 0.2, "correct": [true, false, false, false], "item_set": "a"},
{"experiment": "task_scaling", "series": "held_out_family", "x": 8, "x_label": "all", "seed": 1, "accuracy": 0.75, "items": 4, "chance": 0.2, "correct": [true, true, true, false], "item_set": "a"},
{"experiment": "task_scaling", "series": "held_out_family", "x": 0, "seed": 2, "accuracy": 0.5, "items": 2, "chance": 0.5},
{"experiment": "model_scaling", "series": "finetuned", "x": 1500000, "x_label": "tiny", "seed": 1, "accuracy": 0.5, "items": 2, "chance": 0.1, "correct": [true, false]},
{"experiment": "model_scaling", "series": "not_finetuned", "x": 1500000, "x_label": "tiny", "seed": 1, "accuracy": 0.0, "items": 2, "chance": 0.1, "correct": [false, false]},
{"experiment": "cot_mixture", "series": "cot", "x": "with_cot_data", "seed": 1, "accuracy": 1.0, "items": 1, "chance": 0.0},
{"experiment": "self_consistency", "series": "greedy", "x": 1, "seed": 3, "accuracy": 0.5, "items": 2, "chance": 0.0},
{"experiment": "self_consistency", "series": "self_consistency", "x": 4, "seed": 3, "accuracy": 0.5, "items": 2, "chance": 0.0, "seconds": 3},
{"experiment": "normalized_average", "series": "held_out_family/direct", "x": "finetuned", "seed": 1, "accuracy": 0.5, "items": 2, "chance": 0.25},
{"experiment": "normalized_average", "series": "held_out_family/direct", "x": "not_finetuned", "seed": 1, "accuracy": 0.0, "items": 2, "chance": 0.25}
]}"#;

/// Any points.json is read or refused with the file named; whatever is read makes a report
/// whose figures are well-formed SVG without a non-number.
#[test]
fn replication_points() {
    let scratch = Scratch::new();
    fuzz(
        "flan-eval replication_points",
        documents(vec![POINTS.to_vec()]),
        |bytes| {
            let path = scratch.file("points.json", &bytes);
            let points = match Points::read(&path) {
                Ok(points) => points,
                Err(e) => return names_file(&flan_data::error::chain(&e), &path),
            };
            let files = write_replication_report(
                &scratch.dir().join("report"),
                &points,
                &Settings::default(),
            )
            .map_err(|e| {
                format!(
                    "a valid points.json made no report: {}",
                    flan_data::error::chain(&e)
                )
            })?;
            for figure in &files.figures {
                let svg = std::fs::read_to_string(figure).map_err(|e| e.to_string())?;
                if !(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"))
                    || svg.contains("NaN")
                {
                    return Err(format!("{} is not a well-formed figure", figure.display()));
                }
            }
            let md = std::fs::read_to_string(&files.markdown).map_err(|e| e.to_string())?;
            if md.contains("NaN") {
                return Err("report.md shows a NaN".into());
            }
            Ok(())
        },
    );
}

/// A benchmark directory of one small task (mutated), and what to build from it.
fn suite_dir(scratch: &Scratch, benchmark: Benchmark, doc: &[u8], other: &[u8]) -> SuiteOptions {
    let root = scratch.dir().join("suite");
    let _ = std::fs::remove_dir_all(&root);
    let write = |rel: &str, bytes: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    match benchmark {
        Benchmark::Bbh => {
            write("tasks/navigate.json", doc);
            write("cot-prompts/navigate.txt", other);
            SuiteOptions::new(benchmark, Mode::Cot, &root)
        }
        Benchmark::Mmlu => {
            write("test/algebra_test.csv", doc);
            write("dev/algebra_dev.csv", other);
            SuiteOptions::new(benchmark, Mode::Direct, &root)
        }
        Benchmark::Mgsm => {
            write("mgsm/mgsm_de.tsv", doc);
            write("gsm8k/train.jsonl", other);
            let mut o = SuiteOptions::new(benchmark, Mode::Cot, root.join("mgsm"));
            o.exemplars = Some(root.join("gsm8k/train.jsonl"));
            o
        }
        _ => {
            write("tydiqa.jsonl", doc);
            SuiteOptions::new(Benchmark::Tydiqa, Mode::Direct, root.join("tydiqa.jsonl"))
        }
    }
}

/// Whole runs: a suite from mutated files, a scripted model answering arbitrary text, then the
/// reports written.
#[test]
fn suites_with_arbitrary_outputs() {
    let scratch = Scratch::new();
    let task_seeds = bbh_task_seeds();
    let prompt_seeds = bbh_prompt_seeds();
    let mgsm_seed = head(&shared_data().join("mgsm/mgsm_de.tsv"), 3);
    let gsm8k_seed = head(&shared_data().join("gsm8k/train.jsonl"), 3);
    let outputs = prop_oneof![
        any::<String>(),
        Just("So the answer is (A).".to_string()),
        Just("The answer is 1,000.".to_string()),
        Just("Die Antwort lautet 12.".to_string()),
        "[ -~]{0,80}",
    ];
    let input = (
        0usize..4,
        documents(vec![
            task_seeds[0].clone(),
            MMLU_CSV.to_vec(),
            mgsm_seed,
            TYDIQA_JSONL.to_vec(),
        ]),
        documents(vec![prompt_seeds[0].clone(), MMLU_CSV.to_vec(), gsm8k_seed]),
        proptest::collection::vec(outputs, 1..6),
        (1usize..4, 1usize..40, any::<bool>(), 1usize..4),
    );
    // Unmutated, every benchmark builds items and runs: mutations start from deep inside.
    let valid = [
        (task_seeds[0].clone(), prompt_seeds[0].clone()),
        (MMLU_CSV.to_vec(), MMLU_CSV.to_vec()),
        (
            head(&shared_data().join("mgsm/mgsm_de.tsv"), 3),
            head(&shared_data().join("gsm8k/train.jsonl"), 3),
        ),
        (TYDIQA_JSONL.to_vec(), Vec::new()),
    ];
    for (which, (doc, other)) in valid.iter().enumerate() {
        let benchmark = [
            Benchmark::Bbh,
            Benchmark::Mmlu,
            Benchmark::Mgsm,
            Benchmark::Tydiqa,
        ][which];
        let opts = suite_dir(&scratch, benchmark, doc, other);
        let items = suite::build_items(&opts, &mut |t| Ok(t.split_whitespace().count() + 1))
            .unwrap_or_else(|e| panic!("{benchmark}: {e}"));
        assert!(!items.is_empty(), "{benchmark}");
        let mut model = ScriptedModel::new(|_, _, _| "So the answer is (A).".to_string());
        runner::run(&mut model, &items, &RunOptions::default(), &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{benchmark}: {e}"));
    }
    fuzz(
        "flan-eval suites",
        input,
        |(which, doc, other, answers, (batch, budget, sc, shots))| {
            let benchmark = [
                Benchmark::Bbh,
                Benchmark::Mmlu,
                Benchmark::Mgsm,
                Benchmark::Tydiqa,
            ][which];
            let mut opts = suite_dir(&scratch, benchmark, &doc, &other);
            opts.limit = Some(4);
            opts.shots = Some(shots);
            opts.max_input_tokens = budget * 10;
            let mut n = 0;
            let mut model = ScriptedModel::new(move |_, _, _| {
                n += 1;
                answers[n % answers.len()].clone()
            })
            .with_max_input_tokens(opts.max_input_tokens);
            let items =
                match suite::build_items(&opts, &mut |t| Ok(t.split_whitespace().count() + 1)) {
                    Ok(items) => items,
                    Err(_) => return Ok(()),
                };
            let run = RunOptions {
                batch_size: batch,
                max_new_tokens: 8,
                self_consistency: (sc && opts.mode.is_cot()).then_some(SelfConsistency {
                    k: 3,
                    temperature: 0.7,
                    top_k: None,
                    top_p: None,
                }),
                ..RunOptions::default()
            };
            let Ok(result) = runner::run(&mut model, &items, &run, &mut |_, _| {}) else {
                return Ok(());
            };
            let info = RunInfo {
                model: "scripted".into(),
                benchmark,
                mode: opts.mode,
                limit: opts.limit,
                options: run,
                dtype: None,
            };
            let out = scratch.dir().join("out");
            report::write_outputs(&out, &info, &items, &result).map_err(|e| e.to_string())?;
            let _ = report::markdown(&info, &result);
            Ok(())
        },
    );
}

const COMPARE_PROMPTS: &[u8] = b"{\"id\": \"a&b\", \"prompt\": \"Write <b>a</b> poem\"}\n\n{\"prompt\": \"Plan a trip.\"}\n{\"id\": 7, \"prompt\": \"x\"}\n";
const COMPARE_PAIRS: &[u8] = b"{\"id\":\"q1\",\"prompt\":\"p\",\"model_a\":\"a\",\"model_b\":\"b\",\"output_a\":\"x\",\"output_b\":\"<y>\",\"left\":\"B\",\"order_seed\":0}\n{\"id\":\"q2\",\"prompt\":\"p2\",\"model_a\":\"a\",\"model_b\":\"b\",\"output_a\":\"\",\"output_b\":\"z\",\"left\":\"A\",\"order_seed\":0}\n";
const COMPARE_RATINGS: &[u8] =
    b"{\"id\": \"q1\", \"preferred\": \"B\"}\n{\"id\": \"q2\", \"preferred\": \"tie\"}\n";

/// `flan eval compare`'s readers: prompts (JSONL or text), pairs and ratings; whatever is read
/// is rendered as a page and, for ratings, scored.
#[test]
fn compare_files() {
    use flan_eval::compare;
    let scratch = Scratch::new();
    fuzz(
        "flan-eval compare_prompts",
        documents(vec![COMPARE_PROMPTS.to_vec(), b"one\ntwo\n".to_vec()]),
        |bytes| {
            let path = scratch.file("prompts.jsonl", &bytes);
            check(&path, compare::read_prompts(&path))
        },
    );
    fuzz(
        "flan-eval compare_pairs",
        documents(vec![COMPARE_PAIRS.to_vec()]),
        |bytes| {
            let path = scratch.file("pairs.jsonl", &bytes);
            match compare::read_pairs(&path) {
                Ok(pairs) => {
                    let _ = compare::render_html(&pairs);
                    Ok(())
                }
                Err(e) => check::<()>(&path, Err(e)),
            }
        },
    );
    let pairs_path = scratch.file("pairs.jsonl", COMPARE_PAIRS);
    let pairs = compare::read_pairs(&pairs_path).unwrap();
    fuzz(
        "flan-eval compare_ratings",
        documents(vec![COMPARE_RATINGS.to_vec()]),
        |bytes| {
            let path = scratch.file("ratings.jsonl", &bytes);
            match compare::read_ratings(&path, &pairs) {
                Ok(ratings) if !ratings.is_empty() => {
                    let w = compare::win_rate(&pairs, &ratings).map_err(|e| e.to_string())?;
                    prop_assert_or_err(w.ci95_low <= w.win_rate_b && w.win_rate_b <= w.ci95_high)
                }
                Ok(_) => Ok(()),
                Err(e) => check::<()>(&path, Err(e)),
            }
        },
    );
}

fn prop_assert_or_err(ok: bool) -> Result<(), String> {
    ok.then_some(())
        .ok_or_else(|| "win rate outside its interval".to_string())
}

/// Winogender: mutated sentence files beside the released templates and statistics, then items,
/// a run with arbitrary outputs, and the Winogender section of the report.
#[test]
fn winogender() {
    let scratch = Scratch::new();
    let released = shared_data().join("winogender");
    let dir = scratch.dir().join("winogender");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["templates.tsv", "occupations-stats.tsv"] {
        std::fs::copy(released.join(f), dir.join(f)).unwrap();
    }
    let seeds = vec![head(&released.join("all_sentences.tsv"), 7)];
    fuzz("flan-eval winogender", documents(seeds), |bytes| {
        let path = dir.join("all_sentences.tsv");
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        let sentences = match winogender::read_dir(&dir) {
            Ok(s) => s,
            Err(e) => return names_file(&flan_data::error::chain(&e), &path),
        };
        let tasks: Vec<String> = winogender::TASKS.iter().map(|t| t.to_string()).collect();
        let items = winogender::build_items(&sentences, &tasks, None);
        let mut model = ScriptedModel::new(|p, _, _| p.chars().rev().take(12).collect());
        let result = runner::run(&mut model, &items, &RunOptions::default(), &mut |_, _| {})
            .map_err(|e| e.to_string())?;
        let m = winogender::metrics(&result.samples);
        if m.overall.n != items.len() || m.other_tasks != 0 {
            return Err(format!("{} items, metrics {m:?}", items.len()));
        }
        let _ = m.markdown();
        Ok(())
    });
}

/// Toxicity: mutated JSONL, then few-shot items from the file itself and the metrics.
#[test]
fn toxicity() {
    let scratch = Scratch::new();
    let seed = br#"{"text": "thanks", "toxicity": 0.0, "insult": 0.0}
{"text": "you fool", "toxicity": 0.8}
{"text": "meh", "label": 1}
"#;
    fuzz(
        "flan-eval toxicity",
        (documents(vec![seed.to_vec()]), 0usize..4, any::<u64>()),
        |(bytes, shots, seed)| {
            let path = scratch.file("comments.jsonl", &bytes);
            let comments = match toxicity::read_jsonl(&path) {
                Ok(c) => c,
                Err(e) => return names_file(&flan_data::error::chain(&e), &path),
            };
            let opts = toxicity::ToxicityOptions {
                shots,
                seed,
                pool: toxicity::ExemplarPool::SameFile,
                budget: 30,
                limit: None,
            };
            let Ok(items) =
                toxicity::build_items(&comments, &opts, &mut |t| Ok(t.split_whitespace().count()))
            else {
                return Ok(());
            };
            let mut model = ScriptedModel::new(|p, _, _| p.chars().take(5).collect());
            let result = runner::run(&mut model, &items, &RunOptions::default(), &mut |_, _| {})
                .map_err(|e| e.to_string())?;
            let m = toxicity::metrics(&result.samples);
            if m.auc_roc.is_some_and(|a| !(0.0..=1.0).contains(&a)) {
                return Err(format!("AUC out of range: {m:?}"));
            }
            let _ = m.markdown();
            Ok(())
        },
    );
}

fn parquet_seeds() -> Vec<Vec<u8>> {
    use hub_fixtures::{strs, write_parquet, Col};
    let dir = tempfile::tempdir().unwrap();
    let tables: Vec<Vec<(&str, Col)>> = vec![
        vec![
            ("question", strs(&["What, then?", "Q2"])),
            (
                "choices",
                Col::StrList(vec![vec!["a".into(); 4], vec!["b".into(); 4]]),
            ),
            ("answer", Col::Int(vec![1, 3])),
        ],
        vec![
            ("question", strs(&["Frage"])),
            ("answer", Col::Str(vec![None])),
            ("answer_number", Col::Int(vec![1250])),
        ],
        vec![
            ("id", strs(&["finnish-1-0"])),
            ("context", strs(&["Helsinki on."])),
            ("question", strs(&["Mikä?"])),
            (
                "answers",
                Col::Answers(vec![(vec!["Helsinki".into()], vec![0])]),
            ),
        ],
    ];
    tables
        .iter()
        .enumerate()
        .map(|(i, cols)| {
            let path = dir.path().join(format!("{i}.parquet"));
            write_parquet(&path, cols);
            std::fs::read(path).unwrap()
        })
        .collect()
}

#[test]
fn hub_parquet_rows() {
    use flan_eval::hub_readers::mgsm_problem_from_row;
    use flan_eval::parquet_rows::{read_rows, row_refs};
    let scratch = Scratch::new();
    fuzz(
        "flan-eval hub_parquet_rows",
        documents(parquet_seeds()),
        |bytes| {
            let path = scratch.file("split.parquet", &bytes);
            let rows = match read_rows(&path) {
                Ok(rows) => rows,
                Err(e) => return check(&path, Err::<(), _>(e)),
            };
            for row in row_refs(&path, &rows) {
                check(&path, mmlu::question_from_row(&row))?;
                check(&path, mgsm_problem_from_row(&row))?;
                check(&path, bbh::example_from_row(&row))?;
                let value = serde_json::Value::Object(row.fields.clone());
                let _ = tydiqa::example_from_json(&value, "row");
            }
            Ok(())
        },
    );
}
