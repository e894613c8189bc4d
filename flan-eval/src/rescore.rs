//! Re-scoring saved predictions, so the outputs of any system can be scored by the same rules.
//!
//! Input: JSONL with `prediction` (a string) and `target` (string, number, or a list of gold
//! strings for TyDiQA) per line, an optional `task` that splits the summary by task and an
//! optional `id` (any JSON value) that is carried to the record's score; other fields are ignored
//! and counted in the report. A line may carry `predictions` (a list of sampled outputs) instead
//! of `prediction`: the answers are then majority-voted (self-consistency). The BBH authors'
//! published output files (`{"outputs": [{"input", "prediction", "target"}]}`) are read as well.

use crate::error::read_to_string;
use crate::extract::{canonical_number, gsm8k_target};
use crate::item::{AnswerRule, Benchmark, Mode};
use crate::math::answer_phrases;
use crate::metrics::{mean, Tally};
use crate::vote::majority_vote;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The fields of a prediction record that rescoring reads.
const KNOWN_FIELDS: [&str; 5] = ["prediction", "predictions", "target", "task", "id"];

/// One prediction to score.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRecord {
    /// 1-based line (or, in a BBH outputs document, 1-based position in its list).
    pub line: usize,
    /// The record's `id`, when it has one.
    pub id: Option<Value>,
    /// Task of the record, when the file says.
    pub task: Option<String>,
    /// The raw output(s); more than one means self-consistency.
    pub outputs: Vec<String>,
    /// Gold answers.
    pub targets: Vec<String>,
}

/// Scores of one group of predictions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreSummary {
    /// Accuracy (exact match for TyDiQA) in percent.
    pub accuracy: f64,
    /// Records scored.
    pub n: usize,
    /// Records right.
    pub correct: usize,
    /// Records where the rule found no answer (scored wrong).
    pub no_answer: usize,
    /// Mean token F1 in percent (TyDiQA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
}

/// The result of `flan eval rescore`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RescoreReport {
    /// Accuracy over all records, in percent.
    pub accuracy: f64,
    /// Records scored.
    pub n: usize,
    /// Records right.
    pub correct: usize,
    /// Records without an extractable answer.
    pub no_answer: usize,
    /// Mean token F1 in percent (TyDiQA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Blank lines skipped.
    pub blank_lines: usize,
    /// Fields of the records that rescoring does not read, with the number of records holding
    /// each.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ignored_fields: BTreeMap<String, usize>,
    /// Benchmark whose rules were applied.
    pub benchmark: Benchmark,
    /// Mode whose rules were applied.
    pub mode: Mode,
    /// The `--task` given, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Per task, when records name their task (BBH's average is the mean of these).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_task: BTreeMap<String, ScoreSummary>,
    /// Unweighted mean of the per-task accuracies, when records name their task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_average: Option<f64>,
    /// Each record's score, in input order (written apart from the report, one per line).
    #[serde(skip)]
    pub records: Vec<RecordScore>,
}

/// How one record scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordScore {
    /// The record's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Its line in the predictions file.
    pub line: usize,
    /// Its task, when the file says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The answer extracted by the benchmark's rule (the vote, for several predictions).
    pub answer: Option<String>,
    /// Whether it matches a target.
    pub correct: bool,
    /// Token F1 in percent (TyDiQA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn record_from_value(v: &Value, path: &Path, line: usize) -> Result<PredictionRecord> {
    let bad = |msg: &str| Error::parse(path, line, msg.to_string());
    let outputs = match (v.get("prediction"), v.get("predictions")) {
        (Some(p), _) => {
            vec![value_to_string(p).ok_or_else(|| bad("expected \"prediction\" to be a string"))?]
        }
        (None, Some(Value::Array(ps))) if !ps.is_empty() => ps
            .iter()
            .map(value_to_string)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("expected \"predictions\" to be a list of strings"))?,
        _ => {
            return Err(bad(
                "expected a \"prediction\" string (or a \"predictions\" list)",
            ))
        }
    };
    let targets = match v.get("target") {
        Some(Value::Array(ts)) => ts
            .iter()
            .map(value_to_string)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("expected \"target\" to be a string or a list of strings"))?,
        Some(t) => {
            vec![value_to_string(t).ok_or_else(|| bad("expected \"target\" to be a string"))?]
        }
        None => return Err(bad("expected a \"target\"")),
    };
    if targets.is_empty() {
        return Err(bad("expected at least one target"));
    }
    let task = v.get("task").and_then(Value::as_str).map(str::to_string);
    Ok(PredictionRecord {
        line,
        id: v.get("id").cloned(),
        task,
        outputs,
        targets,
    })
}

