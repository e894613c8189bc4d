//! Every `--model` (and `model.pretrained`) takes a hub id as well as a directory: `flan eval
//! run`, `flan train` (flag and config), `flan generate`. The hub is a cache laid out as
//! huggingface_hub writes it (`models--org--name/refs/main` naming a snapshot whose files are
//! relative symlinks into `blobs/`), read offline (`HF_HUB_OFFLINE=1`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = "flan-test/tiny-t5";
const COMMIT: &str = "3f0c9c2f2a8f6d0b1e5a7c4d9e2b8a6f1c3d5e7a";

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

/// A Hugging Face cache holding flan-model's tiny v1_1 fixture as `REPO` at `COMMIT`.
fn fake_hub_cache(root: &Path) -> PathBuf {
    let repo = root.join(format!("models--{}", REPO.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    for (i, name) in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ]
    .iter()
    .enumerate()
    {
        // Blob names are the files' hashes on the hub; any distinct names do here.
        let blob = format!("{:040x}", 0xb10b_0000 + i);
        std::fs::copy(fixture_model().join(name), repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(name)).unwrap();
    }
    snapshot
}

fn flan(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("flan runs")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn eval_train_and_generate_resolve_a_hub_id_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let snapshot = fake_hub_cache(&cache);

    // flan eval run --model ORG/NAME
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mgsm");
    let eval_out = dir.path().join("eval");
    ok(&flan(
        &cache,
        &[
            "eval",
            "run",
            "--model",
            REPO,
            "--benchmark",
            "mgsm",
            "--mode",
            "cot",
            "--data",
            data.to_str().unwrap(),
            "--tasks",
            "en",
            "--limit",
            "1",
            "--max-new-tokens",
            "2",
            "--shots",
            "0",
            "--output",
            eval_out.to_str().unwrap(),
        ],
    ));
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(eval_out.join("results_mgsm_cot.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        results["config"]["model"],
        snapshot.display().to_string(),
        "the snapshot refs/main names"
    );

    // flan train: model.pretrained = "ORG/NAME" in a config file (no directory of that name
    // beside it), and --model ORG/NAME on the command line.
    let rows: String = (0..8)
        .map(|i| {
            serde_json::json!({"inputs": format!("add {i} and 1"), "targets": format!("{}", i + 1)})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("sums.jsonl"), rows).unwrap();
    std::fs::write(
        dir.path().join("mixture.toml"),
        "input_len = 32\ntarget_len = 8\n[submixtures.flan]\nweight = 1.0\ncap = 100\nfew_shot_ratio = 0.0\n\
         [[tasks]]\nformat = \"jsonl\"\npath = \"sums.jsonl\"\nsubmixture = \"flan\"\n",
    )
    .unwrap();
    let config = dir.path().join("train.toml");
    std::fs::write(
        &config,
        format!(
            "output_dir = \"out\"\ndevice = \"cpu\"\n[model]\npretrained = \"{REPO}\"\n\
             [data]\nmixture = \"mixture.toml\"\n[batch]\nsize = 2\n[train]\nsteps = 1\n\
             [checkpoint]\nevery = 0\n[log]\nprogress = \"off\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = flan(&cache, &["train", "--config", config]);
    ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 1);
    let second = dir.path().join("out-flag");
    let out = flan(
        &cache,
        &[
            "train",
            "--config",
            config,
            "--model",
            REPO,
            "--output-dir",
            second.to_str().unwrap(),
        ],
    );
    ok(&out);
    assert!(second.join("model/model.safetensors").is_file());

    // flan generate --model ORG/NAME
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"inputs\": \"continue: Tom\"}\n").unwrap();
    let out = flan(
        &cache,
        &[
            "generate",
            "--model",
            REPO,
            "--input",
            input.to_str().unwrap(),
            "--max-new-tokens",
            "2",
        ],
    );
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn an_uncached_hub_id_offline_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    fake_hub_cache(&cache);
    for args in [
        vec![
            "eval",
            "run",
            "--model",
            "flan-test/absent",
            "--benchmark",
            "gsm8k",
        ],
        vec![
            "train",
            "--model",
            "flan-test/absent",
            "--mixture",
            "m.toml",
        ],
    ] {
        let mut args = args;
        if args[0] == "eval" {
            args.extend(["--mode", "cot", "--data", "x.jsonl", "--output", "o"]);
        }
        let out = flan(&cache, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "a model error: {err}");
        assert!(err.contains("flan-test/absent"), "{err}");
        assert!(err.contains("not in the Hugging Face cache"), "{err}");
        assert!(err.contains(&cache.display().to_string()), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    }
}
