//! Loading and saving the Hugging Face layout.

use flan_model::{Error, T5Config, T5ForConditionalGeneration};
use tch::{Device, Kind, Tensor};

use crate::common::*;

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        // The model directory's files; not the autocast references beside them.
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

fn params_equal(a: &T5ForConditionalGeneration, b: &T5ForConditionalGeneration) {
    let pa = a.named_parameters();
    let pb = b.named_parameters();
    assert_eq!(pa.len(), pb.len());
    for ((na, ta), (nb, tb)) in pa.iter().zip(pb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after the round trip");
    }
}

#[test]
fn load_save_load_gives_identical_tensors_single_and_sharded() {
    for name in MODELS {
        let model = load(name);
        let out = tempfile::tempdir().unwrap();
        model.save_pretrained(out.path()).unwrap();
        let (again, report) =
            T5ForConditionalGeneration::from_pretrained(out.path(), Device::Cpu, Kind::Float)
                .unwrap();
        params_equal(&model, &again);
        assert!(report.aliased.is_empty(), "{report:?}");
        assert_eq!(
            T5Config::from_file(out.path().join("config.json"))
                .unwrap()
                .tied_head(),
            model.config().tied_head()
        );
        // The fixtures are bf16 files; what we wrote is fp32 and the config must say so, since
        // transformers 5 loads in the config's dtype.
        let saved = T5Config::from_file(out.path().join("config.json")).unwrap();
        assert_eq!(saved.extra["dtype"], "float32");
        let sharded = tempfile::tempdir().unwrap();
        model
            .save_pretrained_sharded(sharded.path(), Some(40_000))
            .unwrap();
        assert!(sharded
            .path()
            .join("model.safetensors.index.json")
            .is_file());
        assert!(
            sharded
                .path()
                .join("model-00002-of-00006.safetensors")
                .is_file()
                || std::fs::read_dir(sharded.path()).unwrap().count() > 4
        );
        let (from_shards, _) =
            T5ForConditionalGeneration::from_pretrained(sharded.path(), Device::Cpu, Kind::Float)
                .unwrap();
        params_equal(&model, &from_shards);
    }
}

fn rewrite_weights(dir: &std::path::Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &path).unwrap();
}

#[test]
fn missing_and_unexpected_keys_are_named() {
    let dir = copy_fixture("v1_1");
    rewrite_weights(dir.path(), |t| {
        t.retain(|(n, _)| n != "decoder.block.1.layer.0.SelfAttention.q.weight");
        t.push((
            "encoder.block.9.layer.0.SelfAttention.q.weight".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ));
    });
    let err = T5ForConditionalGeneration::from_pretrained(dir.path(), Device::Cpu, Kind::Float)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{text}");
    assert!(
        text.contains("decoder.block.1.layer.0.SelfAttention.q.weight"),
        "{text}"
    );
    assert!(
        text.contains("encoder.block.9.layer.0.SelfAttention.q.weight"),
        "{text}"
    );
}

#[test]
fn shape_mismatch_names_tensor_and_both_shapes() {
    let dir = copy_fixture("v1_0");
    rewrite_weights(dir.path(), |t| {
        for (n, x) in t.iter_mut() {
            if n == "encoder.block.0.layer.1.DenseReluDense.wi.weight" {
                *x = Tensor::zeros([7, 32], (Kind::Float, Device::Cpu));
            }
        }
    });
    let text = T5ForConditionalGeneration::from_pretrained(dir.path(), Device::Cpu, Kind::Float)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("encoder.block.0.layer.1.DenseReluDense.wi.weight"),
        "{text}"
    );
    assert!(
        text.contains("[7, 32]") && text.contains("[48, 32]"),
        "{text}"
    );
}

