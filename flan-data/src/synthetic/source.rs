//! The suite as a task source of a mixture: a `[synthetic]` section of a [`MixtureSpec`] adds
//! one task per trained family (and one CoT task per family with a rationale), generated from
//! the train split, rendered with training templates only.

use super::templates::Suite;
use super::{generate, Split, FAMILIES};
use crate::error::{Error, Result};
use crate::source::wildcard_match;
use crate::spec::MixtureSpec;
use crate::task::{Task, TaskRegistry};
use crate::template::TemplateLibrary;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[synthetic]` section of a mixture spec.
///
/// ```toml
/// [synthetic]
/// seed = 1
/// examples_per_family = 5000
/// submixture = "flan"      # direct-answer tasks
/// cot_submixture = "cot"   # CoT tasks (families with rationales)
/// families = ["*"]         # wildcards over family names; held-out families are never added
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Seed of the generated training examples.
    #[serde(default)]
    pub seed: u64,
    /// Training examples generated per family (and per CoT task).
    pub examples_per_family: usize,
    /// Submixture of the direct-answer tasks.
    #[serde(default = "default_submixture")]
    pub submixture: String,
    /// Submixture of the CoT tasks.
    #[serde(default = "default_cot_submixture")]
    pub cot_submixture: String,
    /// Add a CoT task for each family with a rationale.
    #[serde(default = "yes")]
    pub cot: bool,
    /// Family-name patterns (`*` wildcard) to include; default: all trained families.
    #[serde(default = "all")]
    pub families: Vec<String>,
}

fn default_submixture() -> String {
    "flan".into()
}
fn default_cot_submixture() -> String {
    "cot".into()
}
fn yes() -> bool {
    true
}
fn all() -> Vec<String> {
    vec!["*".into()]
}

/// Adds the suite's training templates to `library` (needed by [`add_tasks`]'s tasks).
pub(crate) fn extend_library(library: &mut TemplateLibrary) -> Result<()> {
    let train = Suite::new()?.train_library();
    library.families.extend(train.families);
    Ok(())
}

/// Adds the tasks of `synthetic` to `registry`; task names excluded by `spec` go to `excluded`.
pub(crate) fn add_tasks(
    synthetic: &SyntheticSpec,
    spec: &MixtureSpec,
    registry: &mut TaskRegistry,
    excluded: &mut Vec<String>,
) -> Result<()> {
    for sub in [&synthetic.submixture, &synthetic.cot_submixture] {
        if !spec.submixtures.contains_key(sub) {
            let known: Vec<&String> = spec.submixtures.keys().collect();
            return Err(Error::config(
                "[synthetic]",
                format!("unknown submixture `{sub}`; known: {known:?}"),
            ));
        }
    }
    if synthetic.examples_per_family == 0 {
        return Err(Error::config(
            "[synthetic]",
            "examples_per_family must be at least 1",
        ));
    }
    for pattern in &synthetic.families {
        if !FAMILIES.iter().any(|f| wildcard_match(pattern, f.name)) {
            return Err(Error::config(
                "[synthetic]",
                format!("`{pattern}` matches no family"),
            ));
        }
        // Wildcards pass over held-out families by design; naming one is a mistake to report.
        if let Some(f) = FAMILIES.iter().find(|f| f.held_out && f.name == pattern) {
            return Err(Error::config(
                "[synthetic]",
                format!(
                    "`{}` is held out of training (it tests transfer from `{}`); evaluate it with Suite::eval_items instead",
                    f.name,
                    f.sibling_of.unwrap_or("a trained family")
                ),
            ));
        }
    }
    let chosen: Vec<_> = FAMILIES
        .iter()
        .filter(|f| !f.held_out)
        .filter(|f| synthetic.families.iter().any(|p| wildcard_match(p, f.name)))
        .collect();
    let generated: Vec<Result<Vec<Task>>> = chosen
        .par_iter()
        .map(|def| {
            let examples = generate(
                def.name,
                Split::Train,
                synthetic.seed,
                synthetic.examples_per_family,
            )?;
            let mut tasks = Vec::new();
            let forms = [
                (Some(def.template_family()), &synthetic.submixture),
                (
                    def.cot_template_family().filter(|_| synthetic.cot),
                    &synthetic.cot_submixture,
                ),
            ];
            for (family, submixture) in forms {
                let Some(family) = family else { continue };
                let mut examples = examples.clone();
                for ex in &mut examples {
                    ex.task.clone_from(&family);
                }
                tasks.push(Task {
                    name: family.clone(),
                    submixture: submixture.clone(),
                    family,
                    sources: vec![PathBuf::from(format!("synthetic/{}", def.name))],
                    examples,
                    definition: None,
                    demonstrations: Vec::new(),
                    skipped: Default::default(),
                    ignored: Default::default(),
                });
            }
            Ok(tasks)
        })
        .collect();
    for tasks in generated {
        for task in tasks? {
            if spec.is_excluded(&task.name) {
                excluded.push(task.name);
            } else {
                registry.add(task)?;
            }
        }
    }
    Ok(())
}
