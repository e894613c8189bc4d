//! Tests of the tokenizer: T5 conventions, chunked encoding against the pipeline, the caches,
//! the fast path, truncation, training and bad files.

use super::*;

fn corpus() -> Vec<String> {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "ran", "fast", "answer", "is", "so", "think",
        "step", "by", "question", "options", "yes", "no", "because", "number",
    ];
    (0..400)
        .map(|i| {
            (0..12)
                .map(|j| words[(i * 7 + j * 3 + i / 5) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn small() -> Tokenizer {
    Tokenizer::train_unigram(corpus().into_iter(), 100, 10).unwrap()
}

/// Found by fuzzing: a control character inside a string of the `decoder` section makes
/// the tokenizers library panic (`expect("Helper")`) instead of returning its error.
#[test]
fn a_malformed_decoder_is_an_error_not_a_panic() {
    let json = small().inner().to_string(false).unwrap();
    let decoder = json.find("\"decoder\":").unwrap();
    let quote = decoder + json[decoder..].find("\"replacement\":\"").unwrap() + 15;
    let bad = format!("{}\u{1}{}", &json[..quote], &json[quote..]);
    let err = Tokenizer::from_json(&bad).unwrap_err().to_string();
    assert!(err.contains("control character"), "{err}");
    assert!(Tokenizer::from_json(&json).is_ok());
}

/// Found by fuzzing: a Unigram piece of a few thousand bytes builds a trie as deep, whose
/// recursive drop overflowed the stack and aborted the process.
#[test]
fn an_absurdly_long_unigram_piece_is_refused_before_the_trie_is_built() {
    let json = small().inner().to_string(false).unwrap();
    let with_piece = |len: usize| {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["model"]["vocab"][3][0] = "a".repeat(len).into();
        v.to_string()
    };
    let err = Tokenizer::from_json(&with_piece(3000))
        .unwrap_err()
        .to_string();
    assert!(err.contains("3000 bytes"), "{err}");
    assert!(Tokenizer::from_json(&with_piece(MAX_UNIGRAM_PIECE_BYTES)).is_ok());
}

#[test]
fn trained_tokenizer_follows_t5_conventions() {
    let tok = small();
    assert_eq!((tok.pad_id(), tok.eos_id(), tok.unk_id()), (0, 1, 2));
    assert_eq!(tok.count_sentinels(), 10);
    let top = tok.vocab_size() as u32 - 1;
    assert_eq!(tok.sentinel_id(0), Some(top));
    assert_eq!(tok.sentinel_id(9), Some(top - 9));
    let ids = tok.encode("the cat sat on the mat").unwrap();
    assert_eq!(ids.last(), Some(&1));
    assert!(!ids[..ids.len() - 1].contains(&1));
    assert_eq!(tok.decode(&ids, true).unwrap(), "the cat sat on the mat");
}

#[test]
fn chunks_split_only_at_single_spaces_between_printables() {
    fn split(t: &str) -> Vec<&str> {
        chunks(t).collect()
    }
    assert_eq!(split("a b"), vec!["a", "b"]);
    assert_eq!(split("a  b"), vec!["a  b"]);
    assert_eq!(split(" a b "), vec![" a", "b "]);
    assert_eq!(split("x\n y"), vec!["x\n y"]);
    assert_eq!(split("é b c"), vec!["é b", "c"]);
    assert_eq!(split(""), vec![""]);
    assert_eq!(split("ab"), vec!["ab"]);
}

#[test]
fn chunked_encoding_equals_whole_encoding() {
    let tok = small();
    assert!(tok.is_chunked());
    for text in [
        "the cat sat on the mat",
        "  the   cat\n\nsat  ",
        "so the answer is (A) yes.\nOptions:\n- no\n- yes",
        "é the dog ran ü fast",
        "",
        " ",
    ] {
        assert_eq!(
            tok.encode_pieces(text).unwrap(),
            tok.encode_whole(text).unwrap(),
            "{text:?}"
        );
        assert_eq!(
            tok.count_pieces(text).unwrap(),
            tok.encode_whole(text).unwrap().len()
        );
    }
}

/// `small()` with a `Strip` normalizer in front: chunks cannot know they sit at the text's
/// ends, so the model path must not take whitespace.
fn small_stripping() -> Tokenizer {
    let mut json: serde_json::Value =
        serde_json::from_str(&small().inner().to_string(false).unwrap()).unwrap();
    let inner = json["normalizer"].clone();
    json["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [
        {"type": "Strip", "strip_left": true, "strip_right": true}, inner]});
    Tokenizer::from_json(&json.to_string()).unwrap()
}

/// `small()` whose last ordinary pieces span a `▁` inside a word (`:▁`, `?▁`, `\n▁`), as
/// SentencePiece vocabularies trained without splitting on whitespace have: encoding a chunk
/// with spaces as one pre-token instead of Metaspace's would then pick them.
fn small_with_cross_space_pieces() -> Tokenizer {
    let mut json: serde_json::Value =
        serde_json::from_str(&small().inner().to_string(false).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_array_mut().unwrap();
    let n = vocab.len();
    for (k, piece) in [":\u{2581}", "?\u{2581}", "\n\u{2581}"]
        .into_iter()
        .enumerate()
    {
        vocab[n - 1 - k] = serde_json::json!([piece, 0.0]);
    }
    Tokenizer::from_json(&json.to_string()).unwrap()
}

/// Texts like the mixture's: words, punctuation, added-token look-alikes, digits and
/// non-ASCII, joined by single and double spaces, line breaks and tabs (also at the ends).
const TEXT: &str = "(( |  |\n|\t|\r\n| \n)?(the|cat|é|ü|<pad>|</s>|<extra_id_3>|\
                    [0-9]{1,4}|[.,;:()?!\"-]|[!-~]{1,6})){0,12}( |  |\n)?";

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, .. Default::default() })]
    /// Cache misses of ASCII go to the model alone, cut into Metaspace's pre-tokens; they
    /// must get the pipeline's ids, also for text the vocabulary lacks, digits, punctuation,
    /// line breaks, trailing spaces and added-token look-alikes.
    #[test]
    fn chunks_through_the_model_get_the_pipelines_ids(
        chunk in "[!-~]{1,12}|(the|cat|<pad>|</s>|<extra_id_3>|[0-9]{1,4}|[.,;:()?!]|\\n|\\t| ){1,6}",
    ) {
        for tok in [small(), small_stripping(), small_with_cross_space_pieces()] {
            proptest::prop_assert!(tok.model_path.is_some());
            proptest::prop_assert_eq!(tok.encode_chunk(&chunk).unwrap(), tok.encode_whole(&chunk).unwrap(), "{:?}", chunk);
        }
    }

    /// Whole texts: chunked, cached encoding (model path included) equals the pipeline's.
    #[test]
    fn chunked_encoding_of_any_text_equals_the_pipelines(text in TEXT) {
        for tok in [small(), small_stripping(), small_with_cross_space_pieces()] {
            proptest::prop_assert_eq!(tok.encode_pieces(&text).unwrap(), tok.encode_whole(&text).unwrap(), "{:?}", text);
            proptest::prop_assert_eq!(tok.count_pieces(&text).unwrap(), tok.encode_whole(&text).unwrap().len());
        }
    }
}

