//! Tests of the compositional grid: its shape (every cell once, the held-out cells' operations
//! and kinds trained elsewhere), answers recomputed from the input text alone, the split, and
//! that no held-out cell reaches a training mixture.

use super::super::{family_def, generate, held_out_families, split_of, Split, Suite, FAMILIES};
use crate::mixture::Mixture;
use crate::spec::MixtureSpec;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};

const OPS: [&str; 6] = ["sort", "reverse", "first", "last", "count", "max"];
const KINDS: [&str; 5] = ["numbers", "words", "letters", "weekdays", "months"];

/// The kinds' orders written out again here, so that the check does not share the generator's
/// tables (words come from the suite's vocabulary; their order is the alphabet's).
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `(op, kind)` of a compose family, read from its name.
fn cell_of(family: &str) -> Option<(&str, &str)> {
    family.strip_prefix("compose_")?.split_once('_')
}

fn compose_families() -> impl Iterator<Item = &'static crate::synthetic::FamilyDef> {
    FAMILIES.iter().filter(|f| f.group == "compose")
}

/// A sort key for an item of `kind`, or a panic naming the item that does not belong.
fn rank(kind: &str, item: &str) -> (usize, String) {
    let position = |list: &[&str]| list.iter().position(|d| *d == item);
    let rank = match kind {
        "numbers" => item.parse::<usize>().ok().filter(|n| *n < 100),
        "words" => super::WORDS.contains(&item).then_some(0),
        "letters" => (item.len() == 1 && item.bytes().all(|b| b.is_ascii_lowercase())).then_some(0),
        "weekdays" => position(&WEEKDAYS),
        "months" => position(&MONTHS),
        other => panic!("unknown kind {other}"),
    };
    let rank = rank.unwrap_or_else(|| panic!("{item:?} is not one of the {kind}"));
    // Words and letters order as text (the rank is 0 for all of them).
    (rank, item.to_string())
}

/// The answer of a compose family for an input, recomputed from the input text alone: the list
/// is parsed back, checked to be 3-6 distinct items of the kind, and the operation applied.
pub(in crate::synthetic) fn recompute(family: &str, inputs: &str) -> String {
    let (op, kind) = cell_of(family).unwrap_or_else(|| panic!("{family} is no compose cell"));
    let items: Vec<&str> = inputs.split(", ").collect();
    assert!((3..=6).contains(&items.len()), "{family}: {inputs:?}");
    let distinct: HashSet<&&str> = items.iter().collect();
    assert_eq!(distinct.len(), items.len(), "{family}: {inputs:?} repeats");
    let mut sorted = items.clone();
    sorted.sort_by_key(|item| rank(kind, item));
    match op {
        "sort" => sorted.join(", "),
        "reverse" => items.iter().rev().copied().collect::<Vec<_>>().join(", "),
        "first" => items[0].to_string(),
        "last" => items[items.len() - 1].to_string(),
        "count" => items.len().to_string(),
        "max" => sorted[sorted.len() - 1].to_string(),
        other => panic!("unknown operation {other}"),
    }
}

