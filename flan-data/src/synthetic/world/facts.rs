//! The topics of the world text: each draws one fact (one to three sentences) and records the
//! family inputs it states ([`Fact::states`], [`super::items`]). Sentences are declarative and
//! avoid the templates' wording; a sentence that writes a number list holds no other digits, so
//! that a list never sits beside a number it does not contain.

use super::items;
use super::Fact;
use crate::synthetic::arithmetic::UNITS;
use crate::synthetic::words::{
    ANIMALS, COLOURS, FRUITS, MONTHS, MONTH_DAYS, NAMES, NEGATIVE_WORDS, POSITIVE_WORDS, TOOLS,
    WEEKDAYS, WORDS,
};
use crate::synthetic::{pick, pick_distinct, PSEUDO_CONSONANTS, PSEUDO_SYLLABLES, PSEUDO_VOWELS};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Every topic, in a fixed order (a document shuffles them with its own stream).
pub(super) const TOPICS: &[super::Topic] = &[
    weekdays,
    weekday_shift,
    months,
    dates,
    clock,
    sums,
    products,
    parity,
    comparison,
    units,
    number_list,
    word_list,
    letters,
    weekday_list,
    month_list,
    spelling,
    categories,
    sentiment_words,
    people_table,
    ordering_chain,
    truth_values,
    fruit_basket,
];

const NUMBER_WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

const ORDINALS: [&str; 26] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
];

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// A count in words up to twenty, in digits above.
fn count_word(n: usize) -> String {
    NUMBER_WORDS
        .get(n)
        .map_or_else(|| n.to_string(), |w| (*w).to_string())
}

/// `i`-th (0-based) as an ordinal word; positions used here are below 26.
fn ordinal(i: usize) -> &'static str {
    ORDINALS.get(i).copied().unwrap_or("last")
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn letter(i: usize) -> String {
    char::from(LETTERS[i % LETTERS.len()]).to_string()
}

/// Whether the string families' made-up words ([`crate::synthetic::pseudo_word`]) can take this
/// shape: the world never spells such a word out or reverses it.
pub(super) fn pseudo_word_shaped(word: &str) -> bool {
    let bytes = word.as_bytes();
    let syllables = bytes.len() / 2;
    bytes.len() % 2 == 0
        && PSEUDO_SYLLABLES.contains(&(syllables as i32))
        && bytes.chunks(2).all(|s| {
            PSEUDO_CONSONANTS.contains(&s[0]) && s.get(1).is_some_and(|v| PSEUDO_VOWELS.contains(v))
        })
}

// --- weekdays and months -------------------------------------------------------------------

fn weekdays(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let d = rng.gen_range(0..7);
    let (day, next, prev) = (WEEKDAYS[d], WEEKDAYS[(d + 1) % 7], WEEKDAYS[(d + 6) % 7]);
    match rng.gen_range(0..5) {
        0 => f.say(format!("In the week, {day} is the {} day.", ordinal(d))),
        1 => {
            f.say(format!("The day after {day} is {next}."));
            f.states(items::day_shift(1, day, true));
        }
        2 => {
            f.say(format!("The day before {day} is {prev}."));
            f.states(items::day_shift(1, day, false));
        }
        3 => {
            let e = rng.gen_range(0..7);
            let (a, b) = (d.min(e), d.max(e));
            if a == b {
                f.say(format!("{day} comes once a week."));
            } else {
                f.say(format!(
                    "In a week, {} comes before {}, and {} comes after {}.",
                    WEEKDAYS[a], WEEKDAYS[b], WEEKDAYS[b], WEEKDAYS[a]
                ));
                if b == a + 1 {
                    f.states(items::day_shift(1, WEEKDAYS[a], true));
                    f.states(items::day_shift(1, WEEKDAYS[b], false));
                }
            }
        }
        _ => {
            let weekend = f.list_and(&WEEKDAYS[5..]);
            f.say(format!(
                "A week has seven days. Monday begins it and Sunday ends it, and {weekend} make \
                 the weekend."
            ));
        }
    }
    if rng.gen_bool(0.5) {
        f.say(format!(
            "After {} comes {} again.",
            WEEKDAYS[6], WEEKDAYS[0]
        ));
        f.states(items::day_shift(1, WEEKDAYS[6], true));
    }
    f
}