#[test]
fn the_model_path_is_off_where_it_could_change_ids() {
    let tok = small();
    let path = tok.model_path.as_ref().unwrap();
    assert!(path.applies_to("cat."));
    assert!(
        path.applies_to("cat?\nAnswer: "),
        "line breaks and single spaces"
    );
    assert!(path.applies_to("a\tb"));
    // Texts with added tokens are encoded whole: a space next to one is a token of its own.
    assert!(tok.added.occur_in("a <extra_id_3> b") && !tok.added.occur_in("a < b"));
    let text = "the <extra_id_3> sat </s>";
    assert_eq!(
        tok.encode_pieces(text).unwrap(),
        tok.encode_whole(text).unwrap()
    );
    assert!(!path.applies_to("é"), "not ASCII");
    assert!(!path.applies_to(" a"), "a leading space");
    assert!(!path.applies_to("a  b"), "a run of spaces");
    assert!(!path.applies_to(""));
    assert_eq!(
        path.pre_tokens("cat?\nA: ").collect::<Vec<_>>(),
        ["\u{2581}cat?\nA:", "\u{2581}"]
    );
    // A normalizer that strips the text's ends keeps whitespace out of the model path.
    let stripping = small_stripping();
    let path = stripping.model_path.as_ref().unwrap();
    assert!(path.applies_to("cat."));
    assert!(!path.applies_to("a\tb") && !path.applies_to("cat: "));
    // A normalizer that may rewrite ASCII turns it off.
    let mut json: serde_json::Value =
        serde_json::from_str(&tok.inner().to_string(false).unwrap()).unwrap();
    json["normalizer"] = serde_json::json!({"type": "Lowercase"});
    let lower = Tokenizer::from_json(&json.to_string()).unwrap();
    assert!(lower.model_path.is_none());
    // T5's own charsmap may map ASCII elsewhere: chunked, but not through the model.
    let precompiled = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": ""});
    assert!(normalizer_is_ascii_local(&precompiled) && !normalizer_keeps_ascii(&precompiled));
    let ours = serde_json::json!({"type": "Sequence", "normalizers": [{"type": "NFKC"},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]});
    assert!(normalizer_keeps_ascii(&ours));
}

