//! Each benchmark's hub dataset read into the types its file reader gives, so that the suite
//! builds the same items from either layout. Files, configs, columns and splits are those of the
//! dataset cards and of lm-evaluation-harness's task definitions:
//!
//! | benchmark | dataset | config | scored split | exemplars | columns |
//! |---|---|---|---|---|---|
//! | MMLU | `cais/mmlu` | one per subject (or `all`, grouped by `subject`) | `test` (`validation` for `val`) | `dev` | `question`, `choices`, `answer` (0-3) |
//! | GSM8K | `openai/gsm8k` | `main` | `test` | first of `train` | `question`, `answer` (`... #### N`) |
//! | MGSM | `juletxara/mgsm` | one per language | `test` (or the original `mgsm_<lang>.tsv`) | `--exemplars` | `question`, `answer_number` |
//! | TyDiQA GoldP | `google-research-datasets/tydiqa` | `secondary_task` | `validation` | another question of the language | `id`, `context`, `question`, `answers` |
//! | BBH | `lukaemon/bbh` | one per task | `test` | `--bbh-prompts DIR` | `input`, `target` |

use crate::bbh::{self, BbhTask};
use crate::hub::{configs_with_split, split_files, HubDataset, Resolved};
use crate::math::{self, MathExemplar, MathProblem, MGSM_LANGUAGES};
use crate::mmlu::{self, MmluQuestion};
use crate::parquet_rows::{read_rows, row_refs, RowRef};
use crate::tydiqa::{self, TydiqaExample};
use crate::{Error, Result};
use std::path::Path;

/// MMLU's per-subject configs are these plus one per subject.
const MMLU_AGGREGATES: [&str; 2] = ["all", "auxiliary_train"];

fn rows_of<T>(
    resolved: &Resolved,
    files: &[String],
    mut convert: impl FnMut(&RowRef<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for name in files {
        let path = resolved
            .path(name)
            .ok_or_else(|| Error::Config(format!("internal: {name} was not fetched")))?;
        let rows = read_rows(path)?;
        for row in row_refs(path, &rows) {
            out.push(convert(&row)?);
        }
    }
    Ok(out)
}

fn wanted(name: &str, tasks: Option<&[String]>) -> bool {
    tasks.is_none_or(|t| t.iter().any(|w| w == name))
}

/// One MMLU subject's questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmluSubject {
    /// The subject (`abstract_algebra`).
    pub name: String,
    /// The scored split.
    pub test: Vec<MmluQuestion>,
    /// The dev split (the 5-shot exemplars); empty when not asked for.
    pub dev: Vec<MmluQuestion>,
}

/// The hub's name of an MMLU split of the released layout (`val` is `validation`).
pub fn mmlu_split(split: &str) -> &str {
    if split == "val" {
        "validation"
    } else {
        split
    }
}

fn mmlu_subject_configs(listing: &[String], split: &str) -> Vec<String> {
    let mut subjects = configs_with_split(listing, split);
    subjects.retain(|c| !MMLU_AGGREGATES.contains(&c.as_str()));
    subjects
}

