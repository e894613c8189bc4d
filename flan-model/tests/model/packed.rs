//! Packed batches (t5x semantics): each packed example gives the logits it gets alone.

use flan_model::{PackedTensors, T5ForConditionalGeneration};
use proptest::prelude::*;
use tch::{Kind, Tensor};

use crate::common::*;

pub(crate) struct Example {
    pub(crate) inputs: Vec<i64>,
    pub(crate) targets: Vec<i64>,
}

/// Packs examples into one row the way flan-data does: segments from 1, positions restarting,
/// decoder inputs shifted right per segment, padding to the given lengths.
pub(crate) fn pack(examples: &[Example], input_len: usize, target_len: usize) -> PackedTensors {
    let mut enc = vec![0i64; input_len];
    let mut enc_seg = vec![0i64; input_len];
    let mut enc_pos = vec![0i64; input_len];
    let mut tgt = vec![0i64; target_len];
    let mut dec_in = vec![0i64; target_len];
    let mut dec_seg = vec![0i64; target_len];
    let mut dec_pos = vec![0i64; target_len];
    let mut weights = vec![0f32; target_len];
    let (mut i, mut j) = (0, 0);
    for (s, ex) in examples.iter().enumerate() {
        for (p, &t) in ex.inputs.iter().enumerate() {
            enc[i] = t;
            enc_seg[i] = s as i64 + 1;
            enc_pos[i] = p as i64;
            i += 1;
        }
        for (p, &t) in ex.targets.iter().enumerate() {
            tgt[j] = t;
            dec_in[j] = if p == 0 { 0 } else { ex.targets[p - 1] };
            dec_seg[j] = s as i64 + 1;
            dec_pos[j] = p as i64;
            weights[j] = 1.0;
            j += 1;
        }
    }
    let row = |v: &[i64]| Tensor::from_slice(v).view([1, -1]);
    PackedTensors {
        encoder_input_tokens: row(&enc),
        encoder_segment_ids: row(&enc_seg),
        encoder_positions: row(&enc_pos),
        decoder_target_tokens: row(&tgt),
        decoder_input_tokens: row(&dec_in),
        decoder_segment_ids: row(&dec_seg),
        decoder_positions: row(&dec_pos),
        decoder_loss_weights: Tensor::from_slice(&weights).view([1, -1]),
    }
}

fn check_packed_equals_alone(model: &T5ForConditionalGeneration, examples: &[Example]) {
    let input_len: usize = examples.iter().map(|e| e.inputs.len()).sum::<usize>() + 3;
    let target_len: usize = examples.iter().map(|e| e.targets.len()).sum::<usize>() + 2;
    let packed = pack(examples, input_len, target_len);
    let logits = tch::no_grad(|| model.forward_packed(&packed, false));
    let mut offset = 0;
    for ex in examples {
        let input = Tensor::from_slice(&ex.inputs).view([1, -1]);
        let labels = Tensor::from_slice(&ex.targets).view([1, -1]);
        let alone = tch::no_grad(|| {
            model
                .forward_with_labels(&input, &input.ones_like(), &labels, false)
                .0
        });
        let n = ex.targets.len() as i64;
        let part = logits.narrow(1, offset, n);
        let err = max_rel_err(&part, &alone);
        assert!(err < 1e-4, "packed vs alone rel err {err}");
        offset += n;
    }
}

pub(crate) fn tokens(rng_seed: u64, len: usize, vocab: i64) -> Vec<i64> {
    (0..len)
        .map(|i| 3 + ((rng_seed as i64 * 7919 + i as i64 * 104729) % (vocab - 3)).abs())
        .collect()
}

#[test]
fn packed_loss_equals_token_weighted_mean_of_alone_losses() {
    let model = load("v1_1");
    let examples = [
        Example {
            inputs: tokens(1, 9, 60),
            targets: tokens(2, 5, 60),
        },
        Example {
            inputs: tokens(3, 4, 60),
            targets: tokens(4, 8, 60),
        },
    ];
    let packed = pack(&examples, 16, 15);
    let loss = tch::no_grad(|| {
        T5ForConditionalGeneration::packed_loss(&model.forward_packed(&packed, false), &packed)
    })
    .double_value(&[]);
    let mut total = 0.0;
    for ex in &examples {
        let input = Tensor::from_slice(&ex.inputs).view([1, -1]);
        let labels = Tensor::from_slice(&ex.targets).view([1, -1]);
        let l = tch::no_grad(|| {
            model
                .forward_with_labels(&input, &input.ones_like(), &labels, false)
                .1
        });
        total += l.double_value(&[]) * ex.targets.len() as f64;
    }
    let want = total / 13.0;
    assert!((loss - want).abs() < 1e-4 * want.abs(), "{loss} vs {want}");
}

