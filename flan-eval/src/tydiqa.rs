//! TyDiQA GoldP: extractive QA over a gold passage, scored by SQuAD-normalised exact match and
//! token F1 (the SQuAD v1.1 script the TyDiQA authors point GoldP users to), per language.
//!
//! Input: the released SQuAD-format JSON, or JSONL with one question per line:
//! `{"id": "finnish-123-0", "context" | "passage": "...", "question": "...", "answers": ...}`
//! where `answers` is `{"text": [...], "answer_start": [...]}` (HF datasets), a list of
//! `{"text": ...}` (SQuAD) or a list of strings. The language is the `language` field, else the
//! `id` prefix before the first `-` (as in the released ids).
//!
//! One-shot prompt: an exemplar from the same language (the first other question of the file),
//! `"Passage: p\nQuestion: q\nAnswer: a\n\n"`, then the query ending `"Answer:"`. The exemplar
//! is dropped when the prompt exceeds the token budget.

use crate::error::read_to_string;
use crate::item::{AnswerRule, EvalItem, Mode};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// One TyDiQA GoldP question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TydiqaExample {
    /// Record id.
    pub id: String,
    /// Language name (e.g. `finnish`).
    pub language: String,
    /// The gold passage.
    pub passage: String,
    /// The question.
    pub question: String,
    /// Gold answers (at least one).
    pub answers: Vec<String>,
}

fn answers_of(v: &Value) -> Option<Vec<String>> {
    let texts: Vec<String> = match v {
        Value::Object(o) => o
            .get("text")?
            .as_array()?
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("text")?.as_str().map(str::to_string),
                _ => None,
            })
            .collect::<Option<_>>()?,
        _ => return None,
    };
    Some(texts)
}

/// Reads GoldP data: the released SQuAD-format JSON (`{"data": [{"paragraphs": [{"context",
/// "qas": [{"id", "question", "answers": [{"text"}]}]}]}]}`) or JSONL, one question per line.
pub fn read_jsonl(path: &Path) -> Result<Vec<TydiqaExample>> {
    let text = read_to_string(path)?;
    if let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(&text) {
        if let Some(data) = doc.get("data") {
            return read_squad_format(data, path);
        }
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::parse(path, i + 1, format!("expected a JSON object: {e}")))?;
        let example = example_from_json(&v, &format!("line-{}", i + 1))
            .map_err(|msg| Error::parse(path, i + 1, msg))?;
        out.push(example);
    }
    Ok(out)
}

/// A question from one record: a JSONL line, or a hub row of
/// `google-research-datasets/tydiqa` `secondary_task` (`id`, `title`, `context`, `question`,
/// `answers`: `{"text", "answer_start"}`), so both layouts give the same examples. `missing_id`
/// names a record without an `id`; the error says what was expected.
pub fn example_from_json(
    v: &Value,
    missing_id: &str,
) -> std::result::Result<TydiqaExample, String> {
    let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    let id = field("id").unwrap_or_else(|| missing_id.to_string());
    let passage = field("context")
        .or_else(|| field("passage"))
        .ok_or("expected a \"context\" (or \"passage\") string")?;
    let question = field("question").ok_or("expected a \"question\" string")?;
    let answers = v
        .get("answers")
        .and_then(answers_of)
        .ok_or("expected \"answers\": {\"text\": [...]}, [{\"text\"}] or [strings]")?;
    if answers.is_empty() {
        return Err("expected at least one gold answer".into());
    }
    let language = field("language")
        .or_else(|| id.split_once('-').map(|(l, _)| l.to_string()))
        .ok_or("expected a \"language\" field or an id like \"finnish-...\"")?;
    Ok(TydiqaExample {
        id,
        language,
        passage,
        question,
        answers,
    })
}

fn read_squad_format(data: &Value, path: &Path) -> Result<Vec<TydiqaExample>> {
    let bad = |msg: String| Error::parse(path, 0, msg);
    let mut out = Vec::new();
    let articles = data
        .as_array()
        .ok_or_else(|| bad("expected \"data\" to be a list of articles".into()))?;
    for (a, article) in articles.iter().enumerate() {
        let paragraphs = article["paragraphs"]
            .as_array()
            .ok_or_else(|| bad(format!("data[{a}]: expected \"paragraphs\"")))?;
        for (p, paragraph) in paragraphs.iter().enumerate() {
            let at = format!("data[{a}].paragraphs[{p}]");
            let context = paragraph["context"]
                .as_str()
                .ok_or_else(|| bad(format!("{at}: expected a \"context\" string")))?;
            let qas = paragraph["qas"]
                .as_array()
                .ok_or_else(|| bad(format!("{at}: expected \"qas\"")))?;
            for (q, qa) in qas.iter().enumerate() {
                let at = format!("{at}.qas[{q}]");
                let id = qa["id"]
                    .as_str()
                    .ok_or_else(|| bad(format!("{at}: expected an \"id\" string")))?;
                let question = qa["question"]
                    .as_str()
                    .ok_or_else(|| bad(format!("{at}: expected a \"question\" string")))?;
                let answers = answers_of(&qa["answers"])
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| bad(format!("{at}: expected \"answers\": [{{\"text\"}}]")))?;
                let language = id
                    .split_once('-')
                    .map(|(l, _)| l.to_string())
                    .ok_or_else(|| bad(format!("{at}: expected an id like \"finnish-...\"")))?;
                out.push(TydiqaExample {
                    id: id.to_string(),
                    language,
                    passage: context.to_string(),
                    question: question.to_string(),
                    answers,
                });
            }
        }
    }
    Ok(out)
}

