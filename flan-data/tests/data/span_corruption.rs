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

/// A spec mixing a span-corruption task (a directory of text and JSONL documents) with a JSONL
/// instruction task, half and half.
fn mixed_spec(dir: &std::path::Path) -> std::path::PathBuf {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(corpus.join("more")).unwrap();
    let doc = |i: usize| -> String {
        (0..(3 + i * 11 % 70))
            .map(|j| format!("stone{} river{}", (i * 7 + j) % 23, j % 5))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let text: String = (0..20).map(|i| format!("{}\n", doc(i))).collect();
    std::fs::write(corpus.join("a.txt"), format!("{text}\n")).unwrap(); // and a blank line
    let jsonl: String = (20..40)
        .map(|i| format!("{{\"text\": \"{}\", \"url\": \"u{i}\"}}\n", doc(i)))
        .collect();
    std::fs::write(corpus.join("more/b.jsonl"), jsonl).unwrap();
    std::fs::write(corpus.join("notes.md"), "not a document file\n").unwrap();
    let qa: String = (0..30)
        .map(|i| {
            format!(
                "{{\"inputs\": \"What is {i} plus one?\", \"targets\": \"{}\"}}\n",
                i + 1
            )
        })
        .collect();
    std::fs::write(dir.join("qa.jsonl"), qa).unwrap();
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        r#"
        seed = 5
        input_len = 64
        target_len = 32
        [submixtures.pretrain]
        weight = 1.0
        cap = 100000
        [submixtures.flan]
        weight = 1.0
        cap = 30000
        [[tasks]]
        name = "stones"
        format = "span_corruption"
        path = "corpus"
        submixture = "pretrain"
        [[tasks]]
        format = "jsonl"
        path = "qa.jsonl"
        submixture = "flan"
        "#,
    )
    .unwrap();
    spec
}