/// MMLU from `cais/mmlu`: the subjects of `tasks` (all when `None`), all subjects listed (sorted),
/// each with its `split` questions and, when `with_dev`, its dev questions.
pub fn mmlu(
    ds: &HubDataset,
    tasks: Option<&[String]>,
    split: &str,
    with_dev: bool,
) -> Result<(Vec<String>, Vec<MmluSubject>)> {
    let split = mmlu_split(split);
    let pick = |listing: &[String]| {
        let subjects = mmlu_subject_configs(listing, split);
        let configs: Vec<String> = if subjects.is_empty() {
            if split_files(listing, "all", split).is_empty() {
                return None;
            }
            vec!["all".to_string()]
        } else {
            subjects.into_iter().filter(|s| wanted(s, tasks)).collect()
        };
        let mut files = Vec::new();
        for config in configs {
            let test = split_files(listing, &config, split);
            if test.is_empty() {
                continue;
            }
            files.extend(test);
            if with_dev {
                files.extend(split_files(listing, &config, "dev"));
            }
        }
        Some(files)
    };
    let resolved = ds.resolve(&format!("MMLU {split} split"), &pick)?;
    let per_subject = mmlu_subject_configs(&resolved.listing, split);
    let read = |config: &str, split: &str| {
        let files = split_files(&resolved.files_names(), config, split);
        rows_of(&resolved, &files, |row| {
            Ok((
                row.str("subject").unwrap_or_default().to_string(),
                mmlu::question_from_row(row)?,
            ))
        })
    };
    let questions = |rows: Vec<(String, MmluQuestion)>| -> Vec<MmluQuestion> {
        rows.into_iter().map(|(_, q)| q).collect()
    };
    if !per_subject.is_empty() {
        let mut subjects = Vec::new();
        for name in per_subject.iter().filter(|s| wanted(s, tasks)) {
            let test = questions(read(name, split)?);
            let dev = if with_dev {
                questions(read(name, "dev")?)
            } else {
                Vec::new()
            };
            subjects.push(MmluSubject {
                name: name.clone(),
                test,
                dev,
            });
        }
        return Ok((per_subject, subjects));
    }
    // Only the `all` config: its rows carry their subject (a row without one is an error).
    let check =
        |rows: Vec<(String, MmluQuestion)>, split: &str| -> Result<Vec<(String, MmluQuestion)>> {
            if let Some(i) = rows.iter().position(|(s, _)| s.is_empty()) {
                return Err(Error::Config(format!(
                    "{}: all/{split} row {}: expected a \"subject\" string",
                    ds.spec(),
                    i + 1
                )));
            }
            Ok(rows)
        };
    let test = check(read("all", split)?, split)?;
    let dev = if with_dev {
        check(read("all", "dev")?, "dev")?
    } else {
        Vec::new()
    };
    let mut names: Vec<String> = test.iter().map(|(s, _)| s.clone()).collect();
    names.sort();
    names.dedup();
    let of = |rows: &[(String, MmluQuestion)], name: &str| -> Vec<MmluQuestion> {
        rows.iter()
            .filter(|(s, _)| s == name)
            .map(|(_, q)| q.clone())
            .collect()
    };
    let subjects = names
        .iter()
        .filter(|s| wanted(s, tasks))
        .map(|name| MmluSubject {
            name: name.clone(),
            test: of(&test, name),
            dev: of(&dev, name),
        })
        .collect();
    Ok((names, subjects))
}

/// BBH from `lukaemon/bbh`: all task names listed (sorted) and the tasks of `tasks` (all when
/// `None`), examples from the `test` split.
pub fn bbh(ds: &HubDataset, tasks: Option<&[String]>) -> Result<(Vec<String>, Vec<BbhTask>)> {
    let pick = |listing: &[String]| {
        let configs = configs_with_split(listing, "test");
        (!configs.is_empty()).then(|| {
            configs
                .into_iter()
                .filter(|t| wanted(t, tasks))
                .flat_map(|t| split_files(listing, &t, "test"))
                .collect()
        })
    };
    let resolved = ds.resolve("BBH task", &pick)?;
    let names = configs_with_split(&resolved.listing, "test");
    let mut out = Vec::new();
    for name in names.iter().filter(|t| wanted(t, tasks)) {
        let files = split_files(&resolved.files_names(), name, "test");
        out.push(BbhTask {
            name: name.clone(),
            examples: rows_of(&resolved, &files, bbh::example_from_row)?,
        });
    }
    Ok((names, out))
}

/// One MGSM language's problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgsmLanguage {
    /// The language code (`de`).
    pub name: String,
    /// Its problems, in file order.
    pub problems: Vec<MathProblem>,
}

fn mgsm_tsv(lang: &str) -> String {
    format!("mgsm_{lang}.tsv")
}

