//! Plain prose about the suite's own world, for T5-style pretraining (span corruption) before
//! the suite's finetuning.
//!
//! **What for.** The paper's baseline is a pretrained T5, prompted; Flan finetuning starts from
//! it. A tiny model trained from scratch on the suite has no such start: it must learn what a
//! weekday is, that 17 comes after 9, how a word is spelled, from instructions alone. This module
//! writes the knowledge the suite's families draw on as short declarative paragraphs —
//! "The day after Friday is Saturday.", "In the year, March is the third month, and it has 31
//! days.", "The numbers 9, 4, 17 in increasing order are 4, 9, 17.", "The word apple has five
//! letters: a, p, p, l, e.", "12 plus 60 is 72, and 72 minus 60 is 12." — over the same
//! vocabularies and object kinds as the families (numbers, words, letters, weekdays, months,
//! dates and clock times, units, people with ages and scores, truth values, fruit baskets),
//! several topics mixed in each paragraph. A mixture spec uses it as the documents of a
//! `format = "span_corruption"` task (`synthetic_world = { documents, seed }`,
//! [`SyntheticWorldSpec`]; `flan-data/specs/synthetic-pretrain.toml`); span corruption then
//! teaches a model to fill in the facts (a masked "Saturday" after "The day after Friday is"),
//! a skill the finetuning can draw on.
//!
//! **Knowledge, not tasks.** Nothing here is an instruction, a question or a question/answer
//! format: no sentence uses the wording of the suite's templates (`templates/synthetic.toml`),
//! none ends with a question mark, none says "answer". A model pretrained on it has seen facts,
//! never the prompts it is evaluated with.
//!
//! **No evaluation item.** Pretraining text that stated the answer of an evaluation item would
//! leak it: the baseline and the finetuned model would be measured on items they had read. The
//! suite decides an example's split by a hash of its input text ([`split_of`]); eval items are
//! exactly the inputs that hash into [`Split::Eval`], for every seed and count. So every fact
//! records the family inputs whose answer it states — written as the family generators write
//! them: the list `"4, 9, 17"` of the list and compose families (for every list the text writes
//! out whole, sorted and reversed ones included), `"57 + 28"` and `"28 + 57"` for "57 plus 28 is
//! 85", `"What day of the week is 3 days after Monday?"` for "3 days after Monday is Thursday",
//! the membership inputs of each number in a written list, the four inputs of a comparison,
//! every question over a table written as sentences, the twelve inputs of a written ordering
//! chain, and so on — and a fact is written only if every one of them hashes into
//! [`Split::Train`]; otherwise it is drawn again. General knowledge that many items share
//! (what kind of thing an apple is, 7 × 8, how many days March has) is not an item: an item is a
//! family's whole input, and the word problems, sentences and made-up words of the families never
//! occur (the text has no stories, and never spells out or reverses a word shaped like the
//! string families' made-up words). The tests check, independently of this bookkeeping, that no
//! instance of an evaluation item of the standard evaluation occurs in the text, and that the
//! same text without the filter does contain some.
//!
//! Each document is a function of (seed, index) alone — its own ChaCha8 stream — so
//! [`world_documents`] is deterministic, its first k documents are the same for any longer run,
//! and documents are generated in parallel.

mod facts;
mod items;
#[cfg(test)]
mod tests;

use super::{split_of, Split};
use crate::error::{Error, Result};
use crate::example::Provenance;
use crate::span_corruption::Document;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Fewest and most whitespace-separated words of a document.
pub const MIN_WORDS: usize = 40;
/// See [`MIN_WORDS`].
pub const MAX_WORDS: usize = 150;
/// Most words of one fact (a topic's one to three sentences).
const MAX_FACT_WORDS: usize = 45;
/// Fewest facts (so topics) of a document.
const MIN_FACTS: usize = 3;
/// A document's word target, drawn in this range: it stops adding facts once it has reached
/// the target and [`MIN_FACTS`] facts. Low in `MIN_WORDS..=MAX_WORDS`, so that documents
/// average ~67 words (45 to ~110), ~124 pieces with the suite's 2000-piece tokenizer, and two
/// usually share a packed 256-token row (measured: 1.95 documents a row, 86% of slots real; at
/// ~86 words it was 1.33 and 75%).
const TARGET_WORDS: std::ops::RangeInclusive<usize> = MIN_WORDS + 5..=MIN_WORDS + 25;
// Before its last fact a document has fewer words than the target or at most
// `(MIN_FACTS - 1) × MAX_FACT_WORDS`; the last fact must keep it within MAX_WORDS.
const _: () = assert!(*TARGET_WORDS.end() + MAX_FACT_WORDS <= MAX_WORDS);
const _: () = assert!(MIN_FACTS * MAX_FACT_WORDS <= MAX_WORDS);
/// Draws of a topic before it is passed over (a fact is drawn again when it would state an
/// evaluation item; a few static facts always would).
const MAX_DRAWS: usize = 64;

