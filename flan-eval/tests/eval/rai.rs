//! The responsible-AI benchmarks end to end with scripted models: Winogender on the released
//! data (expected accuracies computed here from the sentence ids and the BLS statistics, not by
//! flan-eval) and toxicity classification with a known AUC-ROC, through the runner and reports.

use super::*;
use flan_eval::toxicity;
use std::collections::BTreeMap;

/// The released sentences as (sentence, occupation, answer, gender), read independently.
fn winogender_rows() -> Vec<(String, String, u8, String)> {
    let text = std::fs::read_to_string(shared_data().join("winogender/all_sentences.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let (id, sentence) = line.split_once('\t').unwrap();
            let parts: Vec<&str> = id.split('.').collect();
            (
                sentence.to_string(),
                parts[0].to_string(),
                parts[2].parse().unwrap(),
                parts[3].to_string(),
            )
        })
        .collect()
}

/// Majority gender of each occupation by `bls_pct_female`.
fn majority() -> HashMap<String, &'static str> {
    let text =
        std::fs::read_to_string(shared_data().join("winogender/occupations-stats.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let pct: f64 = f[2].parse().unwrap();
            assert_ne!(pct, 50.0, "every released occupation has a majority");
            (f[0].to_string(), if pct > 50.0 { "female" } else { "male" })
        })
        .collect()
}

/// A model that names the occupation when `choose(occupation, gender)`, else the participant
/// (as the sentence id names it): the scripted score ranks the words it names highest.
fn picking(choose: impl Fn(&str, &str) -> bool + 'static) -> ScriptedModel {
    let text = std::fs::read_to_string(shared_data().join("winogender/all_sentences.tsv")).unwrap();
    let rows: Vec<(String, String, String, String)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let (id, sentence) = line.split_once('\t').unwrap();
            let p: Vec<&str> = id.split('.').collect();
            (sentence.into(), p[0].into(), p[1].into(), p[3].into())
        })
        .collect();
    ScriptedModel::new(move |prompt, _, _| {
        let (_, occupation, participant, gender) = rows
            .iter()
            .find(|(s, ..)| prompt.starts_with(&format!("{s} '")))
            .expect("every prompt starts with its sentence");
        if choose(occupation, gender) {
            format!("the {occupation}")
        } else if participant == "someone" {
            "someone".to_string()
        } else {
            format!("the {participant}")
        }
    })
}

fn winogender_run(model: &mut ScriptedModel) -> (Vec<EvalItem>, runner::RunResult) {
    let opts = SuiteOptions::new(
        Benchmark::Winogender,
        Mode::Direct,
        shared_data().join("winogender"),
    );
    let items = items_for(&opts, model);
    let result = run(model, &items, &RunOptions::default());
    (items, result)
}

fn fraction(correct: usize, n: usize) -> f64 {
    correct as f64 / n as f64
}

#[test]
fn a_model_that_always_picks_the_occupation_scores_the_occupation_answers() {
    let rows = winogender_rows();
    let majority = majority();
    assert_eq!(rows.len(), 720);
    // Expected: right exactly where the answer field is 0.
    let mut by_gender: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut gotcha = (0, 0);
    for (_, occupation, answer, gender) in &rows {
        let e = by_gender.entry(gender.as_str()).or_default();
        e.0 += usize::from(*answer == 0);
        e.1 += 1;
        let matches = majority[occupation] == gender;
        let is_gotcha = gender != "neutral" && ((*answer == 0) != matches);
        if is_gotcha {
            gotcha.0 += usize::from(*answer == 0);
            gotcha.1 += 1;
        }
    }
    assert_eq!(gotcha.1, 240);
    let mut model = picking(|_, _| true);
    let (items, result) = winogender_run(&mut model);
    assert_eq!(items.len(), 720);
    let all_right = rows.iter().filter(|r| r.2 == 0).count();
    assert!((result.micro_accuracy() - 100.0 * fraction(all_right, 720)).abs() < 1e-9);
    let info = RunInfo {
        model: "scripted".into(),
        benchmark: Benchmark::Winogender,
        mode: Mode::Direct,
        limit: None,
        options: RunOptions::default(),
        dtype: None,
    };
    let v = report::results_json(&info, &items, &result);
    let w = &v["winogender"];
    for (gender, (correct, n)) in &by_gender {
        assert_eq!(w["by_pronoun"][gender]["n"], *n, "{gender}");
        assert_eq!(w["by_pronoun"][gender]["correct"], *correct, "{gender}");
    }
    assert_eq!(w["gotcha"]["n"], gotcha.1);
    assert_eq!(w["gotcha"]["correct"], gotcha.0);
    let gap = fraction(by_gender["male"].0, by_gender["male"].1)
        - fraction(by_gender["female"].0, by_gender["female"].1);
    assert!((w["male_minus_female"].as_f64().unwrap() - gap).abs() < 1e-12);
    let md = report::markdown(&info, &result);
    assert!(md.contains("## Winogender"), "{md}");
    assert!(md.contains(&format!("| gotcha | {} |", gotcha.1)), "{md}");
}

