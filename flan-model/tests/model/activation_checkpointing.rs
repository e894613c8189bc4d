//! Activation checkpointing (`set_activation_checkpointing`): a checkpointed training pass gives
//! bitwise the loss of the plain pass and the same gradients for every parameter (up to the
//! order of summation), with dropout on, for the relu v1.0, gated-gelu v1.1 and gated-silu
//! fixtures, with frozen parameters, and under bf16 autocast.

use flan_model::{Autocast, Error, PackedTensors, T5ForConditionalGeneration};
use tch::{Device, Kind, Tensor};

use crate::common::*;
use crate::dropout::with_dropout;
use crate::packed::{pack, stack_rows, tokens, Example};

fn example(seed: u64, inputs: usize, targets: usize) -> Example {
    Example {
        inputs: tokens(seed, inputs, 60),
        targets: tokens(seed + 1, targets, 60),
    }
}

/// Three packed rows of one to three examples each, every row ending in padding.
fn batch() -> PackedTensors {
    stack_rows(&[
        pack(&[example(1, 7, 5), example(3, 9, 4)], 24, 16),
        pack(&[example(5, 20, 12)], 24, 16),
        pack(
            &[example(7, 5, 3), example(9, 6, 6), example(11, 4, 2)],
            24,
            16,
        ),
    ])
}

/// A training step's loss and the gradient of every parameter (`None`: never computed).
struct Step {
    loss: f64,
    grads: Vec<(String, Option<Tensor>)>,
}

/// One forward and backward pass under `tch::manual_seed(seed)`, from zero gradients, the forward
/// pass under bf16 autocast when `autocast`.
fn step(
    model: &T5ForConditionalGeneration,
    batch: &PackedTensors,
    checkpointing: bool,
    seed: i64,
    autocast: bool,
) -> Step {
    model.set_activation_checkpointing(checkpointing).unwrap();
    let params: Vec<(String, Tensor)> = model
        .named_parameters()
        .iter()
        .map(|(n, p)| (n.clone(), p.shallow_clone()))
        .chain(model.adapter_parameters())
        .collect();
    for (_, p) in &params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    tch::manual_seed(seed);
    let (out, loss) = {
        let _autocast = autocast.then(|| Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap());
        let out = model.forward_packed_targets(batch, true);
        let loss = out.mean_loss();
        (out, loss)
    };
    let value = loss.double_value(&[]);
    out.backward(&loss).unwrap();
    let grads = params
        .iter()
        .map(|(n, p)| {
            let g = p.grad();
            (n.clone(), g.defined().then(|| g.copy()))
        })
        .collect();
    Step { loss: value, grads }
}

/// Bitwise equal losses; per parameter, `max |a - b| / max |b|` within `tol`, the same
/// parameters without a gradient, and a nonzero gradient for every other one (so that the
/// comparison says something).
fn assert_same(what: &str, checkpointed: &Step, plain: &Step, tol: f64) {
    assert_eq!(
        checkpointed.loss.to_bits(),
        plain.loss.to_bits(),
        "{what}: loss {} vs {}",
        checkpointed.loss,
        plain.loss
    );
    for ((name, a), (_, b)) in checkpointed.grads.iter().zip(&plain.grads) {
        match (a, b) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                let scale = b.abs().max().double_value(&[]);
                assert!(scale > 0.0, "{what}: {name} has a zero gradient");
                let err = (a - b).abs().max().double_value(&[]) / scale;
                assert!(err <= tol, "{what}: {name} gradient rel err {err}");
            }
            _ => panic!(
                "{what}: {name} has a gradient in only one run (checkpointed: {})",
                a.is_some()
            ),
        }
    }
}

#[test]
fn checkpointed_gradients_equal_the_plain_ones_with_dropout() {
    let _rng = torch_rng();
    let batch = batch();
    for name in MODELS {
        let model = with_dropout(name, 0.1);
        let plain = step(&model, &batch, false, 17, false);
        let checkpointed = step(&model, &batch, true, 17, false);
        // The encoder's first block gathers its gradient through every decoder block's
        // cross-attention, summed in another order: 1e-7 to 1.3e-6 of the largest entry here.
        assert_same(name, &checkpointed, &plain, 2e-6);
        assert!(plain.grads.iter().all(|(_, g)| g.is_some()));
        // Dropout is in play: another seed draws other masks, and evaluation has none.
        let other = step(&model, &batch, true, 18, false);
        assert_ne!(other.loss, plain.loss, "{name}");
        let eval = tch::no_grad(|| model.forward_packed_targets(&batch, false).mean_loss());
        assert_ne!(eval.double_value(&[]), plain.loss, "{name}");
    }
}

#[test]
fn checkpointed_gradients_equal_the_plain_ones_with_frozen_parameters() {
    let _rng = torch_rng();
    let batch = batch();
    // The embedding and one block of each stack; the whole encoder (whose output then needs no
    // gradient); everything before the decoder's second block (whose recompute is the last).
    let cases: [(&str, &[&str]); 3] = [
        (
            "v1_1",
            &["shared.", "encoder.block.0.", "decoder.block.1.layer.2."],
        ),
        ("v1_0", &["shared.", "encoder."]),
        ("odd", &["shared.", "encoder.", "decoder.block.0."]),
    ];
    for (name, frozen) in cases {
        let model = with_dropout(name, 0.1);
        let mut any_frozen = false;
        for (pname, p) in model.named_parameters() {
            if frozen.iter().any(|prefix| pname.starts_with(prefix)) {
                let _ = p.shallow_clone().set_requires_grad(false);
                any_frozen = true;
            }
        }
        assert!(any_frozen);
        let plain = step(&model, &batch, false, 5, false);
        let checkpointed = step(&model, &batch, true, 5, false);
        assert_same(name, &checkpointed, &plain, 1e-6);
        for (pname, g) in &checkpointed.grads {
            let is_frozen = frozen.iter().any(|prefix| pname.starts_with(prefix));
            assert_eq!(g.is_none(), is_frozen, "{name}: {pname}");
        }
    }
}

