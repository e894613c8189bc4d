//! A procedurally generated instruction-task suite that a tiny T5 can learn on a CPU.
//!
//! Pretrained Flan-T5 weights and the real benchmarks are out of reach for a 5-10M parameter
//! model trained for minutes, so the default finetuning run trains on tasks we generate
//! ourselves: [`FAMILIES`] lists 67 families in eight groups (arithmetic, lists, strings, logic,
//! dates, tables, classification, and the 30 cells of a compositional grid, `compose`). Every
//! family is a seeded generator of [`Example`]s with short
//! inputs (under ~200 characters), options where they fit and a worked rationale where one
//! exists, plus instruction templates in `flan-data/templates/synthetic.toml`, rendered by the
//! same code as every other task ([`crate::render`]).
//!
//! The paper's two held-out settings are both built in:
//! - **held-out templates**: of each family's templates the last [`HELD_OUT_TEMPLATES`] are
//!   never used in training ([`Suite::train_library`] drops them) and are evaluated separately;
//! - **held-out families**: twelve families ([`FamilyDef::held_out`]) are never trained on. Six
//!   are siblings of a trained family (a new edit, the mirror of a trained question, the same
//!   reasoning over a new relation); six are cells of the `compose` grid of list operations ×
//!   kinds of object (sort, reverse, first, last, count, max × numbers, words, letters,
//!   weekdays, months), each a new combination of an operation and a kind that trained cells
//!   teach apart and that its instructions name in words (see `compose.rs` for the grid and why
//!   these cells). Transfer is plausible by construction — but nothing guarantees that a tiny
//!   model transfers at all, and reports must say what they find.
//!
//! The API, for a trainer and an evaluator: [`FAMILIES`] / [`trained_families`] /
//! [`held_out_families`] list the families; [`generate`] makes `n` examples of a family from a
//! [`Split`] with a seed; a `[synthetic]` section of a [`crate::MixtureSpec`] ([`SyntheticSpec`],
//! see `flan-data/specs/synthetic-mixture.toml`) mixes the trained families with their seen
//! templates; [`Suite::eval_items`] renders eval examples with seen or held-out templates in a
//! [`Mode`](crate::mode::Mode) with or without exemplars (zero-shot, few-shot, zero-shot CoT,
//! few-shot CoT); [`Suite::standard_eval`] builds the whole evaluation set, each prompt with the
//! [`Exposure`] it measures. flan-eval runs and scores them like any other benchmark (exact
//! match after whitespace normalisation, behind the last answer phrase in CoT modes).
//!
//! [`world`] writes plain prose about the suite's objects (weekdays, months, numbers, lists,
//! words, people, ...) for span-corruption pretraining before the finetuning, with no
//! instruction and no evaluation item in it (`synthetic_world` in a span-corruption task of a
//! mixture spec; `flan-data/specs/synthetic-pretrain.toml`).
//!
//! Train and evaluation examples never coincide: an example's split is decided by a hash of its
//! input text ([`split_of`]), independent of seeds and counts, and each generator rejects inputs
//! of the other split. Within a split, examples may repeat when a family's input space is small.
//!
//! ```
//! use flan_data::mode::Mode;
//! use flan_data::synthetic::{self, EvalRequest, Split, Suite, TemplateSet};
//!
//! let suite = Suite::new().unwrap();
//! assert!(synthetic::FAMILIES.len() >= 30);
//! let train = synthetic::generate("sort_numbers", Split::Train, 7, 3).unwrap();
//! assert_eq!(train.len(), 3);
//!
//! let request = EvalRequest {
//!     seed: 7, n: 2, templates: TemplateSet::HeldOut, mode: Mode::Direct, shots: 2,
//! };
//! let items = suite.eval_items("sort_numbers", &request).unwrap();
//! assert!(items[0].held_out_template);
//! assert_eq!(items[0].answer, items[0].targets); // direct: the whole target is the answer
//! ```

mod arithmetic;
mod classify;
mod compose;
mod dates;
mod eval;
mod lists;
mod logic;
mod source;
mod strings;
mod summary;
mod tables;
mod templates;
mod words;
pub mod world;