#[test]
fn legacy_embedding_names_and_obsolete_bias_are_accepted() {
    let dir = copy_fixture("v1_0");
    rewrite_weights(dir.path(), |t| {
        for (n, _) in t.iter_mut() {
            if n == "shared.weight" {
                *n = "encoder.embed_tokens.weight".into();
            }
        }
        t.push((
            "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight".into(),
            Tensor::zeros([32, 4], (Kind::Float, Device::Cpu)),
        ));
    });
    let (model, report) =
        T5ForConditionalGeneration::from_pretrained(dir.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(
        report.aliased,
        vec![(
            "shared.weight".to_string(),
            "encoder.embed_tokens.weight".to_string()
        )]
    );
    assert_eq!(report.ignored.len(), 1);
    params_equal(&model, &load("v1_0"));
}

/// A checkpoint stored in bf16 (as transformers saves with `torch_dtype=torch.bfloat16`) loads
/// as bf16 with nothing converted; an fp32 checkpoint loads as bf16 rounded exactly as PyTorch
/// rounds; a bf16 checkpoint loaded as fp32 is upcast; an fp32 one loaded as f16 keeps the FFN
/// output projections in fp32, as transformers does for f16 only (`_keep_in_fp32_modules`).
/// Random weights, so that most are not bf16 values.
#[test]
fn checkpoints_load_in_either_dtype_bit_for_bit_with_each_conversion_reported() {
    let config = T5Config::from_file(fixture_dir("v1_1").join("config.json")).unwrap();
    tch::manual_seed(11);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let model = T5ForConditionalGeneration::new(&vs.root(), &config).unwrap();
    let f32_dir = tempfile::tempdir().unwrap();
    model.save_pretrained(f32_dir.path()).unwrap();
    let bf16_dir = tempfile::tempdir().unwrap();
    model.save_pretrained(bf16_dir.path()).unwrap();
    let bf16: Vec<(String, Tensor)> = model
        .named_parameters()
        .iter()
        .map(|(n, t)| (n.clone(), t.to_kind(Kind::BFloat16)))
        .collect();
    Tensor::write_safetensors(&bf16, bf16_dir.path().join("model.safetensors")).unwrap();
    let is_wo = |n: &str| n.ends_with("DenseReluDense.wo.weight");
    assert!(model.named_parameters().iter().any(|(n, _)| is_wo(n)));
    let rounded = |n: &str| {
        let (_, t) = &bf16[bf16.iter().position(|(m, _)| m == n).unwrap()];
        t.shallow_clone()
    };
    let cases = [
        (&bf16_dir, Kind::BFloat16, true),
        (&f32_dir, Kind::BFloat16, false),
        (&bf16_dir, Kind::Float, true),
        (&f32_dir, Kind::Half, false),
    ];
    for (dir, kind, stored_bf16) in cases {
        let (loaded, report) =
            T5ForConditionalGeneration::from_pretrained(dir.path(), Device::Cpu, kind).unwrap();
        let what = format!(
            "{kind:?} from a {} file",
            if stored_bf16 { "bf16" } else { "f32" }
        );
        assert_eq!(loaded.kind(), kind, "{what}");
        let mut want_cast = Vec::new();
        for ((name, got), (_, original)) in loaded
            .named_parameters()
            .iter()
            .zip(model.named_parameters())
        {
            let want_kind = if kind == Kind::Half && is_wo(name) {
                Kind::Float
            } else {
                kind
            };
            assert_eq!(got.kind(), want_kind, "{what}: {name}");
            // Exact: bf16 values, or the fp32 original rounded as PyTorch rounds (or kept).
            let want = if stored_bf16 || want_kind == Kind::BFloat16 {
                rounded(name).to_kind(want_kind)
            } else {
                original.to_kind(want_kind)
            };
            assert!(got.equal(&want), "{what}: {name} differs");
            let stored = if stored_bf16 {
                Kind::BFloat16
            } else {
                Kind::Float
            };
            if stored != want_kind {
                want_cast.push((name.clone(), stored));
            }
        }
        let mut cast = report.cast.clone();
        cast.sort_by(|a, b| a.0.cmp(&b.0));
        want_cast.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(cast, want_cast, "{what}");
    }
    // The bf16 copy's rounding changed the random weights, so the exact checks above can fail.
    let shared = &model.named_parameters()[0];
    assert_eq!(shared.0, "shared.weight");
    assert!(!rounded("shared.weight")
        .to_kind(Kind::Float)
        .equal(&shared.1));
}
