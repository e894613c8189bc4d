//! `train.freeze`: frozen parameters stay bitwise as they were while the others train, the
//! optimiser keeps state for the trainable ones only, a glob that matches nothing names the
//! parameters there are, and a run with frozen parameters resumes exactly.

use std::collections::{BTreeSet, HashMap};

use flan_model::T5Config;
use flan_train::checkpoint::Checkpoint;
use flan_train::model::TrainModel;
use flan_train::run::prepare;
use flan_train::Error;
use tch::Tensor;

use crate::common::{losses, torch_rng_lock, TinyData};

fn snapshot(model: &impl TrainModel) -> HashMap<String, Tensor> {
    model
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect()
}

/// Names of the parameters the optimiser state of `ckpt` covers (`param::slot` keys).
fn state_params(ckpt: &Checkpoint) -> BTreeSet<String> {
    ckpt.optimizer_tensors()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n.rsplit_once("::").unwrap().0.to_string())
        .collect()
}

fn is_frozen(name: &str) -> bool {
    name.starts_with("encoder.") || name == "shared.weight"
}

#[test]
fn frozen_t5_parameters_stay_bitwise_while_the_rest_trains() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    // A tied head: `shared.weight` is embedding and output head at once.
    let vocab = data.tokenizer.vocab_size() as i64;
    let t5 = T5Config::new_small(vocab, 32, 8, 64, 2, 1, 4, "gated-gelu", true);
    let config = data.path().join("t5-tied.json");
    t5.save(&config).unwrap();
    let out = data.path().join("frozen");
    let cfg = data.config(
        &out,
        &[
            &format!("model.config={}", config.display()),
            "train.steps=4",
            "checkpoint.every=2",
            "schedule.lr=1e-2",
            "batch.size=2",
            r#"train.freeze=["encoder.*", "shared.weight"]"#,
        ],
    );
    let (mut trainer, _) = prepare(&cfg, None).unwrap();
    let before = snapshot(trainer.model());
    assert!(!before.contains_key("lm_head.weight"), "the head is tied");
    let summary = trainer.run().unwrap();
    let after = snapshot(trainer.model());
    for (name, t) in trainer.model().parameters() {
        // No gradient was ever computed for a frozen parameter (not merely a zero one).
        assert_eq!(t.grad().defined(), !is_frozen(&name), "{name}");
        assert_eq!(t.requires_grad(), !is_frozen(&name), "{name}");
    }
    let (mut frozen, mut moved) = (0u64, 0u64);
    for (name, t) in &after {
        let same = t.equal(&before[name]);
        if is_frozen(name) {
            assert!(same, "{name} is frozen but changed");
            frozen += t.numel() as u64;
        } else {
            assert!(!same, "{name} trains but did not change");
            moved += t.numel() as u64;
        }
    }
    assert!(frozen > 0 && moved > 0);
    assert_eq!(
        (summary.parameters.trainable, summary.parameters.frozen),
        (moved, frozen)
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(written["parameters"]["frozen"], frozen);
    assert_eq!(written["parameters"]["trainable"], moved);

    // The optimiser state covers exactly the trainable parameters.
    let ckpt = trainer.checkpoints().latest().unwrap().unwrap();
    let trainable: BTreeSet<String> = after.keys().filter(|n| !is_frozen(n)).cloned().collect();
    assert_eq!(state_params(&ckpt), trainable);
}

#[test]
fn an_unmatched_glob_names_the_parameters_there_are() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let vocab = data.tokenizer.vocab_size() as i64;
    let t5 = T5Config::new_small(vocab, 32, 8, 64, 2, 1, 4, "gated-gelu", true);
    let config = data.path().join("t5-tied.json");
    t5.save(&config).unwrap();
    let run = |freeze: &str| {
        let cfg = data.config(
            &data.path().join("unmatched"),
            &[
                &format!("model.config={}", config.display()),
                &format!("train.freeze={freeze}"),
            ],
        );
        match prepare(&cfg, None) {
            Ok(_) => panic!("{freeze} was accepted"),
            Err(e) => e,
        }
    };
    let err = run(r#"["encoder.*", "encoder.block.7.*"]"#);
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`encoder.block.7.*` matches none")
            && msg.contains("encoder.block.0.layer.0.SelfAttention.q.weight")
            && msg.contains("shared.weight"),
        "{msg}"
    );
    // The tied head is not a parameter of its own: the message says where it is.
    let msg = run(r#"["lm_head.weight"]"#).to_string();
    assert!(
        msg.contains("tied") && msg.contains("shared.weight"),
        "{msg}"
    );
    let err = run(r#"["*"]"#);
    assert!(
        matches!(err, Error::Config { .. }) && err.to_string().contains("nothing would train"),
        "{err}"
    );
}

const SETTINGS: [&str; 6] = [
    "train.steps=8",
    "checkpoint.every=3",
    "batch.grad_accum=2",
    "model.dropout=0.1",
    "seed=3",
    r#"train.freeze=["enc.*", "head.bias"]"#,
];

#[test]
fn a_run_with_frozen_parameters_resumes_exactly_and_refuses_another_list() {
    let _rng = torch_rng_lock();
    let data = TinyData::new();
    let straight = data.path().join("straight");
    let mut whole = data.trainer(data.config(&straight, &SETTINGS));
    let before = snapshot(whole.model());
    whole.run().unwrap();
    for (name, t) in snapshot(whole.model()) {
        let frozen = name.starts_with("enc.") || name == "head.bias";
        assert_eq!(t.equal(&before[&name]), frozen, "{name}");
    }

    let split = data.path().join("split");
    let mut first = data.trainer(data.config(&split, &SETTINGS));
    first.run_until(4).unwrap();
    let ckpt = first.checkpoints().latest().unwrap().unwrap();
    assert_eq!(ckpt.state.step, 3);
    // (The first process ends here, with the output directory's lock.)
    drop(first);
    assert!(state_params(&ckpt)
        .iter()
        .all(|n| !n.starts_with("enc.") && n != "head.bias"));

    // Another list is refused, naming both.
    let mut other = SETTINGS.to_vec();
    other[5] = r#"train.freeze=["enc.*"]"#;
    let err = data
        .trainer(data.config(&split, &other))
        .resume_latest()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Config { .. })
            && msg.contains(r#"["enc.*", "head.bias"]"#)
            && msg.contains(r#"["enc.*"]"#),
        "{msg}"
    );

    tch::manual_seed(999);
    let mut resumed = data.trainer(data.config(&split, &SETTINGS));
    assert!(resumed.resume_latest().unwrap().is_some());
    resumed.run().unwrap();
    let (a, b) = (losses(&straight), losses(&split));
    assert_eq!(a.len(), 8);
    assert_eq!(b.len(), 8);
    for ((step, la), (_, lb)) in a.iter().zip(&b) {
        assert_eq!(la.to_bits(), lb.to_bits(), "step {step}: {la} vs {lb}");
    }
    let expected = snapshot(whole.model());
    for (name, t) in snapshot(resumed.model()) {
        assert!(t.equal(&expected[&name]), "{name}");
    }
}
