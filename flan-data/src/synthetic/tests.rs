//! Tests of the suite: its shape, determinism, the train/eval partition, that every template
//! renders, and that answers are right — recomputed here independently of the generators,
//! from the input text alone.

use super::templates::MIN_TEMPLATES;
use super::*;
use crate::mixture::Mixture;
use crate::mode::Mode;
use crate::render::Form;
use crate::spec::MixtureSpec;
use proptest::prelude::*;
use std::collections::HashSet;

fn suite() -> Suite {
    Suite::new().expect("built-in synthetic templates load")
}

#[test]
fn suite_has_enough_families_and_a_consistent_held_out_set() {
    assert!(FAMILIES.len() >= 30, "{} families", FAMILIES.len());
    assert!(trained_families().count() >= 30);
    // Six held-out families beside their trained siblings, and six held-out cells of the
    // compositional grid (compose.rs tests the grid's shape).
    let held: Vec<&str> = held_out_families().map(|f| f.name).collect();
    let (cells, others): (Vec<&str>, Vec<&str>) =
        held.iter().partition(|name| name.starts_with("compose_"));
    assert_eq!(others.len(), 6, "held out: {others:?}");
    assert_eq!(cells.len(), 6, "held out: {cells:?}");
    let names: HashSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FAMILIES.len(), "family names are unique");
    for f in FAMILIES {
        match f.sibling_of {
            Some(sibling) => {
                assert!(f.held_out);
                let s = family_def(sibling).unwrap();
                assert!(!s.held_out, "{} is a sibling of a held-out family", s.name);
                assert_eq!(s.group, f.group);
            }
            None => assert!(!f.held_out, "{} is held out without a sibling", f.name),
        }
    }
    assert!(family_def("nope")
        .unwrap_err()
        .to_string()
        .contains("sort_numbers"));
}

#[test]
fn every_family_has_templates_with_held_out_ones_last() {
    let suite = suite();
    for def in FAMILIES {
        let fam = suite.library().family(&def.template_family()).unwrap();
        assert!(fam.templates.len() >= MIN_TEMPLATES, "{}", def.name);
        let distinct: HashSet<&str> = fam.templates.iter().map(|t| t.inputs.source()).collect();
        assert_eq!(
            distinct.len(),
            fam.templates.len(),
            "{}: a template repeats",
            def.name
        );
        for t in &fam.templates {
            // Direct targets are the bare answer, so exact match needs no extraction.
            assert_eq!(t.targets.source(), "{targets}", "{}", def.name);
            assert_eq!(
                t.inputs.uses(crate::template::Field::Options),
                def.has_options,
                "{}: {:?}",
                def.name,
                t.inputs.source()
            );
        }
        let cot = def.cot_template_family();
        assert_eq!(cot.is_some(), def.has_rationale);
        if let Some(cot) = cot {
            let cot = suite.library().family(&cot).unwrap();
            assert_eq!(cot.templates.len(), fam.templates.len());
            assert!(!cot.triggers.is_empty() && !cot.answer_phrases.is_empty());
        }
    }
    let train = suite.train_library();
    for def in FAMILIES {
        let full = suite.library().family(&def.template_family()).unwrap();
        match train.families.get(&def.template_family()) {
            Some(fam) => {
                assert!(!def.held_out, "{} is held out but trainable", def.name);
                assert_eq!(
                    fam.templates.len() + HELD_OUT_TEMPLATES,
                    full.templates.len()
                );
                for (a, b) in fam.templates.iter().zip(&full.templates) {
                    assert_eq!(a.inputs.source(), b.inputs.source());
                }
            }
            None => assert!(def.held_out, "{} is missing from training", def.name),
        }
    }
}