/// The records of a predictions file, and what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// In file order.
    pub records: Vec<PredictionRecord>,
    /// Blank lines skipped.
    pub blank_lines: usize,
    /// Fields rescoring does not read, with the number of records holding each.
    pub ignored_fields: BTreeMap<String, usize>,
}

/// Reads a predictions file (JSONL, or a BBH outputs document). An empty file, or one of blank
/// lines only, is an error: there is nothing to score.
pub fn read_predictions(path: &Path) -> Result<Predictions> {
    let text = read_to_string(path)?;
    let mut ignored_fields: BTreeMap<String, usize> = BTreeMap::new();
    let mut count_ignored = |v: &Value| {
        if let Value::Object(map) = v {
            for key in map.keys().filter(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
                *ignored_fields.entry(key.clone()).or_default() += 1;
            }
        }
    };
    let mut records = Vec::new();
    let mut blank_lines = 0;
    // The BBH authors' published files are one JSON document with an "outputs" list.
    let document = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(mut doc)) => match doc.remove("outputs") {
            Some(Value::Array(outputs)) => Some(outputs),
            _ => None,
        },
        _ => None,
    };
    if let Some(outputs) = document {
        for (i, v) in outputs.iter().enumerate() {
            count_ignored(v);
            records.push(record_from_value(v, path, i + 1)?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                blank_lines += 1;
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| Error::parse(path, i + 1, format!("expected a JSON object: {e}")))?;
            count_ignored(&v);
            records.push(record_from_value(&v, path, i + 1)?);
        }
    }
    if records.is_empty() {
        return Err(Error::parse(
            path,
            1,
            "no predictions: expected JSONL with a \"prediction\" and a \"target\" per line",
        ));
    }
    Ok(Predictions {
        records,
        blank_lines,
        ignored_fields,
    })
}

/// The language of an MGSM task name (`mgsm_de` or `de`).
fn mgsm_language(task: Option<&str>) -> Option<&str> {
    task.map(|t| t.strip_prefix("mgsm_").unwrap_or(t))
}

/// The answer rule of `benchmark` in `mode` (`task` selects the MGSM language, and the
/// synthetic suite's family, whose answer phrases a CoT output is read by).
pub fn rule_for(benchmark: Benchmark, mode: Mode, task: Option<&str>) -> Result<AnswerRule> {
    Ok(match (benchmark, mode.is_cot()) {
        (Benchmark::Bbh, true) => AnswerRule::BbhCot,
        (Benchmark::Bbh, false) => AnswerRule::BbhDirect,
        (Benchmark::Mmlu, true) => AnswerRule::MmluCot,
        (Benchmark::Mmlu, false) => AnswerRule::MmluLetter,
        (Benchmark::Mgsm, _) => AnswerRule::Math {
            phrases: answer_phrases(mgsm_language(task)),
        },
        (Benchmark::Gsm8k, _) => AnswerRule::Math {
            phrases: answer_phrases(Some("en")),
        },
        (Benchmark::Tydiqa, false) => AnswerRule::Squad,
        (Benchmark::Synthetic, false) => AnswerRule::ExactMatch {
            answer_phrases: Vec::new(),
        },
        (Benchmark::Synthetic, true) => {
            let family = task.ok_or_else(|| {
                Error::Config(
                    "synthetic chain-of-thought predictions are read by their family's answer \
                     phrases: give each record a `task` (the family) or pass --task"
                        .into(),
                )
            })?;
            AnswerRule::ExactMatch {
                answer_phrases: flan_data::synthetic::Suite::new()?.answer_phrases(family)?,
            }
        }
        // Rank-classified benchmarks: a saved prediction is the chosen option, matched exactly.
        (Benchmark::Winogender | Benchmark::Toxicity, false) => AnswerRule::ExactMatch {
            answer_phrases: Vec::new(),
        },
        (Benchmark::Winogender | Benchmark::Toxicity, true) => {
            return Err(Error::Unsupported(format!(
                "{benchmark} is rank-classified; use --mode direct"
            )))
        }
        (Benchmark::Tydiqa, true) => {
            return Err(Error::Unsupported(
                "TyDiQA is scored direct; use --mode direct".into(),
            ))
        }
        (Benchmark::ToxicDegeneration, _) => {
            return Err(Error::Unsupported(
                "toxic degeneration is scored by a toxicity classifier, not against targets; \
                 use `flan eval run --benchmark toxic-degeneration`"
                    .into(),
            ))
        }
    })
}