fn weekday_shift(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let start = rng.gen_range(0..7usize);
    let days = rng.gen_range(2..=60usize);
    let forward = rng.gen_bool(0.5);
    let (weeks, rest) = (days / 7, days % 7);
    let end = crate::synthetic::dates::shifted_weekday(start, days, forward);
    let direction = if forward { "after" } else { "before" };
    let (from, to) = (WEEKDAYS[start], WEEKDAYS[end]);
    f.states(items::day_shift(days, from, forward));
    let week_words = |w: usize| {
        if w == 1 {
            "1 week".to_string()
        } else {
            format!("{w} weeks")
        }
    };
    if weeks >= 2 {
        f.states(items::unit("days", weeks as u32, "weeks"));
    }
    if weeks == 0 {
        f.say(format!("{days} days {direction} {from} is {to}."));
    } else if rest == 0 {
        f.say(format!(
            "{days} days are exactly {}, so {days} days {direction} {from} is {to} again.",
            week_words(weeks)
        ));
    } else {
        let rest_words = if rest == 1 {
            "1 day".to_string()
        } else {
            format!("{rest} days")
        };
        f.states(items::day_shift(rest, from, forward));
        f.say(format!(
            "{days} days {direction} {from} is {to}, since {days} days are {} and {rest_words}.",
            week_words(weeks)
        ));
    }
    f
}

fn months(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let m = rng.gen_range(0..12);
    let (month, days) = (MONTHS[m], MONTH_DAYS[m]);
    match rng.gen_range(0..4) {
        0 => f.say(format!(
            "In the year, {month} is the {} month, and it has {days} days.",
            ordinal(m)
        )),
        1 => f.say(format!(
            "The month after {month} is {}, and the month before it is {}.",
            MONTHS[(m + 1) % 12],
            MONTHS[(m + 11) % 12]
        )),
        2 => {
            let n = rng.gen_range(0..12);
            let (a, b) = (m.min(n), m.max(n));
            if a == b {
                f.say(format!("{month} comes once a year."));
            } else {
                f.say(format!(
                    "{} comes before {} in the year.",
                    MONTHS[a], MONTHS[b]
                ));
            }
        }
        _ => f.say(
            "A year has twelve months. January begins it and December ends it, and February is \
             the shortest.",
        ),
    }
    f
}

fn dates(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let m = rng.gen_range(0..12usize);
    let day = rng.gen_range(1..=MONTH_DAYS[m]);
    let add = rng.gen_range(1..=28u32);
    let (name, length) = (MONTHS[m], MONTH_DAYS[m]);
    let sum = day + add;
    f.states(items::date_add(add, name, day));
    let (later, crosses) = if sum <= length {
        (format!("{name} {sum}"), false)
    } else {
        (format!("{} {}", MONTHS[(m + 1) % 12], sum - length), true)
    };
    if add == 1 {
        f.say(format!("The day after {name} {day} is {later}."));
    } else {
        f.say(format!("{add} days after {name} {day} is {later}."));
    }
    if crosses && rng.gen_bool(0.5) {
        f.say(format!("{name} has only {length} days."));
    }
    f
}

fn clock(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let hour = rng.gen_range(1..=12u32);
    let minute = 5 * rng.gen_range(0..12u32);
    let add = 5 * rng.gen_range(1..=24u32);
    let total = minute + add;
    let new_hour = (hour - 1 + total / 60) % 12 + 1;
    f.states(items::time_add(add, hour, minute));
    f.say(format!(
        "{add} minutes after {hour}:{minute:02} the clock shows {new_hour}:{:02}.",
        total % 60
    ));
    if rng.gen_bool(0.3) {
        f.say("An hour has 60 minutes, and the clock starts again after 12.");
    }
    f
}

