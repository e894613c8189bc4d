//! Examples longer than the run's lengths are cut and counted, or refused with
//! `data.overlong = "error"`: never shortened silently.

use crate::common::TinyData;

#[test]
fn cut_examples_are_counted_in_the_summary_and_its_file() {
    let _rng = crate::common::torch_rng_lock();
    let data = TinyData::new();
    let out = data.path().join("run");
    // The prompts are 10 to 20 tokens long; the answers at most 4.
    let cfg = data.config(
        &out,
        &["train.steps=2", "checkpoint.every=0", "data.input_len=8"],
    );
    let summary = data.trainer(cfg).run().unwrap();
    let t = summary.truncation;
    assert_eq!((t.input_limit, t.target_limit), (8, 8));
    assert!(
        t.inputs.cut > 0 && t.inputs.cut <= t.inputs.sequences,
        "{t:?}"
    );
    assert!(t.inputs.longest > 8, "{t:?}");
    assert!(t.inputs.tokens_removed >= t.inputs.cut, "{t:?}");
    assert_eq!(t.targets.cut, 0, "{t:?}");
    assert_eq!(t.truncated, t.inputs.cut);
    // Counted when packed: the example that opens the next batch is counted too.
    assert!(t.inputs.sequences >= summary.examples_seen, "{t:?}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(file["truncation"]["inputs"]["cut"], t.inputs.cut);
    assert!(
        t.describe()[0].contains("inputs were cut to 8 tokens"),
        "{:?}",
        t.describe()
    );
}

#[test]
fn an_error_policy_refuses_the_first_overlong_example_by_name() {
    let _rng = crate::common::torch_rng_lock();
    let data = TinyData::new();
    let out = data.path().join("run");
    let cfg = data.config(
        &out,
        &[
            "train.steps=2",
            "checkpoint.every=0",
            "data.input_len=8",
            "data.overlong=error",
        ],
    );
    let err = data.trainer(cfg).run().unwrap_err().to_string();
    assert!(err.contains("task `tiny`"), "{err}");
    assert!(err.contains("over the limit of 8"), "{err}");
    assert!(err.contains("data.overlong"), "{err}");

    // Within the lengths, the same policy lets the run through.
    let cfg = data.config(
        &out,
        &["train.steps=2", "checkpoint.every=0", "data.overlong=error"],
    );
    assert_eq!(data.trainer(cfg).run().unwrap().truncation.truncated, 0);
}

#[test]
fn unpacked_batches_are_padded_to_their_longest_example_within_the_limits() {
    use flan_train::source::BatchSource;
    let data = TinyData::new();
    let out = data.path().join("run");
    // The prompts are 10 to 20 words (up to 34 tokens here): at 64 no batch reaches the limit,
    // at 12 examples are cut to it.
    for input_len in [64usize, 12] {
        let cfg = data.config(
            &out,
            &["data.pack=false", &format!("data.input_len={input_len}")],
        );
        let mut source = data.source(&cfg);
        for _ in 0..6 {
            let b = source.next_batch().unwrap().unwrap();
            let longest = |segments: &[i64], len: usize| {
                segments
                    .chunks(len)
                    .map(|row| row.iter().filter(|&&s| s != 0).count())
                    .max()
                    .unwrap()
            };
            assert_eq!(b.input_len, longest(&b.encoder_segment_ids, b.input_len));
            assert_eq!(b.target_len, longest(&b.decoder_segment_ids, b.target_len));
            assert!(b.input_len < 64 && b.input_len <= input_len && b.target_len <= 8);
        }
        assert_eq!(source.truncation().inputs.cut > 0, input_len == 12);
    }
}