#[test]
fn generation_is_deterministic_and_seeded() {
    for def in FAMILIES {
        for split in [Split::Train, Split::Eval] {
            let a = generate(def.name, split, 11, 20).unwrap();
            assert_eq!(
                a,
                generate(def.name, split, 11, 20).unwrap(),
                "{}",
                def.name
            );
            // A longer run extends a shorter one.
            assert_eq!(a[..5], generate(def.name, split, 11, 5).unwrap()[..]);
            let b = generate(def.name, split, 12, 20).unwrap();
            assert_ne!(a, b, "{}: seeds 11 and 12 give the same examples", def.name);
            for (i, ex) in a.iter().enumerate() {
                assert_eq!(split_of(&ex.inputs), split);
                assert_eq!(ex.task, def.name);
                assert_eq!(ex.provenance.line, i + 1);
                assert!(ex.provenance.file.to_string_lossy().contains(def.name));
                assert_eq!(ex.rationale.is_some(), def.has_rationale, "{}", def.name);
                assert_eq!(ex.has_options(), def.has_options, "{}", def.name);
                if let Some(options) = &ex.options {
                    assert!(options.contains(&ex.targets), "{ex:?}");
                }
            }
        }
    }
}

#[test]
fn train_and_eval_examples_never_coincide() {
    for def in FAMILIES {
        let train: HashSet<String> = generate(def.name, Split::Train, 1, 2000)
            .unwrap()
            .into_iter()
            .map(|e| e.inputs)
            .collect();
        for seed in [1, 2] {
            for ex in generate(def.name, Split::Eval, seed, 200).unwrap() {
                assert!(!train.contains(&ex.inputs), "{}: {:?}", def.name, ex.inputs);
            }
        }
    }
}

#[test]
fn inputs_and_rationales_are_short_and_clean() {
    let suite = suite();
    let phrases = &suite
        .library()
        .family("syn_cot")
        .unwrap()
        .answer_phrases
        .clone();
    for def in FAMILIES {
        for ex in generate(def.name, Split::Train, 5, 300).unwrap() {
            assert!(ex.inputs.len() <= 200, "{}: {:?}", def.name, ex.inputs);
            assert!(!ex.inputs.trim().is_empty() && !ex.targets.trim().is_empty());
            assert_eq!(ex.targets, ex.targets.trim());
            if let Some(r) = &ex.rationale {
                assert!(r.len() <= 250, "{}: {r:?}", def.name);
                // The scorer reads the answer behind the last answer phrase.
                assert!(!phrases.iter().any(|p| r.contains(p.as_str())), "{r:?}");
                assert!(
                    r.contains(&ex.targets)
                        || def.name == "boolean_expr"
                        || def.name.ends_with("_chain"),
                    "{}: {r:?} lacks {:?}",
                    def.name,
                    ex.targets
                );
            }
        }
    }
}

#[test]
fn every_template_renders_in_every_mode() {
    let suite = suite();
    for def in FAMILIES {
        let mut modes = vec![(Mode::Direct, 0), (Mode::Direct, 2)];
        if def.has_rationale {
            modes.extend([(Mode::ZeroShotCot, 0), (Mode::Cot, 1)]);
        }
        for (mode, shots) in modes {
            let request = EvalRequest {
                seed: 3,
                n: 2 * MIN_TEMPLATES * 2,
                templates: TemplateSet::All,
                mode,
                shots,
            };
            let items = suite.eval_items(def.name, &request).unwrap();
            let used: HashSet<usize> = items.iter().map(|i| i.template).collect();
            let count = suite
                .library()
                .family(&def.template_family())
                .unwrap()
                .templates
                .len();
            assert_eq!(used.len(), count, "{} {mode:?}", def.name);
            for item in &items {
                assert!(!item.inputs.is_empty() && !item.answer.is_empty());
                assert!(!item.inputs.contains('{'), "{:?}", item.inputs);
                // That the reference scores as correct and something else does not is
                // flan-eval's test (`synthetic::tests`), where the scoring rule lives.
                assert_eq!(item.held_out_family, def.held_out);
                // Exemplars are separated from each other and from the query by a blank block.
                assert_eq!(
                    item.inputs.contains("\n\n\n"),
                    shots > 0,
                    "{:?}",
                    item.inputs
                );
                // The option count is what was listed: none without options, two or more with.
                assert_eq!(item.with_options, item.options >= 2, "{item:?}");
                if mode.is_cot() {
                    assert!(item.targets.len() > item.answer.len());
                } else {
                    assert_eq!(item.targets, item.answer);
                }
            }
            if def.has_options {
                assert!(items.iter().any(|i| i.with_options));
                assert!(items.iter().any(|i| !i.with_options));
            }
        }
    }
}

