//! Property tests: packing, mixing rates, determinism and resumption, few-shot hygiene.

use flan_data::pack::pack_all;
use flan_data::render::{render, Form, RenderRequest};
use flan_data::{
    Example, Mixture, MixtureSpec, PackedBatch, Provenance, Task, TaskRegistry, TemplateLibrary,
    TokenizedExample, WordCount,
};
use proptest::prelude::*;
use rand::SeedableRng;
use std::sync::Arc;

fn example(task: &str, i: usize, with_options: bool) -> Example {
    let options =
        with_options.then(|| vec![format!("yes {i}"), format!("no {i}"), "maybe".to_string()]);
    Example {
        task: task.to_string(),
        inputs: format!("Question {i} of {task}: is it so?"),
        targets: if with_options {
            format!("no {i}")
        } else {
            format!("answer {i}")
        },
        options,
        rationale: Some(format!("Because of reason {i}.")),
        provenance: Provenance {
            file: format!("{task}.jsonl").into(),
            line: i + 1,
        },
    }
}

fn task(name: &str, submixture: &str, family: &str, n: usize) -> Task {
    Task {
        name: name.to_string(),
        submixture: submixture.to_string(),
        family: family.to_string(),
        sources: vec![],
        examples: (0..n).map(|i| example(name, i, i % 2 == 0)).collect(),
        definition: None,
        demonstrations: vec![],
        skipped: Default::default(),
        ignored: Default::default(),
    }
}

/// A mixture over in-memory tasks: sizes[i] examples for task i, spread over submixtures.
fn mixture(sizes: &[usize]) -> Arc<Mixture> {
    let subs = ["flan", "t0", "niv2", "cot", "dialog"];
    let mut registry = TaskRegistry::new();
    for (i, &n) in sizes.iter().enumerate() {
        let sub = subs[i % subs.len()];
        let family = if sub == "cot" { "cot" } else { "qa" };
        registry
            .add(task(&format!("task_{i}"), sub, family, n))
            .unwrap();
    }
    let spec = MixtureSpec::from_toml("tasks = []", "test").unwrap();
    Arc::new(Mixture::new(registry, TemplateLibrary::builtin().unwrap(), &spec, vec![]).unwrap())
}

fn tokenized() -> impl Strategy<Value = Vec<TokenizedExample>> {
    let seq = |max| {
        prop::collection::vec(3u32..500, 0..max).prop_map(|mut v| {
            v.push(1);
            v
        })
    };
    prop::collection::vec(
        (seq(20), seq(10)).prop_map(|(inputs, targets)| TokenizedExample { inputs, targets }),
        0..40,
    )
}

fn sorted(mut v: Vec<TokenizedExample>) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out: Vec<_> = v.drain(..).map(|e| (e.inputs, e.targets)).collect();
    out.sort();
    out
}

