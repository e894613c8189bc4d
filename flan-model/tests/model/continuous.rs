//! Continuous batching: rows that join and leave a running batch at different steps get the
//! token ids a batch-1 `generate` call gives them, greedy and sampled.

use flan_model::continuous::{DecodeBatch, EncodedSequence};
use flan_model::generate::{generate, sample_token, GenerationConfig, Strategy};
use flan_model::T5ForConditionalGeneration;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::*;

/// Prompts of different lengths: the fixture's reference prompts, a prefix of one, and seeded
/// random ones (every prompt ends with EOS, id 1).
fn prompts() -> Vec<Vec<i64>> {
    let reference = reference_json("v1_1");
    let mut out: Vec<Vec<i64>> = ids(&reference["generate"]["input_ids"])
        .into_iter()
        .map(|mut row| {
            while row.last() == Some(&0) {
                row.pop();
            }
            row
        })
        .collect();
    out.push(vec![5, 9, 1]);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for len in [1usize, 12, 57] {
        let mut row: Vec<i64> = (0..len).map(|_| rng.gen_range(3..82)).collect();
        row.push(1);
        out.push(row);
    }
    out
}

fn alone(
    model: &T5ForConditionalGeneration,
    prompt: &[i64],
    config: &GenerationConfig,
) -> Vec<i64> {
    let (input, mask) = padded(&[prompt.to_vec()]);
    generate(model, &input, &mask, config).unwrap()[0][0]
        .token_ids
        .clone()
}

/// One request of the schedule: its prompt, when it joins, how many tokens it may make and
/// how it picks them.
struct Planned {
    prompt: Vec<i64>,
    join_at: usize,
    max_new: usize,
    strategy: Strategy,
}

/// Runs the schedule through one [`DecodeBatch`] and returns each request's tokens.
fn run_continuous(model: &T5ForConditionalGeneration, plan: &[Planned]) -> Vec<Vec<i64>> {
    struct Row {
        request: usize,
        last: i64,
        rng: Option<ChaCha8Rng>,
    }
    let start = model.config().decoder_start_token_id();
    let eos = model.config().eos_token_id;
    let mut batch = DecodeBatch::new(model);
    let mut rows: Vec<Row> = Vec::new();
    let mut out = vec![Vec::new(); plan.len()];
    let mut seen_sizes = std::collections::BTreeSet::new();
    for step in 0..400 {
        let mut joining = Vec::new();
        for (i, p) in plan.iter().enumerate().filter(|(_, p)| p.join_at == step) {
            joining.push(EncodedSequence::encode(model, &p.prompt).unwrap());
            let rng = match p.strategy {
                Strategy::Sample { seed, .. } => Some(ChaCha8Rng::seed_from_u64(seed)),
                _ => None,
            };
            rows.push(Row {
                request: i,
                last: start,
                rng,
            });
        }
        // Several at once (one concatenation) or one at a time: the same rows either way.
        if step % 2 == 0 {
            batch.join_all(joining).unwrap();
        } else {
            for seq in joining {
                batch.join(seq).unwrap();
            }
        }
        if rows.is_empty() {
            if plan.iter().all(|p| p.join_at < step) {
                break;
            }
            continue;
        }
        seen_sizes.insert(rows.len());
        let tokens: Vec<i64> = rows.iter().map(|r| r.last).collect();
        let logits = batch.step(model, &tokens).unwrap();
        let greedy = logits.argmax().unwrap();
        let mut keep = Vec::new();
        for (i, row) in rows.iter_mut().enumerate() {
            let p = &plan[row.request];
            let token = match (&p.strategy, row.rng.as_mut()) {
                (
                    Strategy::Sample {
                        temperature,
                        top_k,
                        top_p,
                        ..
                    },
                    Some(rng),
                ) => {
                    let raw = logits.row(i).unwrap();
                    sample_token(&raw, *temperature, *top_k, *top_p, rng) as i64
                }
                _ => greedy[i],
            };
            out[row.request].push(token);
            row.last = token;
            keep.push(token != eos && out[row.request].len() < p.max_new);
        }
        batch.retain(&keep).unwrap();
        let mut flags = keep.iter();
        rows.retain(|_| *flags.next().unwrap());
        assert_eq!(batch.len(), rows.len());
    }
    assert!(rows.is_empty(), "the schedule finished within the bound");
    assert!(
        seen_sizes.len() >= 3,
        "the batch changed size: {seen_sizes:?}"
    );
    out
}

#[test]
fn greedy_rows_joining_and_leaving_equal_batch_one_generate() {
    let model = load("v1_1");
    let prompts = prompts();
    // Two join together at steps 0 and 12 (join_all: even steps) and at step 5 (one by one).
    let joins = [0, 0, 3, 5, 5, 12, 12];
    let max_new = [56, 7, 30, 1, 45, 20, 33];
    let plan: Vec<Planned> = prompts
        .iter()
        .zip(joins)
        .zip(max_new)
        .map(|((prompt, join_at), max_new)| Planned {
            prompt: prompt.clone(),
            join_at,
            max_new,
            strategy: Strategy::Greedy,
        })
        .collect();
    assert_eq!(plan.len(), prompts.len());
    let got = run_continuous(&model, &plan);
    for (i, p) in plan.iter().enumerate() {
        let want = alone(&model, &p.prompt, &GenerationConfig::greedy(p.max_new));
        assert_eq!(
            got[i],
            want,
            "request {i} (prompt of {} tokens)",
            p.prompt.len()
        );
    }
    // The long reference rows are long enough to mean something.
    assert!(got[0].len() >= 40);
}

#[test]
fn seeded_samples_do_not_depend_on_the_batch() {
    let model = load("v1_1");
    let prompts = prompts();
    let plan: Vec<Planned> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| Planned {
            prompt: prompt.clone(),
            join_at: [0, 2, 2, 4, 9, 9, 15][i],
            max_new: [40, 25, 3, 33, 18, 40, 22][i],
            strategy: if i % 3 == 1 {
                Strategy::Greedy
            } else {
                Strategy::Sample {
                    temperature: 0.7 + i as f64 * 0.1,
                    top_k: (i % 2 == 0).then_some(20),
                    top_p: (i % 3 == 0).then_some(0.9),
                    seed: 100 + i as u64,
                }
            },
        })
        .collect();
    let got = run_continuous(&model, &plan);
    for (i, p) in plan.iter().enumerate() {
        let config = GenerationConfig {
            max_new_tokens: p.max_new,
            strategy: p.strategy.clone(),
            num_return_sequences: 1,
            use_cache: true,
        };
        assert_eq!(got[i], alone(&model, &p.prompt, &config), "request {i}");
    }
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let model = load("v1_1");
    let mut batch = DecodeBatch::new(&model);
    assert!(batch.step(&model, &[]).is_err(), "a step of an empty batch");
    assert!(EncodedSequence::encode(&model, &[]).is_err());
    batch
        .join(EncodedSequence::encode(&model, &[4, 1]).unwrap())
        .unwrap();
    assert!(
        batch.step(&model, &[0, 0]).is_err(),
        "more tokens than rows"
    );
    assert!(batch.retain(&[]).is_err());
    batch.retain(&[false]).unwrap();
    assert!(batch.is_empty());
    // A batch emptied and refilled starts afresh.
    batch
        .join(EncodedSequence::encode(&model, &[7, 8, 1]).unwrap())
        .unwrap();
    let start = model.config().decoder_start_token_id();
    assert_eq!(
        batch
            .step(&model, &[start])
            .unwrap()
            .argmax()
            .unwrap()
            .len(),
        1
    );
}
