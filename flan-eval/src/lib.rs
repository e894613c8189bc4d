//! `flan-eval`: the held-out evaluations of the Flan-T5 paper (Chung et al., 2022) — MMLU, BBH,
//! TyDiQA GoldP, MGSM and GSM8K; direct, few-shot chain-of-thought, zero-shot CoT and
//! self-consistency; per-task, per-language and normalised-average reports. No libtorch here:
//! the evaluator drives any model through the [`EvalModel`] trait.
//!
//! Scoring follows each benchmark's published rules exactly ([`extract`], [`squad`]); for BBH the
//! rules reproduce the per-task accuracies the BBH authors published for their own outputs.
//!
//! Main types: [`EvalModel`] (what a model must do), [`EvalItem`] (a prompt, its gold answers and
//! its [`AnswerRule`]), [`suite::SuiteOptions`] and [`suite::build_items`] (benchmark readers and
//! prompt builders), [`runner::run`] (batched evaluation, self-consistency), [`report`] (lm-eval
//! style JSON, Markdown; each task's accuracy next to its [`chance`] baseline and accuracy −
//! chance with a bootstrap interval, [`run_scorecard`]), [`rescore`] (score saved predictions
//! of any system). flan-data's
//! synthetic suite is one more benchmark ([`synthetic`]): its items carry an [`Exposure`] (seen
//! templates, held-out templates, held-out families), [`breakdown::Breakdown`] groups any run by
//! it, and [`finetune_report`] compares two runs with SVG [`chart`]s, each accuracy next to its
//! [`chance`] baseline and each difference with a bootstrap [`interval`] ([`scorecard`]). Toxic degeneration
//! ([`toxic_degeneration`]) samples continuations with the same runner and scores them with a pluggable
//! [`toxic_degeneration::ToxicityScorer`]. Benchmarks also come from Hugging Face hub datasets
//! ([`hub`], [`hub_readers`]: `--data hf:cais/mmlu`), read into the same records as the files.
//! The [`replication`] report turns the measured points of the paper's experiments (task and
//! model scaling, CoT data, zero-shot CoT, self-consistency, the normalised average; each over
//! several seeds) into figures, tables and one verdict per claim, decided from the numbers.
//!
//! From the command line (`flan-cli`):
//!
//! ```text
//! flan eval rescore --benchmark bbh --mode cot --predictions outputs.jsonl
//! flan eval run --model DIR --benchmark bbh --mode cot --data ../shared/data/bbh --output out/
//! flan eval run --model DIR --benchmark mgsm --mode cot --data ../shared/data/mgsm \
//!     --self-consistency --k 40 --temperature 0.7 --output out/
//! flan eval average out/results_*.json
//! ```
//!
//! ```
//! use flan_eval::{extract, vote, metrics};
//! // BBH chain-of-thought, as the BBH authors scored their outputs:
//! assert_eq!(extract::bbh_cot_answer("... So the answer is (B).").as_deref(), Some("(B)"));
//! // Grade-school math: the number after the answer phrase, commas removed.
//! assert_eq!(extract::math_answer("The answer is 1,250.", &["The answer is"]).as_deref(), Some("1250"));
//! // Self-consistency: majority vote, order-independent ties.
//! let votes = [Some("7"), Some("8"), Some("7"), None];
//! assert_eq!(vote::majority_vote(&votes).as_deref(), Some("7"));
//! // The paper's normalisation (MMLU random = 25).
//! assert_eq!(metrics::normalized(55.0, 25.0), 40.0);
//! ```

#![deny(missing_docs)]

pub mod bbh;
pub mod breakdown;
pub mod chance;
pub mod chart;
pub mod compare;
mod error;
pub mod extract;
pub mod finetune_report;
pub mod hub;
pub mod hub_readers;
pub mod interval;
pub mod item;
pub mod math;
pub mod metrics;
pub mod mmlu;
pub mod model;
pub mod parquet_rows;
pub mod replication;
pub mod report;
pub mod rescore;
pub mod run_scorecard;
pub mod runner;
pub mod scorecard;
pub mod scripted;
pub mod squad;
pub mod suite;
pub mod synthetic;
pub mod text;
pub mod toxic_degeneration;
pub mod toxicity;
pub mod tydiqa;
pub mod vote;
pub mod winogender;

pub use error::{Error, Result};
pub use item::{AnswerRule, Benchmark, EvalItem, Exposure, Mode};
pub use model::{Decoding, EvalModel, GenerateRequest};
