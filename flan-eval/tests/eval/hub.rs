//! Benchmarks from hub datasets: each benchmark written by the test in its file layout and in
//! its hub layout (Parquet as the hub serves it, in a Hugging Face cache or behind a mock hub on
//! 127.0.0.1) gives the same items — ids, questions, choices, answers and the prompts built from
//! them.

use crate::hub_fixtures::{put_in_cache, strs, Col, MockHub, RepoFiles};
use flan_eval::hub::{HubConfig, HubDataset};
use flan_eval::suite::{self, SuiteOptions};
use flan_eval::{Benchmark, EvalItem, Mode};
use std::path::{Path, PathBuf};

fn words(text: &str) -> flan_eval::Result<usize> {
    Ok(flan_eval::text::py_split(text).count())
}

fn items(opts: &SuiteOptions) -> flan_eval::Result<Vec<EvalItem>> {
    suite::build_items(opts, &mut words)
}

fn offline(cache: &Path) -> HubConfig {
    HubConfig {
        cache: Some(cache.to_path_buf()),
        // Never asked: offline.
        endpoint: "http://127.0.0.1:9".into(),
        offline: true,
        token: None,
    }
}

fn online(cache: &Path, hub: &MockHub) -> HubConfig {
    HubConfig {
        cache: Some(cache.to_path_buf()),
        endpoint: hub.endpoint.clone(),
        offline: false,
        token: None,
    }
}

fn from_hub(benchmark: Benchmark, mode: Mode, spec: &str, hub: HubConfig) -> SuiteOptions {
    let mut o = SuiteOptions::new(benchmark, mode, PathBuf::new());
    o.hub = Some(HubDataset::parse(spec, hub).unwrap());
    o
}

// ---- MMLU: cais/mmlu, one config per subject, `test` and `dev` splits ----

