//! From a benchmark name, a data path and a mode to the list of [`EvalItem`]s: the one place
//! that knows each benchmark's file layout.

use crate::hub::HubDataset;
use crate::item::{Benchmark, EvalItem, Mode};
use crate::math::{self, MathExemplar, MathProblem, MGSM_LANGUAGES};
use crate::mmlu::{self, MmluAnswering, MmluOptions};
use crate::{
    bbh, hub_readers, synthetic, toxic_degeneration, toxicity, tydiqa, winogender, Error, Result,
};
use std::path::{Path, PathBuf};

/// Items per (family, template set, mode) of the synthetic suite when no limit is given.
pub const SYNTHETIC_ITEMS_PER_CELL: usize = 8;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The benchmark.
    pub benchmark: Benchmark,
    /// The prompting mode.
    pub mode: Mode,
    /// Data location: BBH dir (`tasks/`, `cot-prompts/`), MMLU dir (`dev/`, `test/`), MGSM dir
    /// (`mgsm_<lang>.tsv`), GSM8K `test.jsonl`, TyDiQA GoldP JSONL (unused for the synthetic
    /// suite, which is generated); toxic degeneration: the prompts JSONL.
    pub data: PathBuf,
    /// A hub dataset to read instead of `data` (`--data hf:cais/mmlu`): MMLU, BBH, MGSM, GSM8K
    /// and TyDiQA (see [`crate::hub_readers`]).
    pub hub: Option<HubDataset>,
    /// A local copy of the BBH repository whose `cot-prompts/` serve BBH read from the hub.
    pub bbh_prompts: Option<PathBuf>,
    /// Only these tasks (BBH tasks, MMLU subjects, MGSM languages, TyDiQA languages, synthetic
    /// families; `challenging` for toxic degeneration).
    pub tasks: Option<Vec<String>>,
    /// At most this many items per task (the synthetic suite: items per family, template set
    /// and mode; default [`SYNTHETIC_ITEMS_PER_CELL`]).
    pub limit: Option<usize>,
    /// Seed of generated items (the synthetic suite).
    pub seed: u64,
    /// Exemplars file: math (JSONL worked solutions) or MMLU CoT (JSONL with rationales). For
    /// math the default is the first 8 problems of GSM8K `train.jsonl` found beside the data.
    pub exemplars: Option<PathBuf>,
    /// Number of math exemplars (8) or MMLU exemplars (5) before budget trimming; the synthetic
    /// suite's exemplars (direct: 0, few-shot CoT: 2).
    pub shots: Option<usize>,
    /// MMLU direct: rank classification or generation.
    pub mmlu_answering: MmluAnswering,
    /// MMLU split scored (`test` or `val`).
    pub mmlu_split: String,
    /// Prompt budget in tokens (exemplars are dropped beyond it).
    pub max_input_tokens: usize,
}

impl SuiteOptions {
    /// Options with the paper's defaults for `benchmark` in `mode` on `data`.
    pub fn new(benchmark: Benchmark, mode: Mode, data: impl Into<PathBuf>) -> Self {
        SuiteOptions {
            benchmark,
            mode,
            data: data.into(),
            hub: None,
            bbh_prompts: None,
            tasks: None,
            limit: None,
            seed: 0,
            exemplars: None,
            shots: None,
            mmlu_answering: MmluAnswering::Rank,
            mmlu_split: "test".into(),
            max_input_tokens: 2048,
        }
    }
}

fn select(all: Vec<String>, wanted: &Option<Vec<String>>, what: &str) -> Result<Vec<String>> {
    let Some(wanted) = wanted else {
        return Ok(all);
    };
    for w in wanted {
        if !all.contains(w) {
            return Err(Error::Config(format!(
                "unknown {what} {w:?}; available: {}",
                all.join(", ")
            )));
        }
    }
    Ok(all.into_iter().filter(|t| wanted.contains(t)).collect())
}

fn math_exemplars(opts: &SuiteOptions, default_train: PathBuf) -> Result<Vec<MathExemplar>> {
    let shots = opts.shots.unwrap_or(8);
    let exemplars = match &opts.exemplars {
        Some(path) => math::read_exemplars(path)?,
        None if default_train.is_file() => math::gsm8k_exemplars(&default_train, shots)?,
        None => {
            return Err(Error::Config(format!(
                "no math exemplars: pass --exemplars FILE.jsonl (default {} does not exist)",
                default_train.display()
            )))
        }
    };
    Ok(exemplars.into_iter().take(shots).collect())
}

fn sibling(path: &Path, rel: &str) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join(rel)
}

