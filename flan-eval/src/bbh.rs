//! BIG-Bench Hard: task files, the authors' chain-of-thought prompt files, and the prompts built
//! from them.
//!
//! Layout as released: `tasks/<task>.json` = `{"examples": [{"input", "target"}]}` and
//! `cot-prompts/<task>.txt` = a canary line, a `-----` line, then the task description and three
//! exemplars `Q: ...\nA: Let's think step by step. ... So the answer is X.` separated by blank
//! lines.
//!
//! * CoT prompt: everything after the `-----` line, then `"\n\nQ: " + input + "\nA: Let's think
//!   step by step."` (byte for byte the prompts of the authors' published outputs).
//! * Direct prompt: the description and the same three questions with each rationale replaced by
//!   its answer (`A: X`), then `"\n\nQ: " + input + "\nA:"`.
//! * Zero-shot CoT: the description, then `"Q: " + input + "\nA: Let's think step by step."`.

use crate::error::read_to_string;
use crate::extract::bbh_cot_answer;
use crate::item::{AnswerRule, EvalItem, Mode};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The cue that opens every BBH chain-of-thought answer.
pub const COT_CUE: &str = "Let's think step by step.";

/// One BBH example.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BbhExample {
    /// The question.
    pub input: String,
    /// The gold answer, compared verbatim.
    pub target: String,
}

/// One BBH task.
#[derive(Debug, Clone, PartialEq)]
pub struct BbhTask {
    /// Task name (the file stem, e.g. `date_understanding`).
    pub name: String,
    /// The examples, in file order.
    pub examples: Vec<BbhExample>,
}

#[derive(Deserialize)]
struct TaskFile {
    examples: Vec<BbhExample>,
}

/// Reads one task file.
pub fn read_task(path: &Path) -> Result<BbhTask> {
    let text = read_to_string(path)?;
    let file: TaskFile = serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            path,
            e.line(),
            format!("expected {{\"examples\": [{{\"input\", \"target\"}}]}}: {e}"),
        )
    })?;
    let name = file_stem(path)?;
    Ok(BbhTask {
        name,
        examples: file.examples,
    })
}

fn file_stem(path: &Path) -> Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::parse(path, 0, "file name is not UTF-8"))
}

/// Task names with both a task file and a CoT prompt file under `bbh_dir`, sorted.
pub fn task_names(bbh_dir: &Path) -> Result<Vec<String>> {
    let tasks = bbh_dir.join("tasks");
    let entries = std::fs::read_dir(&tasks).map_err(|e| Error::io(&tasks, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&tasks, e))?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            names.push(file_stem(&path)?);
        }
    }
    names.sort();
    Ok(names)
}

/// One exemplar of a CoT prompt file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CotExemplar {
    /// The question (after `Q: `).
    pub question: String,
    /// The answer text after `A: ` (cue, rationale and answer sentence).
    pub answer_text: String,
    /// The final answer (what follows "So the answer is ").
    pub answer: String,
}

/// A parsed CoT prompt file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CotPromptFile {
    /// Everything after the `-----` line, verbatim.
    pub body: String,
    /// The task description (the body before the first exemplar).
    pub description: String,
    /// The exemplars, in order.
    pub exemplars: Vec<CotExemplar>,
}

impl CotPromptFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        Self::parse(&read_to_string(path)?, path)
    }

    /// Parses the text of a CoT prompt file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let dashes = text
            .find("-----\n")
            .ok_or_else(|| Error::parse(path, 0, "expected a `-----` line before the prompt"))?;
        let body = &text[dashes + "-----\n".len()..];
        let body_line = text[..dashes].matches('\n').count() + 2;
        let mut blocks = body.split("\n\nQ: ");
        let description = blocks.next().unwrap_or_default().to_string();
        let mut exemplars = Vec::new();
        for block in blocks {
            let line = body_line + body[..body.find(block).unwrap_or(0)].matches('\n').count();
            let (question, answer_text) = block.rsplit_once("\nA: ").ok_or_else(|| {
                Error::parse(path, line, "expected `A: ` after the exemplar's question")
            })?;
            if !answer_text.starts_with(COT_CUE) {
                return Err(Error::parse(
                    path,
                    line,
                    format!("expected the answer to start with {COT_CUE:?}"),
                ));
            }
            let answer = bbh_cot_answer(answer_text).ok_or_else(|| {
                Error::parse(path, line, "expected \"So the answer is \" in the exemplar")
            })?;
            exemplars.push(CotExemplar {
                question: question.to_string(),
                answer_text: answer_text.to_string(),
                answer,
            });
        }
        if exemplars.is_empty() {
            return Err(Error::parse(
                path,
                body_line,
                "expected exemplars `\\n\\nQ: ...`",
            ));
        }
        Ok(CotPromptFile {
            body: body.to_string(),
            description,
            exemplars,
        })
    }

    /// The 3-shot chain-of-thought prompt for `input`.
    pub fn cot_prompt(&self, input: &str) -> String {
        format!("{}\n\nQ: {input}\nA: {COT_CUE}", self.body)
    }

    /// The 3-shot answer-only prompt for `input`.
    pub fn direct_prompt(&self, input: &str) -> String {
        let mut prompt = self.description.clone();
        for e in &self.exemplars {
            prompt.push_str(&format!("\n\nQ: {}\nA: {}", e.question, e.answer));
        }
        prompt.push_str(&format!("\n\nQ: {input}\nA:"));
        prompt
    }

    /// The zero-shot chain-of-thought prompt for `input`.
    pub fn zero_shot_cot_prompt(&self, input: &str) -> String {
        format!("{}\n\nQ: {input}\nA: {COT_CUE}", self.description)
    }
}