pub use eval::{
    answer_after_last_phrase, normalize_whitespace, EvalPrompt, EvalRequest, TemplateSet,
};
pub use source::SyntheticSpec;
pub use summary::{Exposure, StandardEval};
pub use templates::{Suite, HELD_OUT_TEMPLATES, SYNTHETIC_TEMPLATES};
pub use world::{world_document, world_documents, SyntheticWorldSpec};

pub(crate) use source::{add_tasks, extend_library};

use crate::error::{Error, Result};
use crate::example::{Example, Provenance};
use crate::hash::fnv1a;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// One generated item before it becomes an [`Example`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    inputs: String,
    targets: String,
    options: Option<Vec<String>>,
    rationale: Option<String>,
}

impl Item {
    fn new(inputs: impl Into<String>, targets: impl Into<String>) -> Item {
        Item {
            inputs: inputs.into(),
            targets: targets.into(),
            options: None,
            rationale: None,
        }
    }

    fn options(mut self, options: Vec<String>) -> Item {
        self.options = Some(options);
        self
    }

    fn rationale(mut self, rationale: String) -> Item {
        self.rationale = Some(rationale);
        self
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

/// `k` distinct entries in random order.
fn pick_distinct<'a>(rng: &mut ChaCha8Rng, list: &[&'a str], k: usize) -> Vec<&'a str> {
    sample(rng, list.len(), k.min(list.len()))
        .into_iter()
        .map(|i| list[i])
        .collect()
}

fn join<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item.as_ref());
    }
    out
}

// The shape of [`pseudo_word`]'s words, shared with the world text (`world.rs`), which never
// spells out or reverses a word of that shape.
/// Consonants of made-up words.
const PSEUDO_CONSONANTS: &[u8] = b"bdfgklmnprstvz";
/// Vowels of made-up words.
const PSEUDO_VOWELS: &[u8] = b"aeiou";
/// Syllables of made-up words; `i32`, as the literal range it replaced was, since the type
/// decides how many random bits a draw takes (and so every later draw).
const PSEUDO_SYLLABLES: std::ops::RangeInclusive<i32> = 2..=3;

/// A pronounceable made-up word of two or three consonant-vowel syllables: string edits over a
/// space of ~350,000 words, so evaluation words are new words, not memorised ones.
fn pseudo_word(rng: &mut ChaCha8Rng) -> String {
    let syllables = rng.gen_range(PSEUDO_SYLLABLES);
    let mut word = String::with_capacity(6);
    for _ in 0..syllables {
        word.push(char::from(
            PSEUDO_CONSONANTS[rng.gen_range(0..PSEUDO_CONSONANTS.len())],
        ));
        word.push(char::from(
            PSEUDO_VOWELS[rng.gen_range(0..PSEUDO_VOWELS.len())],
        ));
    }
    word
}

/// A task family: its name, group, whether it is held out of training, and its generator.
#[derive(Clone, Copy)]
pub struct FamilyDef {
    /// Unique name (`sort_numbers`); its template family is `syn_<name>` (and `syn_<name>_cot`).
    pub name: &'static str,
    /// The group it belongs to (`arithmetic`, `lists`, `strings`, `logic`, `dates`, `tables`,
    /// `classify`, `compose`).
    pub group: &'static str,
    /// Never trained on: evaluated as an unseen task.
    pub held_out: bool,
    /// Examples carry a worked rationale, so the family also has CoT templates.
    pub has_rationale: bool,
    /// Examples carry answer options.
    pub has_options: bool,
    /// The trained family it is a sibling of, for held-out families.
    pub sibling_of: Option<&'static str>,
    generate: fn(&mut ChaCha8Rng) -> Item,
}

impl std::fmt::Debug for FamilyDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyDef")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("held_out", &self.held_out)
            .finish_non_exhaustive()
    }
}

impl FamilyDef {
    /// The template family of direct (answer-only) renderings.
    pub fn template_family(&self) -> String {
        format!("syn_{}", self.name)
    }

    /// The template family of CoT renderings (families with a rationale).
    pub fn cot_template_family(&self) -> Option<String> {
        self.has_rationale.then(|| format!("syn_{}_cot", self.name))
    }
}

const fn family(
    name: &'static str,
    group: &'static str,
    generate: fn(&mut ChaCha8Rng) -> Item,
) -> FamilyDef {
    FamilyDef {
        name,
        group,
        held_out: false,
        has_rationale: false,
        has_options: false,
        sibling_of: None,
        generate,
    }
}