fn block(e: &TydiqaExample) -> String {
    format!("Passage: {}\nQuestion: {}\nAnswer:", e.passage, e.question)
}

/// The one-shot prompt for `query` with `exemplar` (none: zero-shot).
pub fn prompt(exemplar: Option<&TydiqaExample>, query: &TydiqaExample) -> String {
    match exemplar {
        Some(e) => format!("{} {}\n\n{}", block(e), e.answers[0], block(query)),
        None => block(query),
    }
}

/// Items, one task per language (`tydiqa_<language>`), in file order.
pub fn build_items(
    examples: &[TydiqaExample],
    mode: Mode,
    limit: Option<usize>,
    budget: usize,
    count_tokens: &mut dyn FnMut(&str) -> Result<usize>,
) -> Result<Vec<EvalItem>> {
    if mode != Mode::Direct {
        return Err(Error::Unsupported(
            "TyDiQA GoldP is evaluated direct (one-shot, answer only); CoT modes do not apply"
                .into(),
        ));
    }
    let mut per_language: std::collections::HashMap<&str, usize> = Default::default();
    let mut items = Vec::new();
    for (i, query) in examples.iter().enumerate() {
        let seen = per_language.entry(&query.language).or_default();
        if limit.is_some_and(|l| *seen >= l) {
            continue;
        }
        let index = *seen;
        *seen += 1;
        let exemplar = examples
            .iter()
            .enumerate()
            .find(|(j, e)| *j != i && e.language == query.language)
            .map(|(_, e)| e);
        let mut p = prompt(exemplar, query);
        let mut n_shot = usize::from(exemplar.is_some());
        if n_shot == 1 && count_tokens(&p)? > budget {
            p = prompt(None, query);
            n_shot = 0;
        }
        items.push(EvalItem {
            task: format!("tydiqa_{}", query.language),
            index,
            prompt: p,
            targets: query.answers.clone(),
            rule: AnswerRule::Squad,
            n_shot,
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
    fn reads_all_answer_shapes_and_builds_one_shot_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("goldp.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"id": "finnish-1-0", "context": "P1", "question": "Q1", "answers": {"text": ["A1"], "answer_start": [0]}}"#, "\n",
                r#"{"id": "x", "language": "finnish", "passage": "P2", "question": "Q2", "answers": [{"text": "A2"}]}"#, "\n",
                r#"{"id": "swahili-3-0", "context": "P3", "question": "Q3", "answers": ["A3", "A3b"]}"#, "\n",
            ),
        )
        .unwrap();
        let ex = read_jsonl(&p).unwrap();
        assert_eq!(ex[0].language, "finnish");
        assert_eq!(ex[2].answers, ["A3", "A3b"]);
        let mut words = |s: &str| Ok(crate::text::py_split(s).count());
        let items = build_items(&ex, Mode::Direct, None, 1000, &mut words).unwrap();
        assert_eq!(
            items[0].prompt,
            "Passage: P2\nQuestion: Q2\nAnswer: A2\n\nPassage: P1\nQuestion: Q1\nAnswer:"
        );
        assert_eq!(items[0].n_shot, 1);
        // Swahili has no other question: zero-shot.
        assert_eq!(items[2].n_shot, 0);
        assert_eq!(items[2].task, "tydiqa_swahili");
        assert!(build_items(&ex, Mode::Cot, None, 1000, &mut words).is_err());
    }

    #[test]
    fn reads_the_released_squad_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tydiqa-goldp-v1.1-dev.json");
        std::fs::write(
            &p,
            r#"{"data": [{"paragraphs": [{"context": "C", "qas": [{"id": "arabic-7-0", "question": "Q", "answers": [{"text": "A", "answer_start": 0}]}]}]}], "version": "1.1"}"#,
        )
        .unwrap();
        let ex = read_jsonl(&p).unwrap();
        assert_eq!(ex.len(), 1);
        assert_eq!(
            (ex[0].language.as_str(), ex[0].answers[0].as_str()),
            ("arabic", "A")
        );
    }

    #[test]
    fn bad_records_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        std::fs::write(
            &p,
            "{\"id\": \"arabic-1\", \"context\": \"c\", \"question\": \"q\"}\n",
        )
        .unwrap();
        let err = read_jsonl(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad.jsonl:1:") && err.contains("answers"),
            "{err}"
        );
    }
}