#[test]
fn held_out_template_sets_are_flagged() {
    let suite = suite();
    for def in FAMILIES {
        for (set, expect) in [(TemplateSet::Seen, false), (TemplateSet::HeldOut, true)] {
            let request = EvalRequest {
                seed: 9,
                n: 6,
                templates: set,
                mode: Mode::Direct,
                shots: 0,
            };
            for item in suite.eval_items(def.name, &request).unwrap() {
                assert_eq!(item.held_out_template, expect || def.held_out);
            }
        }
    }
}

#[test]
fn a_mixture_spec_with_a_synthetic_section_trains_on_seen_templates_only() {
    let spec = MixtureSpec::from_toml(
        r#"
        input_len = 256
        target_len = 64
        exclude = ["syn_acronym*"]
        [submixtures.synthetic]
        weight = 1.0
        cap = 1000
        [submixtures.cot]
        weight = 0.5
        cap = 1000
        [synthetic]
        seed = 4
        examples_per_family = 30
        submixture = "synthetic"
        "#,
        "spec",
    )
    .unwrap();
    let mixture = Mixture::from_spec(&spec, std::path::Path::new(".")).unwrap();
    let names: Vec<&str> = mixture
        .registry()
        .tasks()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(mixture.excluded(), ["syn_acronym"]);
    let direct = trained_families().count() - 1;
    let cot = trained_families().filter(|f| f.has_rationale).count();
    assert_eq!(names.len(), direct + cot, "{names:?}");
    for def in held_out_families() {
        assert!(
            // By whole name: `syn_compose_sort_words` contains `sort_words`.
            !names
                .iter()
                .any(|n| *n == def.template_family()
                    || Some(*n) == def.cot_template_family().as_deref()),
            "{} is trained",
            def.name
        );
    }
    let seen = MIN_TEMPLATES - HELD_OUT_TEMPLATES;
    for ex in std::sync::Arc::new(mixture)
        .stream(1)
        .next_batch(300)
        .unwrap()
    {
        assert!(ex.task.starts_with("syn_"));
        if ex.form != Form::Inversion {
            assert!(ex.template < seen, "{ex:?}");
        }
    }
    let bad = MixtureSpec::from_toml(
        "[synthetic]\nexamples_per_family = 3\nfamilies = [\"nothing*\"]",
        "spec",
    )
    .unwrap();
    let err = Mixture::from_spec(&bad, std::path::Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("matches no family"), "{err}");
    let bad = MixtureSpec::from_toml(
        "[synthetic]\nexamples_per_family = 3\nfamilies = [\"sort_*\", \"min_number\"]",
        "spec",
    )
    .unwrap();
    let err = Mixture::from_spec(&bad, std::path::Path::new(".")).unwrap_err();
    assert!(
        err.to_string().contains("`min_number` is held out"),
        "{err}"
    );
    let bad = MixtureSpec::from_toml(
        "[synthetic]\nexamples_per_family = 3\nsubmixture = \"x\"",
        "spec",
    )
    .unwrap();
    let err = Mixture::from_spec(&bad, std::path::Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("unknown submixture"), "{err}");
    assert!(
        MixtureSpec::from_toml("[synthetic]\nexamples_per_family = 3\nbogus = 1", "s").is_err()
    );
}

// ---- answers, recomputed from the input text ----

fn numbers_in(text: &str) -> Vec<i64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

fn list_after<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let start = text.find(key).unwrap() + key.len();
    let rest = &text[start..];
    let end = rest.find(';').unwrap_or(rest.len());
    rest[..end].split(", ").map(str::trim).collect()
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    list_after(text, &format!("{key}: "))[0]
}

/// Boolean expressions with `not` > `and` > `or`, by recursive descent over the tokens.
fn eval_bool(expr: &str) -> bool {
    fn or(tokens: &[&str], at: &mut usize) -> bool {
        let mut v = and(tokens, at);
        while tokens.get(*at) == Some(&"or") {
            *at += 1;
            let r = and(tokens, at);
            v = v || r;
        }
        v
    }
    fn and(tokens: &[&str], at: &mut usize) -> bool {
        let mut v = not(tokens, at);
        while tokens.get(*at) == Some(&"and") {
            *at += 1;
            let r = not(tokens, at);
            v = v && r;
        }
        v
    }
    fn not(tokens: &[&str], at: &mut usize) -> bool {
        let t = tokens[*at];
        *at += 1;
        match t {
            "not" => !not(tokens, at),
            "True" => true,
            "False" => false,
            other => panic!("unexpected token {other}"),
        }
    }
    let tokens: Vec<&str> = expr.split_whitespace().collect();
    let mut at = 0;
    let v = or(&tokens, &mut at);
    assert_eq!(at, tokens.len());
    v
}