#[test]
fn a_model_that_follows_the_statistics_fails_every_gotcha_and_nothing_else_gendered() {
    let majority = majority();
    // Picks the occupation exactly when the pronoun has the occupation's majority gender.
    let mut model = picking(move |occupation, gender| majority[occupation] == gender);
    let (items, result) = winogender_run(&mut model);
    let info = RunInfo {
        model: "scripted".into(),
        benchmark: Benchmark::Winogender,
        mode: Mode::Direct,
        limit: None,
        options: RunOptions::default(),
        dtype: None,
    };
    let v = report::results_json(&info, &items, &result);
    let w = &v["winogender"];
    assert_eq!(w["gotcha"]["n"], 240);
    assert_eq!(w["gotcha"]["correct"], 0);
    assert_eq!(w["not_gotcha"]["n"], 240);
    assert_eq!(w["not_gotcha"]["correct"], 240);
    for task in ["winogender_male_gotcha", "winogender_female_gotcha"] {
        assert_eq!(v["results"][task]["acc,none"], 0.0, "{task}");
    }
    for task in ["winogender_male_not_gotcha", "winogender_female_not_gotcha"] {
        assert_eq!(v["results"][task]["acc,none"], 1.0, "{task}");
    }
}

#[test]
fn toxicity_reports_accuracy_and_the_auc_of_the_yes_score() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("civil.jsonl");
    // Four toxic comments, four not; the model says yes to three toxic ones and one other.
    let rows = [
        ("t1 says yes", 0.9),
        ("t2 says yes", 0.5),
        ("t3 says yes", 0.7),
        ("t4 says no", 0.8),
        ("n1 says yes", 0.1),
        ("n2 says no", 0.0),
        ("n3 says no", 0.49),
        ("n4 says no", 0.2),
    ];
    let text: String = rows
        .iter()
        .map(|(t, x)| format!("{}\n", serde_json::json!({"text": t, "toxicity": x})))
        .collect();
    std::fs::write(&data, text).unwrap();
    let mut opts = SuiteOptions::new(Benchmark::Toxicity, Mode::Direct, &data);
    opts.shots = Some(2);
    opts.seed = 3;
    let mut model = ScriptedModel::new(|prompt, _, _| {
        let query = prompt.rsplit("Comment: ").next().unwrap();
        if query.contains("says yes") {
            "yes"
        } else {
            "no"
        }
        .to_string()
    });
    let items = items_for(&opts, &mut model);
    assert_eq!(items.len(), 8);
    assert!(items.iter().all(|i| i.n_shot == 2));
    let result = run(&mut model, &items, &RunOptions::default());
    assert_eq!(result.micro_accuracy(), 75.0);
    let info = RunInfo {
        model: "scripted".into(),
        benchmark: Benchmark::Toxicity,
        mode: Mode::Direct,
        limit: None,
        options: RunOptions::default(),
        dtype: None,
    };
    let v = report::results_json(&info, &items, &result);
    let t = &v["toxicity"];
    // Pairs (toxic, non-toxic): 3 x 3 ordered right, 3 x 1 and 1 x 3 tied: (9 + 3) / 16.
    assert_eq!(t["auc_roc"], 0.75);
    assert_eq!(t["n_toxic"], 4);
    assert_eq!(t["n_non_toxic"], 4);
    assert_eq!(t["unscored"], 0);
    assert_eq!(v["results"][toxicity::TASK]["acc,none"], 0.75);
    let md = report::markdown(&info, &result);
    assert!(md.contains("| 8 | 4 | 4 | 75.00 | 0.7500 | 0 |"), "{md}");
}

#[test]
fn a_perfectly_ranking_toxicity_model_has_auc_one_and_a_reversed_one_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("civil.jsonl");
    let rows = [
        ("toxic a", 0.9),
        ("toxic b", 0.6),
        ("toxic c", 0.5),
        ("clean a", 0.0),
        ("clean b", 0.3),
        ("clean c", 0.49),
    ];
    let text: String = rows
        .iter()
        .map(|(t, x)| format!("{}\n", serde_json::json!({"text": t, "toxicity": x})))
        .collect();
    std::fs::write(&data, text).unwrap();
    let opts = SuiteOptions::new(Benchmark::Toxicity, Mode::Direct, &data);
    let info = RunInfo {
        model: "scripted".into(),
        benchmark: Benchmark::Toxicity,
        mode: Mode::Direct,
        limit: None,
        options: RunOptions::default(),
        dtype: None,
    };
    for (says_yes_to, auc, accuracy) in [("toxic", 1.0, 100.0), ("clean", 0.0, 0.0)] {
        let mut model = ScriptedModel::new(move |prompt, _, _| {
            let query = prompt.rsplit("Comment: ").next().unwrap();
            if query.starts_with(says_yes_to) {
                "yes"
            } else {
                "no"
            }
            .to_string()
        });
        let items = items_for(&opts, &mut model);
        assert_eq!(items.len(), 6);
        let result = run(&mut model, &items, &RunOptions::default());
        assert_eq!(result.micro_accuracy(), accuracy, "yes to {says_yes_to}");
        let v = report::results_json(&info, &items, &result);
        assert_eq!(v["toxicity"]["auc_roc"], auc, "yes to {says_yes_to}");
    }
}
