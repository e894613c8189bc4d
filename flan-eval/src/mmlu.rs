//! MMLU (Hendrycks et al.): per-subject CSVs and the 5-shot prompts of hendrycks/test
//! `evaluate_flan.py`, the script the Flan-T5 MMLU numbers come from.
//!
//! Layout as released: `dev/<subject>_dev.csv` (the exemplars) and `test/<subject>_test.csv`,
//! no header, columns question, A, B, C, D, answer letter.
//!
//! Direct prompt, byte for byte as that script builds it:
//! `"The following are multiple choice questions (with answers) about" + " " + " <subject
//! words>" + ".\n\n"` (so two spaces before the subject, as in the original), then per exemplar
//! `question + "\nA. a\nB. b\nC. c\nD. d\nAnswer: X\n\n"`, then the query without its answer,
//! ending `"\nAnswer:"`. Exemplars are dropped from the end while the prompt exceeds the token
//! budget. The answer is read by rank classification over the first-token logits of "A".."D"
//! after one decoder step (ties go to the earlier letter, like `np.argmax`), or by generation.
//!
//! CoT prompt (exemplars from a JSONL file with rationales, since the data set ships none):
//! the same header, then `"Q: question\n(A) a (B) b (C) c (D) d\nA: Let's think step by step.
//! rationale The answer is (X)."` per exemplar, blank-line separated, then the query ending
//! `"A: Let's think step by step."`; the answer is the letter after the last "The answer is ".

use crate::error::read_to_string;
use crate::extract::{mmlu_letter, MMLU_LETTERS};
use crate::item::{AnswerRule, Choices, EvalItem, Mode, RankBy};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// One MMLU question.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmluQuestion {
    /// The question.
    pub question: String,
    /// The four choices, A to D.
    pub choices: Vec<String>,
    /// The gold letter, "A".."D".
    pub answer: String,
    /// A worked rationale (CoT exemplars only).
    #[serde(default)]
    pub rationale: Option<String>,
    /// The subject a CoT exemplar belongs to; exemplars without one serve every subject.
    #[serde(default)]
    pub subject: Option<String>,
}

/// How MMLU direct prompts are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MmluAnswering {
    /// First-token logits of "A".."D" (evaluate_flan.py).
    #[default]
    Rank,
    /// Greedy generation; the output must be a letter.
    Generate,
    /// Sum of log-probabilities of each letter (EOS included) as the whole target.
    Score,
}

/// Reads one subject CSV (no header; question, A, B, C, D, answer).
pub fn read_csv(path: &Path) -> Result<Vec<MmluQuestion>> {
    let text = read_to_string(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(i + 1, |p| p.line() as usize);
            Error::parse(path, line, format!("bad CSV record: {e}"))
        })?;
        let line = record.position().map_or(i + 1, |p| p.line() as usize);
        if record.len() != 6 {
            return Err(Error::parse(
                path,
                line,
                format!(
                    "expected 6 fields (question, A, B, C, D, answer), found {}",
                    record.len()
                ),
            ));
        }
        let answer = record[5].trim().to_string();
        if mmlu_letter(&answer).as_deref() != Some(answer.as_str()) {
            return Err(Error::parse(
                path,
                line,
                format!("expected an answer letter A-D, found {answer:?}"),
            ));
        }
        out.push(MmluQuestion {
            question: record[0].to_string(),
            choices: (1..5).map(|j| record[j].to_string()).collect(),
            answer,
            rationale: None,
            subject: None,
        });
    }
    Ok(out)
}

/// Reads CoT exemplars: JSONL with `question`, `choices` (4), `answer` (letter), `rationale`.
pub fn read_cot_exemplars(path: &Path) -> Result<Vec<MmluQuestion>> {
    let text = read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: MmluQuestion = serde_json::from_str(line).map_err(|e| {
            Error::parse(
                path,
                i + 1,
                format!(
                    "expected {{\"question\", \"choices\": [4], \"answer\", \"rationale\"}}: {e}"
                ),
            )
        })?;
        if q.choices.len() != 4 || q.rationale.is_none() || mmlu_letter(&q.answer).is_none() {
            return Err(Error::parse(
                path,
                i + 1,
                "expected 4 choices, a rationale and an answer letter A-D",
            ));
        }
        out.push(q);
    }
    Ok(out)
}