fn check_segments(b: &PackedBatch) {
    for row in 0..b.batch_size {
        for (len, segs, pos, toks) in [
            (
                b.input_len,
                &b.encoder_segment_ids,
                &b.encoder_positions,
                &b.encoder_input_tokens,
            ),
            (
                b.target_len,
                &b.decoder_segment_ids,
                &b.decoder_positions,
                &b.decoder_target_tokens,
            ),
        ] {
            let r = row * len..(row + 1) * len;
            let (segs, pos, toks) = (&segs[r.clone()], &pos[r.clone()], &toks[r]);
            let mut last_seg = 0;
            for i in 0..len {
                if segs[i] == 0 {
                    // Padding only at the end of a row, and padded with zeros.
                    assert!(segs[i..].iter().all(|&s| s == 0));
                    assert!(toks[i..].iter().all(|&t| t == 0));
                    break;
                }
                // Segments are contiguous, numbered 1, 2, ... and positions restart per segment.
                assert!(segs[i] == last_seg || segs[i] == last_seg + 1);
                let expected = if segs[i] == last_seg {
                    pos[i - 1] + 1
                } else {
                    0
                };
                assert_eq!(pos[i], expected);
                last_seg = segs[i];
            }
        }
        let r = row * b.target_len..(row + 1) * b.target_len;
        for i in r.clone() {
            let start = i == r.start || b.decoder_segment_ids[i] != b.decoder_segment_ids[i - 1];
            let shifted = if start {
                0
            } else {
                b.decoder_target_tokens[i - 1]
            };
            if b.decoder_segment_ids[i] != 0 {
                assert_eq!(b.decoder_input_tokens[i], shifted);
                assert_eq!(b.decoder_loss_weights[i], 1.0);
            } else {
                assert_eq!(b.decoder_loss_weights[i], 0.0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packing_loses_no_token_and_never_mixes_segments(examples in tokenized(), batch_size in 1usize..5) {
        let (batches, stats) = pack_all(&examples, batch_size, 24, 12).unwrap();
        let mut back = Vec::new();
        for b in &batches {
            check_segments(b);
            back.extend(b.unpack());
        }
        prop_assert_eq!(stats.truncation.truncated, 0);
        let real: usize = examples.iter().map(|e| e.inputs.len() + e.targets.len()).sum();
        prop_assert_eq!(stats.real_tokens as usize, real);
        prop_assert_eq!(sorted(back), sorted(examples.clone()));
        // The padded form round-trips too, in order.
        let padded = PackedBatch::unpacked(&examples, 24, 12);
        check_segments(&padded);
        prop_assert_eq!(padded.unpack(), examples);
    }

    #[test]
    fn same_seed_same_stream_and_cursor_resumes_it(
        sizes in prop::collection::vec(1usize..40, 1..6),
        seed in any::<u64>(),
        head in 0usize..60,
        tail in 1usize..40,
    ) {
        let m = mixture(&sizes);
        let full: Vec<_> = m.stream(seed).take(head + tail).map(Result::unwrap).collect();
        let again = m.stream(seed).next_batch(head + tail).unwrap();
        prop_assert_eq!(&full, &again);
        let mut first = m.stream(seed);
        let _ = first.next_batch(head).unwrap();
        let cursor = first.cursor();
        // The cursor survives serialisation (it lives in checkpoints).
        let cursor = serde_json::from_str(&serde_json::to_string(&cursor).unwrap()).unwrap();
        let rest = m.resume(cursor).unwrap().next_batch(tail).unwrap();
        prop_assert_eq!(&rest[..], &full[head..]);
        // Shards are disjoint slices whose union is the stream.
        let shards = 3u64;
        let mut union = Vec::new();
        for k in 0..shards {
            let items: Vec<_> = m.stream(seed).shard(k, shards).unwrap().take(20).map(Result::unwrap).collect();
            prop_assert!(items.iter().all(|e| e.position % shards == k));
            union.extend(items);
        }
        union.sort_by_key(|e| e.position);
        let whole = m.stream(seed).next_batch(60).unwrap();
        prop_assert_eq!(&union, &whole);
        // A shard resumes at any of its examples from the cursor replayed up to that example
        // (what a data-parallel checkpoint records), counting the draws of the other shards.
        let k = (head % 3) as u64;
        let mine: Vec<_> = whole.iter().filter(|e| e.position % shards == k).collect();
        let at = mine[tail % mine.len()];
        let mut replay = m.stream(seed);
        replay.advance_to(at.position);
        let cursor = replay.cursor();
        prop_assert_eq!(cursor.position, at.position);
        let resumed = m.resume(cursor).unwrap().shard(k, shards).unwrap().next_batch(2).unwrap();
        let expected: Vec<_> = m.stream(seed).shard(k, shards).unwrap()
            .map(Result::unwrap).skip_while(|e| e.position < at.position).take(2).collect();
        prop_assert_eq!(resumed, expected);
    }

    #[test]
    fn few_shot_never_includes_the_query(n in 1usize..12, seed in any::<u64>(), template in 0usize..10) {
        let lib = TemplateLibrary::builtin().unwrap();
        let mut t = task("t", "flan", "qa", n);
        // Duplicated inputs, as real data sets have: the copy must not be an exemplar either.
        if n > 2 {
            t.examples[1].inputs = t.examples[0].inputs.clone();
        }
        let family = lib.family("qa").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for q in 0..n {
            let req = RenderRequest { example: q, form: Form::FewShot, template, with_options: true, input_budget: 10_000 };
            let r = render(&lib, family, &t, &req, &WordCount, &mut rng).unwrap();
            prop_assert!(!r.exemplars.contains(&q));
            for &e in &r.exemplars {
                prop_assert_ne!(&t.examples[e].inputs, &t.examples[q].inputs);
            }
            prop_assert_eq!(r.inputs.matches(t.examples[q].inputs.as_str()).count(), 1);
        }
    }

    #[test]
    fn few_shot_respects_the_token_budget(budget in 20usize..200, seed in any::<u64>()) {
        let lib = TemplateLibrary::builtin().unwrap();
        let t = task("t", "flan", "qa", 12);
        let family = lib.family("qa").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let req = RenderRequest { example: 0, form: Form::FewShot, template: 0, with_options: false, input_budget: budget };
        let r = render(&lib, family, &t, &req, &WordCount, &mut rng).unwrap();
        let words = r.inputs.split_whitespace().count();
        prop_assert!(words <= budget || r.exemplars.is_empty(), "{} words > {}", words, budget);
    }
}

#[test]
fn empirical_task_frequencies_match_the_computed_rates() {
    // Caps bite on some tasks (niv2 cap 5,000), others are examples-proportional.
    let sizes = [
        40_000, 25_000, 6_000, 120_000, 3, 100, 7_000, 1, 200_000, 50,
    ];
    let subs = ["flan", "t0", "niv2", "cot", "dialog"];
    let mut registry = TaskRegistry::new();
    for (i, &n) in sizes.iter().enumerate() {
        let sub = subs[i % subs.len()];
        let mut t = task(&format!("task_{i}"), sub, "qa", 1);
        t.examples = (0..n).map(|j| example(&t.name, j % 1000, false)).collect();
        registry.add(t).unwrap();
    }
    let spec = MixtureSpec::from_toml("tasks = []", "test").unwrap();
    let m = Arc::new(
        Mixture::new(registry, TemplateLibrary::builtin().unwrap(), &spec, vec![]).unwrap(),
    );
    // The computed rates follow seqio's nesting: w_sub * min(cap, N) / sum of rates in the submixture.
    let p = |i: usize| m.rates()[i].probability;
    assert!((p(0) - 0.40 * 30_000.0 / (30_000.0 + 100.0)).abs() < 1e-12);
    assert!((p(2) - 0.20 * 5_000.0 / (5_000.0 + 1.0)).abs() < 1e-12);
    for seed in [0u64, 1, 2] {
        let mut stream = m.stream(seed);
        let draws = 100_000;
        let mut counts = vec![0usize; sizes.len()];
        for _ in 0..draws {
            counts[stream.next_task()] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let empirical = c as f64 / draws as f64;
            assert!(
                (empirical - p(i)).abs() < 0.01,
                "task {i}: {empirical} vs {}",
                p(i)
            );
        }
    }
}

#[test]
fn templates_are_taken_in_turn_and_forms_follow_the_ratios() {
    let m = mixture(&[500, 500, 500, 500, 500]);
    let items = m.stream(3).next_batch(20_000).unwrap();
    let cot = items.iter().filter(|e| e.task == "task_3").count() as f64 / items.len() as f64;
    // Five equal tasks, one per submixture: each gets its submixture's weight; cot has 0.05.
    assert!((cot - 0.05).abs() < 0.006, "{cot}");
    let few = items.iter().filter(|e| e.form == Form::FewShot).count() as f64 / items.len() as f64;
    // cot has inversion 0.3, then few-shot 0.5 of the rest; the others few-shot 0.5.
    let expected = 0.05 * 0.7 * 0.5 + 0.95 * 0.5;
    assert!((few - expected).abs() < 0.015, "{few} vs {expected}");
    let inv =
        items.iter().filter(|e| e.form == Form::Inversion).count() as f64 / items.len() as f64;
    assert!((inv - 0.05 * 0.3).abs() < 0.004, "{inv}");
    let zero: Vec<_> = items
        .iter()
        .filter(|e| e.task == "task_0" && e.form == Form::ZeroShot)
        .collect();
    let distinct: std::collections::BTreeSet<_> = zero.iter().map(|e| e.template).collect();
    assert_eq!(distinct.len(), 10, "all ten qa templates are used");
}
