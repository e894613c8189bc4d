//! The loop on flan-model's T5: a tiny T5 trains through `run::prepare`, its checkpoints load in
//! flan-model with identical tensors, and a checkpoint is itself a model directory to finetune.

use std::collections::HashMap;

use flan_model::{T5Config, T5ForConditionalGeneration};
use flan_train::model::TrainModel;
use flan_train::run::prepare;
use tch::{Device, Kind, Tensor};

use crate::common::{losses, torch_rng_lock, TinyData};

fn tiny_t5_config(data: &TinyData) -> std::path::PathBuf {
    let vocab = data.tokenizer.vocab_size() as i64;
    let cfg = T5Config::new_small(vocab, 32, 8, 64, 2, 1, 4, "gated-gelu", false);
    let path = data.path().join("t5-config.json");
    cfg.save(&path).unwrap();
    path
}

#[test]
fn tiny_t5_trains_and_its_checkpoint_loads_in_flan_model() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let out = data.path().join("t5-run");
    let config = tiny_t5_config(&data);
    let cfg = data.config(
        &out,
        &[
            &format!("model.config={}", config.display()),
            "train.steps=30",
            "checkpoint.every=10",
            "schedule.lr=1e-2",
            "batch.size=2",
        ],
    );
    let (mut trainer, resumed) = prepare(&cfg, None).unwrap();
    assert!(resumed.is_none());
    let summary = trainer.run().unwrap();
    assert_eq!(summary.steps, 30);
    let curve = losses(&out);
    let head: f64 = curve[..5].iter().map(|r| r.1).sum::<f64>() / 5.0;
    let tail: f64 = curve[25..].iter().map(|r| r.1).sum::<f64>() / 5.0;
    assert!(
        tail < head * 0.7,
        "the loss should fall: first five {head:.3}, last five {tail:.3}"
    );

    // The last checkpoint is a Hugging Face directory flan-model loads, with the trained tensors.
    let ckpt = trainer.checkpoints().latest().unwrap().unwrap();
    assert_eq!(ckpt.state.step, 30);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(ckpt.dir.join(f).is_file(), "missing {f}");
    }
    let (loaded, _) =
        T5ForConditionalGeneration::from_pretrained(&ckpt.dir, Device::Cpu, Kind::Float).unwrap();
    let ours: HashMap<String, Tensor> = TrainModel::parameters(trainer.model())
        .into_iter()
        .collect();
    let theirs = TrainModel::parameters(&loaded);
    assert_eq!(ours.len(), theirs.len());
    for (name, t) in theirs {
        let diff = (&ours[&name] - &t).abs().max().double_value(&[]);
        assert_eq!(diff, 0.0, "{name} differs after the round trip");
    }
    // Training dropout replaced the config's, but the saved config is the model's own.
    assert_eq!(loaded.config().d_model, 32);

    // The checkpoint is also a pretrained model to finetune further (fresh output directory).
    let out2 = data.path().join("t5-finetune");
    let cfg2 = data.config(
        &out2,
        &[
            &format!("model.pretrained={}", ckpt.dir.display()),
            "train.steps=2",
            "checkpoint.every=0",
            "batch.size=2",
        ],
    );
    let (mut second, _) = prepare(&cfg2, None).unwrap();
    let before: HashMap<String, Tensor> = TrainModel::parameters(second.model())
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    for (name, t) in TrainModel::parameters(trainer.model()) {
        assert_eq!(
            (&before[&name] - &t).abs().max().double_value(&[]),
            0.0,
            "{name} not loaded"
        );
    }
    second.run().unwrap();
    assert!(out2.join("model/model.safetensors").is_file());
}

#[test]
fn tiny_t5_learns_under_bf16_autocast_and_keeps_fp32_weights() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let config = tiny_t5_config(&data);
    let run = |name: &str, autocast: &str| {
        let out = data.path().join(name);
        let cfg = data.config(
            &out,
            &[
                &format!("model.config={}", config.display()),
                "train.steps=30",
                "checkpoint.every=0",
                "schedule.lr=1e-2",
                "batch.size=2",
                "model.dropout=0.0",
                &format!("autocast={autocast}"),
            ],
        );
        let (mut trainer, _) = prepare(&cfg, None).unwrap();
        trainer.run().unwrap();
        for (name, t) in TrainModel::parameters(trainer.model()) {
            assert_eq!(t.kind(), Kind::Float, "{name} left fp32 under autocast");
        }
        losses(&out)
    };
    let full = run("fp32", "off");
    let mixed = run("mixed", "bf16");
    // Same seed, same batches, same initial weights: the first step differs by bf16 rounding
    // only, which it must show (else autocast was not on).
    let (a, b) = (full[0].1, mixed[0].1);
    let rel = (a - b).abs() / a;
    assert!(
        rel > 0.0 && rel < 2e-2,
        "first loss: fp32 {a}, bf16 autocast {b}"
    );
    let head: f64 = mixed[..5].iter().map(|r| r.1).sum::<f64>() / 5.0;
    let tail: f64 = mixed[25..].iter().map(|r| r.1).sum::<f64>() / 5.0;
    let full_tail: f64 = full[25..].iter().map(|r| r.1).sum::<f64>() / 5.0;
    println!("first loss fp32 {a} autocast {b}; last five {full_tail:.4} vs {tail:.4}");
    assert!(
        tail < head * 0.7,
        "the loss should fall under autocast: first five {head:.3}, last five {tail:.3}"
    );
    assert!(
        (tail - full_tail).abs() < 0.1 * head,
        "autocast should track fp32: last five {tail:.3} vs {full_tail:.3} (first five {head:.3})"
    );
}
