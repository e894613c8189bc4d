//! flan-model's own training dropout (a counter-based mask instead of libtorch's serial
//! Bernoulli draw): the distribution, the scaling, the gradient, reproducibility under
//! `tch::manual_seed`, and the attention path it forces in training.

use flan_model::dropout::{dropout, record_seeds, replay_seeds};
use flan_model::{Error, T5Config, T5ForConditionalGeneration};
use proptest::prelude::*;
use tch::{nn, Device, Kind, Tensor};

use crate::common::*;

/// Values with no zeros, so that a zero in the output can only be a dropped element.
fn nonzero(n: i64) -> Tensor {
    Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37 + 1.0
}

/// `k` successes of `n` Bernoulli(`q`) trials within five standard deviations of the mean.
fn assert_binomial(k: f64, n: f64, q: f64, what: &str) {
    let sd = (n * q * (1.0 - q)).sqrt();
    assert!(
        (k - n * q).abs() <= 5.0 * sd + 1.0,
        "{what}: {k} of {n}, expected {} ± {sd}",
        n * q
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn kept_elements_are_scaled_dropped_are_zero_and_the_rate_is_p(
        p in 0.02f64..0.98,
        n in 1i64..60_000,
        seed in 0i64..1_000_000,
    ) {
        let _rng = torch_rng();
        tch::manual_seed(seed);
        let x = nonzero(n);
        let y = dropout(&x, p);
        let scale = (1.0 / (1.0 - p)) as f32;
        let kept = y.ne(0.0);
        // Kept: exactly the float product x * scale, as libtorch's `input * noise`.
        let expected = (&x * f64::from(scale)).where_self(&kept, &x.zeros_like());
        prop_assert!(y.equal(&expected));
        let k = kept.sum(Kind::Float).double_value(&[]);
        assert_binomial(k, n as f64, 1.0 - p, "kept");
    }
}

#[test]
fn neighbouring_elements_are_independent() {
    let _rng = torch_rng();
    // Elements 2j and 2j+1 share one generator output (its two halves); j and j+1 are consecutive
    // outputs. Both pairings must be dropped together at rate p², not more or less.
    tch::manual_seed(11);
    let (n, p) = (400_000i64, 0.3);
    let dropped = dropout(&nonzero(n), p).eq(0.0).to_kind(Kind::Float);
    let even = dropped.slice(0, 0, n, 2);
    let odd = dropped.slice(0, 1, n, 2);
    let both_in_word = (&even * &odd).sum(Kind::Float).double_value(&[]);
    assert_binomial(both_in_word, (n / 2) as f64, p * p, "same output");
    let across = (odd.slice(0, 0, n / 2 - 1, 1) * even.slice(0, 1, n / 2, 1))
        .sum(Kind::Float)
        .double_value(&[]);
    assert_binomial(across, (n / 2 - 1) as f64, p * p, "consecutive outputs");
}

#[test]
fn masks_repeat_under_the_same_seed_and_change_between_calls() {
    let _rng = torch_rng();
    let x = nonzero(10_000);
    tch::manual_seed(5);
    let (a, b) = (dropout(&x, 0.1), dropout(&x, 0.1));
    tch::manual_seed(5);
    let a_again = dropout(&x, 0.1);
    assert!(a.equal(&a_again), "same seed, different mask");
    assert!(!a.equal(&b), "two calls drew the same mask");
}

#[test]
fn the_gradient_is_the_mask() {
    let _rng = torch_rng();
    tch::manual_seed(3);
    let x = nonzero(5_000).set_requires_grad(true);
    let y = dropout(&x, 0.25);
    y.sum(Kind::Float).backward();
    let mask = (y.detach() / x.detach()).where_self(&y.ne(0.0), &y.zeros_like());
    assert!(x.grad().allclose(&mask, 1e-6, 0.0, false));
    let scale = 1.0 / 0.75;
    let values = x.grad().ne(0.0);
    let kept = x.grad().masked_select(&values);
    assert!(kept.allclose(&kept.full_like(scale), 1e-6, 0.0, false));
}

#[test]
fn edges_and_half_precision() {
    let _rng = torch_rng();
    let x = nonzero(1_000);
    assert!(dropout(&x, 0.0).equal(&x));
    assert_eq!(
        dropout(&x, 1.0).ne(0.0).sum(Kind::Int64).int64_value(&[]),
        0
    );
    let half = x.to_kind(Kind::BFloat16);
    let y = dropout(&half, 0.5);
    assert_eq!(y.kind(), Kind::BFloat16);
    let k = y.ne(0.0).sum(Kind::Float).double_value(&[]);
    assert_binomial(k, 1_000.0, 0.5, "bf16 kept");
    assert!(dropout(&Tensor::zeros([0], (Kind::Float, Device::Cpu)), 0.5).numel() == 0);
}

#[test]
fn replayed_seeds_make_the_recorded_masks_and_draw_nothing() {
    let _rng = torch_rng();
    let x = nonzero(5_000);
    let draw = || Tensor::randint(1 << 40, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    tch::manual_seed(9);
    let pair = || (dropout(&x, 0.2), dropout(&x, 0.5));
    let ((a, b), record) = record_seeds(pair);
    assert_eq!(record.seeds().len(), 2);
    let next_recorded = draw();
    // Recording changes neither the masks nor the generator's stream.
    tch::manual_seed(9);
    let (a_plain, b_plain) = pair();
    assert!(a.equal(&a_plain) && b.equal(&b_plain));
    assert_eq!(draw(), next_recorded);
    // A replay makes the recorded masks whatever the generator's state, and draws nothing.
    tch::manual_seed(100);
    let (ra, rb) = replay_seeds(&record, pair).unwrap();
    assert!(ra.equal(&a) && rb.equal(&b));
    let next_replayed = draw();
    tch::manual_seed(100);
    assert_eq!(draw(), next_replayed);
    // A replay with other calls than the recorded ones is an error.
    for calls in [1, 3] {
        let replayed = replay_seeds(&record, || {
            for _ in 0..calls {
                let _ = dropout(&x, 0.2);
            }
        });
        match replayed {
            Err(Error::ActivationCheckpointing(message)) => assert!(
                message.contains(&format!("made {calls} dropout calls, the first pass 2")),
                "{message}"
            ),
            other => panic!("{calls} calls: expected an error, got {other:?}"),
        }
    }
    // Rate 0 draws no seed; the tape is gone once its region ends.
    let (_, none) = record_seeds(|| dropout(&x, 0.0));
    assert!(none.seeds().is_empty());
    let ((), outer) = record_seeds(|| {
        let (_, inner) = record_seeds(|| dropout(&x, 0.3));
        assert_eq!(inner.seeds().len(), 1);
        let _ = dropout(&x, 0.3);
    });
    assert_eq!(
        outer.seeds().len(),
        1,
        "the inner region's draw is not the outer's"
    );
}

/// A fixture model with its dropout rate replaced.
pub(crate) fn with_dropout(name: &str, rate: f64) -> T5ForConditionalGeneration {
    let mut config = T5Config::from_file(fixture_dir(name).join("config.json")).unwrap();
    config.dropout_rate = rate;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = T5ForConditionalGeneration::new(&vs.root(), &config).unwrap();
    model.load_weights(fixture_dir(name)).unwrap();
    model
}

#[test]
fn training_attention_with_a_negligible_rate_equals_the_eval_path() {
    // (It builds models and draws dropout seeds: the generator is shared with the seeded tests.)
    let _rng = torch_rng();
    // A rate whose threshold rounds to 0 and whose scale rounds to 1.0 in f32 keeps every element
    // unchanged, so training mode must give eval mode's logits while going through the explicit
    // attention (scores, in-place bias, fp32 softmax, dropout, values) instead of sdpa.
    let (input, mask) = padded(&[vec![5, 9, 14, 3, 1], vec![7, 22, 1]]);
    let (labels, _) = padded(&[vec![4, 8, 1], vec![6, 1]]);
    for name in MODELS {
        let model = with_dropout(name, 1e-12);
        let train = model.forward_with_labels(&input, &mask, &labels, true).0;
        let eval = tch::no_grad(|| model.forward_with_labels(&input, &mask, &labels, false).0);
        let err = max_rel_err(&train.detach(), &eval);
        assert!(err < 1e-5, "{name}: {err}");
    }
}

#[test]
fn training_forward_is_reproducible_under_manual_seed() {
    let _rng = torch_rng();
    let model = with_dropout("v1_1", 0.3);
    let (input, mask) = padded(&[vec![5, 9, 14, 3, 1], vec![7, 22, 1]]);
    let (labels, _) = padded(&[vec![4, 8, 1], vec![6, 1]]);
    let run = |seed| {
        tch::manual_seed(seed);
        model
            .forward_with_labels(&input, &mask, &labels, true)
            .1
            .double_value(&[])
    };
    let eval = tch::no_grad(|| model.forward_with_labels(&input, &mask, &labels, false).1);
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, eval.double_value(&[]));
}