struct Q {
    question: &'static str,
    choices: [&'static str; 4],
    answer: usize,
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn mmlu_questions(subject: &str, split: &str, n: usize) -> Vec<Q> {
    // Commas, quotes, newlines and non-ASCII: what CSV quoting and Parquet must carry alike.
    const TEXTS: [&str; 4] = [
        "What is 2 + 2, in \"base\" ten?",
        "Which bone is\nthe longest?",
        "Ist ℵ₀ < 𝔠?",
        "Plain question",
    ];
    (0..n)
        .map(|i| Q {
            question: Box::leak(
                format!("{subject} {split} {i}: {}", TEXTS[i % 4]).into_boxed_str(),
            ),
            choices: ["four, maybe", "\"femur\"", "ja", "none"],
            answer: (i * 3 + subject.len()) % 4,
        })
        .collect()
}

fn write_mmlu_csv(path: &Path, qs: &[Q]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    for q in qs {
        let mut rec: Vec<&str> = vec![q.question];
        rec.extend(q.choices);
        rec.push(LETTERS[q.answer]);
        w.write_record(&rec).unwrap();
    }
    w.flush().unwrap();
}

fn mmlu_columns(subject: &str, qs: &[Q]) -> Vec<(&'static str, Col)> {
    vec![
        (
            "question",
            strs(&qs.iter().map(|q| q.question).collect::<Vec<_>>()),
        ),
        ("subject", strs(&vec![subject; qs.len()])),
        (
            "choices",
            Col::StrList(
                qs.iter()
                    .map(|q| q.choices.map(String::from).to_vec())
                    .collect(),
            ),
        ),
        (
            "answer",
            Col::Int(qs.iter().map(|q| q.answer as i64).collect()),
        ),
    ]
}

const SUBJECTS: [&str; 2] = ["abstract_algebra", "anatomy"];

/// MMLU in both layouts: the released directory and the hub's per-subject configs, the latter
/// in the repository's own file names (`main`) or the conversion's (`refs/convert/parquet`).
fn mmlu_fixture(root: &Path, n_test: usize, converted: bool) -> (PathBuf, RepoFiles) {
    let dir = root.join("mmlu");
    let revision = if converted {
        "refs/convert/parquet"
    } else {
        "main"
    };
    let mut repo = RepoFiles::new("cais/mmlu", revision, 0x1a);
    repo.add_text("README.md", "---\nconfigs: ...\n---\n");
    for subject in SUBJECTS {
        for (split, n) in [("test", n_test), ("dev", 5), ("validation", 2)] {
            let qs = mmlu_questions(subject, split, n);
            let file_split = if split == "validation" { "val" } else { split };
            write_mmlu_csv(
                &dir.join(file_split)
                    .join(format!("{subject}_{file_split}.csv")),
                &qs,
            );
            let name = if converted {
                format!("{subject}/{split}/0000.parquet")
            } else {
                format!("{subject}/{split}-00000-of-00001.parquet")
            };
            repo.add_parquet(&name, &mmlu_columns(subject, &qs));
        }
    }
    (dir, repo)
}

#[test]
fn mmlu_items_are_the_same_from_the_cache_in_both_hub_layouts() {
    for converted in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let (dir, repo) = mmlu_fixture(root.path(), 7, converted);
        let cache = root.path().join("hub");
        put_in_cache(&cache, &repo);
        for (mode, split) in [(Mode::Direct, "test"), (Mode::ZeroShotCot, "val")] {
            let mut files = SuiteOptions::new(Benchmark::Mmlu, mode, &dir);
            files.mmlu_split = split.into();
            let mut hub = from_hub(Benchmark::Mmlu, mode, "hf:cais/mmlu", offline(&cache));
            hub.mmlu_split = split.into();
            let expected = items(&files).unwrap();
            assert_eq!(expected.len(), if split == "test" { 14 } else { 4 });
            assert_eq!(
                items(&hub).unwrap(),
                expected,
                "converted: {converted}, {mode:?}"
            );
            // Direct prompts carry the dev exemplars: the 5-shot prompt is identical too.
            if mode == Mode::Direct {
                assert_eq!(expected[0].n_shot, 5);
            }
            // Selecting subjects, and naming an unknown one.
            files.tasks = Some(vec!["anatomy".into()]);
            hub.tasks = files.tasks.clone();
            assert_eq!(items(&hub).unwrap(), items(&files).unwrap());
            hub.tasks = Some(vec!["astrology".into()]);
            let err = items(&hub).unwrap_err().to_string();
            assert!(
                err.contains("astrology") && err.contains("anatomy"),
                "{err}"
            );
        }
    }
}

#[test]
fn mmlu_from_the_all_config_is_grouped_by_subject() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = mmlu_fixture(root.path(), 3, false);
    let mut repo = RepoFiles::new("cais/mmlu", "main", 0x2b);
    for split in ["test", "dev"] {
        // Subjects interleaved, as a concatenation need not be sorted.
        let mut cols_q = Vec::new();
        let mut subjects = Vec::new();
        let (a, b) = (
            mmlu_questions(SUBJECTS[1], split, if split == "test" { 3 } else { 5 }),
            mmlu_questions(SUBJECTS[0], split, if split == "test" { 3 } else { 5 }),
        );
        for (i, q) in a.into_iter().enumerate() {
            cols_q.push(q);
            subjects.push(SUBJECTS[1]);
            if let Some(q) = b.get(i) {
                cols_q.push(Q { ..*q });
                subjects.push(SUBJECTS[0]);
            }
        }
        let mut cols = mmlu_columns("", &cols_q);
        cols[1] = ("subject", strs(&subjects));
        repo.add_parquet(&format!("all/{split}-00000-of-00001.parquet"), &cols);
    }
    let cache = root.path().join("hub");
    put_in_cache(&cache, &repo);
    let files = SuiteOptions::new(Benchmark::Mmlu, Mode::Direct, &dir);
    let hub = from_hub(
        Benchmark::Mmlu,
        Mode::Direct,
        "hf:cais/mmlu",
        offline(&cache),
    );
    assert_eq!(items(&hub).unwrap(), items(&files).unwrap());
}