const fn cot(mut f: FamilyDef) -> FamilyDef {
    f.has_rationale = true;
    f
}

const fn opts(mut f: FamilyDef) -> FamilyDef {
    f.has_options = true;
    f
}

const fn held_out(mut f: FamilyDef, sibling: &'static str) -> FamilyDef {
    f.held_out = true;
    f.sibling_of = Some(sibling);
    f
}

/// Every family of the suite, grouped. Order is stable: reports list families in this order.
pub const FAMILIES: &[FamilyDef] = &[
    // arithmetic
    family("add_sub", "arithmetic", arithmetic::add_sub),
    cot(family(
        "word_add_sub",
        "arithmetic",
        arithmetic::word_add_sub,
    )),
    cot(family("two_step", "arithmetic", arithmetic::two_step)),
    cot(family(
        "multiply_groups",
        "arithmetic",
        arithmetic::multiply_groups,
    )),
    opts(family(
        "compare_numbers",
        "arithmetic",
        arithmetic::compare_numbers,
    )),
    opts(family("even_odd", "arithmetic", arithmetic::even_odd)),
    cot(family(
        "money_change",
        "arithmetic",
        arithmetic::money_change,
    )),
    cot(family(
        "unit_convert",
        "arithmetic",
        arithmetic::unit_convert,
    )),
    // lists
    family("sort_numbers", "lists", lists::sort_numbers),
    family("reverse_list", "lists", lists::reverse_list),
    family("max_number", "lists", lists::max_number),
    held_out(
        family("min_number", "lists", lists::min_number),
        "max_number",
    ),
    cot(family(
        "count_occurrences",
        "lists",
        lists::count_occurrences,
    )),
    family("list_length", "lists", lists::list_length),
    held_out(
        family("sort_words", "lists", lists::sort_words),
        "sort_numbers",
    ),
    // strings
    family("capitalize", "strings", strings::capitalize),
    family("remove_letter", "strings", strings::remove_letter),
    family("join_words", "strings", strings::join_words),
    family("reverse_word", "strings", strings::reverse_word),
    family("acronym", "strings", strings::acronym),
    cot(family("count_letter", "strings", strings::count_letter)),
    family("last_letters", "strings", strings::last_letters),
    held_out(
        family("replace_letter", "strings", strings::replace_letter),
        "remove_letter",
    ),
    // logic
    opts(cot(family("boolean_expr", "logic", logic::boolean_expr))),
    opts(cot(family("taller_chain", "logic", logic::taller_chain))),
    opts(family("membership", "logic", logic::membership)),
    held_out(
        opts(cot(family("older_chain", "logic", logic::older_chain))),
        "taller_chain",
    ),
    // dates
    cot(family("day_after", "dates", dates::day_after)),
    held_out(
        cot(family("day_before", "dates", dates::day_before)),
        "day_after",
    ),
    cot(family("date_add", "dates", dates::date_add)),
    cot(family("time_add", "dates", dates::time_add)),
    // tables
    family("table_lookup", "tables", tables::table_lookup),
    family("table_max", "tables", tables::table_max),
    held_out(
        family(
            "table_reverse_lookup",
            "tables",
            tables::table_reverse_lookup,
        ),
        "table_lookup",
    ),
    // classification
    opts(family("classify_rule", "classify", classify::classify_rule)),
    opts(family("sentiment", "classify", classify::sentiment)),
    opts(family("category", "classify", classify::category)),
    // compose: operations x kinds (compose.rs); held-out cells point at a trained cell with the
    // same operation
    family("compose_sort_numbers", "compose", compose::sort_numbers),
    held_out(
        family("compose_sort_words", "compose", compose::sort_words),
        "compose_sort_letters",
    ),
    family("compose_sort_letters", "compose", compose::sort_letters),
    family("compose_sort_weekdays", "compose", compose::sort_weekdays),
    family("compose_sort_months", "compose", compose::sort_months),
    family(
        "compose_reverse_numbers",
        "compose",
        compose::reverse_numbers,
    ),
    family("compose_reverse_words", "compose", compose::reverse_words),
    held_out(
        family(
            "compose_reverse_letters",
            "compose",
            compose::reverse_letters,
        ),
        "compose_reverse_words",
    ),
    family(
        "compose_reverse_weekdays",
        "compose",
        compose::reverse_weekdays,
    ),
    family("compose_reverse_months", "compose", compose::reverse_months),
    held_out(
        family("compose_first_numbers", "compose", compose::first_numbers),
        "compose_first_words",
    ),
    family("compose_first_words", "compose", compose::first_words),
    family("compose_first_letters", "compose", compose::first_letters),
    family("compose_first_weekdays", "compose", compose::first_weekdays),
    family("compose_first_months", "compose", compose::first_months),
    family("compose_last_numbers", "compose", compose::last_numbers),
    family("compose_last_words", "compose", compose::last_words),
    family("compose_last_letters", "compose", compose::last_letters),
    family("compose_last_weekdays", "compose", compose::last_weekdays),
    held_out(
        family("compose_last_months", "compose", compose::last_months),
        "compose_last_weekdays",
    ),
    family("compose_count_numbers", "compose", compose::count_numbers),
    family("compose_count_words", "compose", compose::count_words),
    family("compose_count_letters", "compose", compose::count_letters),
    held_out(
        family("compose_count_weekdays", "compose", compose::count_weekdays),
        "compose_count_months",
    ),
    family("compose_count_months", "compose", compose::count_months),
    family("compose_max_numbers", "compose", compose::max_numbers),
    family("compose_max_words", "compose", compose::max_words),
    family("compose_max_letters", "compose", compose::max_letters),
    family("compose_max_weekdays", "compose", compose::max_weekdays),
    held_out(
        family("compose_max_months", "compose", compose::max_months),
        "compose_max_weekdays",
    ),
];

