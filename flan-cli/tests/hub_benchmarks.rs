//! `flan eval run --data hf:ORG/NAME` through the binary: MMLU from a mock hub on 127.0.0.1
//! (`HF_ENDPOINT`) into an empty cache (`HF_HUB_CACHE`), scored on flan-model's tiny fixture;
//! the same run offline (`HF_HUB_OFFLINE=1`) from what was cached; and the error when nothing
//! is cached.

#[path = "../../flan-eval/tests/support/hub_fixtures.rs"]
mod hub_fixtures;

use hub_fixtures::{strs, Col, MockHub, RepoFiles};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

fn mmlu_repo(subjects: &[&str], n_test: usize) -> RepoFiles {
    let mut repo = RepoFiles::new("cais/mmlu", "main", 0x42);
    for subject in subjects {
        for (split, n) in [("test", n_test), ("dev", 5)] {
            let questions: Vec<String> = (0..n)
                .map(|i| format!("{subject} {split} {i}: which is {i}?"))
                .collect();
            repo.add_parquet(
                &format!("{subject}/{split}-00000-of-00001.parquet"),
                &[
                    ("question", strs(&questions)),
                    ("subject", strs(&vec![*subject; n])),
                    (
                        "choices",
                        Col::StrList(
                            (0..n)
                                .map(|i| (0..4).map(|c| format!("{}", i + c)).collect())
                                .collect(),
                        ),
                    ),
                    ("answer", Col::Int((0..n as i64).map(|i| i % 4).collect())),
                ],
            );
        }
    }
    repo
}

fn flan(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flan"));
    cmd.args(args);
    for key in [
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_ENDPOINT",
        "HF_HOME",
        "HF_TOKEN",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("flan runs")
}

fn eval_mmlu(out: &Path, env: &[(&str, &str)]) -> Output {
    let model = model();
    flan(
        &[
            "eval",
            "run",
            "--model",
            model.to_str().unwrap(),
            "--benchmark",
            "mmlu",
            "--mode",
            "direct",
            "--data",
            "hf:cais/mmlu",
            "--limit",
            "20",
            // The tiny fixture's vocabulary gives "A" and "B" one first token: score whole letters.
            "--mmlu-answer",
            "score",
            "--output",
            out.to_str().unwrap(),
        ],
        env,
    )
}

#[test]
fn mmlu_from_a_mock_hub_then_offline_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let server = MockHub::start(vec![mmlu_repo(&["anatomy", "astronomy"], 25)]);
    let cache_text = cache.to_str().unwrap().to_string();
    let online = [
        ("HF_HUB_CACHE", cache_text.as_str()),
        ("HF_ENDPOINT", server.endpoint.as_str()),
    ];
    let out = eval_mmlu(&dir.path().join("online"), &online);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("online/results_mmlu_direct.json")).unwrap(),
    )
    .unwrap();
    for task in ["mmlu_anatomy", "mmlu_astronomy"] {
        assert_eq!(results["n-samples"][task]["effective"], 20, "{results}");
    }
    let served = server.served();
    assert!(served
        .iter()
        .any(|r| r.starts_with("GET /api/datasets/cais/mmlu/revision/main")));
    assert!(served
        .iter()
        .any(|r| r.contains("/datasets/cais/mmlu/resolve/main/anatomy/dev-")));
    drop(server);

    // Offline, from the cache the first run filled: the same samples.
    let offline = [
        ("HF_HUB_CACHE", cache_text.as_str()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let out = eval_mmlu(&dir.path().join("offline"), &offline);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = |run: &str| {
        std::fs::read_to_string(dir.path().join(run).join("samples_mmlu_direct.jsonl"))
            .unwrap_or_else(|e| panic!("{run}: {e}"))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["task"].clone(),
                    v["index"].clone(),
                    v["prompt"].clone(),
                    v["n_shot"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = samples("online");
    assert_eq!(first.len(), 40);
    assert_eq!(first[0].3, 5, "5-shot prompts from the dev split");
    assert_eq!(first, samples("offline"));
}

#[test]
fn an_uncached_hub_dataset_offline_names_it_and_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let out = eval_mmlu(
        &dir.path().join("out"),
        &[
            ("HF_HUB_CACHE", cache.to_str().unwrap()),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a data error: {err}");
    assert!(err.contains("hf:cais/mmlu"), "{err}");
    assert!(
        err.contains("huggingface-cli download --repo-type dataset cais/mmlu"),
        "{err}"
    );
    assert!(err.contains(&cache.display().to_string()), "{err}");
}