#[test]
fn mmlu_is_downloaded_from_a_mock_hub_into_the_cache_layout() {
    let root = tempfile::tempdir().unwrap();
    let (dir, repo) = mmlu_fixture(root.path(), 4, false);
    let server = MockHub::start(vec![repo]);
    let cache = root.path().join("hub");
    let files = SuiteOptions::new(Benchmark::Mmlu, Mode::Direct, &dir);
    let mut hub = from_hub(
        Benchmark::Mmlu,
        Mode::Direct,
        "hf:cais/mmlu",
        online(&cache, &server),
    );
    hub.tasks = Some(vec!["anatomy".into()]);
    let mut expected_opts = files.clone();
    expected_opts.tasks = hub.tasks.clone();
    let expected = items(&expected_opts).unwrap();
    assert_eq!(items(&hub).unwrap(), expected);
    let served = server.served();
    assert!(
        served
            .iter()
            .any(|r| r.contains("/api/datasets/cais/mmlu/revision/main")),
        "{served:?}"
    );
    // Only the subject asked for, and only the splits used (test, dev), were fetched.
    let fetched: Vec<&String> = served.iter().filter(|r| r.contains("/resolve/")).collect();
    assert!(
        fetched.iter().all(|r| r.contains("/anatomy/")),
        "{fetched:?}"
    );
    assert!(
        fetched.iter().all(|r| !r.contains("validation")),
        "{fetched:?}"
    );
    assert!(
        fetched.iter().any(|r| r.contains("anatomy/dev-")),
        "{fetched:?}"
    );
    // What was downloaded is a huggingface_hub cache: offline now finds it.
    drop(server);
    let mut again = from_hub(
        Benchmark::Mmlu,
        Mode::Direct,
        "hf:cais/mmlu",
        offline(&cache),
    );
    again.tasks = Some(vec!["anatomy".into()]);
    assert_eq!(items(&again).unwrap(), expected);
    assert!(cache.join("datasets--cais--mmlu/refs/main").is_file());
}

#[test]
fn an_uncached_dataset_offline_names_itself_and_how_to_get_it() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let hub = from_hub(
        Benchmark::Mmlu,
        Mode::Direct,
        "hf:cais/mmlu",
        offline(&cache),
    );
    let err = items(&hub).unwrap_err().to_string();
    assert!(err.contains("dataset hf:cais/mmlu"), "{err}");
    assert!(err.contains(&cache.display().to_string()), "{err}");
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(
        err.contains("huggingface-cli download --repo-type dataset cais/mmlu"),
        "{err}"
    );
    // A hub that does not have it: the same, with what the hub said.
    let server = MockHub::start(vec![]);
    let hub = from_hub(
        Benchmark::Gsm8k,
        Mode::Cot,
        "hf:openai/gsm8k",
        online(&cache, &server),
    );
    let err = flan_data::error::chain(&items(&hub).unwrap_err());
    assert!(err.contains("openai/gsm8k"), "{err}");
    assert!(err.contains("huggingface-cli download"), "{err}");
}