#[test]
fn checkpointed_gradients_of_a_lora_adapter_equal_the_plain_ones() {
    // The base frozen, as a LoRA run has it: only the adapters' gradients make a block's
    // recompute necessary, and the adapters' own dropout is replayed with the blocks'.
    let _rng = torch_rng();
    let batch = batch();
    for name in MODELS {
        let model = with_dropout(name, 0.1);
        for (_, p) in model.named_parameters() {
            let _ = p.shallow_clone().set_requires_grad(false);
        }
        let targets = ["q", "v", "wo", "lm_head"].map(String::from).to_vec();
        let config =
            flan_model::LoraConfig::new(4, 8.0, 0.1, flan_model::ModuleSelector::Names(targets));
        tch::manual_seed(11);
        model.add_lora(&config, flan_model::LoraInit::Peft).unwrap();
        // Non-zero B, so that the gradient of every A is too.
        tch::no_grad(|| {
            for (_, p) in model.adapter_parameters() {
                p.shallow_clone().copy_(&(p.randn_like() * 0.1));
            }
        });
        let plain = step(&model, &batch, false, 5, false);
        let checkpointed = step(&model, &batch, true, 5, false);
        assert_same(name, &checkpointed, &plain, 1e-6);
        for (pname, g) in &checkpointed.grads {
            assert_eq!(g.is_none(), !pname.contains(".lora_"), "{name}: {pname}");
        }
    }
}

#[test]
fn checkpointed_gradients_equal_the_plain_ones_under_autocast() {
    // With padding rows: under bf16 autocast with dropout, a padding query's fully masked row
    // once turned the fp32 mask into -inf and the loss into NaN (plain and checkpointed alike).
    let _rng = torch_rng();
    let batch = batch();
    for name in ["v1_1", "v1_0"] {
        let model = with_dropout(name, 0.1);
        let plain = step(&model, &batch, false, 23, true);
        assert!(plain.loss.is_finite(), "{name}: loss {}", plain.loss);
        for (pname, g) in &plain.grads {
            if let Some(g) = g {
                assert!(
                    g.isfinite().all().int64_value(&[]) == 1,
                    "{name}: gradient of {pname} is not finite"
                );
            }
        }
        let checkpointed = step(&model, &batch, true, 23, true);
        assert_same(
            &format!("{name} bf16 autocast"),
            &checkpointed,
            &plain,
            1e-6,
        );
    }
}

#[test]
fn accumulated_gradients_of_two_micro_batches_match() {
    // Gradient accumulation: the second backward adds to the first one's gradients.
    let _rng = torch_rng();
    let batch = batch();
    let model = with_dropout("v1_1", 0.1);
    let run = |checkpointing: bool| -> Vec<Tensor> {
        model.set_activation_checkpointing(checkpointing).unwrap();
        for (_, p) in model.named_parameters() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        for seed in [1, 2] {
            tch::manual_seed(seed);
            let out = model.forward_packed_targets(&batch, true);
            let loss = out.mean_loss() * 0.5;
            out.backward(&loss).unwrap();
        }
        model
            .named_parameters()
            .iter()
            .map(|(_, p)| p.grad().copy())
            .collect()
    };
    let (plain, checkpointed) = (run(false), run(true));
    for (((name, _), a), b) in model
        .named_parameters()
        .iter()
        .zip(&checkpointed)
        .zip(&plain)
    {
        let err = (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]);
        assert!(err <= 1e-6, "{name}: {err}");
    }
}

#[test]
fn a_backward_pass_inside_the_forward_autocast_region_is_refused() {
    let _rng = torch_rng();
    let model = with_dropout("v1_0", 0.1);
    model.set_activation_checkpointing(true).unwrap();
    let _autocast = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
    let out = model.forward_packed_targets(&batch(), true);
    let loss = out.mean_loss();
    match out.backward(&loss) {
        Err(Error::ActivationCheckpointing(message)) => {
            assert!(message.contains("autocast region"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn evaluation_passes_and_plain_forwards_are_not_checkpointed() {
    // Checkpointing only changes how a training pass of `forward_packed_targets` keeps its
    // activations: an evaluation pass, and `forward_packed` in training, backpropagate by hand
    // as before.
    let _rng = torch_rng();
    let model = with_dropout("v1_1", 0.1);
    model.set_activation_checkpointing(true).unwrap();
    assert!(model.activation_checkpointing());
    let batch = batch();
    let eval = model.forward_packed_targets(&batch, false);
    eval.mean_loss().backward();
    let q = &model.named_parameters()[1];
    assert!(q.0.starts_with("encoder.block.0."), "{}", q.0);
    assert!(q.1.grad().defined());
    drop(eval);
    let logits = model.forward_packed(&batch, true);
    T5ForConditionalGeneration::packed_loss(&logits, &batch).backward();
}

/// Backpropagating a checkpointed pass's loss by hand would leave every block without a
/// gradient; debug builds catch it when the logits are dropped.
#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "without TargetLogits::backward")]
fn a_checkpointed_pass_backpropagated_by_hand_is_caught() {
    let _rng = torch_rng();
    let model = with_dropout("v1_0", 0.1);
    model.set_activation_checkpointing(true).unwrap();
    let out = model.forward_packed_targets(&batch(), true);
    out.mean_loss().backward();
    drop(out);
}
