//! Tests of the world text: determinism and prefixes, paragraph bounds, no template wording,
//! the item builders against the family generators, and — the point of it — that no instance
//! of an evaluation item occurs in the text, checked by a detector that knows nothing of the
//! generator's bookkeeping and that finds such instances in the same text generated without the
//! filter.

use super::facts::{pseudo_word_shaped, TOPICS};
use super::*;
use crate::synthetic::words::{ANIMALS, COLOURS, FRUITS, MONTHS, TOOLS, WEEKDAYS, WORDS};
use crate::synthetic::{generate, EvalPrompt, StandardEval, Suite, FAMILIES};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[test]
fn documents_are_deterministic_prefix_stable_and_seeded() {
    let docs = world_documents(7, 60);
    assert_eq!(docs.len(), 60);
    assert_eq!(world_documents(7, 60), docs);
    assert_eq!(world_documents(7, 25), docs[..25]);
    assert_eq!(world_document(7, 41), docs[41]);
    let other = world_documents(8, 60);
    let same = docs.iter().zip(&other).filter(|(a, b)| a == b).count();
    assert_eq!(same, 0, "another seed gives other documents");
    let distinct: HashSet<&String> = docs.iter().collect();
    assert_eq!(distinct.len(), docs.len());
    assert!(world_documents(7, 0).is_empty());
}