fn day_of_year(month: &str, day: i64) -> i64 {
    let m = words::MONTHS.iter().position(|&n| n == month).unwrap();
    words::MONTH_DAYS[..m]
        .iter()
        .map(|&d| i64::from(d))
        .sum::<i64>()
        + day
}

fn month_day(doy: i64) -> String {
    let mut d = (doy - 1).rem_euclid(365) + 1;
    for (m, &len) in words::MONTH_DAYS.iter().enumerate() {
        if d <= i64::from(len) {
            return format!("{} {d}", words::MONTHS[m]);
        }
        d -= i64::from(len);
    }
    unreachable!()
}

/// Whether `a` is above `b` in the order stated by `facts` (`X is R than Y.` sentences).
fn reachable(facts: &str, relation: &str, a: &str, b: &str) -> bool {
    let edges: Vec<(String, String)> = facts
        .split('.')
        .filter_map(|s| {
            let (x, y) = s.trim().split_once(&format!(" is {relation} than "))?;
            Some((x.to_string(), y.to_string()))
        })
        .collect();
    let mut frontier = vec![a.to_string()];
    let mut seen = HashSet::new();
    while let Some(n) = frontier.pop() {
        for (x, y) in &edges {
            if *x == n && seen.insert(y.clone()) {
                frontier.push(y.clone());
            }
        }
    }
    seen.contains(b)
}