#[test]
fn a_hub_split_with_the_wrong_schema_names_file_row_and_column() {
    let root = tempfile::tempdir().unwrap();
    let mut repo = RepoFiles::new("cais/mmlu", "main", 0x3c);
    repo.add_parquet(
        "anatomy/test-00000-of-00001.parquet",
        &[
            ("question", strs(&["q1", "q2"])),
            (
                "choices",
                Col::StrList(vec![vec!["a".into(); 4], vec!["a".into(); 3]]),
            ),
            ("answer", Col::Int(vec![1, 2])),
        ],
    );
    repo.add_parquet(
        "anatomy/dev-00000-of-00001.parquet",
        &[("question", strs(&["q"])), ("answer", Col::Int(vec![7]))],
    );
    let cache = root.path().join("hub");
    put_in_cache(&cache, &repo);
    let hub = from_hub(
        Benchmark::Mmlu,
        Mode::ZeroShotCot,
        "hf:cais/mmlu",
        offline(&cache),
    );
    let err = items(&hub).unwrap_err().to_string();
    assert!(
        err.contains("anatomy/test-00000-of-00001.parquet:2: row 2")
            && err.contains("expected 4 choices"),
        "{err}"
    );
    // A corrupt file is an error naming it, not a panic.
    let mut bad = RepoFiles::new("cais/mmlu", "main", 0x3d);
    bad.add_text("anatomy/test-00000-of-00001.parquet", "PAR1 not really");
    let cache2 = root.path().join("hub2");
    put_in_cache(&cache2, &bad);
    let hub = from_hub(
        Benchmark::Mmlu,
        Mode::ZeroShotCot,
        "hf:cais/mmlu",
        offline(&cache2),
    );
    let err = items(&hub).unwrap_err().to_string();
    assert!(err.contains("anatomy/test-00000-of-00001.parquet"), "{err}");
    // The dev split's missing column.
    let mut dev_bad = RepoFiles::new("cais/mmlu", "main", 0x3e);
    dev_bad.add_parquet(
        "anatomy/test-00000-of-00001.parquet",
        &[
            ("question", strs(&["q1"])),
            ("choices", Col::StrList(vec![vec!["a".into(); 4]])),
            ("answer", Col::Int(vec![1])),
        ],
    );
    dev_bad.add_parquet(
        "anatomy/dev-00000-of-00001.parquet",
        &[("question", strs(&["q"])), ("answer", Col::Int(vec![1]))],
    );
    let cache3 = root.path().join("hub3");
    put_in_cache(&cache3, &dev_bad);
    let hub = from_hub(
        Benchmark::Mmlu,
        Mode::Direct,
        "hf:cais/mmlu",
        offline(&cache3),
    );
    let err = items(&hub).unwrap_err().to_string();
    assert!(
        err.contains("dev-00000-of-00001.parquet:1: row 1: no column \"choices\""),
        "{err}"
    );
}

// ---- BBH: lukaemon/bbh (refs/convert/parquet), CoT prompts from a local BBH copy ----

const BBH_PROMPT: &str = "canary\n-----\nEvaluate the expression.\n\nQ: not True\nA: Let's think step by step.\nnot True is False. So the answer is False.\n\nQ: True and False\nA: Let's think step by step.\nBoth are needed. So the answer is False.";

fn bbh_fixture(root: &Path) -> (PathBuf, RepoFiles) {
    let dir = root.join("bbh");
    let mut repo = RepoFiles::new("lukaemon/bbh", "refs/convert/parquet", 0x4d);
    for (task, n) in [("boolean_expressions", 4), ("navigate", 3)] {
        let inputs: Vec<String> = (0..n)
            .map(|i| format!("{task} {i}:\nOptions:\n(A) \"x\"\n(B) ü"))
            .collect();
        let targets: Vec<String> = (0..n)
            .map(|i| ["(A)", "True", "No"][i % 3].into())
            .collect();
        let examples: Vec<_> = inputs
            .iter()
            .zip(&targets)
            .map(|(i, t)| serde_json::json!({"input": i, "target": t}))
            .collect();
        std::fs::create_dir_all(dir.join("tasks")).unwrap();
        std::fs::create_dir_all(dir.join("cot-prompts")).unwrap();
        std::fs::write(
            dir.join("tasks").join(format!("{task}.json")),
            serde_json::json!({"examples": examples, "canary": "c"}).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("cot-prompts").join(format!("{task}.txt")),
            BBH_PROMPT,
        )
        .unwrap();
        repo.add_parquet(
            &format!("{task}/test/0000.parquet"),
            &[("input", strs(&inputs)), ("target", strs(&targets))],
        );
    }
    (dir, repo)
}

