//! Compositional families: a grid of list operations × kinds of object, one family per cell
//! (`compose_<op>_<kind>`), some cells held out of training, so that transfer to a held-out cell
//! is a new combination of skills that trained cells teach and the instruction names in words.
//!
//! | op \ kind | numbers | words | letters | weekdays | months |
//! |-----------|---------|-------|---------|----------|--------|
//! | sort      | trained | **held out** | trained | trained | trained |
//! | reverse   | trained | trained | **held out** | trained | trained |
//! | first     | **held out** | trained | trained | trained | trained |
//! | last      | trained | trained | trained | trained | **held out** |
//! | count     | trained | trained | trained | **held out** | trained |
//! | max       | trained | trained | trained | trained | **held out** |
//!
//! - **Operations**: `sort` (ascending in the kind's own order), `reverse` (the given order
//!   backwards), `first` and `last` (by position), `count` (how many items), `max` (the item that
//!   comes last in the kind's order: the largest number, the word or letter last in alphabetical
//!   order, the latest weekday or month). Every operation is held out exactly once.
//! - **Kinds**, each with its order: numbers 0-99 (by value), common words (alphabetical), the
//!   letters a-z (alphabetical), weekdays (Monday to Sunday), months (January to December).
//!   Every kind is held out at least once (months twice) and trained with at least four
//!   operations.
//! - **Which cells are held out, and why these**: a diagonal-like set, so that every held-out
//!   operation is trained on four other kinds and every held-out kind with four other operations.
//!   The two order-dependent operations (`sort`, `max`) are never both held out for one kind, so
//!   the kind's order is always taught by a trained cell (words' alphabetical order by
//!   `max_words`, months' calendar order by `sort_months`). `sort × words` is held out because
//!   the older held-out family `sort_words` is that very task; the cells that the older trained
//!   families `sort_numbers`, `reverse_list` (words), `max_number` and `list_length` (words)
//!   already are stay trained, so no held-out cell is trained under another name.
//!
//! Templates (`syn_compose_<op>_<kind>` in `templates/synthetic.toml`) are written per operation
//! with the kind's nouns and order phrases put in ("Sort these months in order from January to
//! December: ..."), so the seen templates of a held-out cell join an operation phrase and a kind
//! phrase that training showed apart, never together. The held-out templates (the last
//! [`HELD_OUT_TEMPLATES`](super::HELD_OUT_TEMPLATES)) share one frame across operations ("Here
//! are some months: ...").
//!
//! **Why whole items, not characters.** The suite's default tokenizer is a 2000-piece Unigram
//! trained on the suite: a made-up word is several pieces of uneven length (`dakemi` is
//! `▁ d ake m i`), and nothing in training shows the model which letters a piece is made of, so
//! character edits (reverse a word, remove a letter, capitalise) ask an 8M-parameter model to
//! learn every piece's spelling from the edits alone — the default run scored 0% on those
//! families. A character-level vocabulary would show the spelling but make every sequence about
//! three times longer (rendered inputs average ~42 pieces and ~139 characters), a third of the
//! examples in the same ten minutes, so the grid changes the families instead: every item is a whole word, a number, a weekday or a month
//! (one piece each with that tokenizer, except `0`) or a single letter written as its own word
//! (`▁b`, or a bare `▁` and the letter's piece), and an answer is a copy, a permutation or a
//! count of the items, learnable from pieces alone. Lists hold 3-6 distinct items, so answers
//! are short (a list is ~8 pieces, ~12 for letters; a zero-shot prompt ~23) and exact match
//! checks them; the input is the bare list (`"Friday, Monday, Sunday"`), so a list's split is
//! the same in every cell of its kind.

use super::words::{MONTHS, WEEKDAYS, WORDS};
use super::{join, Item};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;

/// Fewest and most items in a list.
const MIN_ITEMS: usize = 3;
const MAX_ITEMS: usize = 6;

/// Numbers are drawn from `0..NUMBERS`.
const NUMBERS: usize = 100;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// What a cell does to its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Ascending in the kind's order.
    Sort,
    /// The given order backwards.
    Reverse,
    /// The first item.
    First,
    /// The last item.
    Last,
    /// How many items.
    Count,
    /// The item that comes last in the kind's order.
    Max,
}

