//! `flan generate` and `flan score` end to end on a tiny trained fixture model of flan-model,
//! compared with the token ids and log-likelihoods transformers produced for it; a peft-made LoRA
//! adapter through `--adapter` (our own adapters: tests/train_cli.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("flan-model")
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn flan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .output()
        .expect("flan runs")
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn greedy_and_beam_generate_match_transformers_through_the_cli() {
    let name = "v1_1";
    let r = reference(name);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text: String = r["generate"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}\n", serde_json::json!({ "inputs": p })))
        .collect();
    std::fs::write(&input, text).unwrap();
    let model = fixture(name);
    let max_new = r["generate"]["max_new_tokens"].to_string();
    let output = dir.path().join("greedy.jsonl");
    let run = flan(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--max-new-tokens",
        &max_new,
        "--batch-size",
        "2",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = lines(&output);
    assert_eq!(got.len(), 3);
    for (g, want) in got.iter().zip(r["generate"]["greedy"].as_array().unwrap()) {
        assert_eq!(&g["token_ids"], want);
    }
    assert_eq!(got[0]["text"], r["generate"]["greedy_text"][0]);

    let beam = &r["generate"]["beam"][1];
    let output = dir.path().join("beam.jsonl");
    let run = flan(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--max-new-tokens",
        &max_new,
        "--num-beams",
        &beam["num_beams"].to_string(),
        "--length-penalty",
        &beam["length_penalty"].to_string(),
        "--early-stopping",
        &beam["early_stopping"].to_string(),
        "--num-return-sequences",
        "2",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = lines(&output);
    for (g, want) in got.iter().zip(beam["token_ids"].as_array().unwrap()) {
        assert_eq!(g["samples"].as_array().unwrap().len(), 2);
        assert_eq!(&g["samples"][0]["token_ids"], want);
    }
}

#[test]
fn score_writes_one_line_per_input_and_reports_bad_lines() {
    let model = fixture("v1_0");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"inputs\": \"continue: Tom has 3 apples\", \"targets\": \"and he eats one\"}\n\
         {\"inputs\": \"continue: Tom has 3 apples\", \"targets\": \"zqxj vvkk\"}\n\
         {\"inputs\": \"continue: A farmer\", \"targets\": \"sells\"}\n",
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let run = flan(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--batch-size",
        "2",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = lines(&output);
    assert_eq!(got.len(), 3);
    // " and he eats one" is 16 characters, plus "▁" handling and EOS: count from the tokenizer.
    let tok = flan_data::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    assert_eq!(
        got[0]["num_tokens"],
        tok.encode("and he eats one").unwrap().len()
    );
    let lp = |i: usize| got[i]["logprob"].as_f64().unwrap();
    assert!(lp(0) < 0.0 && lp(1) < 0.0);
    // The model was trained on English questions: plain words beat letter salad.
    assert!(lp(0) / 16.0 > lp(1) / 10.0, "{} vs {}", lp(0), lp(1));

    std::fs::write(
        &input,
        "{\"inputs\": \"a\", \"targets\": \"b\"}\n{\"inputs\": 3}\n",
    )
    .unwrap();
    let run = flan(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3), "a data error");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("in.jsonl:2:"), "{err}");
}

#[test]
fn missing_tensor_error_names_it() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("v1_0").join(f), dir.path().join(f)).unwrap();
    }
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"inputs\": \"a\"}\n").unwrap();
    let run = flan(&[
        "generate",
        "--model",
        dir.path().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--max-new-tokens",
        "4",
    ]);
    assert_eq!(run.status.code(), Some(4), "a model error");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("model.safetensors"), "{err}");
}

/// Records as other tools write them (a byte-order mark, ids of any type, fields the command
/// does not use) go through as they are: ids come back on the matching output line, ignored
/// fields are counted on stderr, and inputs over `--max-input-tokens` are cut and counted, or
/// refused before anything is written.
#[test]
fn records_from_other_tools_keep_their_ids_and_cut_inputs_are_counted() {
    let model = fixture("v1_0");
    let tok = flan_data::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let long = "continue: Tom has 3 apples and gives two";
    std::fs::write(
        &input,
        format!(
            "\u{feff}{}\n{}\n{}\n",
            serde_json::json!({"id": "a1", "inputs": "Tom", "targets": "x", "meta": {"k": 1}}),
            serde_json::json!({"inputs": long, "id": 2, "targets": "and he eats one"}),
            serde_json::json!({"inputs": "A farmer", "targets": "sells"}),
        ),
    )
    .unwrap();
    let long_len = tok.encode(long).unwrap().len();
    assert!(long_len > 16);
    let output = dir.path().join("out.jsonl");
    let args = |command: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            command,
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--max-input-tokens",
            "16",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| flan(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let gen = run(args("generate", &["--max-new-tokens", "3"]));
    let err = String::from_utf8_lossy(&gen.stderr);
    assert!(gen.status.success(), "{err}");
    assert!(
        err.contains(
            "ignored fields (not used by this command): meta on 1 line, targets on 3 lines"
        ),
        "{err}"
    );
    assert!(err.contains("1 of 3 inputs were cut to 16 tokens"), "{err}");
    let got = lines(&output);
    assert_eq!(got[0]["id"], "a1");
    assert_eq!(got[1]["id"], 2);
    assert!(got[2].get("id").is_none());
    assert_eq!(got[1]["input_tokens_cut"], long_len - 16);
    assert!(got[0].get("input_tokens_cut").is_none());

    let score = run(args("score", &["--max-target-tokens", "3"]));
    assert!(
        score.status.success(),
        "{}",
        String::from_utf8_lossy(&score.stderr)
    );
    let got = lines(&output);
    assert_eq!(got[1]["id"], 2);
    assert_eq!(got[1]["num_tokens"], 3);
    assert_eq!(
        got[1]["target_tokens_cut"],
        tok.encode("and he eats one").unwrap().len() - 3
    );
    assert_eq!(got[1]["input_tokens_cut"], long_len - 16);

    // Refused: the error names the line and the limit, and the previous output is untouched.
    let before = std::fs::read_to_string(&output).unwrap();
    let refused = run(args("score", &["--overlong", "error"]));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "a data error");
    assert!(err.contains("in.jsonl:2:"), "{err}");
    assert!(err.contains("over --max-input-tokens 16"), "{err}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), before);
}

#[test]
fn a_peft_adapter_applies_through_the_cli_and_a_wrong_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"inputs\": \"abc\", \"targets\": \"de\"}\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let base = fixture("v1_0");
    let run = |adapter: &Path| {
        flan(&[
            "score",
            "--model",
            base.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
    };
    let out = run(&fixture("lora/v1_0_all_linear"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An adapter made for another model: the error names the file and the tensor that does not
    // fit, with both shapes.
    let out = run(&fixture("lora/odd_regex"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("adapter_model.safetensors")
            && stderr.contains("lora_B.weight` has shape [36, 3]"),
        "{stderr}"
    );
}
