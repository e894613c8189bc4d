//! Chunked, cached encoding must give exactly the ids of the Hugging Face pipeline.

use super::shared_data;
use flan_data::source::read_cot_tsv;
use flan_data::{Strictness, Tokenizer};
use proptest::prelude::*;
use std::sync::OnceLock;

fn cot_texts() -> &'static Vec<String> {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let mut texts = Vec::new();
        for name in ["aqua", "ecqa", "gsm8k", "strategyqa"] {
            let path = shared_data().join(format!("flan-cot/{name}_train.tsv"));
            for e in read_cot_tsv(&path, name, Strictness::Strict)
                .unwrap()
                .examples
                .into_iter()
                .step_by(9)
            {
                texts.push(e.inputs);
                texts.push(format!(
                    "{} So the answer is {}.",
                    e.rationale.unwrap(),
                    e.targets
                ));
            }
        }
        texts
    })
}

fn trained() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::train_unigram(cot_texts().iter().step_by(3).cloned(), 800, 10).unwrap()
    })
}

#[test]
fn chunked_equals_whole_on_real_text() {
    let tok = trained();
    assert!(tok.is_chunked());
    for text in cot_texts() {
        assert_eq!(
            tok.encode_pieces(text).unwrap(),
            tok.encode_whole(text).unwrap(),
            "{text:?}"
        );
    }
    // The committed T5 fixture tokenizers of flan-model (Metaspace, no normaliser) too.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../flan-model/tests/fixtures/v1_1/tokenizer.json");
    if let Ok(t5) = Tokenizer::from_file(&fixture) {
        assert!(t5.is_chunked());
        for text in cot_texts().iter().take(500) {
            assert_eq!(
                t5.encode_pieces(text).unwrap(),
                t5.encode_whole(text).unwrap(),
                "{text:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunked_equals_whole_on_awkward_text(text in "[ab \\n\\t.é\u{00A0}\u{FB01}(A)]{0,40}") {
        let tok = trained();
        prop_assert_eq!(tok.encode_pieces(&text).unwrap(), tok.encode_whole(&text).unwrap());
    }
}

/// Rendering and tokenizing in one parallel pass gives the two-pass ids, in stream order, and
/// leaves the stream where the two-pass path leaves it.
#[test]
fn one_pass_render_and_tokenize_equals_two_passes() {
    use flan_data::pipeline::{next_tokenized, tokenize_examples};
    use flan_data::{Mixture, MixtureSpec};
    use std::sync::Arc;
    let toml: String = ["aqua", "ecqa", "gsm8k", "strategyqa"]
        .iter()
        .map(|n| {
            format!(
                "[[tasks]]\nname = \"cot_{n}\"\nformat = \"cot_tsv\"\n\
                 path = \"flan-cot/{n}_train.tsv\"\nsubmixture = \"cot\"\n"
            )
        })
        .collect();
    let spec = MixtureSpec::from_toml(&toml, "test").unwrap();
    let tok = Arc::new(trained().clone());
    let mixture = Arc::new(
        Mixture::from_spec(&spec, &shared_data())
            .unwrap()
            .with_tokenizer(tok.clone()),
    );
    let (mut one, mut two) = (mixture.stream(7), mixture.stream(7));
    for n in [1, 300, 1000] {
        let fused = next_tokenized(&mut one, &tok, n, 256, 128).unwrap();
        let examples = two.next_batch(n).unwrap();
        assert!(
            n < 300 || examples.iter().any(|e| e.exemplars > 0),
            "few-shot examples"
        );
        let separate = tokenize_examples(&tok, &examples, 256, 128).unwrap();
        assert_eq!(fused, separate);
        assert_eq!(one.cursor(), two.cursor());
    }
}

/// A tokenizer.json saved by transformers after a call with `truncation=True, max_length=48,
/// padding="max_length"` carries those settings; transformers' T5TokenizerFast ignores them for
/// calls that do not ask for truncation, and so must we (it once cut every input to 48 tokens).
/// The ids come from transformers (`xtask/fixtures/tokenizer_truncation.py`).
#[test]
fn saved_truncation_and_padding_are_ignored_as_transformers_does() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/saved_truncation");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(expected["saved_truncation"]["max_length"], 48);
    assert!(expected["saved_padding"].is_object());
    let tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    assert!(tok.inner().get_truncation().is_none());
    assert!(tok.inner().get_padding().is_none());
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases
        .iter()
        .any(|c| c["ids"].as_array().unwrap().len() > 48));
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let cut: Vec<u32> = serde_json::from_value(case["ids_max_16"].clone()).unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
        assert_eq!(
            tok.encode_whole(text).unwrap(),
            ids[..ids.len() - 1],
            "{text:?}"
        );
        // flan's own truncation (EOS kept) is transformers' `truncation=True, max_length=16`.
        assert_eq!(tok.encode_truncated(text, 16).unwrap(), cut, "{text:?}");
    }
}

/// Same corpus, same tokenizer: training twice, on one thread or four, gives the same
/// `tokenizer.json` byte for byte (issue 22: runs of `flan mixture --train-tokenizer` differed
/// in the last digits of piece scores, hence in piece order and ids).
#[test]
fn training_is_byte_identical_across_runs_and_thread_counts() {
    let spec =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs/synthetic-mixture.toml");
    let mixture = std::sync::Arc::new(flan_data::Mixture::from_spec_file(&spec).unwrap());
    let train = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let tok = pool
            .install(|| flan_data::pipeline::train_tokenizer_on_mixture(&mixture, 0, 600, 1000))
            .unwrap();
        tok.inner().to_string(false).unwrap()
    };
    let first = train(4);
    // The same thread count again (hash-map order alone changed the sums), then others.
    for (run, threads) in [(2, 4), (3, 1)] {
        let again = train(threads);
        assert!(
            again == first,
            "run {run} on {threads} threads trained another tokenizer than run 1 on 4 threads"
        );
    }
}
