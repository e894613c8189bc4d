//! Span corruption: T5's counts, spans, the round trip through the sentinels, seeds, and the
//! stream's shards and cursor over real text.

use flan_data::span_corruption::{
    corrupt, random_spans_noise_mask, read_documents, uncorrupt, ChunkCounts, NoiseShape,
    Sentinels, SpanCorruptionConfig, SpanCorruptionStream,
};
use flan_data::{Strictness, Tokenizer};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Runs of equal values: (value, length).
fn runs(mask: &[bool]) -> Vec<(bool, usize)> {
    let mut out: Vec<(bool, usize)> = Vec::new();
    for &m in mask {
        match out.last_mut() {
            Some((v, n)) if *v == m => *n += 1,
            _ => out.push((m, 1)),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn masks_follow_t5s_formulas(
        length in 2usize..700,
        density in 0.05f64..0.5,
        span in 1.0f64..6.0,
        seed in any::<u64>(),
    ) {
        let Ok(shape) = NoiseShape::new(length, density, span) else {
            // Only settings that leave fewer non-noise tokens than spans are refused.
            return Ok(());
        };
        let expect_noise = ((length as f32 * density as f32).round_ties_even() as usize).clamp(1, length - 1);
        let expect_spans = ((expect_noise as f32 / span as f32).round_ties_even() as usize).max(1);
        prop_assert_eq!((shape.noise_tokens, shape.noise_spans), (expect_noise, expect_spans));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mask = random_spans_noise_mask(length, density, span, &mut rng).unwrap();
        prop_assert_eq!(mask.len(), length);
        prop_assert_eq!(mask.iter().filter(|m| **m).count(), expect_noise);
        let r = runs(&mask);
        // Non-noise first, noise last, alternating: spans of each kind, none empty.
        prop_assert_eq!(r.len(), 2 * expect_spans);
        prop_assert!(!r[0].0 && r[r.len() - 1].0);
        prop_assert!(r.iter().all(|(_, n)| *n >= 1));
    }

    #[test]
    fn merging_inputs_and_targets_at_the_sentinels_gives_the_tokens_back(
        tokens in proptest::collection::vec(3u32..1000, 1..600),
        seed in any::<u64>(),
    ) {
        let sentinels = Sentinels::new((0..100).map(|n| 1099 - n).collect(), 1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mask = random_spans_noise_mask(tokens.len(), 0.15, 3.0, &mut rng).unwrap();
        let ex = corrupt(&tokens, &mask, &sentinels).unwrap();
        prop_assert_eq!(uncorrupt(&ex, &sentinels), tokens.clone());
        let noise = mask.iter().filter(|m| **m).count();
        let spans = runs(&mask).iter().filter(|(m, _)| *m).count();
        prop_assert_eq!(ex.inputs.len(), tokens.len() - noise + spans + 1);
        // Targets hold a sentinel per non-noise run: one per noise span, as masks start with
        // non-noise and end with noise, except a one-token sequence, which has no noise (T5's
        // length-2 mask cut back to 1) and so targets `<extra_id_0>`, EOS.
        let kept_runs = runs(&mask).iter().filter(|(m, _)| !*m).count();
        prop_assert_eq!(kept_runs, spans.max(1));
        prop_assert_eq!(ex.targets.len(), noise + kept_runs + 1);
        prop_assert_eq!(*ex.inputs.last().unwrap(), 1);
        prop_assert_eq!(*ex.targets.last().unwrap(), 1);
        if spans > 0 {
            // Targets open with <extra_id_0>; sentinels are numbered in order on both sides.
            prop_assert_eq!(ex.targets[0], 1099);
            let used: Vec<u32> = ex.inputs.iter().copied().filter(|&t| t >= 1000).collect();
            prop_assert_eq!(used, (0..spans as u32).map(|n| 1099 - n).collect::<Vec<_>>());
        }
    }
}

#[test]
fn same_seed_same_mask_other_seeds_other_masks() {
    let mask = |seed: u64| {
        random_spans_noise_mask(568, 0.15, 3.0, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
    };
    assert_eq!(mask(7), mask(7));
    let distinct: std::collections::BTreeSet<Vec<bool>> = (0..20).map(mask).collect();
    assert_eq!(distinct.len(), 20);
}

fn text_corpus() -> (
    Arc<Vec<flan_data::span_corruption::Document>>,
    Arc<Tokenizer>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs.jsonl");
    let lines: String = (0..60)
        .map(|i| {
            let words: Vec<String> = (0..(5 + i * 7 % 90))
                .map(|j| format!("word{} and{}", (i * 13 + j) % 41, j % 7))
                .collect();
            format!("{{\"text\": \"{}\", \"id\": {i}}}\n", words.join(" "))
        })
        .chain(std::iter::once("{\"text\": \"  \"}\n".to_string()))
        .collect();
    std::fs::write(&path, lines).unwrap();
    let (docs, blank, skipped) = read_documents(&path, Strictness::Strict).unwrap();
    assert_eq!((docs.len(), blank, skipped.count), (60, 1, 0));
    let tok = Tokenizer::train_unigram(docs.iter().map(|d| d.text.clone()), 200, 100).unwrap();
    (Arc::new(docs), Arc::new(tok))
}

#[test]
fn the_stream_is_seeded_shardable_resumable_and_counts_its_chunks() {
    let (docs, tok) = text_corpus();
    let config = SpanCorruptionConfig {
        noise_density: 0.15,
        mean_noise_span_length: 3.0,
        raw_length: 64,
    };
    let stream = |seed| SpanCorruptionStream::new(docs.clone(), tok.clone(), config, seed).unwrap();
    let all: Vec<_> = stream(3).collect::<Result<_, _>>().unwrap();
    let counts = ChunkCounts::of(&docs, &tok, 64).unwrap();
    assert_eq!(all.len() as u64, counts.chunks);
    assert!(
        counts.split > 0 && counts.chunks > counts.documents,
        "{counts:?}"
    );
    // Every chunk comes back whole; concatenated per document they are the document's tokens.
    let sentinels = Sentinels::of(&tok).unwrap();
    let restored: Vec<u32> = all.iter().flat_map(|e| uncorrupt(e, &sentinels)).collect();
    let original: Vec<u32> = docs
        .iter()
        .flat_map(|d| tok.encode_pieces(&d.text).unwrap())
        .collect();
    assert_eq!(restored, original);
    assert!(all
        .iter()
        .all(|e| e.inputs.len() <= 64 && e.targets.len() <= 64));
    // Same seed, same stream; another seed, other masks.
    assert_eq!(stream(3).collect::<Result<Vec<_>, _>>().unwrap(), all);
    assert_ne!(stream(4).collect::<Result<Vec<_>, _>>().unwrap(), all);
    // Two shards interleave into the whole stream.
    let shard = |k| {
        stream(3)
            .shard(k, 2)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let (even, odd) = (shard(0), shard(1));
    let merged: Vec<_> = (0..all.len())
        .map(|p| {
            if p % 2 == 0 {
                even[p / 2].clone()
            } else {
                odd[p / 2].clone()
            }
        })
        .collect();
    assert_eq!(merged, all);
    // A cursor taken mid-stream resumes exactly.
    let mut s = stream(3);
    let head: Vec<_> = s.by_ref().take(17).collect::<Result<_, _>>().unwrap();
    let rest: Vec<_> = SpanCorruptionStream::resume(docs.clone(), tok.clone(), config, s.cursor())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!([head, rest].concat(), all);
}

#[test]
fn bad_documents_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    std::fs::write(&path, "{\"text\": \"ok\"}\n{\"body\": \"no\"}\n").unwrap();
    let err = read_documents(&path, Strictness::Strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("d.jsonl:2") && err.contains("text"), "{err}");
    let (docs, _, skipped) = read_documents(&path, Strictness::Lenient).unwrap();
    assert_eq!((docs.len(), skipped.count), (1, 1));
    let text = dir.path().join("d.txt");
    std::fs::write(
        &text,
        "one document\n\n{\"text\": \"plain text, kept as is\"}\n",
    )
    .unwrap();
    let (docs, blank, _) = read_documents(&text, Strictness::Strict).unwrap();
    assert_eq!((docs.len(), blank), (2, 1));
    assert_eq!(docs[1].provenance.line, 3);
}