// --- numbers -------------------------------------------------------------------------------

fn sums(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let a = rng.gen_range(0..100u32);
    let b = rng.gen_range(0..100u32);
    let c = a + b;
    match rng.gen_range(0..3) {
        0 => {
            f.say(format!("{a} plus {b} is {c}, and {c} minus {b} is {a}."));
            f.states(items::difference(c, b));
        }
        1 => f.say(format!("{a} + {b} = {c}.")),
        _ => {
            let (hi, lo) = (a.max(b), a.min(b));
            f.say(format!("{hi} minus {lo} is {}.", hi - lo));
            f.states(items::difference(hi, lo));
            return f;
        }
    }
    for s in items::sum(a, b) {
        f.states(s);
    }
    f
}

fn products(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let n = rng.gen_range(2..10u32);
    let k = rng.gen_range(2..10u32);
    if rng.gen_bool(0.5) {
        f.say(format!("{n} times {k} is {}.", n * k));
    } else {
        f.say(format!("{n} groups of {k} make {} in all.", n * k));
    }
    f
}

fn parity(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    // Mostly small numbers, sometimes up to the family's 9999.
    let n = if rng.gen_bool(0.7) {
        rng.gen_range(0..100u32)
    } else {
        rng.gen_range(100..10_000u32)
    };
    let kind = |n: u32| if n % 2 == 0 { "even" } else { "odd" };
    f.states(items::parity(n));
    if rng.gen_bool(0.5) {
        f.states(items::parity(n + 1));
        f.say(format!(
            "{n} is {}, and {} is {}.",
            kind(n),
            n + 1,
            kind(n + 1)
        ));
    } else {
        f.say(format!("{n} is {}.", kind(n)));
    }
    f
}

fn comparison(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let a = rng.gen_range(1..1000u32);
    let mut b = rng.gen_range(1..1000u32);
    if b == a {
        b = a % 999 + 1;
    }
    let (hi, lo) = (a.max(b), a.min(b));
    for s in items::comparison(a, b) {
        f.states(s);
    }
    if rng.gen_bool(0.5) {
        f.say(format!("{hi} is larger than {lo}."));
    } else {
        f.say(format!("{lo} is smaller than {hi}."));
    }
    f
}

fn units(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let (one, many, small, factor) = UNITS[rng.gen_range(0..UNITS.len())];
    f.say(format!("One {one} has {factor} {small}."));
    if rng.gen_bool(0.6) {
        let n = rng.gen_range(2..=60u32);
        f.states(items::unit(small, n, many));
        f.say(format!("So {n} {many} make {} {small}.", n * factor));
    }
    f
}

// --- lists of the compose grid's kinds ------------------------------------------------------

/// The list facts every kind has: sorted, reversed, ends and count, extremes. `noun` names the
/// items ("numbers"), `order` says what sorting means ("in increasing order"), `top` and `bottom`
/// name the extremes ("the largest", "the smallest"). An extreme follows a word, never the list's
/// comma, so that it is not read as one more item of the list.
struct ListWords {
    noun: &'static str,
    order: &'static str,
    top: &'static str,
    bottom: &'static str,
}

fn list_facts(
    f: &mut Fact,
    rng: &mut ChaCha8Rng,
    items: &[String],
    sorted: &[String],
    w: &ListWords,
) {
    let reversed: Vec<String> = items.iter().rev().cloned().collect();
    let (max, min) = (&sorted[sorted.len() - 1], &sorted[0]);
    let written = f.list(items);
    let mut kinds = [0, 1, 2, 3];
    rand::seq::SliceRandom::shuffle(&mut kinds[..], rng);
    let noun = w.noun;
    for kind in &kinds[..2] {
        match kind {
            0 => {
                let sorted = f.list(sorted);
                f.say(format!("The {noun} {written} {} are {sorted}.", w.order));
            }
            1 => {
                let reversed = f.list(&reversed);
                f.say(format!("Backwards, the {noun} {written} read {reversed}."));
            }
            2 => f.say(format!(
                "The list {written} holds {} {noun}, starting with {} and ending with {}.",
                count_word(items.len()),
                items[0],
                items[items.len() - 1]
            )),
            _ => f.say(format!(
                "Of the {noun} {written}, {} is {max} and {} is {min}.",
                w.top, w.bottom
            )),
        }
    }
}