#[test]
fn the_grid_has_every_cell_once_and_a_held_out_set_that_transfer_can_reach() {
    let cells: Vec<(&str, &str)> = compose_families()
        .map(|f| cell_of(f.name).unwrap())
        .collect();
    let expected: BTreeSet<(&str, &str)> = OPS
        .iter()
        .flat_map(|op| KINDS.iter().map(move |kind| (*op, *kind)))
        .collect();
    assert_eq!(cells.len(), expected.len(), "a cell repeats: {cells:?}");
    assert_eq!(cells.iter().copied().collect::<BTreeSet<_>>(), expected);

    let trained: HashSet<(&str, &str)> = compose_families()
        .filter(|f| !f.held_out)
        .map(|f| cell_of(f.name).unwrap())
        .collect();
    let held: Vec<&crate::synthetic::FamilyDef> =
        compose_families().filter(|f| f.held_out).collect();
    assert_eq!(held.len(), OPS.len(), "one held-out cell per operation");
    for f in &held {
        let (op, kind) = cell_of(f.name).unwrap();
        // The operation is trained on other kinds, the kind with other operations.
        let op_partners = trained.iter().filter(|(o, _)| *o == op).count();
        let kind_partners = trained.iter().filter(|(_, k)| *k == kind).count();
        assert!(
            op_partners >= 4,
            "{}: {op} trained {op_partners} times",
            f.name
        );
        assert!(
            kind_partners >= 4,
            "{}: {kind} trained {kind_partners}x",
            f.name
        );
        // The sibling is a trained cell with the same operation.
        let sibling = family_def(f.sibling_of.unwrap()).unwrap();
        assert!(!sibling.held_out, "{}", f.name);
        assert_eq!(cell_of(sibling.name).unwrap().0, op, "{}", f.name);
        // A kind's order is taught by a trained cell whenever a held-out cell needs it.
        if op == "sort" || op == "max" {
            let other = if op == "sort" { "max" } else { "sort" };
            assert!(
                trained.contains(&(other, kind)),
                "{}: no trained order",
                f.name
            );
        }
    }
    for op in OPS {
        assert!(
            held.iter().any(|f| cell_of(f.name).unwrap().0 == op),
            "{op}"
        );
    }
    for kind in KINDS {
        assert!(
            held.iter().any(|f| cell_of(f.name).unwrap().1 == kind),
            "{kind}"
        );
    }
    // No held-out cell is an older trained family under another name, and the older held-out
    // `sort_words` stays held out here too.
    for (older, op, kind) in [
        ("sort_numbers", "sort", "numbers"),
        ("reverse_list", "reverse", "words"),
        ("max_number", "max", "numbers"),
        ("list_length", "count", "words"),
        ("sort_words", "sort", "words"),
    ] {
        let cell = family_def(&format!("compose_{op}_{kind}")).unwrap();
        assert_eq!(
            cell.held_out,
            family_def(older).unwrap().held_out,
            "{older}"
        );
    }
}

#[test]
fn templates_name_the_operation_and_the_kind() {
    let suite = Suite::new().unwrap();
    let nouns = |kind: &str| match kind {
        "weekdays" => ["days of the week", "day"],
        "numbers" => ["numbers", "number"],
        "words" => ["words", "word"],
        "letters" => ["letters", "letter"],
        _ => ["months", "month"],
    };
    for f in compose_families() {
        let (op, kind) = cell_of(f.name).unwrap();
        let family = suite.library().family(&f.template_family()).unwrap();
        for t in &family.templates {
            let text = t.inputs.source().to_lowercase();
            assert!(
                nouns(kind).iter().any(|n| text.contains(n)),
                "{}: {text:?} does not name the kind",
                f.name
            );
            let op_words: &[&str] = match op {
                "sort" => &["order"],
                "reverse" => &["reverse", "backwards", "end to", "opposite", "flip"],
                "first" => &["first", "start", "beginning"],
                "last" => &["last", "end"],
                "count" => &["how many", "count", "number of"],
                _ => &["largest", "latest", "last in alphabetical"],
            };
            assert!(
                op_words.iter().any(|w| text.contains(w)),
                "{}: {text:?} does not name the operation",
                f.name
            );
        }
    }
}

