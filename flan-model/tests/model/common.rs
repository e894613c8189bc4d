use std::path::PathBuf;

use flan_model::{T5Config, T5ForConditionalGeneration};
use tch::{Device, Kind, Tensor};

pub const MODELS: [&str; 3] = ["v1_1", "v1_0", "odd"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn load(name: &str) -> T5ForConditionalGeneration {
    T5ForConditionalGeneration::from_pretrained(fixture_dir(name), Device::Cpu, Kind::Float)
        .unwrap_or_else(|e| panic!("loading fixture {name}: {e}"))
        .0
}

pub fn reference_tensors(name: &str) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture_dir(name).join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

pub fn reference_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn ids(value: &serde_json::Value) -> Vec<Vec<i64>> {
    serde_json::from_value(value.clone()).unwrap()
}

/// Pads rows with 0 and returns (ids, mask).
pub fn padded(rows: &[Vec<i64>]) -> (Tensor, Tensor) {
    let width = rows.iter().map(Vec::len).max().unwrap();
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for r in rows {
        for j in 0..width {
            flat.push(r.get(j).copied().unwrap_or(0));
            mask.push(i64::from(j < r.len()));
        }
    }
    let shape = [rows.len() as i64, width as i64];
    (
        Tensor::from_slice(&flat).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

/// max |a - b| / max(|b|, 1e-3)-style relative error, elementwise over the tensors.
pub fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).abs();
    let scale = b.abs().clamp_min(1.0);
    (diff / scale).max().double_value(&[])
}

/// libtorch's default generator is process-wide and the tests of this binary run on parallel
/// threads: a test that seeds it with `tch::manual_seed` and expects a repeatable draw, or that
/// draws from it at all, holds this lock.
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A randomly initialised model at the bench's tiny shape with `d_ff` and a tied or untied head,
/// and 20 prompts of 5 to 24 tokens.
pub fn random_model_and_prompts(
    d_ff: i64,
    tied: bool,
) -> (T5ForConditionalGeneration, Vec<Vec<i64>>) {
    let config = T5Config::new_small(8000, 256, 32, d_ff, 2, 3, 8, "gated-gelu", tied);
    let model = {
        let _rng = torch_rng();
        tch::manual_seed(7);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        T5ForConditionalGeneration::new(&vs.root(), &config).unwrap()
    };
    let rows = (0..20i64)
        .map(|r| {
            let mut p: Vec<i64> = (0..5 + r).map(|j| 3 + (r * 131 + j * 17) % 7990).collect();
            p.push(1);
            p
        })
        .collect();
    (model, rows)
}