fn number_list(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let len = rng.gen_range(3..=7);
    // Distinct or not, as the compose cells and `sort_numbers` draw them.
    let numbers: Vec<u32> = if rng.gen_bool(0.5) {
        sample(rng, 100, len)
            .into_iter()
            .map(|i| i as u32)
            .collect()
    } else {
        (0..len).map(|_| rng.gen_range(0..100u32)).collect()
    };
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    let reversed: Vec<u32> = numbers.iter().rev().copied().collect();
    for list in [&numbers, &sorted, &reversed] {
        for m in items::membership(list) {
            f.states(m);
        }
    }
    let show = |l: &[u32]| l.iter().map(u32::to_string).collect::<Vec<_>>();
    list_facts(
        &mut f,
        rng,
        &show(&numbers),
        &show(&sorted),
        &ListWords {
            noun: "numbers",
            order: "in increasing order",
            top: "the largest",
            bottom: "the smallest",
        },
    );
    f
}

/// `k` distinct entries of `universe` in random order, and the same sorted by `key`.
fn distinct_sorted<K: Ord>(
    rng: &mut ChaCha8Rng,
    universe: &[&str],
    key: impl Fn(usize) -> K,
) -> (Vec<String>, Vec<String>) {
    let len = rng.gen_range(3..=6usize.min(universe.len()));
    let picked = sample(rng, universe.len(), len).into_vec();
    let mut sorted = picked.clone();
    sorted.sort_by_key(|&i| key(i));
    let text = |l: &[usize]| l.iter().map(|&i| universe[i].to_string()).collect();
    (text(&picked), text(&sorted))
}

fn word_list(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let (words, sorted) = distinct_sorted(rng, WORDS, |i| WORDS[i]);
    list_facts(
        &mut f,
        rng,
        &words,
        &sorted,
        &ListWords {
            noun: "words",
            order: "in alphabetical order",
            top: "the last in the alphabet",
            bottom: "the first",
        },
    );
    f
}

fn letters(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let all: Vec<String> = (0..26).map(letter).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    if rng.gen_bool(0.4) {
        let i = rng.gen_range(0..25);
        f.say(format!(
            "In the alphabet, {} is the {} letter, and the letter after it is {}.",
            letter(i),
            ordinal(i),
            letter(i + 1)
        ));
        if rng.gen_bool(0.3) {
            f.say("The alphabet has 26 letters, from a to z.");
        }
        return f;
    }
    let (picked, sorted) = distinct_sorted(rng, &all, |i| i);
    list_facts(
        &mut f,
        rng,
        &picked,
        &sorted,
        &ListWords {
            noun: "letters",
            order: "in alphabetical order",
            top: "the last in the alphabet",
            bottom: "the first",
        },
    );
    f
}

fn weekday_list(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let (days, sorted) = distinct_sorted(rng, WEEKDAYS, |i| i);
    list_facts(
        &mut f,
        rng,
        &days,
        &sorted,
        &ListWords {
            noun: "days",
            order: "in week order",
            top: "the last in the week",
            bottom: "the first",
        },
    );
    f
}

fn month_list(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let (months, sorted) = distinct_sorted(rng, MONTHS, |i| i);
    list_facts(
        &mut f,
        rng,
        &months,
        &sorted,
        &ListWords {
            noun: "months",
            order: "in calendar order",
            top: "the last in the year",
            bottom: "the first",
        },
    );
    f
}