#[test]
fn held_out_cells_never_reach_a_training_mixture() {
    let spec = MixtureSpec::from_toml(
        r#"
        input_len = 256
        target_len = 64
        [submixtures.synthetic]
        weight = 1.0
        cap = 1000
        few_shot_ratio = 0.3
        [submixtures.cot]
        weight = 0.5
        cap = 1000
        [synthetic]
        seed = 3
        examples_per_family = 40
        submixture = "synthetic"
        families = ["compose_*"]
        "#,
        "spec",
    )
    .unwrap();
    let mixture = Mixture::from_spec(&spec, std::path::Path::new(".")).unwrap();
    let tasks: BTreeSet<String> = mixture
        .registry()
        .tasks()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let trained: BTreeSet<String> = compose_families()
        .filter(|f| !f.held_out)
        .map(|f| f.template_family())
        .collect();
    assert_eq!(tasks, trained);

    // Nor does their wording: no trained template holds a held-out cell's text before and
    // after the list (which join an operation and a kind that training shows apart), and no
    // rendered training input contains both.
    let suite = Suite::new().unwrap();
    let train_library = suite.train_library();
    let trained_sources: Vec<&str> = train_library
        .families
        .values()
        .flat_map(|f| f.templates.iter().map(|t| t.inputs.source()))
        .collect();
    let shows = |text: &str, (before, after): &(String, String)| {
        text.contains(before.as_str()) && text.contains(after.as_str())
    };
    let mut wordings = Vec::new();
    for f in held_out_families().filter(|f| f.group == "compose") {
        for t in &suite
            .library()
            .family(&f.template_family())
            .unwrap()
            .templates
        {
            let (before, after) = t.inputs.source().split_once("{inputs}").unwrap();
            let wording = (before.to_string(), after.to_string());
            assert!(
                !trained_sources.iter().any(|s| shows(s, &wording)),
                "{wording:?}"
            );
            wordings.push(wording);
        }
    }
    let batch = std::sync::Arc::new(mixture)
        .stream(0)
        .next_batch(3000)
        .unwrap();
    for ex in &batch {
        assert!(trained.contains(&ex.task), "{}", ex.task);
        for w in &wordings {
            assert!(!shows(&ex.inputs, w), "{w:?} in {:?}", ex.inputs);
        }
    }
    // The check would see a held-out wording: the held-out cells render with it.
    let sort_words = family_def("compose_sort_words").unwrap();
    let rendered = suite
        .eval_items(
            sort_words.name,
            &crate::synthetic::EvalRequest {
                seed: 0,
                n: 7,
                templates: crate::synthetic::TemplateSet::All,
                mode: crate::mode::Mode::Direct,
                shots: 0,
            },
        )
        .unwrap();
    assert!(rendered
        .iter()
        .all(|p| wordings.iter().any(|w| shows(&p.inputs, w))));
}

#[test]
fn an_eval_list_is_never_a_training_list_in_any_cell_of_its_kind() {
    // Inputs are bare lists, so the hash split is per list: a list evaluated in a held-out
    // cell was never trained on in another cell of the same kind.
    for kind in KINDS {
        let cells: Vec<&str> = compose_families()
            .filter(|f| cell_of(f.name).unwrap().1 == kind)
            .map(|f| f.name)
            .collect();
        let mut train = HashSet::new();
        for cell in &cells {
            for ex in generate(cell, Split::Train, 1, 1500).unwrap() {
                train.insert(ex.inputs);
            }
        }
        for cell in &cells {
            for ex in generate(cell, Split::Eval, 2, 100).unwrap() {
                assert_eq!(split_of(&ex.inputs), Split::Eval);
                assert!(!train.contains(&ex.inputs), "{cell}: {:?}", ex.inputs);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every compose answer matches a recomputation from the parsed input, in both splits.
    #[test]
    fn answers_match_the_operation_applied_to_the_parsed_list(
        seed in any::<u64>(),
        eval in any::<bool>(),
    ) {
        let split = if eval { Split::Eval } else { Split::Train };
        for f in compose_families() {
            for ex in generate(f.name, split, seed, 12).unwrap() {
                prop_assert_eq!(&ex.targets, &recompute(f.name, &ex.inputs), "{}", f.name);
                prop_assert_eq!(split_of(&ex.inputs), split);
            }
        }
    }

    /// The same seed gives the same examples; lists vary in length and content across seeds.
    #[test]
    fn generation_is_a_function_of_the_seed(seed in any::<u64>()) {
        for f in compose_families() {
            let a = generate(f.name, Split::Train, seed, 30).unwrap();
            prop_assert_eq!(&a, &generate(f.name, Split::Train, seed, 30).unwrap());
            let lengths: HashSet<usize> =
                a.iter().map(|e| e.inputs.split(", ").count()).collect();
            prop_assert!(lengths.len() >= 2, "{}: lengths {:?}", f.name, lengths);
            let inputs: HashSet<&str> = a.iter().map(|e| e.inputs.as_str()).collect();
            prop_assert!(inputs.len() >= 20, "{}: {} distinct lists", f.name, inputs.len());
        }
    }
}
