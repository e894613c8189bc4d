//! `[lora]`: only the adapter trains (the base weights stay bitwise as loaded and never get a
//! gradient), checkpoints and the final model are PEFT adapter directories, the optimiser keeps
//! state for the adapter only, and a LoRA run stopped and resumed gives the straight run's
//! losses and adapter bit for bit.

use std::collections::{BTreeSet, HashMap};

use flan_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use flan_model::{T5Config, T5ForConditionalGeneration};
use flan_train::model::TrainModel;
use flan_train::run::prepare;
use tch::Tensor;

use crate::common::{losses, torch_rng_lock, TinyData};

fn base_snapshot(model: &T5ForConditionalGeneration) -> HashMap<String, Tensor> {
    model
        .named_parameters()
        .iter()
        .map(|(n, t)| (n.clone(), t.copy()))
        .collect()
}

fn settings(config: &std::path::Path) -> Vec<String> {
    vec![
        format!("model.config={}", config.display()),
        "train.steps=6".into(),
        "checkpoint.every=2".into(),
        "schedule.lr=1e-2".into(),
        "batch.size=2".into(),
        "batch.grad_accum=2".into(),
        "model.dropout=0.1".into(),
        "lora.r=4".into(),
        "lora.lora_alpha=8".into(),
        "lora.lora_dropout=0.1".into(),
        r#"lora.target_modules=["q", "v", "wo"]"#.into(),
    ]
}

fn tiny_t5(data: &TinyData) -> std::path::PathBuf {
    let vocab = data.tokenizer.vocab_size() as i64;
    let t5 = T5Config::new_small(vocab, 32, 8, 64, 2, 1, 4, "gated-gelu", false);
    let config = data.path().join("t5.json");
    t5.save(&config).unwrap();
    config
}

#[test]
fn only_the_adapter_trains_and_the_run_writes_peft_adapter_directories() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let config = tiny_t5(&data);
    let out = data.path().join("lora");
    let set = settings(&config);
    let cfg = data.config(&out, &set.iter().map(String::as_str).collect::<Vec<_>>());
    let (mut trainer, _) = prepare(&cfg, None).unwrap();
    let base = base_snapshot(trainer.model());
    let adapter_before: HashMap<String, Tensor> = trainer
        .model()
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    assert!(adapter_before.keys().all(|n| n.contains(".lora_")));
    let summary = trainer.run().unwrap();

    for (name, t) in trainer.model().named_parameters() {
        assert!(t.equal(&base[name]), "base weight {name} changed");
        assert!(
            !t.requires_grad() && !t.grad().defined(),
            "{name} got a gradient"
        );
    }
    let mut adapter_numel = 0;
    for (name, t) in trainer.model().parameters() {
        assert!(!t.equal(&adapter_before[&name]), "{name} did not train");
        adapter_numel += t.numel() as u64;
    }
    let base_numel: u64 = base.values().map(|t| t.numel() as u64).sum();
    assert_eq!(
        (summary.parameters.trainable, summary.parameters.frozen),
        (adapter_numel, base_numel)
    );
    // 2 encoder and 1 decoder blocks: q, v, wo in each, plus the decoder's cross q and v.
    assert_eq!(adapter_before.len(), 2 * (3 * 3 + 2));

    let model_dir = summary.model_dir.clone().unwrap();
    for dir in [
        model_dir,
        trainer.checkpoints().latest().unwrap().unwrap().dir,
    ] {
        assert!(dir.join(ADAPTER_CONFIG_FILE).is_file(), "{}", dir.display());
        assert!(dir.join(ADAPTER_WEIGHTS_FILE).is_file());
        assert!(!dir.join("model.safetensors").exists(), "{}", dir.display());
    }
    // The optimiser state covers exactly the adapter.
    let ckpt = trainer.checkpoints().latest().unwrap().unwrap();
    let state: BTreeSet<String> = ckpt
        .optimizer_tensors()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n.rsplit_once("::").unwrap().0.to_string())
        .collect();
    assert_eq!(state, adapter_before.keys().cloned().collect());
}

#[test]
fn a_lora_run_resumes_exactly() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let config = tiny_t5(&data);
    let set = settings(&config);
    let set: Vec<&str> = set.iter().map(String::as_str).collect();

    let straight = data.path().join("straight");
    let (mut whole, _) = prepare(&data.config(&straight, &set), None).unwrap();
    whole.run().unwrap();

    let split = data.path().join("split");
    let (mut first, _) = prepare(&data.config(&split, &set), None).unwrap();
    first.run_until(3).unwrap();
    drop(first);
    tch::manual_seed(999);
    let (mut resumed, from) = prepare(&data.config(&split, &set), None).unwrap();
    assert!(from.is_some());
    resumed.run().unwrap();

    let (a, b) = (losses(&straight), losses(&split));
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 6);
    for ((step, la), (_, lb)) in a.iter().zip(&b) {
        assert_eq!(la.to_bits(), lb.to_bits(), "step {step}: {la} vs {lb}");
    }
    let expected: HashMap<String, Tensor> = whole.model().parameters().into_iter().collect();
    for (name, t) in resumed.model().parameters() {
        assert!(t.equal(&expected[&name]), "{name}");
    }
}