/// Normalises a target as the benchmark states it (GSM8K solutions become their `####` number).
fn normalise_targets(benchmark: Benchmark, targets: &[String]) -> Vec<String> {
    match benchmark {
        Benchmark::Gsm8k | Benchmark::Mgsm => targets
            .iter()
            .map(|t| {
                gsm8k_target(t)
                    .or_else(|| canonical_number(t))
                    .unwrap_or_else(|| t.clone())
            })
            .collect(),
        _ => targets.to_vec(),
    }
}

#[derive(Default)]
struct Acc {
    tally: Tally,
    no_answer: usize,
    f1: Vec<f64>,
}

impl Acc {
    fn summary(&self) -> ScoreSummary {
        ScoreSummary {
            accuracy: self.tally.percent(),
            n: self.tally.n,
            correct: self.tally.correct,
            no_answer: self.no_answer,
            f1: (!self.f1.is_empty()).then(|| mean(&self.f1)),
        }
    }
}

/// Scores `records` by the rules of `benchmark` in `mode`.
pub fn rescore_records(
    records: &[PredictionRecord],
    benchmark: Benchmark,
    mode: Mode,
    task: Option<&str>,
) -> Result<RescoreReport> {
    // Rules that depend on each record's task (MGSM's language, the synthetic family) are
    // made once per task.
    let per_task_rule =
        matches!(benchmark, Benchmark::Mgsm | Benchmark::Synthetic) && task.is_none();
    let default_rule = if per_task_rule {
        None
    } else {
        Some(rule_for(benchmark, mode, task)?)
    };
    let mut task_rules: BTreeMap<Option<String>, AnswerRule> = BTreeMap::new();
    let mut all = Acc::default();
    let mut by_task: BTreeMap<String, Acc> = BTreeMap::new();
    let mut scores = Vec::with_capacity(records.len());
    for r in records {
        let rule = match &default_rule {
            Some(rule) => rule,
            None => match task_rules.entry(r.task.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(rule_for(benchmark, mode, r.task.as_deref())?)
                }
            },
        };
        let targets = normalise_targets(benchmark, &r.targets);
        let answers: Vec<Option<String>> = r.outputs.iter().map(|o| rule.extract(o)).collect();
        let answer = if answers.len() == 1 {
            answers.into_iter().next().flatten()
        } else {
            majority_vote(&answers)
        };
        let correct = rule.is_correct(answer.as_deref(), &targets);
        let f1 = rule.f1(answer.as_deref(), &targets);
        let add = |acc: &mut Acc| {
            acc.tally.add(correct);
            acc.no_answer += usize::from(answer.is_none());
            acc.f1.extend(f1);
        };
        add(&mut all);
        if let Some(t) = &r.task {
            add(by_task.entry(t.clone()).or_default());
        }
        scores.push(RecordScore {
            id: r.id.clone(),
            line: r.line,
            task: r.task.clone(),
            answer,
            correct,
            f1,
        });
    }
    let by_task: BTreeMap<String, ScoreSummary> =
        by_task.into_iter().map(|(k, v)| (k, v.summary())).collect();
    let task_average = (!by_task.is_empty())
        .then(|| mean(&by_task.values().map(|s| s.accuracy).collect::<Vec<_>>()));
    let s = all.summary();
    Ok(RescoreReport {
        accuracy: s.accuracy,
        n: s.n,
        correct: s.correct,
        no_answer: s.no_answer,
        f1: s.f1,
        blank_lines: 0,
        ignored_fields: BTreeMap::new(),
        benchmark,
        mode,
        task: task.map(str::to_string),
        by_task,
        task_average,
        records: scores,
    })
}