#[test]
fn bbh_items_are_the_same_with_the_prompts_of_a_local_bbh_copy() {
    let root = tempfile::tempdir().unwrap();
    let (dir, repo) = bbh_fixture(root.path());
    let cache = root.path().join("hub");
    put_in_cache(&cache, &repo);
    for mode in [Mode::Cot, Mode::Direct, Mode::ZeroShotCot] {
        let files = SuiteOptions::new(Benchmark::Bbh, mode, &dir);
        let mut hub = from_hub(Benchmark::Bbh, mode, "hf:lukaemon/bbh", offline(&cache));
        hub.bbh_prompts = Some(dir.clone());
        let expected = items(&files).unwrap();
        assert_eq!(expected.len(), 7);
        assert_eq!(items(&hub).unwrap(), expected, "{mode:?}");
    }
    // The cot-prompts directory itself serves as well.
    let mut hub = from_hub(
        Benchmark::Bbh,
        Mode::Cot,
        "hf:lukaemon/bbh",
        offline(&cache),
    );
    hub.bbh_prompts = Some(dir.join("cot-prompts"));
    assert_eq!(
        items(&hub).unwrap(),
        items(&SuiteOptions::new(Benchmark::Bbh, Mode::Cot, &dir)).unwrap()
    );
    // CoT without the prompts is an error that says what to pass; direct is zero-shot.
    let hub = from_hub(
        Benchmark::Bbh,
        Mode::Cot,
        "hf:lukaemon/bbh",
        offline(&cache),
    );
    let err = items(&hub).unwrap_err().to_string();
    assert!(
        err.contains("--bbh-prompts") && err.contains("cot-prompts"),
        "{err}"
    );
    let hub = from_hub(
        Benchmark::Bbh,
        Mode::Direct,
        "hf:lukaemon/bbh",
        offline(&cache),
    );
    let zero = items(&hub).unwrap();
    assert_eq!(zero.len(), 7);
    assert_eq!(zero[0].n_shot, 0);
    assert_eq!(
        zero[0].prompt,
        "Q: boolean_expressions 0:\nOptions:\n(A) \"x\"\n(B) ü\nA:"
    );
}

#[test]
fn bbh_falls_back_to_the_parquet_branch_of_a_mock_hub() {
    let root = tempfile::tempdir().unwrap();
    let (dir, repo) = bbh_fixture(root.path());
    // `main` holds only a loading script, as lukaemon/bbh does.
    let mut main = RepoFiles::new("lukaemon/bbh", "main", 0x5e);
    main.add_text("bbh.py", "import datasets\n");
    let server = MockHub::start(vec![main, repo]);
    let cache = root.path().join("hub");
    let mut hub = from_hub(
        Benchmark::Bbh,
        Mode::Cot,
        "hf:lukaemon/bbh",
        online(&cache, &server),
    );
    hub.bbh_prompts = Some(dir.clone());
    let expected = items(&SuiteOptions::new(Benchmark::Bbh, Mode::Cot, &dir)).unwrap();
    assert_eq!(items(&hub).unwrap(), expected);
    assert!(server
        .served()
        .iter()
        .any(|r| r.contains("/api/datasets/lukaemon/bbh/revision/refs%2Fconvert%2Fparquet")));
    drop(server);
    let mut again = from_hub(
        Benchmark::Bbh,
        Mode::Cot,
        "hf:lukaemon/bbh",
        offline(&cache),
    );
    again.bbh_prompts = Some(dir);
    assert_eq!(items(&again).unwrap(), expected);
}

// ---- GSM8K: openai/gsm8k, config main, test and train (the default exemplars) ----

fn gsm8k_records(split: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("{split} {i}: Natalia sold clips to {i} friends, \"then\" more?"),
                format!(
                    "She sold {i}/2 = <<{i}/2={}>>{} clips.\nIn all {} clips.\n#### {}",
                    i / 2,
                    i / 2,
                    i * 3,
                    i * 3
                ),
            )
        })
        .collect()
}

fn gsm8k_fixture(root: &Path) -> (PathBuf, RepoFiles) {
    let dir = root.join("gsm8k");
    std::fs::create_dir_all(&dir).unwrap();
    let mut repo = RepoFiles::new("openai/gsm8k", "main", 0x6f);
    for (split, n) in [("test", 5), ("train", 10)] {
        let recs = gsm8k_records(split, n);
        let lines: String = recs
            .iter()
            .map(|(q, a)| serde_json::json!({"question": q, "answer": a}).to_string() + "\n")
            .collect();
        std::fs::write(dir.join(format!("{split}.jsonl")), lines).unwrap();
        let (qs, ans): (Vec<_>, Vec<_>) = recs.into_iter().unzip();
        repo.add_parquet(
            &format!("main/{split}-00000-of-00001.parquet"),
            &[("question", strs(&qs)), ("answer", strs(&ans))],
        );
    }
    (dir, repo)
}

