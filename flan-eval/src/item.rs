//! One evaluation item (a prompt, its gold answers and the rule that scores it), and the
//! benchmark vocabulary shared by the readers, the runner and the re-scorer. The prompting
//! [`Mode`] is flan-data's, which renders the synthetic suite in the same modes.

use crate::extract::{
    bbh_cot_answer, bbh_direct_answer, canonical_number, math_answer, mmlu_cot_letter, mmlu_letter,
};
use crate::squad;
use crate::{Error, Result};
pub use flan_data::mode::Mode;
pub use flan_data::synthetic::Exposure;
use flan_data::synthetic::{answer_after_last_phrase, normalize_whitespace};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The held-out benchmarks of the paper (plus GSM8K).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    /// MMLU, 57 subjects, four-way multiple choice.
    Mmlu,
    /// BIG-Bench Hard, 27 tasks.
    Bbh,
    /// MGSM, 11 languages.
    Mgsm,
    /// GSM8K test.
    Gsm8k,
    /// TyDiQA GoldP.
    Tydiqa,
    /// flan-data's synthetic instruction suite: generated, not read, with seen templates,
    /// held-out templates and held-out families (each item's [`Exposure`]).
    Synthetic,
    /// Winogender schemas: gender bias in pronoun resolution (responsible AI).
    Winogender,
    /// Toxicity classification of comments, CivilComments style (responsible AI).
    Toxicity,
    /// Toxic degeneration (RealToxicityPrompts, Gehman et al. 2020): k sampled continuations
    /// per prompt, scored by a toxicity classifier ([`crate::toxic_degeneration`]).
    #[serde(rename = "toxic-degeneration")]
    ToxicDegeneration,
}

impl Benchmark {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Mmlu => "mmlu",
            Benchmark::Bbh => "bbh",
            Benchmark::Mgsm => "mgsm",
            Benchmark::Gsm8k => "gsm8k",
            Benchmark::Tydiqa => "tydiqa",
            Benchmark::Synthetic => "synthetic",
            Benchmark::Winogender => "winogender",
            Benchmark::Toxicity => "toxicity",
            Benchmark::ToxicDegeneration => "toxic-degeneration",
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Benchmark {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "mmlu" => Benchmark::Mmlu,
            "bbh" => Benchmark::Bbh,
            "mgsm" => Benchmark::Mgsm,
            "gsm8k" => Benchmark::Gsm8k,
            "tydiqa" => Benchmark::Tydiqa,
            "synthetic" => Benchmark::Synthetic,
            "winogender" => Benchmark::Winogender,
            "toxicity" => Benchmark::Toxicity,
            "toxic-degeneration" => Benchmark::ToxicDegeneration,
            other => {
                return Err(Error::Config(format!(
                    "unknown benchmark {other:?}; expected mmlu, bbh, mgsm, gsm8k, tydiqa, \
                     synthetic, winogender, toxicity or toxic-degeneration"
                )))
            }
        })
    }
}

/// The rule that turns an output into an answer and judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerRule {
    /// BBH chain-of-thought: after the last "So the answer is ", exact string match.
    BbhCot,
    /// BBH direct: stripped output, exact string match.
    BbhDirect,
    /// Grade-school math: number after the answer phrase (any of these), numeric match.
    Math {
        /// Answer phrases to look for (the language's own and English).
        phrases: Vec<String>,
    },
    /// MMLU answered directly by generation: the output must be a letter.
    MmluLetter,
    /// MMLU chain-of-thought: the letter after the last "The answer is ".
    MmluCot,
    /// Extractive QA: SQuAD-normalised exact match (and F1) against any gold answer.
    Squad,
    /// Exact match after collapsing whitespace (the synthetic suite); with answer phrases
    /// (chain-of-thought), of the text after the last phrase, and no phrase is no answer.
    ExactMatch {
        /// Phrases the answer follows; empty: the whole output is the answer.
        answer_phrases: Vec<String>,
    },
    /// An open-ended continuation (toxic degeneration): nothing is extracted or matched; the
    /// outputs are judged after the run by a [`crate::toxic_degeneration::ToxicityScorer`].
    Continuation,
}

impl AnswerRule {
    /// The answer in `output`, `None` when the rule finds none.
    pub fn extract(&self, output: &str) -> Option<String> {
        match self {
            AnswerRule::BbhCot => bbh_cot_answer(output),
            AnswerRule::BbhDirect => Some(bbh_direct_answer(output)),
            AnswerRule::Math { phrases } => {
                let p: Vec<&str> = phrases.iter().map(String::as_str).collect();
                math_answer(output, &p)
            }
            AnswerRule::MmluLetter => mmlu_letter(output),
            AnswerRule::MmluCot => mmlu_cot_letter(output),
            AnswerRule::Squad => Some(crate::text::py_strip(output).to_string()),
            AnswerRule::ExactMatch { answer_phrases } if answer_phrases.is_empty() => {
                Some(normalize_whitespace(output))
            }
            AnswerRule::ExactMatch { answer_phrases } => {
                answer_after_last_phrase(output, answer_phrases).map(normalize_whitespace)
            }
            AnswerRule::Continuation => None,
        }
    }

