//! Grade-school math: GSM8K (`test.jsonl`, `{"question", "answer": "... #### 18"}`) and MGSM
//! (`mgsm_<lang>.tsv`, question TAB integer answer, 11 languages), with 8-shot chain-of-thought
//! prompts.
//!
//! Exemplars are a JSONL file chosen by the user or, by default, the first 8 GSM8K training
//! problems with their worked solutions (calculator annotations `<<...>>` removed, lines joined
//! by spaces). Prompt: `"Q: question\nA: rationale The answer is N."` per exemplar, blank-line
//! separated, then `"Q: question\nA:"`. Direct mode keeps `"A: The answer is N."`; zero-shot CoT
//! is `"Q: question\nA: Let's think step by step."`. The answer is the number after the answer
//! phrase (English, and for MGSM the language's own phrase), else the last number.

use crate::error::read_to_string;
use crate::extract::{canonical_number, gsm8k_target, MATH_ANSWER_PHRASE};
use crate::item::{AnswerRule, EvalItem, Mode};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The MGSM languages, as in the file names.
pub const MGSM_LANGUAGES: [&str; 11] = [
    "bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh",
];

/// "The answer is" in each MGSM language, as the MGSM exemplars phrase it.
pub fn answer_phrase(language: &str) -> Option<&'static str> {
    Some(match language {
        "en" => "The answer is",
        "bn" => "উত্তর হল",
        "de" => "Die Antwort lautet",
        "es" => "La respuesta es",
        "fr" => "La réponse est",
        "ja" => "答えは",
        "ru" => "Ответ —",
        "sw" => "Jibu ni",
        "te" => "సమాధానం",
        "th" => "คำตอบคือ",
        "zh" => "答案是",
        _ => return None,
    })
}

/// Answer phrases to look for in a `language` output: English (our exemplars are English) and
/// the language's own; every known phrase when the language is unknown.
pub fn answer_phrases(language: Option<&str>) -> Vec<String> {
    let mut phrases = vec![MATH_ANSWER_PHRASE.to_string()];
    match language.and_then(answer_phrase) {
        Some(p) if p != MATH_ANSWER_PHRASE => phrases.push(p.to_string()),
        Some(_) => {}
        None => phrases.extend(
            MGSM_LANGUAGES
                .iter()
                .filter_map(|l| answer_phrase(l))
                .filter(|p| *p != MATH_ANSWER_PHRASE)
                .map(str::to_string),
        ),
    }
    phrases
}

/// One math problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MathProblem {
    /// The question.
    pub question: String,
    /// The answer, canonical (see [`canonical_number`]).
    pub answer: String,
}

/// One worked exemplar.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MathExemplar {
    /// The question.
    pub question: String,
    /// The worked solution, without the final answer sentence.
    pub rationale: String,
    /// The final answer as written.
    pub answer: String,
}

#[derive(Deserialize)]
struct Gsm8kLine {
    question: String,
    answer: String,
}

/// A GSM8K solution as a rationale: calculator annotations removed, the `####` line dropped,
/// lines joined with spaces.
pub fn gsm8k_rationale(solution: &str) -> String {
    let body = solution.rsplit_once("####").map_or(solution, |(b, _)| b);
    let mut clean = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(open) = rest.find("<<") {
        clean.push_str(&rest[..open]);
        match rest[open..].find(">>") {
            Some(close) => rest = &rest[open + close + 2..],
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    clean.push_str(rest);
    clean
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_gsm8k_lines(path: &Path) -> Result<Vec<(usize, Gsm8kLine)>> {
    let text = read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Gsm8kLine = serde_json::from_str(line).map_err(|e| {
            Error::parse(
                path,
                i + 1,
                format!("expected {{\"question\", \"answer\"}}: {e}"),
            )
        })?;
        out.push((i + 1, rec));
    }
    Ok(out)
}

/// A GSM8K record (`question`, `answer` = solution ending `#### N`) as a problem; `None` when the
/// answer has no `#### <number>`. One definition for the JSONL file and the hub's Parquet rows.
pub fn gsm8k_problem(question: &str, answer: &str) -> Option<MathProblem> {
    Some(MathProblem {
        question: question.to_string(),
        answer: gsm8k_target(answer)?,
    })
}

/// A GSM8K record as a worked exemplar (its solution as the rationale); `None` without `####`.
pub fn gsm8k_exemplar(question: &str, answer: &str) -> Option<MathExemplar> {
    let at = answer.rfind("####")?;
    Some(MathExemplar {
        question: question.to_string(),
        rationale: gsm8k_rationale(answer),
        answer: answer[at + 4..].trim().to_string(),
    })
}

/// Reads GSM8K JSONL (the answer must end with `#### N`).
pub fn read_gsm8k(path: &Path) -> Result<Vec<MathProblem>> {
    read_gsm8k_lines(path)?
        .into_iter()
        .map(|(line, rec)| {
            gsm8k_problem(&rec.question, &rec.answer).ok_or_else(|| {
                Error::parse(
                    path,
                    line,
                    "expected the answer to end with `#### <number>`",
                )
            })
        })
        .collect()
}

/// The first `n` GSM8K problems of `path` as worked exemplars.
pub fn gsm8k_exemplars(path: &Path, n: usize) -> Result<Vec<MathExemplar>> {
    let lines = read_gsm8k_lines(path)?;
    lines
        .into_iter()
        .take(n)
        .map(|(line, rec)| {
            gsm8k_exemplar(&rec.question, &rec.answer).ok_or_else(|| {
                Error::parse(
                    path,
                    line,
                    "expected the answer to end with `#### <number>`",
                )
            })
        })
        .collect()
}

/// Reads exemplars from JSONL: `{"question", "rationale", "answer"}` per line, or GSM8K lines
/// `{"question", "answer": "... #### N"}`.
pub fn read_exemplars(path: &Path) -> Result<Vec<MathExemplar>> {
    let text = read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(e) = serde_json::from_str::<MathExemplar>(line) {
            out.push(e);
            continue;
        }
        let rec: Gsm8kLine = serde_json::from_str(line).map_err(|e| {
            Error::parse(
                path,
                i + 1,
                format!(
                    "expected {{\"question\", \"rationale\", \"answer\"}} or GSM8K \
                     {{\"question\", \"answer\": \"... #### N\"}}: {e}"
                ),
            )
        })?;
        let at = rec.answer.rfind("####").ok_or_else(|| {
            Error::parse(
                path,
                i + 1,
                "expected a rationale, or an answer ending `#### <number>`",
            )
        })?;
        out.push(MathExemplar {
            rationale: gsm8k_rationale(&rec.answer),
            answer: rec.answer[at + 4..].trim().to_string(),
            question: rec.question,
        });
    }
    Ok(out)
}

/// Reads an MGSM TSV (question TAB answer, no header).
pub fn read_mgsm(path: &Path) -> Result<Vec<MathProblem>> {
    let text = read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 2 {
            return Err(Error::parse(
                path,
                i + 1,
                format!(
                    "expected 2 tab-separated fields (question, answer), found {}",
                    fields.len()
                ),
            ));
        }
        let answer = canonical_number(fields[1]).ok_or_else(|| {
            Error::parse(
                path,
                i + 1,
                format!("expected a numeric answer, found {:?}", fields[1]),
            )
        })?;
        out.push(MathProblem {
            question: fields[0].to_string(),
            answer,
        });
    }
    Ok(out)
}

