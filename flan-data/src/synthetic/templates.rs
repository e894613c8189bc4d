//! The suite's instruction templates: loaded from `templates/synthetic.toml`, completed with CoT
//! families derived from the direct ones, and split into training and held-out templates.

use super::{FamilyDef, FAMILIES};
use crate::error::{Error, Result};
use crate::template::{Family, Pattern, Template, TemplateLibrary};

/// The suite's template file.
pub const SYNTHETIC_TEMPLATES: &str = include_str!("../../templates/synthetic.toml");

/// How many templates at the end of each family's list are held out of training.
pub const HELD_OUT_TEMPLATES: usize = 2;

/// Fewest templates a family must have: at least five seen in training plus the held-out ones.
pub const MIN_TEMPLATES: usize = 5 + HELD_OUT_TEMPLATES;

/// The template family holding the shared CoT triggers and answer phrases.
const COT_PHRASES: &str = "syn_cot";

/// Exemplars per few-shot prompt in training (small: prompts must fit a tiny model's budget).
const TRAIN_MIN_EXEMPLARS: usize = 1;
const TRAIN_MAX_EXEMPLARS: usize = 3;

/// The suite: its template library (all templates, for evaluation) and the API the trainer and
/// evaluator use.
#[derive(Debug, Clone)]
pub struct Suite {
    library: TemplateLibrary,
}

impl Suite {
    /// Loads the built-in suite templates and checks that every family has its templates.
    pub fn new() -> Result<Suite> {
        let mut library = TemplateLibrary::from_toml(SYNTHETIC_TEMPLATES, "synthetic templates")?;
        let phrases = library.family(COT_PHRASES)?.clone();
        for def in FAMILIES {
            let name = def.template_family();
            let family = library.families.get_mut(&name).ok_or_else(|| {
                Error::config(
                    "synthetic templates",
                    format!("family `{}` has no template family `{name}`", def.name),
                )
            })?;
            if family.templates.len() < MIN_TEMPLATES {
                return Err(Error::config(
                    format!("synthetic templates: family `{name}`"),
                    format!(
                        "needs at least {MIN_TEMPLATES} templates (the last {HELD_OUT_TEMPLATES} are held out), has {}",
                        family.templates.len()
                    ),
                ));
            }
            // Few-shot exemplars come from the task's demonstrations when it has some: the
            // evaluator puts training examples there, so eval prompts never show eval items.
            family.few_shot.use_demonstrations = true;
            family.few_shot.min_exemplars = TRAIN_MIN_EXEMPLARS;
            family.few_shot.max_exemplars = TRAIN_MAX_EXEMPLARS;
            let direct = family.clone();
            if let Some(cot_name) = def.cot_template_family() {
                let cot = derive_cot(&direct, &cot_name, &phrases)?;
                library.families.insert(cot_name, cot);
            }
        }
        Ok(Suite { library })
    }

    /// Every template of every family (evaluation uses this).
    pub fn library(&self) -> &TemplateLibrary {
        &self.library
    }

    /// The library a training mixture renders with: trained families only, each without its
    /// held-out templates.
    pub fn train_library(&self) -> TemplateLibrary {
        let mut library = self.library.clone();
        library.families.retain(|name, _| {
            FAMILIES.iter().any(|def| {
                !def.held_out
                    && (*name == def.template_family()
                        || Some(name.as_str()) == def.cot_template_family().as_deref())
            })
        });
        for family in library.families.values_mut() {
            let seen = family.templates.len() - HELD_OUT_TEMPLATES;
            family.templates.truncate(seen);
        }
        library
    }

    /// The instruction wording of every template (held-out ones included) and the CoT phrases,
    /// placeholders removed: text to add to a tokenizer's training corpus, so that held-out
    /// instructions tokenize like any other text (a real T5 vocabulary covers them too), without
    /// showing a single evaluation example.
    pub fn template_texts(&self) -> Vec<String> {
        let mut texts = Vec::new();
        for family in self.library.families.values() {
            for t in &family.templates {
                let mut text = t.inputs.source().to_string();
                for field in [
                    "inputs",
                    "targets",
                    "options",
                    "rationale",
                    "trigger",
                    "answer_phrase",
                ] {
                    text = text.replace(&format!("{{{field}}}"), " ");
                }
                texts.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            texts.extend(family.triggers.iter().cloned());
            texts.extend(family.answer_phrases.iter().cloned());
        }
        texts.extend(self.library.option_headers.iter().cloned());
        texts.retain(|t| !t.is_empty());
        texts.sort();
        texts.dedup();
        texts
    }

    /// The phrases a CoT answer of `family` follows ("So the answer is"): what a scorer looks
    /// for in a chain-of-thought output. An error for a family without rationales.
    pub fn answer_phrases(&self, family: &str) -> Result<Vec<String>> {
        Ok(self
            .family_of(super::family_def(family)?, true)?
            .answer_phrases
            .clone())
    }

    /// The template family `def` renders with, direct or CoT.
    pub(crate) fn family_of(&self, def: &FamilyDef, cot: bool) -> Result<&Family> {
        let name = if cot {
            def.cot_template_family().ok_or_else(|| {
                Error::config(
                    format!("synthetic family `{}`", def.name),
                    "has no rationale, so no CoT form",
                )
            })?
        } else {
            def.template_family()
        };
        self.library.family(&name)
    }
}

/// A CoT family from a direct one: each input ends with a trigger, each target gives the
/// rationale, an answer phrase and the answer (no final period: answers such as the option label
/// `B.` may end with one). Deriving (rather than writing them out) keeps the
/// held-out template indices of the two forms the same.
fn derive_cot(direct: &Family, name: &str, phrases: &Family) -> Result<Family> {
    let context = format!("synthetic templates: derived family `{name}`");
    let targets = Pattern::parse("{rationale} {answer_phrase} {targets}", &context)?;
    let templates = direct
        .templates
        .iter()
        .map(|t| {
            Ok(Template {
                inputs: Pattern::parse(&format!("{}\n{{trigger}}", t.inputs.source()), &context)?,
                targets: targets.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Family {
        name: name.to_string(),
        templates,
        inversions: Vec::new(),
        triggers: phrases.triggers.clone(),
        answer_phrases: phrases.answer_phrases.clone(),
        few_shot: direct.few_shot.clone(),
    })
}