// --- words and things ----------------------------------------------------------------------

/// The words the world spells: every vocabulary of the suite, without words shaped like the
/// string families' made-up words.
fn spellable(rng: &mut ChaCha8Rng) -> &'static str {
    let vocabularies: [&[&'static str]; 5] = [WORDS, FRUITS, ANIMALS, TOOLS, COLOURS];
    let vocabulary = vocabularies[rng.gen_range(0..vocabularies.len())];
    let spellable: Vec<&'static str> = vocabulary
        .iter()
        .copied()
        .filter(|w| !pseudo_word_shaped(w))
        .collect();
    // Every vocabulary has unshaped words ("apple", "cat", "saw", "red", "table"); the test of
    // this module checks it.
    spellable
        .get(rng.gen_range(0..spellable.len().max(1)))
        .copied()
        .unwrap_or("apple")
}

fn spelling(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let word = spellable(rng);
    let letters: Vec<String> = word.chars().map(String::from).collect();
    let mut kinds = [0, 1, 2];
    rand::seq::SliceRandom::shuffle(&mut kinds[..], rng);
    for kind in &kinds[..2] {
        match kind {
            0 => {
                let spelled = f.list(&letters);
                f.say(format!(
                    "The word {word} has {} letters: {spelled}.",
                    count_word(letters.len())
                ));
            }
            1 => f.say(format!(
                "The word {word} starts with the letter {} and ends with the letter {}.",
                letters[0],
                letters[letters.len() - 1]
            )),
            _ => {
                let backwards: String = word.chars().rev().collect();
                f.say(format!("Spelled backwards, {word} is {backwards}."));
            }
        }
    }
    f
}

fn categories(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let kinds: [(&str, &str, &[&str]); 3] = [
        ("fruit", "fruits", FRUITS),
        ("animal", "animals", ANIMALS),
        ("tool", "tools", TOOLS),
    ];
    let (one, many, members) = kinds[rng.gen_range(0..kinds.len())];
    if rng.gen_bool(0.5) {
        let three = pick_distinct(rng, members, 3);
        f.say(format!(
            "The {}, the {} and the {} are all {many}.",
            three[0], three[1], three[2]
        ));
    } else {
        let thing = pick(rng, members);
        f.say(format!(
            "{} {thing} is {} {one}.",
            capitalised(article(thing)),
            article(one)
        ));
    }
    if rng.gen_bool(0.4) {
        let colours = pick_distinct(rng, COLOURS, 3);
        let colours = f.list_and(&colours);
        f.say(format!("Among the colours are {colours}."));
    }
    f
}

fn sentiment_words(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    const SUBJECTS: &[&str] = &[
        "film", "food", "trip", "show", "game", "hotel", "music", "book", "party", "class",
    ];
    if rng.gen_bool(0.5) {
        let good = pick_distinct(rng, POSITIVE_WORDS, 2);
        let bad = pick_distinct(rng, NEGATIVE_WORDS, 2);
        let good = f.list_and(&good);
        let bad = f.list_and(&bad);
        f.say(format!(
            "People say {good} about things they like, and {bad} about things they do not like."
        ));
    } else {
        let (s1, s2) = (pick(rng, SUBJECTS), pick(rng, SUBJECTS));
        let (good, bad) = (pick(rng, POSITIVE_WORDS), pick(rng, NEGATIVE_WORDS));
        f.say(format!(
            "Someone who calls a {s1} {good} liked it, and someone who calls a {s2} {bad} did not."
        ));
    }
    f
}

// --- people, relations, truth values, baskets ----------------------------------------------

/// The table families' columns: (header, how their questions name it, a row as a sentence, the
/// top row as a sentence).
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    (
        "age",
        "age",
        "{name} is {value} years old",
        "{name} is the oldest",
    ),
    (
        "score",
        "score",
        "{name} has a score of {value}",
        "{name} has the highest score",
    ),
    (
        "height",
        "height",
        "{name} has a height of {value}",
        "{name} has the greatest height",
    ),
    (
        "pets",
        "number of pets",
        "{name} has {value} pets",
        "{name} has the most pets",
    ),
    // "owns": the word problems open with "<name> has <n> books".
    (
        "books",
        "number of books",
        "{name} owns {value} books",
        "{name} owns the most books",
    ),
];