#[test]
fn the_spec_gives_documents_with_their_provenance() {
    let spec = SyntheticWorldSpec {
        documents: 5,
        seed: 3,
    };
    let docs = spec.documents().unwrap();
    assert_eq!(docs.len(), 5);
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d.text, world_document(3, i as u64));
        assert_eq!(d.provenance.file, PathBuf::from("synthetic_world/seed-3"));
        assert_eq!(d.provenance.line, i + 1);
    }
    let err = SyntheticWorldSpec {
        documents: 0,
        seed: 3,
    }
    .documents()
    .unwrap_err()
    .to_string();
    assert!(err.contains("documents must be at least 1"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn documents_are_plain_paragraphs_of_several_topics(
        seed in any::<u64>(),
        index in any::<u64>(),
    ) {
        let facts = compose_facts(seed, index, Filter::TrainOnly);
        let text = world_document(seed, index);
        let words = text.split_whitespace().count();
        prop_assert!((MIN_WORDS..=MAX_WORDS).contains(&words), "{words} words: {text}");
        prop_assert!(facts.len() >= MIN_FACTS, "{} facts: {text}", facts.len());
        for f in &facts {
            prop_assert!(f.words() <= MAX_FACT_WORDS, "{}", f.text);
            prop_assert!(f.text.ends_with('.'), "{}", f.text);
            prop_assert!(f.train_only());
        }
        // Prose, not prompts: no line breaks, questions, answer labels or table rows.
        prop_assert!(!text.contains(['\n', '?', '|']), "{text}");
        let lower = text.to_lowercase();
        for label in ["answer", "question", "options", "q:", "a:"] {
            prop_assert!(!lower.contains(label), "{label}: {text}");
        }
    }
}

/// Word n-grams of `text` within its sentences and clauses (cut at `.`, `?`, `!`, `:`, `;` and
/// line breaks), lower case, other punctuation dropped.
fn ngrams(text: &str, n: usize) -> Vec<String> {
    text.split(['.', '?', '!', ':', ';', '\n'])
        .flat_map(|clause| {
            let words: Vec<String> = clause
                .split(|c: char| !c.is_alphanumeric() && c != '\'')
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            words.windows(n).map(|w| w.join(" ")).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn no_document_uses_the_wording_of_an_instruction_template() {
    let suite = Suite::new().unwrap();
    const N: usize = 4;
    let template: HashSet<String> = suite
        .template_texts()
        .iter()
        .flat_map(|t| ngrams(t, N))
        .collect();
    assert!(template.len() > 500, "{}", template.len());
    let mut shared: BTreeMap<String, usize> = BTreeMap::new();
    for doc in world_documents(11, 3000) {
        for g in ngrams(&doc, N) {
            if template.contains(&g) {
                *shared.entry(g).or_default() += 1;
            }
        }
    }
    assert!(
        shared.is_empty(),
        "{N}-word runs of template text: {shared:?}"
    );
}

#[test]
fn every_topic_is_used_and_every_kind_of_list_is_written() {
    let mut used = vec![0usize; TOPICS.len()];
    for i in 0..2000 {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        rng.set_stream(i);
        for (t, topic) in TOPICS.iter().enumerate() {
            if let Some(fact) = draw(*topic, &mut rng, Filter::TrainOnly) {
                assert!(fact.words() <= MAX_FACT_WORDS, "{}", fact.text);
                used[t] += 1;
            }
        }
    }
    assert!(used.iter().all(|&n| n == 2000), "draws per topic: {used:?}");
    let text = world_documents(5, 400).join(" ");
    for needle in [
        "in increasing order are",
        "in alphabetical order are",
        "in week order are",
        "in calendar order are",
        "Backwards, the",
        "days after",
        "minutes after",
        " plus ",
        " is larger than ",
        " is even",
        "A basket holds",
        "years old",
        "is taller than",
        "has five letters",
    ] {
        assert!(text.contains(needle), "no {needle:?}");
    }
}

#[test]
fn spelled_words_are_never_shaped_like_the_made_up_words() {
    assert!(pseudo_word_shaped("dakemi") && pseudo_word_shaped("rake"));
    assert!(!pseudo_word_shaped("apple") && !pseudo_word_shaped("cat"));
    for vocabulary in [WORDS, FRUITS, ANIMALS, TOOLS, COLOURS] {
        let unshaped = vocabulary.iter().filter(|w| !pseudo_word_shaped(w)).count();
        assert!(unshaped * 2 > vocabulary.len(), "{vocabulary:?}");
    }
    for ex in generate("reverse_word", Split::Train, 1, 200).unwrap() {
        assert!(pseudo_word_shaped(&ex.inputs), "{}", ex.inputs);
    }
    let text = world_documents(2, 2000).join(" ");
    for sentence in text.split(". ") {
        if let Some(rest) = sentence.strip_prefix("Spelled backwards, ") {
            let word = rest.split(' ').next().unwrap();
            assert!(!pseudo_word_shaped(word), "{sentence}");
        }
        if let Some(rest) = sentence.strip_prefix("The word ") {
            let word = rest.split(' ').next().unwrap();
            assert!(!pseudo_word_shaped(word), "{sentence}");
        }
    }
}

// --- the item builders write inputs as the families do ---------------------------------------

fn examples(family: &str) -> Vec<crate::Example> {
    let mut all = generate(family, Split::Train, 3, 300).unwrap();
    all.extend(generate(family, Split::Eval, 3, 100).unwrap());
    all
}

fn num(s: &str) -> u32 {
    s.trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// `text` after `prefix` and before `suffix`.
fn between<'a>(text: &'a str, prefix: &str, suffix: &str) -> &'a str {
    let rest = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{text:?} does not start with {prefix:?}"));
    rest.strip_suffix(suffix)
        .unwrap_or_else(|| panic!("{text:?} does not end with {suffix:?}"))
}

#[test]
fn item_builders_write_inputs_exactly_as_the_family_generators() {
    for family in ["day_after", "day_before"] {
        for ex in examples(family) {
            let q = between(&ex.inputs, "What day of the week is ", "?");
            let parts: Vec<&str> = q.split(' ').collect();
            let built = items::day_shift(num(parts[0]) as usize, parts[3], parts[2] == "after");
            assert_eq!(built, ex.inputs);
        }
    }
    for ex in examples("date_add") {
        let q = between(&ex.inputs, "What is the date ", "?");
        let parts: Vec<&str> = q.split(' ').collect();
        assert_eq!(
            items::date_add(num(parts[0]), parts[3], num(parts[4])),
            ex.inputs
        );
    }
    for ex in examples("time_add") {
        let q = between(&ex.inputs, "What time is it ", "?");
        let parts: Vec<&str> = q.split(' ').collect();
        let (h, m) = parts[3].split_once(':').unwrap();
        assert_eq!(items::time_add(num(parts[0]), num(h), num(m)), ex.inputs);
    }
    for ex in examples("add_sub") {
        let (a, b) = ex
            .inputs
            .split_once(" + ")
            .or_else(|| ex.inputs.split_once(" - "))
            .unwrap();
        if ex.inputs.contains('+') {
            assert_eq!(items::sum(num(a), num(b))[0], ex.inputs);
        } else {
            assert_eq!(items::difference(num(a), num(b)), ex.inputs);
        }
    }
    for ex in examples("even_odd") {
        assert_eq!(items::parity(num(&ex.inputs)), ex.inputs);
    }
    for ex in examples("compare_numbers") {
        let o = ex.options.as_ref().unwrap();
        assert!(items::comparison(num(&o[0]), num(&o[1])).contains(&ex.inputs));
    }
    for ex in examples("unit_convert") {
        let q = between(&ex.inputs, "How many ", "?");
        let parts: Vec<&str> = q.split(' ').collect();
        assert_eq!(items::unit(parts[0], num(parts[3]), parts[4]), ex.inputs);
    }
    for ex in examples("membership") {
        let (q, list) = between(&ex.inputs, "number: ", "")
            .split_once("; list: ")
            .unwrap();
        let list: Vec<u32> = list.split(", ").map(num).collect();
        let built = items::membership(&list);
        assert_eq!(built.contains(&ex.inputs), list.contains(&num(q)));
    }
    for ex in examples("count_occurrences") {
        let (_, list) = ex.inputs.split_once(" appear in: ").unwrap();
        let list: Vec<&str> = list.trim_end_matches('?').split(", ").collect();
        assert!(items::count_occurrences(&list).contains(&ex.inputs));
    }
    for family in ["table_lookup", "table_max", "table_reverse_lookup"] {
        for ex in examples(family) {
            let mut lines = ex.inputs.lines();
            let header = lines.next().unwrap().strip_prefix("name | ").unwrap();
            let rows: Vec<(&str, u32)> = lines
                .filter_map(|l| l.split_once(" | "))
                .map(|(n, v)| (n, num(v)))
                .collect();
            let asked = super::facts::column_question(header).unwrap();
            assert!(
                items::table((header, asked), &rows).contains(&ex.inputs),
                "{}",
                ex.inputs
            );
        }
    }
    for family in ["taller_chain", "older_chain"] {
        let relation = if family == "taller_chain" {
            "taller"
        } else {
            "older"
        };
        let mut three = 0;
        for ex in examples(family) {
            let (facts, _) = ex.inputs.rsplit_once(" Is ").unwrap();
            let pairs: Vec<(&str, &str)> = facts
                .split(". ")
                .map(|f| {
                    f.trim_end_matches('.')
                        .split_once(&format!(" is {relation} than "))
                        .unwrap()
                })
                .collect();
            if pairs.len() != 2 {
                continue;
            }
            three += 1;
            // The chain's top is never on the right of a fact.
            let top = pairs
                .iter()
                .find(|(x, _)| pairs.iter().all(|(_, y)| y != x))
                .unwrap()
                .0;
            let mid = pairs.iter().find(|(x, _)| *x == top).unwrap().1;
            let low = pairs.iter().find(|(x, _)| *x == mid).unwrap().1;
            assert!(items::chain(&[top, mid, low], relation).contains(&ex.inputs));
        }
        assert!(three > 50);
    }
    let mut two_terms = 0;
    for ex in examples("boolean_expr") {
        let ops = ex.inputs.matches(" and ").count() + ex.inputs.matches(" or ").count();
        if ops != 1 {
            continue;
        }
        two_terms += 1;
        let and = ex.inputs.contains(" and ");
        let terms = ex
            .inputs
            .split(if and { " and " } else { " or " })
            .map(|t| (t.starts_with("not "), t.ends_with("True")))
            .collect::<Vec<_>>();
        assert_eq!(items::expression([terms[0], terms[1]], and), ex.inputs);
    }
    assert!(two_terms > 50);
}

// --- no evaluation item in the text ----------------------------------------------------------

/// A document as sentences of lower-case tokens: runs of letters and digits (a clock time
/// `3:40` is one token) and single punctuation marks. A sentence ends at a period followed by a
/// space or the end.
fn sentences(text: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || (chars[i] == ':'
                        && chars[i - 1].is_ascii_digit()
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            let token: String = chars[start..i].iter().collect();
            out.last_mut().unwrap().push(token.to_lowercase());
            continue;
        }
        if c == '.' && chars.get(i + 1).is_none_or(|n| n.is_whitespace()) {
            out.push(Vec::new());
        } else if !c.is_whitespace() {
            out.last_mut().unwrap().push(c.to_string());
        }
        i += 1;
    }
    out.retain(|s| !s.is_empty());
    out
}

fn tokens(text: &str) -> Vec<String> {
    sentences(text).concat()
}

/// Items of the list families' lists: numbers, single letters, and the words, weekdays and
/// months they draw (fruits for `count_occurrences`; animals, tools and colours for safety).
fn is_list_item(token: &str) -> bool {
    static VOCABULARY: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    let vocabulary = VOCABULARY.get_or_init(|| {
        [WORDS, FRUITS, ANIMALS, TOOLS, COLOURS, WEEKDAYS, MONTHS]
            .concat()
            .iter()
            .map(|w| w.to_lowercase())
            .collect()
    });
    token.chars().all(|c| c.is_ascii_digit())
        || (token.len() == 1 && token.chars().all(|c| c.is_ascii_lowercase()))
        || vocabulary.contains(token)
}

/// Every maximal list in a sentence — items joined by `,`, `and` or `, and` — written as the
/// suite writes lists (`a, b, c`), with at least two items.
fn lists(sentence: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sentence.len() {
        if !is_list_item(&sentence[i]) {
            i += 1;
            continue;
        }
        let mut run = vec![sentence[i].clone()];
        let mut j = i + 1;
        loop {
            let sep = match (
                sentence.get(j).map(String::as_str),
                sentence.get(j + 1).map(String::as_str),
            ) {
                (Some(","), Some("and")) => 2,
                (Some(",") | Some("and"), _) => 1,
                _ => break,
            };
            match sentence.get(j + sep) {
                Some(t) if is_list_item(t) => {
                    run.push(t.clone());
                    j += sep + 1;
                }
                _ => break,
            }
        }
        if run.len() >= 2 {
            out.push(run.join(", "));
        }
        i = j;
    }
    out
}

/// A run of tokens that identifies (part of) an instance.
#[derive(Debug, Clone)]
enum Phrase {
    /// These tokens, consecutive.
    Exact(Vec<String>),
    /// A boolean expression as a whole: not inside a longer one.
    Expr(Vec<String>),
    /// A name and, within the next `n` tokens, a value (a table row in any wording).
    Near(String, String, usize),
}

impl Phrase {
    fn exact(text: &str) -> Phrase {
        Phrase::Exact(tokens(text))
    }

    fn anchor(&self) -> &str {
        match self {
            Phrase::Exact(t) | Phrase::Expr(t) => &t[0],
            Phrase::Near(name, _, _) => name,
        }
    }

    fn occurs_in(&self, s: &[String]) -> bool {
        let at = |t: &[String]| -> Vec<usize> {
            (0..(s.len() + 1).saturating_sub(t.len()))
                .filter(|&i| s[i..i + t.len()] == *t)
                .collect()
        };
        match self {
            Phrase::Exact(t) => !at(t).is_empty(),
            Phrase::Expr(t) => at(t).into_iter().any(|i| {
                let before = i.checked_sub(1).map(|b| s[b].as_str());
                let after = s.get(i + t.len()).map(String::as_str);
                !matches!(before, Some("not" | "and" | "or"))
                    && !matches!(after, Some("and" | "or"))
            }),
            Phrase::Near(name, value, n) => (0..s.len())
                .filter(|&i| s[i] == *name)
                .any(|i| s[i + 1..s.len().min(i + 1 + n)].contains(value)),
        }
    }
}

/// How an evaluation item's instance would show in the text.
#[derive(Debug, Clone)]
enum Probe {
    /// The item's list written whole (a maximal list, [`lists`]), with `with` in the same
    /// sentence when given.
    List { list: String, with: Option<String> },
    /// Any alternative whose phrases all occur in one sentence.
    Sentence(Vec<Vec<Phrase>>),
    /// All phrases in one document.
    Document(Vec<Phrase>),
    /// Any of these.
    Any(Vec<Probe>),
}

fn list_probe(list: &str, with: Option<&str>) -> Probe {
    Probe::List {
        list: list.to_lowercase(),
        with: with.map(str::to_lowercase),
    }
}

fn sentence(phrases: &[&str]) -> Vec<Phrase> {
    phrases.iter().map(|p| Phrase::exact(p)).collect()
}

const LIST_FAMILIES: &[&str] = &[
    "sort_numbers",
    "reverse_list",
    "max_number",
    "min_number",
    "list_length",
    "sort_words",
];

/// Comparison words a sentence comparing two numbers would use.
const COMPARISONS: &[&str] = &[
    "larger", "smaller", "bigger", "greater", "less", "more", "fewer", "higher", "lower",
];

/// The probe of an example of `family`, read from its input text alone (the template wording
/// is not part of it): the instance as a sentence stating it would contain it.
fn probe(family: &str, inputs: &str) -> Probe {
    let x = inputs;
    match family {
        f if f.starts_with("compose_") || LIST_FAMILIES.contains(&f) => list_probe(x, None),
        "membership" => {
            let (q, list) = between(x, "number: ", "").split_once("; list: ").unwrap();
            list_probe(list, Some(q))
        }
        "count_occurrences" => {
            let q = between(x, "How many times does ", "?");
            let (target, list) = q.split_once(" appear in: ").unwrap();
            list_probe(list, Some(target))
        }
        "add_sub" => match x.split_once(" + ") {
            Some((a, b)) => Probe::Sentence(vec![
                sentence(&[&format!("{a} + {b}")]),
                sentence(&[&format!("{a} plus {b}")]),
                sentence(&[&format!("{b} + {a}")]),
                sentence(&[&format!("{b} plus {a}")]),
            ]),
            None => {
                let (a, b) = x.split_once(" - ").unwrap();
                Probe::Sentence(vec![
                    sentence(&[&format!("{a} - {b}")]),
                    sentence(&[&format!("{a} minus {b}")]),
                ])
            }
        },
        "even_odd" => Probe::Sentence(vec![sentence(&[x, "even"]), sentence(&[x, "odd"])]),
        "compare_numbers" => {
            let (_, pair) = x.split_once(": ").unwrap();
            let (a, b) = pair.trim_end_matches('?').split_once(" or ").unwrap();
            Probe::Sentence(COMPARISONS.iter().map(|w| sentence(&[a, b, w])).collect())
        }
        "day_after" | "day_before" => {
            let q = between(x, "What day of the week is ", "?");
            let parts: Vec<&str> = q.split(' ').collect();
            let (n, direction, from) = (parts[0], parts[2], parts[3]);
            let mut alternatives = vec![sentence(&[&format!("{n} days {direction} {from}")])];
            if n == "1" {
                alternatives.push(sentence(&[&format!("day {direction} {from}")]));
            }
            Probe::Sentence(alternatives)
        }
        "date_add" => {
            let q = between(x, "What is the date ", "?");
            let (n, date) = q.split_once(" days after ").unwrap();
            let mut alternatives = vec![sentence(&[&format!("{n} days after {date}")])];
            if n == "1" {
                alternatives.push(sentence(&[&format!("day after {date}")]));
            }
            Probe::Sentence(alternatives)
        }
        "time_add" => Probe::Sentence(vec![sentence(&[between(x, "What time is it ", "?")])]),
        "unit_convert" => {
            let q = between(x, "How many ", "?");
            let (small, amount) = q.split_once(" are in ").unwrap();
            Probe::Sentence(vec![sentence(&[amount, small])])
        }
        "word_add_sub" | "two_step" => {
            // "Ann has 12 coins and gets 5 more." / "Ann has 12 coins, gives away 3, then finds
            // 4.": the opening state, then the other numbers of the story.
            let (story, _) = x.split_once(". How many ").unwrap();
            let opening = story.split(',').next().unwrap();
            let opening = opening.split(" and ").next().unwrap();
            let numbers: Vec<&str> = story
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .collect();
            let mut phrases = vec![opening];
            phrases.extend(&numbers[1..]);
            Probe::Sentence(vec![sentence(&phrases)])
        }
        "multiply_groups" => {
            let (first, second) = x.split_once(". How many ").unwrap();
            let (_, holds) = first.split_once(" holds ").unwrap();
            let (_, groups) = second.split_once(" are in ").unwrap();
            Probe::Sentence(vec![sentence(&[holds, groups.trim_end_matches('?')])])
        }
        "money_change" => {
            let (costs, rest) = between(x, "A ", "").split_once(" costs ").unwrap();
            let (price, rest) = rest.split_once(". ").unwrap();
            let paid = rest.split_once(" pays with ").unwrap().1;
            let paid = paid.split_once('.').unwrap().0;
            Probe::Sentence(vec![sentence(&[costs, price, paid])])
        }
        "reverse_word" | "remove_letter" | "count_letter" | "replace_letter" => {
            let word = x
                .strip_prefix("word: ")
                .map_or(x, |r| r.split(';').next().unwrap());
            let backwards: String = word.chars().rev().collect();
            let spelled: Vec<String> = word.chars().map(String::from).collect();
            Probe::Any(vec![
                Probe::Sentence(vec![sentence(&[&backwards])]),
                list_probe(&spelled.join(", "), None),
            ])
        }
        "capitalize" | "acronym" | "last_letters" => Probe::Sentence(vec![sentence(&[x])]),
        "join_words" => {
            let (words, separator) = between(x, "words: ", "")
                .split_once("; separator: ")
                .unwrap();
            let joined = words.replace(' ', separator);
            Probe::Sentence(vec![sentence(&[words]), sentence(&[&joined])])
        }
        "boolean_expr" => Probe::Sentence(vec![vec![Phrase::Expr(tokens(x))]]),
        "taller_chain" | "older_chain" => {
            let (facts, _) = x.rsplit_once(" Is ").unwrap();
            Probe::Document(facts.split(". ").map(Phrase::exact).collect())
        }
        "table_lookup" | "table_max" | "table_reverse_lookup" => Probe::Document(
            x.lines()
                .skip(1)
                .filter_map(|l| l.split_once(" | "))
                .map(|(name, value)| Phrase::Near(name.to_lowercase(), value.to_string(), 6))
                .collect(),
        ),
        "classify_rule" => {
            Probe::Sentence(vec![sentence(&[x.split_once("\nSentence: ").unwrap().1])])
        }
        "sentiment" => Probe::Sentence(vec![sentence(&[x])]),
        "category" => Probe::Sentence(vec![sentence(&[x.split_once(". ").unwrap().0])]),
        other => panic!("no probe for family `{other}`: say how its instances would show in prose"),
    }
}

/// Documents indexed for probing: sentences, the sentences each token occurs in, the lists.
struct Index {
    docs: Vec<Vec<Vec<String>>>,
    postings: HashMap<String, Vec<(usize, usize)>>,
    lists: HashMap<String, Vec<(usize, usize)>>,
}

impl Index {
    fn new(texts: &[String]) -> Index {
        let docs: Vec<Vec<Vec<String>>> = texts.iter().map(|t| sentences(t)).collect();
        let mut postings: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut by_list: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (d, doc) in docs.iter().enumerate() {
            for (s, sentence) in doc.iter().enumerate() {
                let distinct: BTreeSet<&String> = sentence.iter().collect();
                for t in distinct {
                    postings.entry(t.clone()).or_default().push((d, s));
                }
                for l in lists(sentence) {
                    by_list.entry(l).or_default().push((d, s));
                }
            }
        }
        Index {
            docs,
            postings,
            lists: by_list,
        }
    }

    /// The documents where `probe` finds its instance.
    fn find(&self, probe: &Probe) -> BTreeSet<usize> {
        let none = Vec::new();
        match probe {
            Probe::List { list, with } => self
                .lists
                .get(list)
                .unwrap_or(&none)
                .iter()
                .filter(|(d, s)| with.as_ref().is_none_or(|w| self.docs[*d][*s].contains(w)))
                .map(|(d, _)| *d)
                .collect(),
            Probe::Sentence(alternatives) => alternatives
                .iter()
                .flat_map(|phrases| {
                    self.postings
                        .get(phrases[0].anchor())
                        .unwrap_or(&none)
                        .iter()
                        .filter(|(d, s)| phrases.iter().all(|p| p.occurs_in(&self.docs[*d][*s])))
                        .map(|(d, _)| *d)
                })
                .collect(),
            Probe::Document(phrases) => self
                .postings
                .get(phrases[0].anchor())
                .unwrap_or(&none)
                .iter()
                .map(|(d, _)| *d)
                .filter(|&d| {
                    phrases
                        .iter()
                        .all(|p| self.docs[d].iter().any(|s| p.occurs_in(s)))
                })
                .collect(),
            Probe::Any(probes) => probes.iter().flat_map(|p| self.find(p)).collect(),
        }
    }
}

/// The examples behind the standard evaluation's prompts, once each: (family, input text).
fn standard_eval_examples(seed: u64) -> BTreeSet<(String, String)> {
    let plan = StandardEval {
        seed,
        items_per_cell: 8,
        shots: 2,
    };
    let prompts: Vec<EvalPrompt> = Suite::new().unwrap().standard_eval(&plan).unwrap();
    let mut cache: HashMap<String, Vec<crate::Example>> = HashMap::new();
    let mut out = BTreeSet::new();
    for p in &prompts {
        let examples = cache.entry(p.family.clone()).or_insert_with(|| {
            generate(&p.family, Split::Eval, seed, plan.items_per_cell).unwrap()
        });
        let ex = &examples[p.example];
        // The prompt is that example rendered: its input text is in the prompt.
        assert!(
            p.inputs.contains(&ex.inputs),
            "{}: {:?} not in {:?}",
            p.family,
            ex.inputs,
            p.inputs
        );
        out.insert((p.family.clone(), ex.inputs.clone()));
    }
    out
}

/// For each evaluation example found, the documents it is found in.
fn found(index: &Index, examples: &BTreeSet<(String, String)>) -> Vec<(String, String, usize)> {
    examples
        .iter()
        .filter_map(|(family, inputs)| {
            let docs = index.find(&probe(family, inputs));
            docs.first().map(|&d| (family.clone(), inputs.clone(), d))
        })
        .collect()
}

#[test]
fn the_probes_read_every_familys_inputs_and_find_the_instances_they_describe() {
    // Every family has a probe, and it parses the family's inputs.
    for def in FAMILIES {
        for ex in generate(def.name, Split::Train, 9, 30).unwrap() {
            probe(def.name, &ex.inputs);
        }
    }
    // Each kind of probe finds a sentence that states its instance, in other words than the
    // world's, and not a near miss.
    let docs = [
        "The numbers 17, 4 and 9 were sorted.",
        "It rained. Somebody said that 57 plus 28 makes 85.",
        "We saw that 36 is even.",
        "Monday came, and 3 days after Monday it was Thursday.",
        "Then 10 days after March 25 we left.",
        "Ann is taller than Ben. Later, Ben is taller than Cara.",
        "Ann is 12 years old. Ben, who is 7, and Cara aged 20.",
        "True and not False is True.",
        "The words river stone were written in capitals.",
        "Dakemi spelled from the end is imekad.",
        "Of 14, 4, 9, 17 we know nothing; not True and False either; 3 days after Mondays.",
    ]
    .map(String::from);
    let index = Index::new(&docs);
    let hit = |family: &str, inputs: &str| index.find(&probe(family, inputs));
    assert_eq!(hit("compose_sort_numbers", "17, 4, 9"), BTreeSet::from([0]));
    assert_eq!(hit("compose_sort_numbers", "4, 9, 17"), BTreeSet::new());
    assert_eq!(
        hit("membership", "number: 4; list: 17, 4, 9"),
        BTreeSet::from([0])
    );
    assert_eq!(
        hit("membership", "number: 5; list: 17, 4, 9"),
        BTreeSet::new()
    );
    assert_eq!(hit("add_sub", "28 + 57"), BTreeSet::from([1]));
    assert_eq!(hit("add_sub", "85 - 28"), BTreeSet::new());
    assert_eq!(hit("even_odd", "36"), BTreeSet::from([2]));
    assert_eq!(hit("even_odd", "6"), BTreeSet::new());
    let day = "What day of the week is 3 days after Monday?";
    assert_eq!(hit("day_after", day), BTreeSet::from([3]));
    assert_eq!(
        hit("date_add", "What is the date 10 days after March 25?"),
        BTreeSet::from([4])
    );
    let chain = "Ben is taller than Cara. Ann is taller than Ben. Is Cara taller than Ann?";
    assert_eq!(hit("taller_chain", chain), BTreeSet::from([5]));
    let table = "name | age\nCara | 20\nAnn | 12\nBen | 7\nQuestion: Who has the highest age?";
    assert_eq!(hit("table_max", table), BTreeSet::from([6]));
    assert_eq!(
        hit("boolean_expr", "True and not False"),
        BTreeSet::from([7])
    );
    assert_eq!(hit("boolean_expr", "True and False"), BTreeSet::new());
    assert_eq!(hit("capitalize", "river stone"), BTreeSet::from([8]));
    assert_eq!(hit("reverse_word", "dakemi"), BTreeSet::from([9]));
}

#[test]
fn no_document_contains_an_instance_of_an_evaluation_item() {
    let mut examples = BTreeSet::new();
    for seed in [0, 1, 7] {
        examples.extend(standard_eval_examples(seed));
    }
    let families: BTreeSet<&String> = examples.iter().map(|(f, _)| f).collect();
    assert_eq!(families.len(), FAMILIES.len());
    // The examples the standard evaluation of 20 more seeds would render (a split decides them,
    // not a seed, so these stand for any seed).
    for seed in 100..120 {
        for def in FAMILIES {
            for ex in generate(def.name, Split::Eval, seed, 8).unwrap() {
                examples.insert((def.name.to_string(), ex.inputs));
            }
        }
    }
    eprintln!("{} distinct eval examples", examples.len());
    assert!(examples.len() > 5000, "{} eval examples", examples.len());
    for world_seed in [0, 7] {
        let docs = world_documents(world_seed, 4000);
        let found = found(&Index::new(&docs), &examples);
        assert!(
            found.is_empty(),
            "{} evaluation items occur in world seed {world_seed}, e.g. {:?} in {:?}",
            found.len(),
            &found[0],
            docs[found[0].2]
        );
    }
}

#[test]
fn without_the_filter_the_same_check_finds_evaluation_items() {
    let mut examples = BTreeSet::new();
    for seed in [0, 1, 7] {
        examples.extend(standard_eval_examples(seed));
    }
    let docs: Vec<String> = (0..4000).map(|i| compose(7, i, Filter::Off)).collect();
    let found = found(&Index::new(&docs), &examples);
    let families: BTreeSet<&str> = found.iter().map(|(f, _, _)| f.as_str()).collect();
    // The filter is what keeps them out: unfiltered, the small instance spaces (weekday and
    // date arithmetic, sums, lists of weekdays and months) meet evaluation items by chance.
    eprintln!(
        "unfiltered: {} eval items found in {families:?}",
        found.len()
    );
    assert!(families.len() >= 5, "found only in {families:?}");
    assert!(found.len() >= 20, "{} found: {found:?}", found.len());
}