/// What a cell's list holds. Each kind has a universe of items and an order over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 0-99, by value.
    Numbers,
    /// Common lower-case words, alphabetical.
    Words,
    /// a-z, alphabetical.
    Letters,
    /// Monday to Sunday.
    Weekdays,
    /// January to December.
    Months,
}

impl Kind {
    /// How many distinct items the kind has.
    fn universe(self) -> usize {
        match self {
            Kind::Numbers => NUMBERS,
            Kind::Words => WORDS.len(),
            Kind::Letters => LETTERS.len(),
            Kind::Weekdays => WEEKDAYS.len(),
            Kind::Months => MONTHS.len(),
        }
    }

    /// The text of item `i` of the universe.
    fn text(self, i: usize) -> String {
        match self {
            Kind::Numbers => i.to_string(),
            Kind::Words => WORDS[i].to_string(),
            Kind::Letters => char::from(LETTERS[i]).to_string(),
            Kind::Weekdays => WEEKDAYS[i].to_string(),
            Kind::Months => MONTHS[i].to_string(),
        }
    }

    /// The kind's order over universe indices. Every universe but the words' is listed in its
    /// order already; words compare as text.
    fn compare(self, a: usize, b: usize) -> Ordering {
        match self {
            Kind::Words => WORDS[a].cmp(WORDS[b]),
            _ => a.cmp(&b),
        }
    }
}

/// One example of the cell (`op`, `kind`): the input is the bare list, the target the answer.
fn cell(op: Op, kind: Kind, rng: &mut ChaCha8Rng) -> Item {
    let len = rng.gen_range(MIN_ITEMS..=MAX_ITEMS.min(kind.universe()));
    let mut list = sample(rng, kind.universe(), len).into_vec();
    let inputs = join(list.iter().map(|&i| kind.text(i)));
    let targets = match op {
        Op::Sort => {
            list.sort_by(|&a, &b| kind.compare(a, b));
            join(list.iter().map(|&i| kind.text(i)))
        }
        Op::Reverse => join(list.iter().rev().map(|&i| kind.text(i))),
        // `sample` gives at least MIN_ITEMS indices, so `first`, `last` and `max` exist; the
        // fallbacks only keep the code free of panics.
        Op::First => list.first().map_or_else(String::new, |&i| kind.text(i)),
        Op::Last => list.last().map_or_else(String::new, |&i| kind.text(i)),
        Op::Count => list.len().to_string(),
        Op::Max => list
            .iter()
            .copied()
            .max_by(|&a, &b| kind.compare(a, b))
            .map_or_else(String::new, |i| kind.text(i)),
    };
    Item::new(inputs, targets)
}

/// One generator per cell, named `<op>_<kind>` (the family is `compose_<op>_<kind>`).
macro_rules! cells {
    ($($name:ident = $op:ident, $kind:ident;)*) => {
        $(
            #[doc = concat!("`", stringify!($op), "` over `", stringify!($kind), "`.")]
            pub(crate) fn $name(rng: &mut ChaCha8Rng) -> Item {
                cell(Op::$op, Kind::$kind, rng)
            }
        )*
    };
}

cells! {
    sort_numbers = Sort, Numbers;
    sort_words = Sort, Words;
    sort_letters = Sort, Letters;
    sort_weekdays = Sort, Weekdays;
    sort_months = Sort, Months;
    reverse_numbers = Reverse, Numbers;
    reverse_words = Reverse, Words;
    reverse_letters = Reverse, Letters;
    reverse_weekdays = Reverse, Weekdays;
    reverse_months = Reverse, Months;
    first_numbers = First, Numbers;
    first_words = First, Words;
    first_letters = First, Letters;
    first_weekdays = First, Weekdays;
    first_months = First, Months;
    last_numbers = Last, Numbers;
    last_words = Last, Words;
    last_letters = Last, Letters;
    last_weekdays = Last, Weekdays;
    last_months = Last, Months;
    count_numbers = Count, Numbers;
    count_words = Count, Words;
    count_letters = Count, Letters;
    count_weekdays = Count, Weekdays;
    count_months = Count, Months;
    max_numbers = Max, Numbers;
    max_words = Max, Words;
    max_letters = Max, Letters;
    max_weekdays = Max, Weekdays;
    max_months = Max, Months;
}

#[cfg(test)]
pub(super) mod tests;