/// A family by name, or an error listing the known ones.
pub fn family_def(name: &str) -> Result<&'static FamilyDef> {
    FAMILIES.iter().find(|f| f.name == name).ok_or_else(|| {
        let known: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        Error::config(
            format!("synthetic family `{name}`"),
            format!("unknown; known families: {known:?}"),
        )
    })
}

/// The families trained on.
pub fn trained_families() -> impl Iterator<Item = &'static FamilyDef> {
    FAMILIES.iter().filter(|f| !f.held_out)
}

/// The families held out of training entirely.
pub fn held_out_families() -> impl Iterator<Item = &'static FamilyDef> {
    FAMILIES.iter().filter(|f| f.held_out)
}

/// Which side of the train/evaluation partition an example is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training examples (7 in 8 inputs).
    Train,
    /// Evaluation examples (1 in 8 inputs).
    Eval,
}

impl Split {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Eval => "eval",
        }
    }
}

/// The split an input belongs to: a fixed hash partition, so that no seed or count can make
/// an evaluation input appear in training.
pub fn split_of(inputs: &str) -> Split {
    if fnv1a(inputs) % 8 == 0 {
        Split::Eval
    } else {
        Split::Train
    }
}

/// Draws per kept example before giving up (the eval split keeps about 1 in 8).
const MAX_DRAWS_PER_EXAMPLE: usize = 200;

/// `n` examples of `family` from `split`, deterministic in (`family`, `split`, `seed`): the same
/// arguments give the same examples, and a prefix of a longer run equals a shorter run.
pub fn generate(family: &str, split: Split, seed: u64, n: usize) -> Result<Vec<Example>> {
    let def = family_def(family)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Separate streams per family and split, so adding a family changes no other's examples.
    rng.set_stream(fnv1a(def.name) ^ (split as u64));
    let file = PathBuf::from(format!(
        "synthetic/{}/{}/seed-{seed}",
        def.name,
        split.name()
    ));
    let mut out = Vec::with_capacity(n);
    let max_draws = n.saturating_mul(MAX_DRAWS_PER_EXAMPLE).max(1000);
    let mut draws = 0;
    while out.len() < n {
        if draws == max_draws {
            return Err(Error::config(
                format!("synthetic family `{}`", def.name),
                format!(
                    "found only {} {} examples in {draws} draws; the family's input space is too small",
                    out.len(),
                    split.name()
                ),
            ));
        }
        draws += 1;
        let item = (def.generate)(&mut rng);
        if split_of(&item.inputs) != split {
            continue;
        }
        out.push(Example {
            task: def.name.to_string(),
            inputs: item.inputs,
            targets: item.targets,
            options: item.options,
            rationale: item.rationale,
            provenance: Provenance {
                file: file.clone(),
                line: out.len() + 1,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