fn table_rows(inputs: &str) -> Vec<(String, i64)> {
    inputs
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(" | ")?;
            Some((n.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn check_answer(family: &str, ex: &Example) {
    let (x, y) = (ex.inputs.as_str(), ex.targets.as_str());
    let expected: String = match family {
        "add_sub" => {
            let n = numbers_in(x);
            if x.contains('+') {
                n[0] + n[1]
            } else {
                n[0] - n[1]
            }
            .to_string()
        }
        "word_add_sub" => {
            let n = numbers_in(x);
            if x.contains("gets") {
                n[0] + n[1]
            } else {
                n[0] - n[1]
            }
            .to_string()
        }
        "two_step" => {
            let n = numbers_in(x);
            (n[0] - n[1] + n[2]).to_string()
        }
        "multiply_groups" => numbers_in(x).iter().product::<i64>().to_string(),
        "money_change" => {
            let n = numbers_in(x);
            (n[1] - n[0]).to_string()
        }
        "unit_convert" => {
            let n = numbers_in(x)[0];
            let factor = arithmetic::UNITS
                .iter()
                .find(|u| x.contains(&format!("{} are in {n} {}?", u.2, u.1)))
                .map(|u| i64::from(u.3))
                .unwrap();
            (n * factor).to_string()
        }
        "compare_numbers" => {
            let n = numbers_in(x);
            if x.contains("larger") {
                n[0].max(n[1])
            } else {
                n[0].min(n[1])
            }
            .to_string()
        }
        "even_odd" => if numbers_in(x)[0] % 2 == 0 {
            "even"
        } else {
            "odd"
        }
        .into(),
        "sort_numbers" => {
            let mut n = numbers_in(x);
            n.sort();
            n.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
        "max_number" => numbers_in(x).into_iter().max().unwrap().to_string(),
        "min_number" => numbers_in(x).into_iter().min().unwrap().to_string(),
        "reverse_list" => {
            let mut w: Vec<&str> = x.split(", ").collect();
            w.reverse();
            w.join(", ")
        }
        "sort_words" => {
            let mut w: Vec<&str> = x.split(", ").collect();
            w.sort();
            w.join(", ")
        }
        "list_length" => x.split(", ").count().to_string(),
        "count_occurrences" => {
            let (q, list) = x.split_once(" appear in: ").unwrap();
            let word = q.trim_start_matches("How many times does ");
            let list = list.trim_end_matches('?');
            list.split(", ").filter(|w| *w == word).count().to_string()
        }
        "capitalize" => x
            .split(' ')
            .map(|w| format!("{}{}", w[..1].to_uppercase(), &w[1..]))
            .collect::<Vec<_>>()
            .join(" "),
        "remove_letter" => field(x, "word").replace(field(x, "letter"), ""),
        "replace_letter" => field(x, "word").replace(field(x, "replace"), field(x, "with")),
        "join_words" => field(x, "words").replace(' ', field(x, "separator")),
        "reverse_word" => x.chars().rev().collect(),
        "acronym" => x.split(' ').map(|w| &w[..1]).collect(),
        "last_letters" => x.split(' ').map(|w| &w[w.len() - 1..]).collect(),
        "count_letter" => {
            let letter = field(x, "letter");
            field(x, "word").matches(letter).count().to_string()
        }
        "boolean_expr" => if eval_bool(x) { "True" } else { "False" }.into(),
        "taller_chain" | "older_chain" => {
            let relation = if family == "taller_chain" {
                "taller"
            } else {
                "older"
            };
            let (facts, q) = x.rsplit_once(" Is ").unwrap();
            let (a, b) = q
                .trim_end_matches('?')
                .split_once(&format!(" {relation} than "))
                .unwrap();
            if reachable(facts, relation, a, b) {
                "yes"
            } else {
                "no"
            }
            .into()
        }
        "membership" => {
            let n = numbers_in(x);
            if n[1..].contains(&n[0]) { "yes" } else { "no" }.into()
        }
        "day_after" | "day_before" => {
            let days = numbers_in(x)[0];
            let start = words::WEEKDAYS
                .iter()
                .position(|d| x.ends_with(&format!("{d}?")))
                .unwrap() as i64;
            let shift = if family == "day_after" { days } else { -days };
            words::WEEKDAYS[(start + shift).rem_euclid(7) as usize].into()
        }
        "date_add" => {
            let n = numbers_in(x);
            let month = words::MONTHS
                .iter()
                .find(|m| x.contains(&format!("after {m} ")))
                .unwrap();
            month_day(day_of_year(month, n[1]) + n[0])
        }
        "time_add" => {
            let n = numbers_in(x);
            let minutes = (n[1] % 12) * 60 + n[2] + n[0];
            let hour = (minutes / 60) % 12;
            format!("{}:{:02}", if hour == 0 { 12 } else { hour }, minutes % 60)
        }
        "table_lookup" => {
            let name = x.rsplit_once(" of ").unwrap().1.trim_end_matches('?');
            let rows = table_rows(x);
            rows.iter().find(|(n, _)| n == name).unwrap().1.to_string()
        }
        "table_max" => {
            let rows = table_rows(x);
            rows.iter().max_by_key(|(_, v)| *v).unwrap().0.clone()
        }
        "table_reverse_lookup" => {
            let value = *numbers_in(x.lines().last().unwrap()).last().unwrap();
            let rows = table_rows(x);
            rows.iter().find(|(_, v)| *v == value).unwrap().0.clone()
        }
        "classify_rule" => {
            let (rule, sentence) = x.split_once("\nSentence: ").unwrap();
            let words_of = |list: &[&str]| {
                sentence
                    .trim_end_matches('.')
                    .split(' ')
                    .any(|w| list.iter().any(|l| *l == w || format!("{l}s") == w))
            };
            let holds = if rule.contains("fruit") {
                words_of(words::FRUITS)
            } else if rule.contains("animal") {
                words_of(words::ANIMALS)
            } else if rule.contains("tool") {
                words_of(words::TOOLS)
            } else if rule.contains("colour") {
                words_of(words::COLOURS)
            } else if rule.contains("number") {
                sentence.chars().any(|c| c.is_ascii_digit())
            } else {
                sentence.split_whitespace().count() > 6
            };
            if holds { "yes" } else { "no" }.into()
        }
        "sentiment" => {
            let positive = words::POSITIVE_WORDS
                .iter()
                .any(|w| x.contains(&format!(" {w}")));
            let negative = words::NEGATIVE_WORDS
                .iter()
                .any(|w| x.contains(&format!(" {w}")));
            assert!(positive != negative, "{x}");
            if positive { "positive" } else { "negative" }.into()
        }
        "category" => {
            let word = x.rsplit_once(" is ").unwrap().1.trim_end_matches('?');
            let word = word.trim_start_matches("the ");
            [
                ("fruit", words::FRUITS),
                ("animal", words::ANIMALS),
                ("tool", words::TOOLS),
                ("colour", words::COLOURS),
            ]
            .iter()
            .find(|(_, list)| list.contains(&word))
            .map(|(label, _)| label.to_string())
            .unwrap()
        }
        compose if compose.starts_with("compose_") => compose::tests::recompute(compose, x),
        other => panic!("no independent check for family `{other}`; add one"),
    };
    assert_eq!(y, expected, "{family}: {x:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every family's answers match an independent recomputation from the input text.
    #[test]
    fn answers_are_correct(seed in any::<u64>(), eval in any::<bool>()) {
        let split = if eval { Split::Eval } else { Split::Train };
        for def in FAMILIES {
            for ex in generate(def.name, split, seed, 8).unwrap() {
                check_answer(def.name, &ex);
            }
        }
    }
}

#[test]
fn the_checked_in_synthetic_mixture_builds_and_streams() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/synthetic-mixture.toml");
    let mixture = std::sync::Arc::new(Mixture::from_spec_file(&path).unwrap());
    let cot = trained_families().filter(|f| f.has_rationale).count();
    assert_eq!(mixture.registry().len(), trained_families().count() + cot);
    let batch = mixture.stream(0).next_batch(200).unwrap();
    let tasks: HashSet<&str> = batch.iter().map(|e| e.task.as_str()).collect();
    assert!(tasks.len() > 20, "{tasks:?}");
    assert!(batch.iter().any(|e| e.form == Form::FewShot));
    assert!(batch.iter().any(|e| e.with_options));
    for e in &batch {
        // Short enough for the spec's budgets even in words counted generously.
        assert!(e.inputs.split_whitespace().count() < 256, "{e:?}");
        assert!(e.targets.split_whitespace().count() < 96, "{e:?}");
    }
}

#[test]
fn standard_eval_covers_every_setting_and_mode() {
    let suite = suite();
    let plan = StandardEval {
        seed: 2,
        items_per_cell: 3,
        shots: 2,
    };
    let items = suite.standard_eval(&plan).unwrap();
    let families: HashSet<&str> = items.iter().map(|i| i.family.as_str()).collect();
    assert_eq!(families.len(), FAMILIES.len());
    // Cells: template sets (2 for trained families, 1 for held-out) x modes (2, or 4 with CoT).
    let cells: usize = FAMILIES
        .iter()
        .map(|f| (if f.held_out { 1 } else { 2 }) * (if f.has_rationale { 4 } else { 2 }))
        .sum();
    assert_eq!(items.len(), cells * plan.items_per_cell);
    assert_eq!(
        cells, 296,
        "update the count in specs/synthetic-mixture.toml"
    );
    // Every prompt measures one exposure, and all three occur. Scoring the plan (references
    // score 100%, empty outputs 0%) is flan-eval's test, where the rule lives.
    for exposure in Exposure::ALL {
        assert!(
            items.iter().any(|i| Exposure::of(i) == exposure),
            "{exposure:?}"
        );
    }
    let one_mode = suite.mode_eval(&plan, Mode::ZeroShotCot).unwrap();
    assert!(one_mode
        .iter()
        .all(|i| i.mode == Mode::ZeroShotCot && i.shots == 0));
    assert_eq!(
        one_mode.len(),
        plan.items_per_cell
            * FAMILIES
                .iter()
                .filter(|f| f.has_rationale)
                .map(|f| if f.held_out { 1 } else { 2 })
                .sum::<usize>()
    );
    assert!(suite
        .mode_eval(&StandardEval { shots: 0, ..plan }, Mode::Cot)
        .is_err());
    let none = StandardEval {
        items_per_cell: 0,
        ..plan
    };
    assert!(suite.standard_eval(&none).is_err());
}

#[test]
fn template_texts_hold_every_instruction_but_no_placeholder() {
    let texts = suite().template_texts();
    assert!(
        texts.iter().any(|t| t.starts_with("Erase all occurrences")),
        "held-out wording"
    );
    assert!(texts.iter().any(|t| t == "Let's think step by step."));
    assert!(texts.iter().all(|t| !t.contains('{') && !t.is_empty()));
}