#[test]
fn chunks_cached_by_another_thread_get_the_pipelines_ids() {
    let tok = small();
    let texts = [
        "the cat sat on the mat?\nAnswer: yes",
        "so the answer is (B) 42.",
        "é the dog ran ü fast",
    ];
    // The first thread fills the shared level; the second finds every chunk there, through
    // a clone (clones share it), and must get what the pipeline gives.
    std::thread::scope(|s| {
        s.spawn(|| texts.map(|t| tok.encode_pieces(t).unwrap()));
    });
    let clone = tok.clone();
    let from_shared = std::thread::scope(|s| {
        s.spawn(|| texts.map(|t| clone.encode_pieces(t).unwrap()))
            .join()
            .unwrap()
    });
    for (text, ids) in texts.iter().zip(from_shared) {
        assert_eq!(ids, tok.encode_whole(text).unwrap(), "{text:?}");
    }
    let shared: usize = tok
        .shared
        .shards
        .iter()
        .map(|m| m.lock().unwrap().len())
        .sum();
    let distinct: std::collections::HashSet<&str> = texts.iter().flat_map(|t| chunks(t)).collect();
    assert_eq!(shared, distinct.len());
}

#[test]
fn truncation_keeps_eos_last() {
    let tok = small();
    let full = tok
        .encode("the cat sat on the mat because the dog ran fast")
        .unwrap();
    assert!(full.len() > 4);
    let cut = tok
        .encode_truncated("the cat sat on the mat because the dog ran fast", 4)
        .unwrap();
    assert_eq!(cut.len(), 4);
    assert_eq!(&cut[..3], &full[..3]);
    assert_eq!(cut[3], 1);
    assert!(tok.encode_truncated("cat", 0).unwrap().is_empty());
}

#[test]
fn batch_matches_single_and_round_trips_through_json() {
    let tok = small();
    let texts = ["so the answer is yes", "think step by step", ""];
    let batch = tok.encode_batch(&texts).unwrap();
    for (t, ids) in texts.iter().zip(&batch) {
        assert_eq!(&tok.encode(t).unwrap(), ids);
    }
    assert_eq!(batch[2], vec![1]);
    let dir = tempfile::tempdir().unwrap();
    tok.save_pretrained(dir.path()).unwrap();
    let back = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    assert_eq!(back.vocab_size(), tok.vocab_size());
    assert_eq!(back.encode_batch(&texts).unwrap(), batch);
    // The HF post-processor appends the same EOS we append by hand.
    let hf = back.inner().encode("so the answer is yes", true).unwrap();
    assert_eq!(hf.get_ids(), &batch[0][..]);
}

#[test]
fn wrong_special_ids_are_rejected_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["<pad>",0.0],["</s>",0.0]]}}"#;
    std::fs::write(&path, json).unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    assert!(err.contains("`<pad>` to have id 0"), "{err}");
    let missing = Tokenizer::from_file(dir.path().join("nope.json"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.json"), "{missing}");
}

/// Our trainer is the `tokenizers` crate's algorithm with its sums in a fixed order: on the
/// same corpus the crate's trainer keeps the same pieces with the same scores, up to rounding.
#[test]
fn training_matches_the_tokenizers_crates_trainer() {
    use tokenizers::models::unigram::{Unigram, UnigramTrainer};
    use tokenizers::models::TrainerWrapper;
    use tokenizers::AddedToken;
    let texts: Vec<String> = corpus()
        .into_iter()
        .enumerate()
        .map(|(i, t)| format!("{t} item{} ü{}", i % 37, i % 11))
        .collect();
    let ours = Tokenizer::train_unigram(texts.iter(), 120, 0).unwrap();
    let theirs = {
        let mut inner = ours.inner().clone();
        inner.with_model(Unigram::default());
        let trainer = UnigramTrainer::builder()
            .show_progress(false)
            .vocab_size(120)
            .special_tokens(
                [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN]
                    .iter()
                    .map(|t| AddedToken::from(*t, true))
                    .collect(),
            )
            .unk_token(Some(UNK_TOKEN.to_string()))
            .build()
            .unwrap();
        let mut trainer = TrainerWrapper::UnigramTrainer(trainer);
        inner.train(&mut trainer, texts.iter()).unwrap();
        inner
    };
    let vocab = |t: &tokenizers::Tokenizer| -> std::collections::BTreeMap<String, f64> {
        let json: serde_json::Value = serde_json::from_str(&t.to_string(false).unwrap()).unwrap();
        json["model"]["vocab"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_f64().unwrap()))
            .collect()
    };
    let (a, b) = (vocab(ours.inner()), vocab(&theirs));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same pieces"
    );
    for (piece, score) in &a {
        assert!(
            (score - b[piece]).abs() < 1e-9,
            "{piece}: ours {score}, theirs {}",
            b[piece]
        );
    }
    assert!(a.len() > 60, "{} pieces: too few to compare", a.len());
}
