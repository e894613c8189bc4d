//! Evaluation prompts of the suite: eval-split examples rendered with seen or held-out templates
//! in a [`Mode`] with or without exemplars, each with its reference and the answer exact match
//! compares against. flan-eval turns them into its `EvalItem`s and scores them (its
//! `AnswerRule::ExactMatch`, built on [`normalize_whitespace`] and [`answer_after_last_phrase`]).

use super::templates::{Suite, HELD_OUT_TEMPLATES};
use super::{family_def, generate, Split};
use crate::error::{Error, Result};
use crate::mode::Mode;
use crate::render::{render, Form, RenderRequest, WordCount};
use crate::task::Task;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which templates to evaluate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSet {
    /// Templates used in training.
    Seen,
    /// The last [`HELD_OUT_TEMPLATES`] templates of each family, never trained on.
    HeldOut,
    /// All templates (the natural choice for held-out families, which saw none).
    All,
}

/// What to evaluate for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalRequest {
    /// Seed of the eval examples and of every rendering choice.
    pub seed: u64,
    /// Number of items.
    pub n: usize,
    /// Which templates; items take them in turn.
    pub templates: TemplateSet,
    /// The prompting mode: direct, few-shot CoT (needs `shots` >= 1) or zero-shot CoT; CoT
    /// modes only for families with a rationale.
    pub mode: Mode,
    /// Exemplars before the query (0 for zero-shot CoT).
    pub shots: usize,
}

/// One rendered prompt and the answer to expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalPrompt {
    /// The family.
    pub family: String,
    /// Whether the family is held out of training.
    pub held_out_family: bool,
    /// Template index in the family's list.
    pub template: usize,
    /// Whether that template is held out of training.
    pub held_out_template: bool,
    /// The prompting mode.
    pub mode: Mode,
    /// Exemplars in the prompt.
    pub shots: usize,
    /// Which of the family's `n` eval examples this prompt renders: the same examples are
    /// rendered in every template set and mode of the family (with the same seed and `n`).
    #[serde(default)]
    pub example: usize,
    /// Whether answer options were rendered.
    pub with_options: bool,
    /// How many answer options the prompt lists (0 without options): a model that only
    /// learned to answer with one of them scores 1 in `options` by guessing.
    #[serde(default)]
    pub options: usize,
    /// The model input.
    pub inputs: String,
    /// The full reference target (with rationale in CoT modes).
    pub targets: String,
    /// The answer exact match compares against (an option label when options are lettered),
    /// whitespace-normalised.
    pub answer: String,
    /// In CoT modes, the phrases the answer follows ("So the answer is"); empty otherwise.
    pub answer_phrases: Vec<String>,
}

/// Collapses every run of whitespace to one space and trims the ends: the only normalisation
/// the scorer applies.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Training examples shown as few-shot exemplars (drawn from the train split, so an eval prompt
/// never contains another eval item).
const EXEMPLAR_POOL: usize = 32;

impl Suite {
    /// The eval prompts of `family`: `request.n` eval-split examples, rendered with the chosen
    /// templates in turn. Items alternate between the forms with and without options when the
    /// family has options.
    pub fn eval_items(&self, family: &str, request: &EvalRequest) -> Result<Vec<EvalPrompt>> {
        let def = family_def(family)?;
        let mode = request.mode;
        let context = || format!("synthetic family `{}` in mode {mode}", def.name);
        if mode.is_cot() && !def.has_rationale {
            return Err(Error::config(context(), "the family has no rationales"));
        }
        let shots = match (mode, request.shots) {
            (Mode::Cot, 0) => {
                return Err(Error::config(
                    context(),
                    "chain-of-thought without exemplars is zero-shot-cot",
                ))
            }
            (Mode::ZeroShotCot, _) => 0,
            (_, k) => k,
        };
        let template_family = self.family_of(def, mode.is_cot())?;
        let count = template_family.templates.len();
        let indices: Vec<usize> = match request.templates {
            TemplateSet::Seen => (0..count - HELD_OUT_TEMPLATES).collect(),
            TemplateSet::HeldOut => (count - HELD_OUT_TEMPLATES..count).collect(),
            TemplateSet::All => (0..count).collect(),
        };
        let mut template_family = template_family.clone();
        if shots > 0 {
            template_family.few_shot.min_exemplars = shots;
            template_family.few_shot.max_exemplars = shots;
        }
        let task = Task {
            name: def.name.to_string(),
            submixture: "synthetic_eval".into(),
            family: template_family.name.clone(),
            sources: Vec::new(),
            examples: generate(def.name, Split::Eval, request.seed, request.n)?,
            definition: None,
            demonstrations: generate(
                def.name,
                Split::Train,
                request.seed,
                EXEMPLAR_POOL.max(2 * shots),
            )?,
            skipped: Default::default(),
            ignored: Default::default(),
        };
        let phrases = &template_family.answer_phrases;
        let mut items = Vec::with_capacity(request.n);
        for i in 0..request.n {
            let template = indices[i % indices.len()];
            let render_request = RenderRequest {
                example: i,
                form: if shots > 0 {
                    Form::FewShot
                } else {
                    Form::ZeroShot
                },
                template,
                with_options: def.has_options && (i / indices.len()) % 2 == 0,
                // Eval prompts are not cut: a prompt that does not fit is the caller's to see.
                input_budget: usize::MAX / 4,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
            rng.set_stream(i as u64);
            let rendered = render(
                self.library(),
                &template_family,
                &task,
                &render_request,
                &WordCount,
                &mut rng,
            )?;
            let answer = if mode.is_cot() {
                answer_after_last_phrase(&rendered.targets, phrases)
                    .ok_or_else(|| {
                        Error::config(
                            context(),
                            format!("CoT target {:?} has no answer phrase", rendered.targets),
                        )
                    })?
                    .to_string()
            } else {
                rendered.targets.clone()
            };
            items.push(EvalPrompt {
                family: def.name.to_string(),
                held_out_family: def.held_out,
                template,
                held_out_template: def.held_out || template >= count - HELD_OUT_TEMPLATES,
                mode,
                shots,
                example: i,
                with_options: rendered.with_options,
                options: if rendered.with_options {
                    task.examples[i].options.as_ref().map_or(0, Vec::len)
                } else {
                    0
                },
                inputs: rendered.inputs,
                targets: rendered.targets,
                answer: normalize_whitespace(&answer),
                answer_phrases: if mode.is_cot() {
                    phrases.clone()
                } else {
                    Vec::new()
                },
            });
        }
        Ok(items)
    }
}

/// The answer in a CoT text: what follows the last occurrence of any answer phrase (the longer
/// phrase when two end there), trimmed. `None` when no phrase occurs.
pub fn answer_after_last_phrase<'a>(text: &'a str, phrases: &[String]) -> Option<&'a str> {
    let (at, phrase) = phrases
        .iter()
        .filter_map(|p| text.rfind(p.as_str()).map(|at| (at, p)))
        .max_by_key(|(at, p)| (*at, p.len()))?;
    Some(text[at + phrase.len()..].trim())
}