/// How the table families' questions name a column, by its header.
#[cfg(test)]
pub(super) fn column_question(header: &str) -> Option<&'static str> {
    COLUMNS.iter().find(|c| c.0 == header).map(|c| c.1)
}

fn people_table(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let (header, question, row, top) = COLUMNS[rng.gen_range(0..COLUMNS.len())];
    let len = rng.gen_range(3..=5);
    let names = pick_distinct(rng, NAMES, len);
    let values = sample(rng, 30, len);
    let rows: Vec<(&str, u32)> = names
        .into_iter()
        .zip(values.into_iter().map(|v| v as u32 + 1))
        .collect();
    for s in items::table((header, question), &rows) {
        f.states(s);
    }
    let sentences: Vec<String> = rows
        .iter()
        .map(|(name, value)| {
            row.replace("{name}", name)
                .replace("{value}", &value.to_string())
        })
        .collect();
    let best = rows.iter().max_by_key(|(_, v)| *v).map_or("", |(n, _)| *n);
    f.say(format!("{}.", join_and(&sentences)));
    f.say(format!("{}.", top.replace("{name}", best)));
    f
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn ordering_chain(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let relation = if rng.gen_bool(0.5) { "taller" } else { "older" };
    let people = pick_distinct(rng, NAMES, 3);
    let (a, b, c) = (people[0], people[1], people[2]);
    if rng.gen_bool(0.3) {
        let opposite = if relation == "taller" {
            "shorter"
        } else {
            "younger"
        };
        f.say(format!(
            "{a} is {relation} than {b}, so {b} is {opposite} than {a}."
        ));
        return f;
    }
    for s in items::chain(&people, relation) {
        f.states(s);
    }
    f.say(format!(
        "{a} is {relation} than {b}, and {b} is {relation} than {c}, so {a} is {relation} than {c}."
    ));
    f
}

fn truth_values(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    let word = |b: bool| if b { "True" } else { "False" };
    if rng.gen_bool(0.2) {
        f.say("The opposite of True is False: not True is False, and not False is True.");
        return f;
    }
    for i in 0..rng.gen_range(1..=2) {
        let terms = [(); 2].map(|_| (rng.gen_bool(0.3), rng.gen::<bool>()));
        let and = rng.gen_bool(0.5);
        let [a, b] = terms.map(|(not, v)| v != not);
        let value = if and { a && b } else { a || b };
        let expr = items::expression(terms, and);
        f.states(expr.clone());
        let sentence = format!("{expr} is {}.", word(value));
        if i == 0 {
            f.say(sentence);
        } else {
            f.say(format!("Also, {sentence}"));
        }
    }
    f
}

fn fruit_basket(rng: &mut ChaCha8Rng) -> Fact {
    let mut f = Fact::default();
    // As `count_occurrences` draws its lists: 4-8 picks from three fruits.
    let pool = pick_distinct(rng, FRUITS, 3);
    let len = rng.gen_range(4..=8);
    let list: Vec<&str> = (0..len).map(|_| pool[rng.gen_range(0..3)]).collect();
    for s in items::count_occurrences(&list) {
        f.states(s);
    }
    let target = list[rng.gen_range(0..len)];
    let count = list.iter().filter(|w| **w == target).count();
    let written = f.list(&list);
    let times = match count {
        1 => "once".to_string(),
        2 => "twice".to_string(),
        n => format!("{} times", count_word(n)),
    };
    f.say(format!(
        "A basket holds {written}. In it, {target} comes up {times}."
    ));
    f
}