/// `synthetic_world = { documents = 20000, seed = 7 }` in a span-corruption task of a mixture
/// spec: the task's documents are [`world_documents`]`(seed, documents)` instead of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticWorldSpec {
    /// How many documents (at least 1).
    pub documents: usize,
    /// Seed of the documents.
    #[serde(default)]
    pub seed: u64,
}

impl SyntheticWorldSpec {
    /// Where the documents say they come from: `synthetic_world/seed-<seed>`, line = index + 1.
    pub fn origin(&self) -> PathBuf {
        PathBuf::from(format!("synthetic_world/seed-{}", self.seed))
    }

    /// The documents, each with its provenance ([`SyntheticWorldSpec::origin`], line = index +
    /// 1); an error for `documents = 0`.
    pub fn documents(&self) -> Result<Vec<Document>> {
        if self.documents == 0 {
            return Err(Error::config(
                "synthetic_world",
                "documents must be at least 1",
            ));
        }
        let file = self.origin();
        Ok(world_documents(self.seed, self.documents)
            .into_iter()
            .enumerate()
            .map(|(i, text)| Document {
                text,
                provenance: Provenance {
                    file: file.clone(),
                    line: i + 1,
                },
            })
            .collect())
    }
}

/// `n` documents of the world text with `seed`: document `i` is [`world_document`]`(seed, i)`,
/// so a shorter run is a prefix of a longer one.
pub fn world_documents(seed: u64, n: usize) -> Vec<String> {
    (0..n as u64)
        .into_par_iter()
        .map(|i| world_document(seed, i))
        .collect()
}

/// Document `index` of the world text with `seed`: a paragraph of [`MIN_WORDS`] to
/// [`MAX_WORDS`] words mixing facts of several topics, none stating an evaluation item.
pub fn world_document(seed: u64, index: u64) -> String {
    compose(seed, index, Filter::TrainOnly)
}

/// Whether facts that state evaluation items are drawn again (always, outside tests: the tests
/// turn it off to show that the check they make finds such facts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    TrainOnly,
    #[cfg(test)]
    Off,
}

/// One fact: its sentences and the family inputs whose answers they state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fact {
    text: String,
    states: Vec<String>,
}

impl Fact {
    /// Adds a sentence.
    fn say(&mut self, sentence: impl AsRef<str>) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(sentence.as_ref());
    }

    /// Records a family input whose answer the fact states.
    fn states(&mut self, input: impl Into<String>) {
        self.states.push(input.into());
    }

    /// `items` written as the suite writes a list (`a, b, c`), recorded: a whole list is the
    /// input of the list and compose families.
    fn list<S: AsRef<str>>(&mut self, items: &[S]) -> String {
        let text = super::join(items);
        self.states(text.clone());
        text
    }

    /// `items` written as prose (`a, b and c`), recorded as the list it is (`a, b, c`).
    fn list_and<S: AsRef<str>>(&mut self, items: &[S]) -> String {
        self.states(super::join(items));
        match items {
            [] => String::new(),
            [one] => one.as_ref().to_string(),
            [init @ .., last] => format!("{} and {}", super::join(init), last.as_ref()),
        }
    }

    fn words(&self) -> usize {
        self.text.split_whitespace().count()
    }

    /// Whether every input the fact states is a training input.
    fn train_only(&self) -> bool {
        self.states.iter().all(|i| split_of(i) == Split::Train)
    }
}

/// A topic: draws one fact.
type Topic = fn(&mut ChaCha8Rng) -> Fact;

/// A fact of `topic` that passes `filter`, or `None` after [`MAX_DRAWS`] draws.
fn draw(topic: Topic, rng: &mut ChaCha8Rng, filter: Filter) -> Option<Fact> {
    (0..MAX_DRAWS)
        .map(|_| topic(rng))
        .find(|fact| match filter {
            Filter::TrainOnly => fact.train_only(),
            #[cfg(test)]
            Filter::Off => true,
        })
}

/// The document `index` of `seed`: topics in a seeded order, one fact each, until the word
/// target (drawn in [`TARGET_WORDS`]) and [`MIN_FACTS`] facts are reached.
fn compose(seed: u64, index: u64, filter: Filter) -> String {
    compose_facts(seed, index, filter)
        .into_iter()
        .map(|f| f.text)
        .collect::<Vec<_>>()
        .join(" ")
}

fn compose_facts(seed: u64, index: u64, filter: Filter) -> Vec<Fact> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let target = rng.gen_range(TARGET_WORDS);
    let mut topics: Vec<Topic> = facts::TOPICS.to_vec();
    topics.shuffle(&mut rng);
    let mut out = Vec::new();
    let mut words = 0;
    for topic in topics {
        if words >= target && out.len() >= MIN_FACTS {
            break;
        }
        if let Some(fact) = draw(topic, &mut rng, filter) {
            words += fact.words();
            out.push(fact);
        }
    }
    out
}