#[test]
fn a_mixture_spec_mixes_span_corruption_with_an_instruction_task() {
    use flan_data::pipeline::{
        mixture_stats, to_jsonl, tokenize_example, train_tokenizer_on_mixture,
    };
    use flan_data::span_corruption::compute_input_and_target_lengths;
    use flan_data::Mixture;
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_spec(dir.path());
    let untokenized = Arc::new(Mixture::from_spec_file(&spec).unwrap());
    let span = &untokenized.span_tasks()[0];
    // raw_length defaults to what fills input_len after corruption.
    let raw = compute_input_and_target_lengths(64, 0.15, 3.0).unwrap().0;
    assert_eq!(span.config.raw_length, raw);
    assert_eq!(
        (span.documents.len(), span.blank, span.files.len()),
        (40, 1, 2)
    );
    // Without a tokenizer there are no ids: an error that names the task.
    let err = untokenized
        .stream(5)
        .next_batch(40)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`stones`") && err.contains("tokenizer"),
        "{err}"
    );
    let err = mixture_stats(&untokenized, 5, 10, 10, None, 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`stones`"), "{err}");
    // A tokenizer can still be trained on it: documents and rendered instructions.
    let tok = Arc::new(train_tokenizer_on_mixture(&untokenized, 5, 50, 200).unwrap());
    let mixture = Arc::new(
        Mixture::from_spec_file(&spec)
            .unwrap()
            .with_tokenizer(tok.clone()),
    );
    mixture.check().unwrap();

    // The task's examples are its chunks; every chunk of a document, in order, is `raw` tokens
    // but the last.
    let sentinels = Sentinels::of(&tok).unwrap();
    let mut chunks: Vec<Vec<u32>> = Vec::new();
    for d in &mixture.span_tasks()[0].documents {
        let ids = tok.encode_pieces(&d.text).unwrap();
        chunks.extend(ids.chunks(raw).map(<[u32]>::to_vec));
    }
    let stones = mixture
        .rates()
        .iter()
        .position(|r| r.task == "stones")
        .unwrap();
    assert_eq!(mixture.rates()[stones].examples, chunks.len());
    let counts = mixture.span_tasks()[0].counts().unwrap();
    assert_eq!(counts.chunks as usize, chunks.len());
    assert!(counts.split > 0 && counts.short_chunks > 0, "{counts:?}");
    assert_eq!(counts.empty, 1); // the blank line

    let n = 600;
    let all = mixture.stream(5).next_batch(n).unwrap();
    let corrupted: Vec<_> = all.iter().filter(|e| e.task == "stones").collect();
    let share = corrupted.len() as f64 / n as f64;
    assert!((share - 0.5).abs() < 0.1, "span corruption share {share}");
    // The first pass over the task takes every chunk once; each example merges back into its
    // chunk.
    let mut seen: BTreeMap<Vec<u32>, usize> = BTreeMap::new();
    for e in &corrupted {
        let tokens = e
            .tokens
            .as_ref()
            .expect("span corruption examples carry ids");
        assert_eq!(tokenize_example(&tok, e, 64, 32).unwrap(), *tokens);
        assert!(tokens.inputs.len() <= 64 && tokens.targets.len() <= 32);
        assert!(e.inputs.contains("<extra_id_0>") && e.targets.starts_with("<extra_id_0>"));
        *seen.entry(uncorrupt(tokens, &sentinels)).or_default() += 1;
    }
    let epoch: std::collections::BTreeSet<Vec<u32>> = corrupted
        .iter()
        .take(chunks.len())
        .map(|e| uncorrupt(e.tokens.as_ref().unwrap(), &sentinels))
        .collect();
    assert_eq!(epoch, chunks.iter().cloned().collect());
    assert!(seen.keys().all(|c| chunks.contains(c)));
    // Instruction examples are text, tokenized as before.
    let qa = all.iter().find(|e| e.task == "qa").unwrap();
    assert!(qa.tokens.is_none());
    assert!(to_jsonl(corrupted[0]).unwrap().contains("<extra_id_0>"));

    // Stats: shares of the draws and chunk counts.
    let stats = mixture_stats(&mixture, 5, 20_000, 200, Some(&tok), 4).unwrap();
    let line = &stats.tasks[stones];
    assert!(
        (line.sampled_share - 0.5).abs() < 0.02,
        "{}",
        line.sampled_share
    );
    assert_eq!(line.chunks, Some(counts));
    assert!(stats.template_shares["span_corruption"] > 0.3);

    // The same seed, the same examples; another seed, others.
    assert_eq!(mixture.stream(5).next_batch(n).unwrap(), all);
    assert_ne!(mixture.stream(6).next_batch(n).unwrap(), all);
    // A cursor taken mid-stream resumes exactly.
    let mut s = mixture.stream(5);
    let head = s.next_batch(237).unwrap();
    let tail = mixture
        .resume(s.cursor())
        .unwrap()
        .next_batch(n - 237)
        .unwrap();
    assert_eq!([head, tail].concat(), all);
    // Two shards partition the stream by position.
    let even = mixture
        .stream(5)
        .shard(0, 2)
        .unwrap()
        .next_batch(n / 2)
        .unwrap();
    let odd = mixture
        .stream(5)
        .shard(1, 2)
        .unwrap()
        .next_batch(n / 2)
        .unwrap();
    let mut merged: Vec<_> = even.into_iter().chain(odd.clone()).collect();
    merged.sort_by_key(|e| e.position);
    assert_eq!(merged, all);
    // A rank resumes from the cursor an unsharded replay records just before one of its
    // examples (what flan-train checkpoints).
    let mut replay = mixture.stream(5);
    replay.advance_to(odd[100].position);
    let resumed = mixture
        .resume(replay.cursor())
        .unwrap()
        .shard(1, 2)
        .unwrap()
        .next_batch(50)
        .unwrap();
    assert_eq!(resumed, odd[100..150]);
}

