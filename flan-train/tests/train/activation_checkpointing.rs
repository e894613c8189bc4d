//! `train.activation_checkpointing`: a T5 run with it has the per-step losses and gradient norms
//! of the same run without it (dropout on, gradient accumulation, with and without frozen
//! parameters), and a checkpoint of a run without it resumes with it on.

use flan_model::T5Config;
use flan_train::metrics::{read_step_records, StepRecord};
use flan_train::run::prepare;

use crate::common::{torch_rng_lock, TinyData};

/// A gated-gelu T5 with two encoder and two decoder blocks and an untied head.
fn t5_config(data: &TinyData) -> String {
    let vocab = data.tokenizer.vocab_size() as i64;
    let t5 = T5Config::new_small(vocab, 32, 8, 64, 2, 2, 4, "gated-gelu", false);
    let path = data.path().join("t5-ckpt.json");
    t5.save(&path).unwrap();
    format!("model.config={}", path.display())
}

fn records(out: &std::path::Path) -> Vec<StepRecord> {
    read_step_records(&out.join("metrics.jsonl")).unwrap()
}

/// Same steps; losses and gradient norms within 4e-6 relative (the gradients differ only in the
/// order of summation, and so do the weights after an update at lr 1e-2: on an AMD EPYC the
/// fourth step's gradient norm was 1.2e-6 apart under the AVX2 kernels, within 1e-6 under
/// AVX-512; a checkpointed pass that lost a gradient would be off by far more).
fn assert_same_curve(what: &str, a: &[StepRecord], b: &[StepRecord], steps: usize) {
    assert_eq!(a.len(), steps, "{what}");
    assert_eq!(b.len(), steps, "{what}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.step, y.step);
        for (name, u, v) in [
            ("loss", x.loss, y.loss),
            ("grad_norm", x.grad_norm, y.grad_norm),
        ] {
            assert!(
                u.is_finite() && v > 0.0,
                "{what}: step {} {name} {u} {v}",
                x.step
            );
            let err = (u - v).abs() / v.abs();
            assert!(
                err <= 4e-6,
                "{what}: step {} {name} {u} vs {v} (rel {err})",
                x.step
            );
        }
    }
    // The first step starts from the same weights: its loss is the same to the bit.
    assert_eq!(a[0].loss.to_bits(), b[0].loss.to_bits(), "{what}");
}

const SETTINGS: [&str; 6] = [
    "train.steps=4",
    "batch.size=2",
    "batch.grad_accum=2",
    "model.dropout=0.1",
    "schedule.lr=1e-2",
    "seed=5",
];

#[test]
fn checkpointed_runs_have_the_plain_runs_losses() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let model = t5_config(&data);
    let freeze = r#"train.freeze=["shared.weight", "encoder.block.0.*"]"#;
    for (what, extra) in [("all train", None), ("frozen", Some(freeze))] {
        let run = |name: &str, checkpointing: bool| {
            let out = data.path().join(format!("{what}-{name}"));
            let mut settings: Vec<&str> = SETTINGS.to_vec();
            settings.push(&model);
            settings.extend(extra);
            let switch = format!("train.activation_checkpointing={checkpointing}");
            settings.push(&switch);
            let cfg = data.config(&out, &settings);
            let (mut trainer, _) = prepare(&cfg, None).unwrap();
            assert_eq!(trainer.model().activation_checkpointing(), checkpointing);
            trainer.run().unwrap();
            records(&out)
        };
        let plain = run("plain", false);
        let checkpointed = run("checkpointed", true);
        assert_same_curve(what, &checkpointed, &plain, 4);
    }
}

#[test]
fn a_plain_runs_checkpoint_resumes_with_checkpointing() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let model = t5_config(&data);
    let mut settings: Vec<&str> = SETTINGS.to_vec();
    settings.extend([model.as_str(), "checkpoint.every=2"]);
    let straight = data.path().join("straight");
    let (mut whole, _) = prepare(&data.config(&straight, &settings), None).unwrap();
    whole.run().unwrap();

    let split = data.path().join("split");
    let (mut first, _) = prepare(&data.config(&split, &settings), None).unwrap();
    first.run_until(2).unwrap();
    drop(first);
    settings.push("train.activation_checkpointing=true");
    let (mut second, resumed) = prepare(&data.config(&split, &settings), None).unwrap();
    assert!(resumed.is_some(), "the run resumes from step 2");
    assert!(second.model().activation_checkpointing());
    second.run().unwrap();
    let (a, b) = (records(&split), records(&straight));
    // The first two steps ran the same way in both runs: bitwise equal.
    for (x, y) in a[..2].iter().zip(&b[..2]) {
        assert_eq!(x.loss.to_bits(), y.loss.to_bits());
    }
    assert_same_curve("resumed", &a, &b, 4);
}