/// All items of the suite, grouped by task in task order.
pub fn build_items(
    opts: &SuiteOptions,
    count_tokens: &mut dyn FnMut(&str) -> Result<usize>,
) -> Result<Vec<EvalItem>> {
    let budget = opts.max_input_tokens;
    let mut items = Vec::new();
    match opts.benchmark {
        Benchmark::Bbh => match &opts.hub {
            None => {
                let names = select(bbh::task_names(&opts.data)?, &opts.tasks, "BBH task")?;
                for name in names {
                    items.extend(bbh::build_items(&opts.data, &name, opts.mode, opts.limit)?);
                }
            }
            Some(hub) => {
                if opts.mode == Mode::Cot && opts.bbh_prompts.is_none() {
                    // Fail before any download.
                    return Err(Error::Config(
                        "BBH chain-of-thought needs the authors' CoT exemplars, which the hub \
                         copy does not have: pass --bbh-prompts DIR, a copy of the BBH \
                         repository (github.com/suzgunmirac/BIG-Bench-Hard) with cot-prompts/"
                            .into(),
                    ));
                }
                let (names, tasks) = hub_readers::bbh(hub, opts.tasks.as_deref())?;
                select(names, &opts.tasks, "BBH task")?;
                for task in tasks {
                    let prompts = match &opts.bbh_prompts {
                        Some(dir) => Some(hub_readers::bbh_prompts(dir, &task.name)?),
                        None => None,
                    };
                    items.extend(bbh::task_items(
                        &task,
                        prompts.as_ref(),
                        opts.mode,
                        opts.limit,
                    )?);
                }
            }
        },
        Benchmark::Mmlu => {
            let cot = match (&opts.exemplars, opts.mode) {
                (Some(p), Mode::Cot) => Some(mmlu::read_cot_exemplars(p)?),
                _ => None,
            };
            let mo = MmluOptions {
                mode: opts.mode,
                shots: opts.shots.unwrap_or(5),
                split: &opts.mmlu_split,
                cot_exemplars: cot.as_deref(),
                answering: opts.mmlu_answering,
                budget,
                limit: opts.limit,
            };
            match &opts.hub {
                None => {
                    let subjects =
                        select(mmlu::subjects(&opts.data)?, &opts.tasks, "MMLU subject")?;
                    for s in subjects {
                        items.extend(mmlu::build_items(&opts.data, &s, &mo, count_tokens)?);
                    }
                }
                Some(hub) => {
                    // The dev split is fetched only when its exemplars are used.
                    let with_dev = opts.mode == Mode::Direct;
                    let (all, read) =
                        hub_readers::mmlu(hub, opts.tasks.as_deref(), &opts.mmlu_split, with_dev)?;
                    select(all, &opts.tasks, "MMLU subject")?;
                    for s in read {
                        items.extend(mmlu::subject_items(
                            &s.name,
                            &s.test,
                            &s.dev,
                            &mo,
                            count_tokens,
                        )?);
                    }
                }
            }
        }
        Benchmark::Mgsm => {
            let (exemplars, languages) = match &opts.hub {
                Some(hub) => {
                    // MGSM's exemplars are GSM8K training problems, which juletxara/mgsm does
                    // not hold.
                    let exemplars = match (&opts.exemplars, opts.shots) {
                        (_, Some(0)) => Vec::new(),
                        (Some(_), _) => math_exemplars(opts, PathBuf::new())?,
                        (None, _) => {
                            return Err(Error::Config(format!(
                                "MGSM from {} needs worked exemplars: pass --exemplars \
                                 FILE.jsonl (e.g. GSM8K's train.jsonl, whose first 8 problems \
                                 are used) or --shots 0",
                                hub.spec()
                            )))
                        }
                    };
                    let (available, read) = hub_readers::mgsm(hub, opts.tasks.as_deref())?;
                    select(available, &opts.tasks, "MGSM language")?;
                    let languages: Vec<(String, Vec<MathProblem>)> =
                        read.into_iter().map(|l| (l.name, l.problems)).collect();
                    (exemplars, languages)
                }
                None => {
                    let available: Vec<String> = MGSM_LANGUAGES
                        .iter()
                        .filter(|l| opts.data.join(format!("mgsm_{l}.tsv")).is_file())
                        .map(|l| l.to_string())
                        .collect();
                    if available.is_empty() {
                        return Err(Error::Config(format!(
                            "no mgsm_<lang>.tsv files in {}",
                            opts.data.display()
                        )));
                    }
                    let langs = select(available, &opts.tasks, "MGSM language")?;
                    let exemplars = math_exemplars(opts, opts.data.join("../gsm8k/train.jsonl"))?;
                    let mut languages = Vec::new();
                    for lang in langs {
                        let problems =
                            math::read_mgsm(&opts.data.join(format!("mgsm_{lang}.tsv")))?;
                        languages.push((lang, problems));
                    }
                    (exemplars, languages)
                }
            };
            for (lang, mut problems) in languages {
                problems.truncate(opts.limit.unwrap_or(usize::MAX));
                items.extend(math::build_items(
                    &format!("mgsm_{lang}"),
                    Some(&lang),
                    &problems,
                    &exemplars,
                    opts.mode,
                    budget,
                    count_tokens,
                )?);
            }
        }
        Benchmark::Gsm8k => {
            let (mut problems, exemplars) = match &opts.hub {
                None => {
                    let exemplars = math_exemplars(opts, sibling(&opts.data, "train.jsonl"))?;
                    (math::read_gsm8k(&opts.data)?, exemplars)
                }
                // The default exemplars are the first training problems, as beside test.jsonl.
                Some(hub) => match &opts.exemplars {
                    Some(_) => {
                        let exemplars = math_exemplars(opts, PathBuf::new())?;
                        (hub_readers::gsm8k(hub, 0)?.0, exemplars)
                    }
                    None => hub_readers::gsm8k(hub, opts.shots.unwrap_or(8))?,
                },
            };
            problems.truncate(opts.limit.unwrap_or(usize::MAX));
            items.extend(math::build_items(
                "gsm8k",
                Some("en"),
                &problems,
                &exemplars,
                opts.mode,
                budget,
                count_tokens,
            )?);
        }
        Benchmark::Tydiqa => {
            let examples = match &opts.hub {
                None => tydiqa::read_jsonl(&opts.data)?,
                Some(hub) => hub_readers::tydiqa(hub)?,
            };
            let mut langs: Vec<String> = examples.iter().map(|e| e.language.clone()).collect();
            langs.sort();
            langs.dedup();
            let langs = select(langs, &opts.tasks, "TyDiQA language")?;
            let kept: Vec<_> = examples
                .into_iter()
                .filter(|e| langs.contains(&e.language))
                .collect();
            items.extend(tydiqa::build_items(
                &kept,
                opts.mode,
                opts.limit,
                budget,
                count_tokens,
            )?);
        }
        Benchmark::Synthetic
        | Benchmark::Winogender
        | Benchmark::Toxicity
        | Benchmark::ToxicDegeneration
            if opts.hub.is_some() =>
        {
            return Err(Error::Unsupported(format!(
                "--data hf:... serves mmlu, bbh, mgsm, gsm8k and tydiqa; {} reads local files",
                opts.benchmark
            )));
        }
        Benchmark::Synthetic => {
            // Generated, not read: `data` is not used. Few-shot CoT needs exemplars, so its
            // default is 2 (as `[eval.synthetic]`'s); direct prompts are zero-shot unless asked.
            let suite = flan_data::synthetic::Suite::new()?;
            let families: Vec<String> = flan_data::synthetic::FAMILIES
                .iter()
                .map(|f| f.name.to_string())
                .collect();
            let families = select(families, &opts.tasks, "synthetic family")?;
            let plan = flan_data::synthetic::StandardEval {
                seed: opts.seed,
                items_per_cell: opts.limit.unwrap_or(SYNTHETIC_ITEMS_PER_CELL),
                shots: opts
                    .shots
                    .unwrap_or(if opts.mode == Mode::Cot { 2 } else { 0 }),
            };
            items.extend(synthetic::mode_items(
                &suite,
                &plan,
                opts.mode,
                Some(&families),
            )?);
        }
        Benchmark::Winogender => {
            // Zero-shot, as PaLM and the Flan-T5 paper evaluate it (see `winogender`).
            if opts.mode != Mode::Direct || opts.shots.is_some_and(|k| k > 0) {
                return Err(Error::Unsupported(
                    "Winogender is evaluated zero-shot by rank classification: use --mode \
                     direct without --shots"
                        .into(),
                ));
            }
            let sentences = winogender::read_dir(&opts.data)?;
            let all = winogender::TASKS.iter().map(|t| t.to_string()).collect();
            let tasks = select(all, &opts.tasks, "Winogender subset")?;
            items.extend(winogender::build_items(&sentences, &tasks, opts.limit));
        }
        Benchmark::Toxicity => {
            if opts.mode != Mode::Direct {
                return Err(Error::Unsupported(
                    "toxicity classification is rank-classified yes/no: use --mode direct".into(),
                ));
            }
            select(
                vec![toxicity::TASK.to_string()],
                &opts.tasks,
                "toxicity task",
            )?;
            let comments = toxicity::read_jsonl(&opts.data)?;
            let separate = match &opts.exemplars {
                Some(path) => Some(toxicity::read_jsonl(path)?),
                None => None,
            };
            let to = toxicity::ToxicityOptions {
                shots: opts.shots.unwrap_or(0),
                seed: opts.seed,
                pool: match &separate {
                    Some(pool) => toxicity::ExemplarPool::Separate(pool),
                    None => toxicity::ExemplarPool::SameFile,
                },
                budget,
                limit: opts.limit,
            };
            items.extend(toxicity::build_items(&comments, &to, count_tokens)?);
        }
        Benchmark::ToxicDegeneration => {
            // Prompts are continued as given: no template, exemplars or budget trimming.
            let prompts = toxic_degeneration::read_prompts(&opts.data)?;
            items.extend(toxic_degeneration::build_items(
                &prompts,
                opts.tasks.as_deref(),
                opts.limit,
            )?);
        }
    }
    Ok(items)
}