/// Where the BBH files of one task live.
pub fn task_paths(bbh_dir: &Path, task: &str) -> (PathBuf, PathBuf) {
    (
        bbh_dir.join("tasks").join(format!("{task}.json")),
        bbh_dir.join("cot-prompts").join(format!("{task}.txt")),
    )
}

/// The evaluation items of one task in `mode` (first `limit` examples when given).
pub fn build_items(
    bbh_dir: &Path,
    task: &str,
    mode: Mode,
    limit: Option<usize>,
) -> Result<Vec<EvalItem>> {
    let (task_path, prompt_path) = task_paths(bbh_dir, task);
    let data = read_task(&task_path)?;
    let prompts = CotPromptFile::read(&prompt_path)?;
    task_items(&data, Some(&prompts), mode, limit)
}

/// The CoT prompt file of `task` in a copy of the BBH repository: `dir/cot-prompts/<task>.txt`,
/// or `dir/<task>.txt` when `dir` is the `cot-prompts` directory itself.
pub fn prompt_file_in(dir: &Path, task: &str) -> PathBuf {
    let nested = dir.join("cot-prompts").join(format!("{task}.txt"));
    if nested.is_file() {
        nested
    } else {
        dir.join(format!("{task}.txt"))
    }
}

/// A BBH example from a hub row of `lukaemon/bbh` (`input`, `target`).
pub fn example_from_row(row: &crate::parquet_rows::RowRef<'_>) -> Result<BbhExample> {
    Ok(BbhExample {
        input: row.str("input")?.to_string(),
        target: row.str("target")?.to_string(),
    })
}

/// The items of a task however it was read. Without the authors' prompt file (the hub copy
/// has none), direct and zero-shot CoT prompts are zero-shot without the task description
/// (`"Q: input\nA:"`, `"Q: input\nA: Let's think step by step."`, as lm-evaluation-harness's
/// `bbh_zeroshot` and `bbh_cot_zeroshot`), and few-shot CoT is an error.
pub fn task_items(
    data: &BbhTask,
    prompts: Option<&CotPromptFile>,
    mode: Mode,
    limit: Option<usize>,
) -> Result<Vec<EvalItem>> {
    if mode == Mode::Cot && prompts.is_none() {
        return Err(Error::Config(format!(
            "BBH chain-of-thought needs the authors' CoT exemplars, which the hub copy does not \
             have: pass --bbh-prompts DIR, a copy of the BBH repository \
             (github.com/suzgunmirac/BIG-Bench-Hard) with cot-prompts/{}.txt",
            data.name
        )));
    }
    let task = &data.name;
    let n = limit.unwrap_or(usize::MAX).min(data.examples.len());
    Ok(data.examples[..n]
        .iter()
        .enumerate()
        .map(|(index, ex)| {
            let (prompt, rule, n_shot) = match (mode, prompts) {
                (Mode::Cot, Some(prompts)) => (
                    prompts.cot_prompt(&ex.input),
                    AnswerRule::BbhCot,
                    prompts.exemplars.len(),
                ),
                (Mode::Direct, Some(prompts)) => (
                    prompts.direct_prompt(&ex.input),
                    AnswerRule::BbhDirect,
                    prompts.exemplars.len(),
                ),
                (Mode::ZeroShotCot, Some(prompts)) => (
                    prompts.zero_shot_cot_prompt(&ex.input),
                    AnswerRule::BbhCot,
                    0,
                ),
                (Mode::Direct, None) => (format!("Q: {}\nA:", ex.input), AnswerRule::BbhDirect, 0),
                (_, None) => (
                    format!("Q: {}\nA: {COT_CUE}", ex.input),
                    AnswerRule::BbhCot,
                    0,
                ),
            };
            EvalItem {
                task: format!("bbh_{task}"),
                index,
                prompt,
                targets: vec![ex.target.clone()],
                rule,
                n_shot,
                choices: None,
                mode,
                options: 0,
                example: None,
                exposure: None,
                reference: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "canary\n-----\nDo things.\n\nQ: one?\nA: Let's think step by step.\nBecause. So the answer is (A).\n\nQ: two?\nOptions:\n(A) x\nA: Let's think step by step. Since. So the answer is no.";

    #[test]
    fn parses_and_builds_all_three_prompts() {
        let p = CotPromptFile::parse(FILE, Path::new("t.txt")).unwrap();
        assert_eq!(p.description, "Do things.");
        assert_eq!(p.exemplars.len(), 2);
        assert_eq!(p.exemplars[1].question, "two?\nOptions:\n(A) x");
        assert_eq!(p.exemplars[1].answer, "no");
        assert_eq!(
            p.cot_prompt("three?"),
            format!("{}\n\nQ: three?\nA: Let's think step by step.", &FILE[13..])
        );
        assert_eq!(
            p.direct_prompt("three?"),
            "Do things.\n\nQ: one?\nA: (A)\n\nQ: two?\nOptions:\n(A) x\nA: no\n\nQ: three?\nA:"
        );
        assert_eq!(
            p.zero_shot_cot_prompt("three?"),
            "Do things.\n\nQ: three?\nA: Let's think step by step."
        );
    }

    #[test]
    fn malformed_prompt_files_name_the_problem() {
        let err = CotPromptFile::parse("no dashes", Path::new("x.txt")).unwrap_err();
        assert!(err.to_string().starts_with("x.txt:0: expected a `-----`"));
        let err =
            CotPromptFile::parse("c\n-----\nD\n\nQ: q\nA: answer", Path::new("y.txt")).unwrap_err();
        assert!(err.to_string().contains("y.txt:"), "{err}");
        assert!(
            err.to_string().contains("Let's think step by step"),
            "{err}"
        );
    }
}
