//! The inputs of the suite's families that a world fact states, written exactly as the family
//! generators write them, so that [`split_of`](super::split_of) decides them as it decides the
//! families' own examples. The tests check each builder against its family's generator.

use crate::synthetic::join;

/// `day_after` / `day_before`: "What day of the week is 3 days after Monday?".
pub(super) fn day_shift(days: usize, from: &str, forward: bool) -> String {
    let plural = if days == 1 { "day" } else { "days" };
    let direction = if forward { "after" } else { "before" };
    format!("What day of the week is {days} {plural} {direction} {from}?")
}

/// `date_add`: "What is the date 10 days after March 25?".
pub(super) fn date_add(add: u32, month: &str, day: u32) -> String {
    format!("What is the date {add} days after {month} {day}?")
}

/// `time_add`: "What time is it 25 minutes after 3:40?".
pub(super) fn time_add(add: u32, hour: u32, minute: u32) -> String {
    format!("What time is it {add} minutes after {hour}:{minute:02}?")
}

/// `add_sub`, both orders of a sum: "57 + 28" and "28 + 57".
pub(super) fn sum(a: u32, b: u32) -> [String; 2] {
    [format!("{a} + {b}"), format!("{b} + {a}")]
}

/// `add_sub`, a difference: "85 - 28".
pub(super) fn difference(hi: u32, lo: u32) -> String {
    format!("{hi} - {lo}")
}

/// `even_odd`: the bare number.
pub(super) fn parity(n: u32) -> String {
    n.to_string()
}

/// `compare_numbers`: the four questions over a pair ("Which number is larger: 17 or 9?", the
/// smaller one, both orders).
pub(super) fn comparison(a: u32, b: u32) -> [String; 4] {
    [
        format!("Which number is larger: {a} or {b}?"),
        format!("Which number is larger: {b} or {a}?"),
        format!("Which number is smaller: {a} or {b}?"),
        format!("Which number is smaller: {b} or {a}?"),
    ]
}

/// `unit_convert`: "How many minutes are in 3 hours?".
pub(super) fn unit(small: &str, n: u32, many: &str) -> String {
    format!("How many {small} are in {n} {many}?")
}

/// `membership`: "number: 9; list: 4, 9, 17". Only lists the family can draw (3-6 numbers
/// under 50) give inputs.
pub(super) fn membership(list: &[u32]) -> Vec<String> {
    if !(3..=6).contains(&list.len()) || list.iter().any(|&n| n >= 50) {
        return Vec::new();
    }
    let written = join(list.iter().map(u32::to_string));
    let mut queries = list.to_vec();
    queries.sort_unstable();
    queries.dedup();
    queries
        .into_iter()
        .map(|q| format!("number: {q}; list: {written}"))
        .collect()
}

/// `count_occurrences`: "How many times does pear appear in: apple, pear, apple, plum?", for
/// each fruit of the list.
pub(super) fn count_occurrences(list: &[&str]) -> Vec<String> {
    let written = join(list);
    let mut targets = list.to_vec();
    targets.sort_unstable();
    targets.dedup();
    targets
        .into_iter()
        .map(|t| format!("How many times does {t} appear in: {written}?"))
        .collect()
}

/// `table_lookup`, `table_max`, `table_reverse_lookup` over a table with rows in this order:
/// every question the families ask of it. `column` is (header, how a question names it).
pub(super) fn table(column: (&str, &str), rows: &[(&str, u32)]) -> Vec<String> {
    let mut table = format!("name | {}", column.0);
    for (name, value) in rows {
        table.push_str(&format!("\n{name} | {value}"));
    }
    let mut out = vec![format!(
        "{table}\nQuestion: Who has the highest {}?",
        column.1
    )];
    for (name, value) in rows {
        out.push(format!(
            "{table}\nQuestion: What is the {} of {name}?",
            column.1
        ));
        out.push(format!("{table}\nQuestion: Whose {} is {value}?", column.1));
    }
    out
}

/// `boolean_expr` with two terms, each `(negated, value)`, joined by `and` or `or`:
/// "True and not False".
pub(super) fn expression(terms: [(bool, bool); 2], and: bool) -> String {
    let word = |b: bool| if b { "True" } else { "False" };
    let text: Vec<String> = terms
        .iter()
        .map(|&(not, v)| format!("{}{}", if not { "not " } else { "" }, word(v)))
        .collect();
    text.join(if and { " and " } else { " or " })
}

/// `taller_chain` / `older_chain` over the chain `people[0] > people[1] > ...`: its facts in
/// every order, each with every question about two of its people.
pub(super) fn chain(people: &[&str], relation: &str) -> Vec<String> {
    let facts: Vec<String> = people
        .windows(2)
        .map(|w| format!("{} is {relation} than {}.", w[0], w[1]))
        .collect();
    let mut out = Vec::new();
    for order in permutations(facts.len()) {
        let stated: Vec<&str> = order.iter().map(|&i| facts[i].as_str()).collect();
        let stated = stated.join(" ");
        for x in people {
            for y in people {
                if x != y {
                    out.push(format!("{stated} Is {x} {relation} than {y}?"));
                }
            }
        }
    }
    out
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out
}