/// Reads and scores a predictions file.
pub fn rescore_file(
    path: &Path,
    benchmark: Benchmark,
    mode: Mode,
    task: Option<&str>,
) -> Result<RescoreReport> {
    let predictions = read_predictions(path)?;
    let mut report = rescore_records(&predictions.records, benchmark, mode, task)?;
    report.blank_lines = predictions.blank_lines;
    report.ignored_fields = predictions.ignored_fields;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bbh_cot_file_scores_by_the_authors_rule() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "p.jsonl",
            concat!(
                r#"{"input": "x", "prediction": "So the answer is (A).", "target": "(A)"}"#,
                "\n",
                r#"{"prediction": "So the answer is A.", "target": "(A)"}"#,
                "\n",
                "\n",
                r#"{"prediction": "(A)", "target": "(A)"}"#,
                "\n",
                r#"{"prediction": "x. So the answer is -219.", "target": "-219"}"#,
                "\n",
            ),
        );
        let r = rescore_file(&p, Benchmark::Bbh, Mode::Cot, None).unwrap();
        assert_eq!((r.n, r.correct, r.no_answer, r.blank_lines), (4, 2, 1, 1));
        assert_eq!(r.accuracy, 50.0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["accuracy"], 50.0);
        assert_eq!(json["n"], 4);
    }

    #[test]
    fn published_bbh_json_and_per_task_average() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "out.json",
            r#"{"canary": "c", "outputs": [{"input": "i", "prediction": " (B)", "target": "(B)"}, {"input": "i", "prediction": "(C)", "target": "(B)"}]}"#,
        );
        let r = rescore_file(&p, Benchmark::Bbh, Mode::Direct, Some("t")).unwrap();
        assert_eq!((r.n, r.correct), (2, 1));
        let p = write(
            dir.path(),
            "tasks.jsonl",
            concat!(
                r#"{"task": "a", "prediction": "yes", "target": "yes"}"#,
                "\n",
                r#"{"task": "b", "prediction": "no", "target": "yes"}"#,
                "\n",
                r#"{"task": "b", "prediction": "yes", "target": "yes"}"#,
                "\n",
            ),
        );
        let r = rescore_file(&p, Benchmark::Bbh, Mode::Direct, None).unwrap();
        assert_eq!(r.by_task["a"].accuracy, 100.0);
        assert_eq!(r.task_average, Some(75.0));
    }

    #[test]
    fn synthetic_predictions_are_read_by_their_family_s_answer_phrases() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "synthetic.jsonl",
            concat!(
                r#"{"task": "day_after", "prediction": "Monday comes next. So the answer is  Tuesday", "target": "Tuesday"}"#,
                "\n",
                r#"{"task": "day_after", "prediction": "Tuesday", "target": "Tuesday"}"#,
                "\n",
                r#"{"task": "day_before", "prediction": "Final answer: Sunday.", "target": "Sunday"}"#,
                "\n",
            ),
        );
        // CoT: the answer follows a phrase (whitespace collapsed); none is no answer; a
        // trailing period is not the answer.
        let r = rescore_file(&p, Benchmark::Synthetic, Mode::ZeroShotCot, None).unwrap();
        assert_eq!((r.n, r.correct, r.no_answer), (3, 1, 1));
        // Direct: the whole output, whitespace collapsed.
        let r = rescore_file(&p, Benchmark::Synthetic, Mode::Direct, None).unwrap();
        assert_eq!((r.n, r.correct), (3, 1));
        // A CoT record without a family cannot be read.
        let p = write(
            dir.path(),
            "no_task.jsonl",
            r#"{"prediction": "So the answer is 1", "target": "1"}"#,
        );
        let err = rescore_file(&p, Benchmark::Synthetic, Mode::Cot, None).unwrap_err();
        assert!(
            err.to_string().contains("give each record a `task`"),
            "{err}"
        );
    }

    #[test]
    fn math_tydiqa_and_self_consistency() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "gsm.jsonl",
            concat!(
                r#"{"prediction": "5 + 6 = 11. The answer is 11.", "target": "x\n#### 11"}"#,
                "\n",
                r#"{"prediction": "The answer is 1,000.", "target": 1000}"#,
                "\n",
                r#"{"predictions": ["The answer is 3.", "The answer is 4.", "so 4"], "target": "4"}"#,
                "\n",
            ),
        );
        let r = rescore_file(&p, Benchmark::Gsm8k, Mode::Cot, None).unwrap();
        assert_eq!((r.n, r.correct), (3, 3));
        let p = write(
            dir.path(),
            "mgsm.jsonl",
            r#"{"task": "mgsm_de", "prediction": "Die Antwort lautet 11. Also 12", "target": "11"}"#,
        );
        let r = rescore_file(&p, Benchmark::Mgsm, Mode::Cot, None).unwrap();
        assert_eq!(r.correct, 1);
        let p = write(
            dir.path(),
            "tydi.jsonl",
            r#"{"prediction": "the Nile river", "target": ["Nile", "Nile River"]}"#,
        );
        let r = rescore_file(&p, Benchmark::Tydiqa, Mode::Direct, None).unwrap();
        assert_eq!((r.correct, r.f1), (1, Some(100.0)));
        assert!(rescore_file(&p, Benchmark::Tydiqa, Mode::Cot, None).is_err());
    }

    #[test]
    fn ids_reach_the_record_scores_and_unused_fields_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "ids.jsonl",
            concat!(
                "\u{feff}",
                r#"{"id": "q1", "prediction": "(A)", "target": "(A)", "model": "m"}"#,
                "\n",
                r#"{"id": 7, "prediction": "(B)", "target": "(A)", "model": "m", "x": 1}"#,
                "\n",
                r#"{"prediction": "nothing", "target": "(A)"}"#,
                "\n",
            ),
        );
        let r = rescore_file(&p, Benchmark::Bbh, Mode::Direct, None).unwrap();
        let ids: Vec<Option<Value>> = r.records.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids, [Some("q1".into()), Some(7.into()), None]);
        let correct: Vec<bool> = r.records.iter().map(|s| s.correct).collect();
        assert_eq!(correct, [true, false, false]);
        assert_eq!(r.records[1].answer.as_deref(), Some("(B)"));
        assert_eq!(r.records[2].line, 3);
        let want: BTreeMap<String, usize> = [("model".to_string(), 2), ("x".to_string(), 1)].into();
        assert_eq!(r.ignored_fields, want);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["ignored_fields"]["model"],
            2
        );
    }

    #[test]
    fn an_empty_predictions_file_is_an_error_not_zero_accuracy() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "\n\n"] {
            let p = write(dir.path(), "empty.jsonl", text);
            let err = rescore_file(&p, Benchmark::Bbh, Mode::Direct, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("empty.jsonl:1: no predictions"), "{err}");
        }
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "bad.jsonl",
            "{\"prediction\": \"a\", \"target\": \"a\"}\n{\"target\": \"a\"}\n",
        );
        let err = rescore_file(&p, Benchmark::Bbh, Mode::Direct, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{}:2: expected a \"prediction\"", p.display())),
            "{err}"
        );
        let p = write(dir.path(), "bad2.jsonl", "not json\n");
        let err = rescore_file(&p, Benchmark::Bbh, Mode::Direct, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad2.jsonl:1: expected a JSON object"),
            "{err}"
        );
    }
}