/// The prompt for `question`.
pub fn prompt(exemplars: &[MathExemplar], question: &str, mode: Mode) -> String {
    let mut p = String::new();
    match mode {
        Mode::Cot => {
            for e in exemplars {
                p.push_str(&format!(
                    "Q: {}\nA: {} {MATH_ANSWER_PHRASE} {}.\n\n",
                    e.question, e.rationale, e.answer
                ));
            }
            p.push_str(&format!("Q: {question}\nA:"));
        }
        Mode::Direct => {
            for e in exemplars {
                p.push_str(&format!(
                    "Q: {}\nA: {MATH_ANSWER_PHRASE} {}.\n\n",
                    e.question, e.answer
                ));
            }
            p.push_str(&format!("Q: {question}\nA:"));
        }
        Mode::ZeroShotCot => p.push_str(&format!("Q: {question}\nA: Let's think step by step.")),
    }
    p
}

/// Items for `problems` of one task (`gsm8k` or `mgsm_<lang>`), dropping trailing exemplars
/// while the prompt exceeds `budget` tokens.
pub fn build_items(
    task: &str,
    language: Option<&str>,
    problems: &[MathProblem],
    exemplars: &[MathExemplar],
    mode: Mode,
    budget: usize,
    count_tokens: &mut dyn FnMut(&str) -> Result<usize>,
) -> Result<Vec<EvalItem>> {
    let shots = if mode == Mode::ZeroShotCot {
        0
    } else {
        exemplars.len()
    };
    let rule = AnswerRule::Math {
        phrases: answer_phrases(language),
    };
    let mut items = Vec::with_capacity(problems.len());
    for (index, problem) in problems.iter().enumerate() {
        let mut k = shots;
        let prompt = loop {
            let p = prompt(&exemplars[..k], &problem.question, mode);
            if k == 0 || count_tokens(&p)? <= budget {
                break p;
            }
            k -= 1;
        };
        items.push(EvalItem {
            task: task.to_string(),
            index,
            prompt,
            targets: vec![problem.answer.clone()],
            rule: rule.clone(),
            n_shot: k,
            choices: None,
            mode,
            options: 0,
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

    #[test]
    fn rationale_drops_annotations_and_answer_line() {
        let s = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18";
        assert_eq!(
            gsm8k_rationale(s),
            "Janet sells 16 - 3 - 4 = 9 duck eggs. She makes 9 * 2 = $18."
        );
    }

    #[test]
    fn prompts_in_all_modes() {
        let ex = [MathExemplar {
            question: "1+1?".into(),
            rationale: "1 plus 1 is 2.".into(),
            answer: "2".into(),
        }];
        assert_eq!(
            prompt(&ex, "2+2?", Mode::Cot),
            "Q: 1+1?\nA: 1 plus 1 is 2. The answer is 2.\n\nQ: 2+2?\nA:"
        );
        assert_eq!(
            prompt(&ex, "2+2?", Mode::Direct),
            "Q: 1+1?\nA: The answer is 2.\n\nQ: 2+2?\nA:"
        );
        assert_eq!(
            prompt(&ex, "2+2?", Mode::ZeroShotCot),
            "Q: 2+2?\nA: Let's think step by step."
        );
    }

    #[test]
    fn phrases_per_language() {
        assert_eq!(answer_phrases(Some("en")), ["The answer is"]);
        assert_eq!(
            answer_phrases(Some("de")),
            ["The answer is", "Die Antwort lautet"]
        );
        assert_eq!(answer_phrases(None).len(), 11);
    }

    #[test]
    fn mgsm_reader_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mgsm_xx.tsv");
        std::fs::write(&p, "How many?\t1,000\nBroken line\n").unwrap();
        let err = read_mgsm(&p).unwrap_err().to_string();
        assert!(
            err.contains("mgsm_xx.tsv:2:") && err.contains("2 tab-separated"),
            "{err}"
        );
        std::fs::write(&p, "How many?\t1,000\n").unwrap();
        assert_eq!(read_mgsm(&p).unwrap()[0].answer, "1000");
    }
}