#[test]
fn gsm8k_items_and_default_exemplars_are_the_same_from_cache_and_mock_hub() {
    let root = tempfile::tempdir().unwrap();
    let (dir, repo) = gsm8k_fixture(root.path());
    let cache = root.path().join("hub");
    let server = MockHub::start(vec![repo.clone()]);
    for mode in [Mode::Cot, Mode::Direct] {
        let files = SuiteOptions::new(Benchmark::Gsm8k, mode, dir.join("test.jsonl"));
        let expected = items(&files).unwrap();
        assert_eq!(expected.len(), 5);
        assert_eq!(expected[0].n_shot, 8);
        let hub = from_hub(
            Benchmark::Gsm8k,
            mode,
            "hf:openai/gsm8k",
            online(&cache, &server),
        );
        assert_eq!(items(&hub).unwrap(), expected, "{mode:?}");
        let hub = from_hub(Benchmark::Gsm8k, mode, "hf:openai/gsm8k", offline(&cache));
        assert_eq!(items(&hub).unwrap(), expected, "{mode:?} from the cache");
    }
    // A revision pinned by its commit.
    let spec = format!("hf:openai/gsm8k@{}", repo.commit);
    let hub = from_hub(Benchmark::Gsm8k, Mode::Cot, &spec, offline(&cache));
    assert_eq!(items(&hub).unwrap().len(), 5);
}

// ---- MGSM: juletxara/mgsm, one config per language (or the original TSVs) ----

fn mgsm_fixture(root: &Path, tsv_in_repo: bool) -> (PathBuf, RepoFiles) {
    let dir = root.join("mgsm");
    std::fs::create_dir_all(&dir).unwrap();
    let mut repo = RepoFiles::new("juletxara/mgsm", "main", 0x70);
    for lang in ["de", "en", "zh"] {
        let qs: Vec<String> = (0..3)
            .map(|i| format!("{lang} Frage {i}: 价格 {i},5?"))
            .collect();
        let answers: Vec<i64> = (0..3).map(|i| i * 1000 + 7).collect();
        let tsv: String = qs
            .iter()
            .zip(&answers)
            .map(|(q, a)| format!("{q}\t{a}\n"))
            .collect();
        std::fs::write(dir.join(format!("mgsm_{lang}.tsv")), &tsv).unwrap();
        if tsv_in_repo {
            repo.add_text(&format!("mgsm_{lang}.tsv"), &tsv);
        } else {
            repo.add_parquet(
                &format!("{lang}/test-00000-of-00001.parquet"),
                &[
                    ("question", strs(&qs)),
                    ("answer", Col::Str(vec![None; 3])),
                    ("answer_number", Col::Int(answers.clone())),
                    ("equation_solution", Col::Str(vec![None; 3])),
                ],
            );
        }
    }
    (dir, repo)
}