#[test]
fn span_corruption_settings_are_checked_against_the_spec() {
    use flan_data::{Mixture, MixtureSpec};
    let dir = tempfile::tempdir().unwrap();
    mixed_spec(dir.path());
    let spec = |extra: &str, format: &str| {
        format!(
            "input_len = 64\ntarget_len = 32\n[[tasks]]\nname = \"stones\"\nformat = \"{format}\"\npath = \"corpus\"\nsubmixture = \"flan\"\n{extra}"
        )
    };
    let build = |text: String| {
        MixtureSpec::from_toml(&text, "spec.toml").and_then(|s| Mixture::from_spec(&s, dir.path()))
    };
    let err = build(spec("raw_length = 200", "span_corruption"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`stones`") && err.contains("raw_length 200"),
        "{err}"
    );
    let err = build(spec("noise_density = 1.5", "span_corruption"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("noise_density"), "{err}");
    let err = build(spec("raw_length = 10", "jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("span_corruption"), "{err}");
    let err = build(spec("family = \"qa\"", "span_corruption"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("family"), "{err}");
    // Explicit settings are used; held-out tasks are not read.
    let m = build(spec(
        "raw_length = 20\nmean_noise_span_length = 2.0",
        "span_corruption",
    ))
    .unwrap();
    assert_eq!(m.span_tasks()[0].config.raw_length, 20);
    assert_eq!(m.span_tasks()[0].config.mean_noise_span_length, 2.0);
    // A vocabulary without sentinels cannot corrupt: the stream says so, naming the task.
    let docs: Vec<String> = m.span_tasks()[0]
        .documents
        .iter()
        .map(|d| d.text.clone())
        .collect();
    let plain = Arc::new(Tokenizer::train_unigram(docs.into_iter(), 100, 0).unwrap());
    let m = Arc::new(m.with_tokenizer(plain));
    let err = m.check().unwrap_err().to_string();
    assert!(
        err.contains("`stones`") && err.contains("sentinel"),
        "{err}"
    );
    assert!(m.stream(0).next_batch(1).is_err());
}

/// A spec with one span-corruption task, `world`, whose documents come from `source` (a `path`
/// or a `synthetic_world` line).
fn world_spec(source: &str) -> String {
    use flan_data::span_corruption::compute_input_and_target_lengths;
    let (_, targets) = compute_input_and_target_lengths(64, 0.15, 3.0).unwrap();
    format!(
        r#"
        seed = 3
        input_len = 64
        target_len = {targets}
        [submixtures.pretrain]
        weight = 1.0
        cap = 100000
        [[tasks]]
        name = "world"
        format = "span_corruption"
        submixture = "pretrain"
        {source}
        "#
    )
}

#[test]
fn a_synthetic_world_task_streams_its_documents_as_a_file_of_them_would() {
    use flan_data::pipeline::train_tokenizer_on_mixture;
    use flan_data::span_corruption::compute_input_and_target_lengths;
    use flan_data::synthetic::world_documents;
    use flan_data::{Mixture, MixtureSpec};
    use std::collections::BTreeSet;

    let dir = tempfile::tempdir().unwrap();
    let texts = world_documents(7, 200);
    std::fs::write(dir.path().join("world.txt"), texts.join("\n") + "\n").unwrap();
    let build = |source: &str| {
        let spec = MixtureSpec::from_toml(&world_spec(source), "spec.toml").unwrap();
        Mixture::from_spec(&spec, dir.path()).unwrap()
    };
    let generated = "synthetic_world = { documents = 200, seed = 7 }";
    let from_file = "path = \"world.txt\"";
    let (g, f) = (build(generated), build(from_file));
    let (gt, ft) = (&g.span_tasks()[0], &f.span_tasks()[0]);
    let read: Vec<&str> = ft.documents.iter().map(|d| d.text.as_str()).collect();
    let made: Vec<&str> = gt.documents.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(made, read);
    assert_eq!((gt.files.len(), gt.blank, gt.skipped.count), (0, 0, 0));
    assert_eq!(
        gt.documents[9].provenance.file,
        std::path::PathBuf::from("synthetic_world/seed-7")
    );
    assert_eq!(gt.documents[9].provenance.line, 10);
    let raw = compute_input_and_target_lengths(64, 0.15, 3.0).unwrap().0;
    assert_eq!(gt.config.raw_length, raw);

    // The tokenizer trainer takes the generated documents as it takes a file's: the same
    // tokenizer, byte for byte.
    let train = |m: Mixture| train_tokenizer_on_mixture(&Arc::new(m), 3, 100, 300).unwrap();
    let (tok, tok_file) = (train(g), train(f));
    let saved = |t: &Tokenizer, name: &str| {
        let path = dir.path().join(name);
        t.save(&path).unwrap();
        std::fs::read(path).unwrap()
    };
    assert_eq!(saved(&tok, "g.json"), saved(&tok_file, "f.json"));

    // With it, the two mixtures stream the same span-corrupted examples.
    let tok = Arc::new(tok);
    let with_tok = |source: &str| Arc::new(build(source).with_tokenizer(tok.clone()));
    let (g, f) = (with_tok(generated), with_tok(from_file));
    g.check().unwrap();
    let n = 1500;
    let examples = g.stream(3).next_batch(n).unwrap();
    // (Equality covers the ids in `tokens`, not only the decoded text.)
    assert_eq!(f.stream(3).next_batch(n).unwrap(), examples);

    // Every example merges back into a chunk of a document; the first pass over the task takes
    // each chunk once, so the chunks, in document order, are the documents' tokens.
    let sentinels = Sentinels::of(&tok).unwrap();
    let mut chunks: Vec<Vec<u32>> = Vec::new();
    for d in &g.span_tasks()[0].documents {
        let ids = tok.encode_pieces(&d.text).unwrap();
        chunks.extend(ids.chunks(raw).map(<[u32]>::to_vec));
    }
    assert_eq!(g.rates()[0].examples, chunks.len());
    assert!(chunks.len() < n, "{} chunks", chunks.len());
    let mut s = g.stream(3);
    let merged: Vec<Vec<u32>> = (0..chunks.len())
        .map(|_| {
            let e = s.next().unwrap().unwrap();
            let t = e.tokens.expect("span corruption examples carry ids");
            assert!(t.inputs.len() <= 64 && t.targets.len() <= g.target_len());
            uncorrupt(&t, &sentinels)
        })
        .collect();
    let first_pass: BTreeSet<&Vec<u32>> = merged.iter().collect();
    assert_eq!(first_pass, chunks.iter().collect());
    assert!(examples.iter().all(|e| e.task == "world"));
}

#[test]
fn a_synthetic_world_task_built_in_code_still_needs_exactly_one_source() {
    use flan_data::{Mixture, MixtureSpec, SourceFormat};
    let dir = tempfile::tempdir().unwrap();
    let mut spec = MixtureSpec::from_toml(
        &world_spec("synthetic_world = { documents = 5, seed = 1 }"),
        "spec.toml",
    )
    .unwrap();
    // `from_toml` checks the spec; one changed afterwards is checked when its task loads.
    spec.tasks[0].path = "world.txt".into();
    let err = Mixture::from_spec(&spec, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`world`") && err.contains("both `path` and `synthetic_world`"),
        "{err}"
    );
    spec.tasks[0].path = Default::default();
    spec.tasks[0].synthetic_world = None;
    let err = Mixture::from_spec(&spec, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`world`") && err.contains("neither"), "{err}");
    // So are the other formats' tasks: generated documents are for span corruption only.
    for format in [SourceFormat::Jsonl, SourceFormat::FlanCollection] {
        spec.tasks[0].format = format;
        spec.tasks[0].synthetic_world = Some(flan_data::synthetic::SyntheticWorldSpec {
            documents: 5,
            seed: 1,
        });
        let err = Mixture::from_spec(&spec, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("applies to format = \"span_corruption\" only"),
            "{err}"
        );
        spec.tasks[0].synthetic_world = None;
        let err = Mixture::from_spec(&spec, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `path`"), "{err}");
    }
}

#[test]
fn the_checked_in_pretrain_spec_is_span_corruption_of_the_world_text() {
    use flan_data::span_corruption::compute_input_and_target_lengths;
    use flan_data::synthetic::{world_document, SyntheticWorldSpec};
    use flan_data::Mixture;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/synthetic-pretrain.toml");
    let mixture = Mixture::from_spec_file(&path).unwrap();
    let (raw, targets) = compute_input_and_target_lengths(256, 0.15, 3.0).unwrap();
    assert_eq!((mixture.input_len(), mixture.target_len()), (256, targets));
    let [task] = mixture.span_tasks() else {
        panic!("one span-corruption task")
    };
    assert_eq!((task.name.as_str(), task.config.raw_length), ("world", raw));
    assert_eq!(mixture.rates().len(), 1);
    let spec = flan_data::MixtureSpec::from_file(&path).unwrap();
    let world: SyntheticWorldSpec = spec.tasks[0].synthetic_world.unwrap();
    assert_eq!(task.documents.len(), world.documents);
    assert_eq!(task.documents[123].text, world_document(world.seed, 123));
}