/// The subjects of a released MMLU directory (`test/<subject>_test.csv`), sorted.
pub fn subjects(mmlu_dir: &Path) -> Result<Vec<String>> {
    let test = mmlu_dir.join("test");
    let entries = std::fs::read_dir(&test).map_err(|e| Error::io(&test, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| Error::io(&test, e))?.file_name();
        if let Some(subject) = name.to_str().and_then(|n| n.strip_suffix("_test.csv")) {
            names.push(subject.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The header line of `evaluate_flan.py` for a subject such as `abstract_algebra`.
pub fn header(subject: &str) -> String {
    let words: String = subject.split('_').map(|w| format!(" {w}")).collect();
    format!("The following are multiple choice questions (with answers) about {words}.\n\n")
}

fn direct_example(q: &MmluQuestion, with_answer: bool) -> String {
    let mut s = q.question.clone();
    for (letter, choice) in MMLU_LETTERS.iter().zip(&q.choices) {
        s.push_str(&format!("\n{letter}. {choice}"));
    }
    s.push_str("\nAnswer:");
    if with_answer {
        s.push_str(&format!(" {}\n\n", q.answer));
    }
    s
}

fn cot_example(q: &MmluQuestion, with_answer: bool) -> String {
    let options: Vec<String> = MMLU_LETTERS
        .iter()
        .zip(&q.choices)
        .map(|(l, c)| format!("({l}) {c}"))
        .collect();
    let mut s = format!(
        "Q: {}\n{}\nA: Let's think step by step.",
        q.question.trim(),
        options.join(" ")
    );
    if with_answer {
        let rationale = q.rationale.as_deref().unwrap_or("").trim();
        s.push_str(&format!(" {rationale} The answer is ({}).\n\n", q.answer));
    }
    s
}

/// The `k`-shot prompt for `query`.
pub fn prompt(
    subject: &str,
    exemplars: &[MmluQuestion],
    k: usize,
    query: &MmluQuestion,
    mode: Mode,
) -> String {
    let mut p = header(subject);
    let k = k.min(exemplars.len());
    match mode {
        Mode::Direct => {
            for e in &exemplars[..k] {
                p.push_str(&direct_example(e, true));
            }
            p.push_str(&direct_example(query, false));
        }
        Mode::Cot | Mode::ZeroShotCot => {
            for e in &exemplars[..k] {
                p.push_str(&cot_example(e, true));
            }
            p.push_str(&cot_example(query, false));
        }
    }
    p
}

/// The prompt with as many of the first `k` exemplars as fit in `budget` tokens (dropping from
/// the end, as evaluate_flan.py does), and the number kept. When even zero exemplars do not fit,
/// the zero-shot prompt is returned (the model truncates).
pub fn prompt_within_budget(
    subject: &str,
    exemplars: &[MmluQuestion],
    k: usize,
    query: &MmluQuestion,
    mode: Mode,
    budget: usize,
    count_tokens: &mut dyn FnMut(&str) -> Result<usize>,
) -> Result<(String, usize)> {
    let mut k = k.min(exemplars.len());
    loop {
        let p = prompt(subject, exemplars, k, query, mode);
        if k == 0 || count_tokens(&p)? <= budget {
            return Ok((p, k));
        }
        k -= 1;
    }
}

/// Settings of MMLU item building.
#[derive(Debug, Clone)]
pub struct MmluOptions<'a> {
    /// Prompting mode.
    pub mode: Mode,
    /// Exemplars per prompt before trimming (5).
    pub shots: usize,
    /// Test split file stem (`test`, or `val`).
    pub split: &'a str,
    /// CoT exemplars file (required for `Mode::Cot`); keyed by `subject` when present.
    pub cot_exemplars: Option<&'a [MmluQuestion]>,
    /// Rank classification or generation for direct prompts.
    pub answering: MmluAnswering,
    /// Prompt budget in tokens.
    pub budget: usize,
    /// At most this many questions per subject.
    pub limit: Option<usize>,
}

/// The items of one subject of a released MMLU directory (`dev/`, and `test/` or `val/`).
pub fn build_items(
    mmlu_dir: &Path,
    subject: &str,
    opts: &MmluOptions<'_>,
    count_tokens: &mut dyn FnMut(&str) -> Result<usize>,
) -> Result<Vec<EvalItem>> {
    let split = opts.split;
    let test = read_csv(&mmlu_dir.join(split).join(format!("{subject}_{split}.csv")))?;
    // The dev split is read only when its exemplars are used.
    let dev = match opts.mode {
        Mode::Direct => read_csv(&mmlu_dir.join("dev").join(format!("{subject}_dev.csv")))?,
        _ => Vec::new(),
    };
    subject_items(subject, &test, &dev, opts, count_tokens)
}

/// A question from a hub row of `cais/mmlu` (`question`, `choices`: 4 strings, `answer`: the
/// class index 0-3 of A-D).
pub fn question_from_row(row: &crate::parquet_rows::RowRef<'_>) -> Result<MmluQuestion> {
    let choices = row.str_list("choices")?;
    if choices.len() != 4 {
        return Err(row.error(format!(
            "column \"choices\": expected 4 choices, found {}",
            choices.len()
        )));
    }
    let index = row.int("answer")?;
    let answer = usize::try_from(index)
        .ok()
        .and_then(|i| MMLU_LETTERS.get(i))
        .ok_or_else(|| {
            row.error(format!(
                "column \"answer\": expected a class index 0-3 (A-D), found {index}"
            ))
        })?;
    Ok(MmluQuestion {
        question: row.str("question")?.to_string(),
        choices,
        answer: answer.to_string(),
        rationale: None,
        subject: None,
    })
}

/// The items of one subject from its scored questions and its dev questions (the direct
/// exemplars), however they were read.
pub fn subject_items(
    subject: &str,
    test: &[MmluQuestion],
    dev: &[MmluQuestion],
    opts: &MmluOptions<'_>,
    count_tokens: &mut dyn FnMut(&str) -> Result<usize>,
) -> Result<Vec<EvalItem>> {
    let exemplars = match opts.mode {
        Mode::Direct => dev.to_vec(),
        Mode::Cot => opts
            .cot_exemplars
            .ok_or_else(|| {
                Error::Config(
                    "MMLU CoT needs exemplars with rationales (--exemplars FILE.jsonl)".into(),
                )
            })?
            .iter()
            .filter(|e| e.subject.as_deref().is_none_or(|s| s == subject))
            .cloned()
            .collect(),
        Mode::ZeroShotCot => Vec::new(),
    };
    let shots = if opts.mode == Mode::ZeroShotCot {
        0
    } else {
        opts.shots
    };
    let n = opts.limit.unwrap_or(usize::MAX).min(test.len());
    let mut items = Vec::with_capacity(n);
    for (index, q) in test[..n].iter().enumerate() {
        let (prompt, n_shot) = prompt_within_budget(
            subject,
            &exemplars,
            shots,
            q,
            opts.mode,
            opts.budget,
            count_tokens,
        )?;
        let letters = |rank_by| Choices {
            candidates: MMLU_LETTERS.iter().map(|l| l.to_string()).collect(),
            rank_by,
        };
        let (rule, choices) = match (opts.mode, opts.answering) {
            (Mode::Direct, MmluAnswering::Rank) => (
                AnswerRule::MmluLetter,
                Some(letters(RankBy::FirstTokenLogits)),
            ),
            (Mode::Direct, MmluAnswering::Score) => (
                AnswerRule::MmluLetter,
                Some(letters(RankBy::SequenceLogProb)),
            ),
            (Mode::Direct, MmluAnswering::Generate) => (AnswerRule::MmluLetter, None),
            _ => (AnswerRule::MmluCot, None),
        };
        items.push(EvalItem {
            task: format!("mmlu_{subject}"),
            index,
            prompt,
            targets: vec![q.answer.clone()],
            rule,
            n_shot,
            choices,
            mode: opts.mode,
            options: MMLU_LETTERS.len(),
            example: None,
            exposure: None,
            reference: None,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, answer: &str) -> MmluQuestion {
        MmluQuestion {
            question: text.into(),
            choices: vec!["w".into(), "x".into(), "y".into(), "z".into()],
            answer: answer.into(),
            rationale: Some("Because.".into()),
            subject: None,
        }
    }

    #[test]
    fn direct_prompt_is_evaluate_flan_byte_for_byte() {
        let p = prompt(
            "high_school_physics",
            &[q("Q1?", "B")],
            5,
            &q("Q2?", "C"),
            Mode::Direct,
        );
        assert_eq!(
            p,
            "The following are multiple choice questions (with answers) about  high school physics.\n\n\
             Q1?\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\n\
             Q2?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
        );
    }

    #[test]
    fn cot_prompt_has_rationales_and_cue() {
        let p = prompt("anatomy", &[q("Q1?", "B")], 5, &q("Q2?", "C"), Mode::Cot);
        assert!(p.ends_with("Q: Q2?\n(A) w (B) x (C) y (D) z\nA: Let's think step by step."));
        assert!(p.contains("A: Let's think step by step. Because. The answer is (B).\n\n"));
    }

    #[test]
    fn budget_drops_trailing_exemplars() {
        let ex: Vec<_> = (0..5)
            .map(|i| q(&format!("E{i} a b c d e f g h"), "A"))
            .collect();
        let mut words = |s: &str| Ok(crate::text::py_split(s).count());
        let full = prompt("anatomy", &ex, 5, &q("Q?", "A"), Mode::Direct);
        let full_len = words(&full).unwrap();
        let (p, k) = prompt_within_budget(
            "anatomy",
            &ex,
            5,
            &q("Q?", "A"),
            Mode::Direct,
            full_len - 1,
            &mut words,
        )
        .unwrap();
        assert_eq!(k, 4);
        assert!(p.contains("E3") && !p.contains("E4"));
        let (_, k) = prompt_within_budget(
            "anatomy",
            &ex,
            5,
            &q("Q?", "A"),
            Mode::Direct,
            1,
            &mut words,
        )
        .unwrap();
        assert_eq!(k, 0);
    }

    #[test]
    fn csv_reader_checks_fields_and_letters() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "\"What, then?\",1,2,3,4,B\nQ2,a,b,c,d,D\n").unwrap();
        let qs = read_csv(&good).unwrap();
        assert_eq!(qs[0].question, "What, then?");
        assert_eq!(qs[1].answer, "D");
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "Q1,a,b,c,d,A\nQ2,a,b,c,d,E\n").unwrap();
        let err = read_csv(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.csv:2:") && err.contains("A-D"), "{err}");
        std::fs::write(&bad, "Q1,a,b,c,A\n").unwrap();
        let err = read_csv(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.csv:1:") && err.contains("6 fields"),
            "{err}"
        );
    }
}