    /// Whether the extracted answer matches any of the gold `targets`.
    pub fn is_correct(&self, answer: Option<&str>, targets: &[String]) -> bool {
        let Some(answer) = answer else {
            return false;
        };
        match self {
            AnswerRule::BbhCot | AnswerRule::BbhDirect => targets.iter().any(|t| t == answer),
            AnswerRule::Math { .. } => targets
                .iter()
                .any(|t| canonical_number(t).as_deref() == Some(answer)),
            AnswerRule::MmluLetter | AnswerRule::MmluCot => targets
                .iter()
                .any(|t| mmlu_letter(t).as_deref() == Some(answer)),
            AnswerRule::Squad => squad::max_exact_match(answer, targets),
            AnswerRule::ExactMatch { .. } => {
                targets.iter().any(|t| normalize_whitespace(t) == answer)
            }
            AnswerRule::Continuation => false,
        }
    }

    /// Token F1 (percent) for extractive QA; `None` for the other rules.
    pub fn f1(&self, answer: Option<&str>, targets: &[String]) -> Option<f64> {
        match self {
            AnswerRule::Squad => Some(100.0 * squad::max_f1(answer.unwrap_or(""), targets)),
            _ => None,
        }
    }
}

/// One prompt to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalItem {
    /// Task name in reports (e.g. `bbh_date_understanding`, `mgsm_de`, `mmlu_anatomy`).
    pub task: String,
    /// Index of the item within its task file.
    pub index: usize,
    /// The full prompt given to the model.
    pub prompt: String,
    /// Gold answers (one, except for extractive QA).
    pub targets: Vec<String>,
    /// How outputs are scored.
    pub rule: AnswerRule,
    /// Exemplars kept in the prompt.
    pub n_shot: usize,
    /// How the prompt was formed.
    pub mode: Mode,
    /// Rank classification (MMLU): the candidate answers and how they are compared.
    pub choices: Option<Choices>,
    /// Answer options the prompt lists for the model to answer with one of (MMLU's four
    /// letters, the synthetic suite's option blocks); 0 when it lists none or the benchmark
    /// does not say. Only the chance baseline reads it ([`EvalItem::answer_options`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub options: usize,
    /// Which example of its task the item renders, where one example is rendered in several
    /// prompts (the synthetic suite renders each eval example of a family in every template
    /// set and mode); None: every item is an example of its own. The chance baseline leaves an
    /// item's whole example out when it estimates the majority answer ([`crate::chance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<usize>,
    /// How much of the item training saw (the synthetic suite, whose training is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// The whole reference output (the rationale too, in CoT modes), when the benchmark has
    /// one: [`crate::runner::RunOptions::reference_slack`] bounds generation by its length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl EvalItem {
    /// How many answers the item offers to choose from: its rank-classification candidates, or
    /// the options its prompt lists; 0 when it offers none (a free-form answer).
    pub fn answer_options(&self) -> usize {
        match &self.choices {
            Some(c) => c.candidates.len(),
            None => self.options,
        }
    }
}

/// How the candidates of a rank-classified item are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Logit of each candidate's first token after one decoder step (evaluate_flan.py).
    FirstTokenLogits,
    /// Sum of log-probabilities of each whole candidate, EOS included.
    SequenceLogProb,
}

/// The candidates of a rank-classified item; the best-ranked one is the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    /// Candidate answers (e.g. "A".."D").
    pub candidates: Vec<String>,
    /// How they are compared.
    pub rank_by: RankBy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in [
            "mmlu",
            "bbh",
            "mgsm",
            "gsm8k",
            "tydiqa",
            "synthetic",
            "winogender",
            "toxicity",
            "toxic-degeneration",
        ] {
            assert_eq!(b.parse::<Benchmark>().unwrap().name(), b);
        }
        assert!("mmlu-cot".parse::<Benchmark>().is_err());
    }

    #[test]
    fn rules_judge_answers() {
        let t = |s: &str| vec![s.to_string()];
        assert!(AnswerRule::BbhCot.is_correct(Some("(A)"), &t("(A)")));
        assert!(!AnswerRule::BbhCot.is_correct(Some("A"), &t("(A)")));
        assert!(!AnswerRule::BbhCot.is_correct(None, &t("(A)")));
        let math = AnswerRule::Math {
            phrases: vec!["The answer is".into()],
        };
        let a = math.extract("so 1,000 in all. The answer is 1,000.");
        assert!(math.is_correct(a.as_deref(), &t("1000")));
        assert!(!math.is_correct(Some("1000.5"), &t("1000")));
        assert!(AnswerRule::MmluLetter.is_correct(Some("B"), &t("B")));
        assert!(AnswerRule::MmluCot.is_correct(Some("B"), &t("(B)")));
        let golds = vec!["the Nile".to_string(), "Nile River".to_string()];
        assert!(AnswerRule::Squad.is_correct(Some("Nile"), &golds));
        let f1 = AnswerRule::Squad.f1(Some("river"), &golds).unwrap();
        assert!((f1 - 200.0 / 3.0).abs() < 1e-9, "{f1}");
    }
}