#[test]
fn packed_forward_is_autograd_friendly_with_dropout() {
    let model = load("v1_0");
    let examples = [Example {
        inputs: tokens(5, 6, 60),
        targets: tokens(6, 4, 60),
    }];
    let packed = pack(&examples, 8, 6);
    let _rng = torch_rng();
    let loss =
        T5ForConditionalGeneration::packed_loss(&model.forward_packed(&packed, true), &packed);
    loss.backward();
    let grads = model
        .named_parameters()
        .iter()
        .filter(|(_, p)| {
            p.grad().defined() && p.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0
        })
        .count();
    assert!(
        grads > model.named_parameters().len() / 2,
        "only {grads} parameters got gradients"
    );
}

/// Examples of the given `(input, target)` lengths, their tokens drawn from `seed`.
fn examples_of(lens: &[(usize, usize)], seed: u64) -> Vec<Example> {
    lens.iter()
        .enumerate()
        .map(|(k, &(i, t))| Example {
            inputs: tokens(seed + 2 * k as u64, i, 60),
            targets: tokens(seed + 2 * k as u64 + 1, t, 60),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]
    #[test]
    fn packed_examples_never_see_each_other(
        lens in prop::collection::vec((1usize..12, 1usize..10), 1..4),
        seed in 0u64..1000,
        model_index in 0usize..3,
    ) {
        let model = load(MODELS[model_index]);
        let examples = examples_of(&lens, seed);
        check_packed_equals_alone(&model, &examples);
    }
}

/// One batch of the rows' rows, in order.
pub(crate) fn stack_rows(rows: &[PackedTensors]) -> PackedTensors {
    let cat = |field: fn(&PackedTensors) -> &Tensor| {
        Tensor::cat(&rows.iter().map(field).collect::<Vec<_>>(), 0)
    };
    PackedTensors {
        encoder_input_tokens: cat(|p| &p.encoder_input_tokens),
        encoder_segment_ids: cat(|p| &p.encoder_segment_ids),
        encoder_positions: cat(|p| &p.encoder_positions),
        decoder_target_tokens: cat(|p| &p.decoder_target_tokens),
        decoder_input_tokens: cat(|p| &p.decoder_input_tokens),
        decoder_segment_ids: cat(|p| &p.decoder_segment_ids),
        decoder_positions: cat(|p| &p.decoder_positions),
        decoder_loss_weights: cat(|p| &p.decoder_loss_weights),
    }
}

/// Every parameter's gradient of `loss` (from zero).
fn gradients(model: &T5ForConditionalGeneration, loss: Tensor) -> Vec<Tensor> {
    for (_, p) in model.named_parameters() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    loss.backward();
    model
        .named_parameters()
        .iter()
        .map(|(_, p)| p.grad().copy())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]
    /// A padded batch (one example per row, as `flan train` batches without packing) through
    /// the packed pass, which runs its blocks on the tokens alone, gives the loss and the
    /// gradients of transformers' padded pass (`forward_with_labels`), which computes every
    /// padding slot too: padding changes nothing a token reads. In fp64, where summation order
    /// cannot hide a difference: in fp32 the two differ by up to 1.9e-5 of a parameter's
    /// largest gradient entry (rounding, amplified by the norms' cancellations; measured on
    /// an AMD EPYC, native and AVX2 kernels).
    #[test]
    fn padded_batches_on_their_tokens_equal_the_padded_pass(
        lens in prop::collection::vec((1usize..14, 1usize..10), 1..5),
        seed in 0u64..1000,
        model_index in 0usize..3,
    ) {
        let model = load(MODELS[model_index]);
        model.set_kind(Kind::Double).unwrap();
        let examples = examples_of(&lens, seed);
        let (li, lt) = (
            lens.iter().map(|l| l.0).max().unwrap_or(1),
            lens.iter().map(|l| l.1).max().unwrap_or(1),
        );
        let batch = stack_rows(
            &examples
                .iter()
                .map(|e| pack(std::slice::from_ref(e), li, lt))
                .collect::<Vec<_>>(),
        );
        let labels = batch
            .decoder_target_tokens
            .where_self(&batch.decoder_segment_ids.ne(0), &Tensor::from(-100i64));
        let padded = model
            .forward_with_labels(
                &batch.encoder_input_tokens,
                &batch.encoder_segment_ids,
                &labels,
                false,
            )
            .1;
        let tokens_only = model.forward_packed_targets(&batch, false).mean_loss();
        let (l, w) = (tokens_only.double_value(&[]), padded.double_value(&[]));
        // The losses are computed in fp32 either way, reduced in another order.
        prop_assert!((l - w).abs() <= 1e-6 * w.abs(), "loss {} vs {}", l, w);
        let (g_tokens, g_padded) = (gradients(&model, tokens_only), gradients(&model, padded));
        for ((name, _), (g, w)) in model
            .named_parameters()
            .iter()
            .zip(g_tokens.iter().zip(&g_padded))
        {
            let scale = w.abs().max().double_value(&[]);
            let err = (g - w).abs().max().double_value(&[]) / scale.max(1e-12);
            prop_assert!(err <= 1e-10, "{}: gradient rel err {}", name, err);
            // Both zero only where the batch cannot reach (e.g. unused position buckets).
            prop_assert_eq!(scale == 0.0, g.abs().max().double_value(&[]) == 0.0, "{}", name);
        }
    }
}

