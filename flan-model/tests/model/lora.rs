//! LoRA adapters against peft: adapters peft made load here with peft's logits, merged and
//! unmerged agree, what flan saves has peft's names and fields (the fixture script also loads it
//! in peft: `xtask/fixtures/t5_lora.py`), and bad adapters are refused by name.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use flan_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use flan_model::{Error, LoraConfig, LoraInit, ModuleSelector, T5ForConditionalGeneration};
use tch::Tensor;

use crate::common::*;

/// (adapter fixture, base fixture, peft merged it: its model does not tie an adapted head; in
/// transformers v1_1's head is tied to the embedding, which flan's v1_1 is not).
const CASES: [(&str, &str, bool); 3] = [
    ("v1_1_qv_head", "v1_1", false),
    ("v1_0_all_linear", "v1_0", true),
    ("odd_regex", "odd", true),
];

fn adapter_dir(case: &str) -> PathBuf {
    fixture_dir("lora").join(case)
}

fn adapter_reference(case: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(adapter_dir(case).join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn logits(model: &T5ForConditionalGeneration, base: &str) -> Tensor {
    let r = reference_tensors(base);
    tch::no_grad(|| {
        model
            .forward_with_labels(&r["input_ids"], &r["attention_mask"], &r["labels"], false)
            .0
    })
}

/// max |a - b| over max |b|: merging reorders a sum per weight, so the merged logits differ from
/// the unmerged ones by rounding relative to the logits' scale, not to each logit.
fn rel_to_scale(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

fn keys(path: &Path) -> BTreeSet<String> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn adapters_made_by_peft_give_peft_logits() {
    for (case, base, _) in CASES {
        let model = load(base);
        let plain = logits(&model, base);
        let report = model.load_adapter(&adapter_dir(case)).unwrap();
        let got = logits(&model, base);
        let want = &adapter_reference(case)["logits"];
        let err = max_rel_err(&got, want);
        assert!(err < 1e-5, "{case}: logits rel err {err}");
        // The adapter changes the model: a loader that applied nothing would fail above, and
        // this says by how much it had to.
        assert!(
            max_rel_err(&plain, want) > 1e-2,
            "{case}: adapter too weak to test"
        );
        assert!(!report.modules.is_empty());
        if case == "v1_1_qv_head" {
            assert_eq!(
                report.replaced,
                [
                    "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    "lm_head.base_layer.weight",
                ]
            );
            // wo has rank 2 by rank_pattern, the rest rank 4.
            let ranks: HashMap<String, i64> = model
                .adapter_parameters()
                .into_iter()
                .filter(|(n, _)| n.ends_with("lora_A.weight"))
                .map(|(n, t)| (n, t.size()[0]))
                .collect();
            assert_eq!(
                ranks["decoder.block.1.layer.2.DenseReluDense.wo.lora_A.weight"],
                2
            );
            assert_eq!(
                ranks["decoder.block.1.layer.0.SelfAttention.q.lora_A.weight"],
                4
            );
        }
    }
}

#[test]
fn merged_adapters_give_the_unmerged_logits() {
    for (case, base, peft_merged) in CASES {
        let model = load(base);
        model.load_adapter(&adapter_dir(case)).unwrap();
        let unmerged = logits(&model, base);
        let merged_modules = model.merge_adapter().unwrap();
        assert!(!merged_modules.is_empty());
        assert!(model.adapter_parameters().is_empty());
        let merged = logits(&model, base);
        let reference = adapter_reference(case);
        let err = rel_to_scale(&merged, &unmerged);
        assert!(err < 1e-5, "{case}: merged vs unmerged rel err {err}");
        if peft_merged {
            let err = rel_to_scale(&merged, &reference["merged_logits"]);
            assert!(err < 1e-5, "{case}: merged vs peft's merged rel err {err}");
        }
        // The merged model saves as a plain checkpoint that loads with the same logits.
        let dir = tempfile::tempdir().unwrap();
        model.save_pretrained(dir.path()).unwrap();
        let (again, _) = T5ForConditionalGeneration::from_pretrained(
            dir.path(),
            tch::Device::Cpu,
            tch::Kind::Float,
        )
        .unwrap();
        assert!(logits(&again, base).equal(&merged));
    }
}

#[test]
fn merging_into_a_head_tied_to_the_embedding_is_refused_and_changes_nothing() {
    let _rng = torch_rng();
    let model = load("v1_0");
    let config = LoraConfig::new(
        2,
        4.0,
        0.0,
        ModuleSelector::Names(vec!["lm_head".into(), "q".into()]),
    );
    tch::manual_seed(5);
    model.add_lora(&config, LoraInit::Peft).unwrap();
    tch::no_grad(|| {
        for (_, p) in model.adapter_parameters() {
            p.shallow_clone().copy_(&(p.randn_like() * 0.2));
        }
    });
    let unmerged = logits(&model, "v1_0");
    let before: Vec<Tensor> = model
        .named_parameters()
        .iter()
        .map(|(_, t)| t.copy())
        .collect();
    let err = model.merge_adapter().unwrap_err().to_string();
    assert!(
        err.contains("lm_head") && err.contains("shared.weight"),
        "{err}"
    );
    for ((name, t), b) in model.named_parameters().iter().zip(&before) {
        assert!(t.equal(b), "refused merge changed {name}");
    }
    assert!(logits(&model, "v1_0").equal(&unmerged));
}

#[test]
fn saved_adapters_have_peft_keys_and_fields_and_load_back_exactly() {
    for (case, base, _) in CASES {
        let model = load(base);
        model.load_adapter(&adapter_dir(case)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        model.save_adapter(dir.path(), None).unwrap();
        assert_eq!(
            keys(&dir.path().join(ADAPTER_WEIGHTS_FILE)),
            keys(&adapter_dir(case).join(ADAPTER_WEIGHTS_FILE)),
            "{case}"
        );
        let json = |d: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(d.join(ADAPTER_CONFIG_FILE)).unwrap())
                .unwrap()
        };
        let (mut ours, mut theirs) = (json(dir.path()), json(&adapter_dir(case)));
        // peft writes target_modules as a set (any order).
        for v in [&mut ours, &mut theirs] {
            if let Some(list) = v["target_modules"].as_array_mut() {
                list.sort_by_key(|x| x.to_string());
            }
        }
        assert_eq!(ours, theirs, "{case}");
        let again = load(base);
        again.load_adapter(dir.path()).unwrap();
        assert!(logits(&again, base).equal(&logits(&model, base)), "{case}");
    }
}

#[test]
fn a_fresh_adapter_starts_as_the_base_and_names_peft_fields() {
    let _rng = torch_rng();
    let model = load("v1_1");
    let plain = logits(&model, "v1_1");
    let config = LoraConfig::new(
        8,
        16.0,
        0.1,
        ModuleSelector::Names(vec!["q".into(), "v".into()]),
    );
    tch::manual_seed(3);
    let report = model.add_lora(&config, LoraInit::Peft).unwrap();
    // q and v of 2 encoder self-attentions and 2 x 2 decoder attentions.
    assert_eq!(report.modules.len(), 12);
    assert_eq!(report.adapter_parameters, 12 * 8 * (32 + 32));
    assert!(logits(&model, "v1_1").equal(&plain), "B starts at zero");
    let a = &model.adapter_parameters()[0].1;
    let bound = 1.0 / 32f64.sqrt();
    assert!(a.abs().max().double_value(&[]) <= bound && a.std(true).double_value(&[]) > 0.0);
    let dir = tempfile::tempdir().unwrap();
    model
        .save_adapter(dir.path(), Some("google/flan-t5-small"))
        .unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(ADAPTER_CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    for (field, want) in [
        ("peft_type", serde_json::json!("LORA")),
        ("task_type", serde_json::json!("SEQ_2_SEQ_LM")),
        (
            "base_model_name_or_path",
            serde_json::json!("google/flan-t5-small"),
        ),
        ("r", serde_json::json!(8)),
        ("lora_alpha", serde_json::json!(16)),
        ("target_modules", serde_json::json!(["q", "v"])),
        ("bias", serde_json::json!("none")),
        ("use_dora", serde_json::json!(false)),
    ] {
        assert_eq!(saved[field], want, "{field}");
    }
    let names = keys(&dir.path().join(ADAPTER_WEIGHTS_FILE));
    assert!(
        names.contains("base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight")
    );
    assert!(
        names.contains("base_model.model.decoder.block.1.layer.1.EncDecAttention.v.lora_B.weight")
    );
    assert_eq!(names.len(), 24);
}

/// A copy of an adapter fixture with its config edited by `edit`.
fn edited_adapter(case: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter_dir(case).join(ADAPTER_CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join(ADAPTER_CONFIG_FILE), config.to_string()).unwrap();
    std::fs::copy(
        adapter_dir(case).join(ADAPTER_WEIGHTS_FILE),
        dir.path().join(ADAPTER_WEIGHTS_FILE),
    )
    .unwrap();
    dir
}

#[test]
fn adapters_that_do_not_fit_are_refused_by_name_and_leave_the_model_as_it_was() {
    let model = load("v1_0");
    let plain = logits(&model, "v1_0");
    // DoRA computes something else: refused, not ignored.
    let dora = edited_adapter("v1_0_all_linear", |c| c["use_dora"] = true.into());
    let err = model.load_adapter(dora.path()).unwrap_err();
    assert!(matches!(err, Error::InvalidAdapter { .. }), "{err}");
    assert!(err.to_string().contains("use_dora"), "{err}");
    // Fewer targets than the file has tensors for: the extra ones are listed.
    let fewer = edited_adapter("v1_0_all_linear", |c| {
        c["target_modules"] = serde_json::json!(["q"])
    });
    let err = model.load_adapter(fewer.path()).unwrap_err();
    match &err {
        Error::AdapterMismatch {
            missing,
            unexpected,
            ..
        } => {
            assert!(missing.is_empty(), "{err}");
            assert!(
                unexpected
                    .iter()
                    .any(|k| k.ends_with("SelfAttention.k.lora_A.weight")),
                "{err}"
            );
        }
        other => panic!("expected AdapterMismatch, got {other}"),
    }
    // A rank the file does not have: the shape error names the tensor.
    let rank = edited_adapter("v1_0_all_linear", |c| c["r"] = 5.into());
    let err = model.load_adapter(rank.path()).unwrap_err().to_string();
    assert!(
        err.contains("lora_") && err.contains("[5,") || err.contains(", 5]"),
        "{err}"
    );
    // A pickled adapter only: told how to convert it.
    let pickle = tempfile::tempdir().unwrap();
    std::fs::copy(
        adapter_dir("v1_0_all_linear").join(ADAPTER_CONFIG_FILE),
        pickle.path().join(ADAPTER_CONFIG_FILE),
    )
    .unwrap();
    std::fs::write(pickle.path().join("adapter_model.bin"), b"not read").unwrap();
    let err = model.load_adapter(pickle.path()).unwrap_err().to_string();
    assert!(err.contains("safe_serialization=True"), "{err}");
    model.remove_adapter();
    assert!(logits(&model, "v1_0").equal(&plain));
}
