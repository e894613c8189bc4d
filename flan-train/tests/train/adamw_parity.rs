//! AdamW against `torch.optim.AdamW` on the same tensors (fixture written by
//! `xtask/fixtures/adamw.py`): every parameter after each of four steps with a changing learning
//! rate, and the final moments, to 1e-6, under three settings.

use std::collections::HashMap;
use std::path::PathBuf;

use flan_train::optim::{AdamW, AdamWConfig, Optimizer};
use tch::{Kind, Tensor};

const PARAMS: [&str; 3] = ["cube", "matrix", "vector"];

fn load() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tensors = Tensor::read_safetensors(dir.join("adamw.safetensors")).expect("fixture tensors");
    let meta = std::fs::read_to_string(dir.join("adamw.json")).expect("fixture metadata");
    (
        tensors.into_iter().collect(),
        serde_json::from_str(&meta).expect("fixture json"),
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().to_kind(Kind::Double).double_value(&[])
}

#[test]
fn adamw_matches_torch() {
    let (fx, meta) = load();
    let steps = meta["steps"].as_u64().expect("steps") as usize;
    let lrs: Vec<f64> = meta["lrs"]
        .as_array()
        .expect("lrs")
        .iter()
        .map(|v| v.as_f64().expect("lr"))
        .collect();
    let cases = meta["cases"].as_object().expect("cases");
    assert_eq!(
        cases.len(),
        3,
        "the fixture has the defaults, decay and slow cases"
    );
    for (case, s) in cases {
        let num = |k: &str| s[k].as_f64().expect("number setting");
        let mut opt = AdamW::new(AdamWConfig {
            beta1: num("beta1"),
            beta2: num("beta2"),
            eps: num("eps"),
            weight_decay: num("weight_decay"),
        })
        .expect("valid settings");
        let params: Vec<(String, Tensor)> = PARAMS
            .iter()
            .map(|p| {
                let init = fx[&format!("{case}.init.{p}")].copy();
                (p.to_string(), init.set_requires_grad(true))
            })
            .collect();
        for step in 1..=steps {
            for (name, p) in &params {
                crate::common::set_grad(p, &fx[&format!("{case}.step{step}.grad.{name}")]);
            }
            opt.step(&params, lrs[step - 1]).expect("step");
            for (name, p) in &params {
                let want = &fx[&format!("{case}.step{step}.param.{name}")];
                let diff = max_abs_diff(&p.detach(), want);
                assert!(
                    diff < 1e-6,
                    "{case}: `{name}` after step {step} differs from torch by {diff:e}"
                );
            }
        }
        let state: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        for name in PARAMS {
            for slot in ["exp_avg", "exp_avg_sq"] {
                let want = &fx[&format!("{case}.state.{name}.{slot}")];
                let ours = &state[&format!("{name}::{slot}")];
                let diff = max_abs_diff(ours, want);
                assert!(
                    diff < 1e-6 * want.abs().max().double_value(&[]).max(1.0),
                    "{case}: {name} {slot} differs by {diff:e}"
                );
            }
            assert_eq!(
                state[&format!("{name}::step")].int64_value(&[0]),
                steps as i64
            );
        }
    }
}