/// The head on target positions only gives those positions' logits, the same loss and the same
/// gradients as the head on every slot: padding only ever met zero weights.
#[test]
fn target_logits_equal_full_logits_loss_and_gradients() {
    for name in ["v1_0", "v1_1"] {
        let model = load(name);
        let examples = [
            Example {
                inputs: tokens(7, 5, 60),
                targets: tokens(8, 3, 60),
            },
            Example {
                inputs: tokens(9, 7, 60),
                targets: tokens(10, 6, 60),
            },
        ];
        // Two rows: the second holds only the first example, so both rows end in padding.
        let packed = stack_rows(&[pack(&examples, 14, 12), pack(&examples[..1], 14, 12)]);
        let grads = |loss: Tensor| gradients(&model, loss);
        let full = model.forward_packed(&packed, false);
        let full_loss = T5ForConditionalGeneration::packed_loss(&full, &packed);
        let targets = model.forward_packed_targets(&packed, false);
        let loss = targets.mean_loss();

        // Rows 0 and 1 hold 9 and 3 targets: positions 0..9 and 12..15.
        let want: Vec<i64> = (0..9).chain(12..15).collect();
        let vocab = full.size()[2];
        let picked = full
            .view([-1, vocab])
            .index_select(0, &Tensor::from_slice(&want));
        assert_eq!(targets.logits.size(), [12, vocab], "{name}");
        let err = max_rel_err(&targets.logits, &picked);
        assert!(err < 1e-6, "{name}: logits rel err {err}");
        assert!(targets.targets.equal(
            &packed
                .decoder_target_tokens
                .view([-1])
                .index_select(0, &Tensor::from_slice(&want))
        ));
        assert_eq!(targets.weights.sum(Kind::Float).double_value(&[]), 12.0);
        let (l, w) = (loss.double_value(&[]), full_loss.double_value(&[]));
        assert!((l - w).abs() < 1e-6 * w.abs(), "{name}: loss {l} vs {w}");

        let (g_targets, g_full) = (grads(loss), grads(full_loss));
        for ((pname, _), (g, w)) in model
            .named_parameters()
            .iter()
            .zip(g_targets.iter().zip(&g_full))
        {
            let scale = w.abs().max().double_value(&[]).max(1e-12);
            let err = (g - w).abs().max().double_value(&[]) / scale;
            assert!(err < 1e-5, "{name}: {pname} gradient rel err {err}");
        }
    }
}
