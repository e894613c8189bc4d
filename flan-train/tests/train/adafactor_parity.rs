//! Adafactor against transformers' `Adafactor` on the same tensors (fixture written by
//! `xtask/fixtures/adafactor.py`): every parameter after each of three steps, and the final
//! second-moment state, to 1e-6.

use std::collections::HashMap;
use std::path::PathBuf;

use flan_train::optim::{Adafactor, AdafactorConfig, Optimizer};
use tch::{Kind, Tensor};

const PARAMS: [&str; 3] = ["cube", "matrix", "vector"];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = fixture_dir();
    let tensors =
        Tensor::read_safetensors(dir.join("adafactor.safetensors")).expect("fixture tensors");
    let meta = std::fs::read_to_string(dir.join("adafactor.json")).expect("fixture metadata");
    (
        tensors.into_iter().collect(),
        serde_json::from_str(&meta).expect("fixture json"),
    )
}

/// Our config for one of the fixture's cases (transformers' keyword arguments).
fn config_of(settings: &serde_json::Value) -> (AdafactorConfig, f64) {
    let flag = |k: &str| settings[k].as_bool().expect("bool setting");
    let num = |k: &str, default: f64| settings.get(k).and_then(|v| v.as_f64()).unwrap_or(default);
    let cfg = AdafactorConfig {
        relative_step: flag("relative_step"),
        scale_parameter: flag("scale_parameter"),
        warmup_init: flag("warmup_init"),
        beta1: settings.get("beta1").and_then(|v| v.as_f64()),
        weight_decay: num("weight_decay", 0.0),
        clip_threshold: num("clip_threshold", 1.0),
        ..AdafactorConfig::default()
    };
    (cfg, num("lr", 0.0))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().to_kind(Kind::Double).double_value(&[])
}

#[test]
fn adafactor_matches_transformers() {
    let (fx, meta) = load();
    let steps = meta["steps"].as_u64().expect("steps") as usize;
    let cases = meta["cases"].as_object().expect("cases");
    assert_eq!(
        cases.len(),
        4,
        "the fixture has the flan, relative, warmup_init and momentum cases"
    );
    for (case, settings) in cases {
        let (cfg, lr) = config_of(settings);
        let mut opt = Adafactor::new(cfg).expect("valid settings");
        let params: Vec<(String, Tensor)> = PARAMS
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    fx[&format!("{case}.init.{p}")]
                        .copy()
                        .set_requires_grad(true),
                )
            })
            .collect();
        for step in 1..=steps {
            for (name, p) in &params {
                crate::common::set_grad(p, &fx[&format!("{case}.step{step}.grad.{name}")]);
            }
            opt.step(&params, lr).expect("step");
            for (name, p) in &params {
                let want = &fx[&format!("{case}.step{step}.param.{name}")];
                let diff = max_abs_diff(&p.detach(), want);
                assert!(
                    diff < 1e-6,
                    "{case}: `{name}` after step {step} differs from transformers by {diff:e}"
                );
            }
        }
        // The moments themselves agree, under transformers' slot names.
        let state: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        let mut compared = 0;
        for (key, want) in fx
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{case}.state.")))
        {
            let rest = &key[format!("{case}.state.").len()..];
            let (param, slot) = rest.split_once('.').expect("param.slot");
            let ours = state
                .get(&format!("{param}::{slot}"))
                .unwrap_or_else(|| panic!("{case}: no state `{param}::{slot}`"));
            let diff = max_abs_diff(ours, want);
            assert!(
                diff < 1e-6 * want.abs().max().double_value(&[]).max(1.0),
                "{case}: state {rest} differs by {diff:e}"
            );
            compared += 1;
        }
        assert!(
            compared >= 4,
            "{case}: expected the factored and unfactored moments in the fixture"
        );
        for name in PARAMS {
            let step = &state[&format!("{name}::step")];
            assert_eq!(step.int64_value(&[0]), steps as i64);
        }
    }
}

#[test]
fn bf16_parameters_are_updated_in_fp32() {
    // transformers upcasts half-precision parameters for the update and copies back.
    let (fx, meta) = load();
    let (cfg, lr) = config_of(&meta["cases"]["flan"]);
    let mut opt = Adafactor::new(cfg).unwrap();
    let init = fx["flan.init.matrix"]
        .to_kind(Kind::BFloat16)
        .set_requires_grad(true);
    let params = vec![("matrix".to_string(), init.shallow_clone())];
    let grad = fx["flan.step1.grad.matrix"].to_kind(Kind::BFloat16);
    (&init * &grad).sum(Kind::Float).backward();
    opt.step(&params, lr).unwrap();
    assert_eq!(init.kind(), Kind::BFloat16);
    // Reference: the fp32 update applied to the bf16 start, rounded once at the end.
    let mut reference = Adafactor::new(config_of(&meta["cases"]["flan"]).0).unwrap();
    let p32 = fx["flan.init.matrix"]
        .to_kind(Kind::BFloat16)
        .to_kind(Kind::Float)
        .set_requires_grad(true);
    (&p32 * grad.to_kind(Kind::Float))
        .sum(Kind::Float)
        .backward();
    reference
        .step(&[("matrix".to_string(), p32.shallow_clone())], lr)
        .unwrap();
    let diff = max_abs_diff(
        &init.detach().to_kind(Kind::Float),
        &p32.detach().to_kind(Kind::BFloat16).to_kind(Kind::Float),
    );
    assert_eq!(diff, 0.0);
}