/// MGSM from `juletxara/mgsm`: the languages listed (in [`MGSM_LANGUAGES`] order) and the
/// problems of those in `tasks` (all when `None`), from the original `mgsm_<lang>.tsv` files when
/// the revision has them, else from each language's `test` split.
pub fn mgsm(ds: &HubDataset, tasks: Option<&[String]>) -> Result<(Vec<String>, Vec<MgsmLanguage>)> {
    let languages = |listing: &[String]| -> (bool, Vec<String>) {
        let tsv: Vec<String> = MGSM_LANGUAGES
            .iter()
            .filter(|l| listing.contains(&mgsm_tsv(l)))
            .map(|l| l.to_string())
            .collect();
        if !tsv.is_empty() {
            return (true, tsv);
        }
        let configs = configs_with_split(listing, "test");
        let parquet = MGSM_LANGUAGES
            .iter()
            .filter(|l| configs.iter().any(|c| c == *l))
            .map(|l| l.to_string())
            .collect();
        (false, parquet)
    };
    let files_for = |listing: &[String], lang: &str, tsv: bool| {
        if tsv {
            vec![mgsm_tsv(lang)]
        } else {
            split_files(listing, lang, "test")
        }
    };
    let pick = |listing: &[String]| {
        let (tsv, langs) = languages(listing);
        (!langs.is_empty()).then(|| {
            langs
                .iter()
                .filter(|l| wanted(l, tasks))
                .flat_map(|l| files_for(listing, l, tsv))
                .collect()
        })
    };
    let resolved = ds.resolve("MGSM language", &pick)?;
    let (tsv, langs) = languages(&resolved.listing);
    let mut out = Vec::new();
    for lang in langs.iter().filter(|l| wanted(l, tasks)) {
        let files = files_for(&resolved.files_names(), lang, tsv);
        let problems = if tsv {
            let path = resolved
                .path(&files[0])
                .ok_or_else(|| Error::Config(format!("internal: {} was not fetched", files[0])))?;
            math::read_mgsm(path)?
        } else {
            rows_of(&resolved, &files, mgsm_problem_from_row)?
        };
        out.push(MgsmLanguage {
            name: lang.clone(),
            problems,
        });
    }
    Ok((langs, out))
}

/// An MGSM problem from a hub row (`question`, `answer_number`), canonical as the TSV reader
/// makes it.
pub fn mgsm_problem_from_row(row: &RowRef<'_>) -> Result<MathProblem> {
    let number = row.get("answer_number")?;
    let answer = match number {
        serde_json::Value::Number(n) => crate::extract::canonical_number(&n.to_string()),
        _ => None,
    }
    .ok_or_else(|| {
        row.error(format!(
            "column \"answer_number\": expected a number, found {number}"
        ))
    })?;
    Ok(MathProblem {
        question: row.str("question")?.to_string(),
        answer,
    })
}

fn gsm8k_record<T>(row: &RowRef<'_>, convert: fn(&str, &str) -> Option<T>) -> Result<T> {
    convert(row.str("question")?, row.str("answer")?).ok_or_else(|| {
        row.error("column \"answer\": expected the solution to end with `#### <number>`")
    })
}

/// GSM8K from `openai/gsm8k` (`main`): the `test` problems and the first `shots` `train`
/// problems as worked exemplars (as the file layout's `train.jsonl` beside `test.jsonl`).
pub fn gsm8k(ds: &HubDataset, shots: usize) -> Result<(Vec<MathProblem>, Vec<MathExemplar>)> {
    let pick = |listing: &[String]| {
        let mut files = split_files(listing, "main", "test");
        if files.is_empty() {
            return None;
        }
        if shots > 0 {
            files.extend(split_files(listing, "main", "train"));
        }
        Some(files)
    };
    let resolved = ds.resolve("GSM8K main/test split", &pick)?;
    let names = resolved.files_names();
    let problems = rows_of(&resolved, &split_files(&names, "main", "test"), |row| {
        gsm8k_record(row, math::gsm8k_problem)
    })?;
    let mut exemplars = Vec::new();
    for name in split_files(&names, "main", "train") {
        let path = resolved.path(&name).cloned().unwrap_or_default();
        let rows = read_rows(&path)?;
        for row in row_refs(&path, &rows) {
            if exemplars.len() == shots {
                break;
            }
            exemplars.push(gsm8k_record(&row, math::gsm8k_exemplar)?);
        }
    }
    Ok((problems, exemplars))
}

/// TyDiQA GoldP from `google-research-datasets/tydiqa`: `secondary_task`, `validation`.
pub fn tydiqa(ds: &HubDataset) -> Result<Vec<TydiqaExample>> {
    let pick = |listing: &[String]| {
        let files = split_files(listing, "secondary_task", "validation");
        (!files.is_empty()).then_some(files)
    };
    let resolved = ds.resolve("TyDiQA secondary_task/validation split", &pick)?;
    rows_of(&resolved, &resolved.files_names(), |row| {
        let value = serde_json::Value::Object(row.fields.clone());
        tydiqa::example_from_json(&value, &format!("row-{}", row.row)).map_err(|m| row.error(m))
    })
}

/// The CoT prompt files of `tasks` in a local copy of the BBH repository.
pub fn bbh_prompts(dir: &Path, task: &str) -> Result<bbh::CotPromptFile> {
    bbh::CotPromptFile::read(&bbh::prompt_file_in(dir, task))
}