#[test]
fn mgsm_items_are_the_same_from_parquet_configs_and_from_the_original_tsvs() {
    let root = tempfile::tempdir().unwrap();
    let (gsm8k, _) = gsm8k_fixture(root.path());
    let exemplars = gsm8k.join("train.jsonl");
    for tsv_in_repo in [false, true] {
        let (dir, repo) = mgsm_fixture(root.path(), tsv_in_repo);
        let cache = root.path().join(format!("hub-{tsv_in_repo}"));
        let server = MockHub::start(vec![repo]);
        let mut files = SuiteOptions::new(Benchmark::Mgsm, Mode::Cot, &dir);
        files.exemplars = Some(exemplars.clone());
        files.tasks = Some(vec!["en".into(), "zh".into()]);
        let expected = items(&files).unwrap();
        assert_eq!(expected.len(), 6);
        let mut hub = from_hub(
            Benchmark::Mgsm,
            Mode::Cot,
            "hf:juletxara/mgsm",
            online(&cache, &server),
        );
        hub.exemplars = files.exemplars.clone();
        hub.tasks = files.tasks.clone();
        assert_eq!(items(&hub).unwrap(), expected, "tsv in repo: {tsv_in_repo}");
        // Only the languages asked for were fetched.
        assert!(
            !server.served().iter().any(|r| r.contains("de")),
            "{:?}",
            server.served()
        );
        hub.hub.as_mut().unwrap().hub = offline(&cache);
        assert_eq!(items(&hub).unwrap(), expected);
        // Without exemplars the hub copy cannot serve few-shot prompts.
        hub.exemplars = None;
        let err = items(&hub).unwrap_err().to_string();
        assert!(err.contains("--exemplars"), "{err}");
    }
}

// ---- TyDiQA GoldP: google-research-datasets/tydiqa, secondary_task, validation ----

#[test]
fn tydiqa_items_are_the_same_from_cache_and_mock_hub() {
    let root = tempfile::tempdir().unwrap();
    let ids = ["finnish-1-0", "finnish-2-1", "swahili-3-0", "arabic-9-2"];
    let contexts = [
        "Helsinki on pääkaupunki.",
        "Turku, \"vanha\".",
        "Nairobi ni mji.",
        "القاهرة",
    ];
    let questions = ["Mikä?", "Missä?", "Nini?", "ما؟"];
    let answers: Vec<(Vec<String>, Vec<i32>)> = vec![
        (vec!["Helsinki".into()], vec![0]),
        (vec!["Turku".into(), "vanha".into()], vec![0, 7]),
        (vec!["Nairobi".into()], vec![0]),
        (vec!["القاهرة".into()], vec![0]),
    ];
    let jsonl: String = (0..4)
        .map(|i| {
            serde_json::json!({
                "id": ids[i], "title": "t", "context": contexts[i], "question": questions[i],
                "answers": {"text": answers[i].0, "answer_start": answers[i].1},
            })
            .to_string()
                + "\n"
        })
        .collect();
    let file = root.path().join("tydiqa.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    let mut repo = RepoFiles::new("google-research-datasets/tydiqa", "main", 0x81);
    repo.add_parquet(
        "secondary_task/validation-00000-of-00001.parquet",
        &[
            ("id", strs(&ids)),
            ("title", strs(&["t"; 4])),
            ("context", strs(&contexts)),
            ("question", strs(&questions)),
            ("answers", Col::Answers(answers.clone())),
        ],
    );
    repo.add_parquet(
        "primary_task/validation-00000-of-00001.parquet",
        &[("id", strs(&["unused"]))],
    );
    let cache = root.path().join("hub");
    let server = MockHub::start(vec![repo]);
    let expected = items(&SuiteOptions::new(Benchmark::Tydiqa, Mode::Direct, &file)).unwrap();
    assert_eq!(expected.len(), 4);
    assert_eq!(expected[1].targets, ["Turku", "vanha"]);
    let spec = "hf:google-research-datasets/tydiqa";
    let hub = from_hub(
        Benchmark::Tydiqa,
        Mode::Direct,
        spec,
        online(&cache, &server),
    );
    assert_eq!(items(&hub).unwrap(), expected);
    assert!(!server.served().iter().any(|r| r.contains("primary_task")));
    let hub = from_hub(Benchmark::Tydiqa, Mode::Direct, spec, offline(&cache));
    assert_eq!(items(&hub).unwrap(), expected);
}

#[test]
fn benchmarks_without_a_hub_reader_say_so() {
    let root = tempfile::tempdir().unwrap();
    let hub = from_hub(
        Benchmark::Winogender,
        Mode::Direct,
        "hf:org/winogender",
        offline(root.path()),
    );
    let err = items(&hub).unwrap_err().to_string();
    assert!(err.contains("mmlu, bbh, mgsm, gsm8k and tydiqa"), "{err}");
}
