//! Mixed precision: the `Autocast` guard's switching, and logits, loss and gradients under bf16
//! autocast against transformers under `torch.autocast("cpu", dtype=torch.bfloat16)`.

use std::collections::HashMap;

use std::path::PathBuf;

use flan_model::{Autocast, CpuKernels};
use tch::{Device, Kind, Tensor};

use crate::common::*;

#[test]
fn autocast_turns_matmuls_bf16_and_restores_the_previous_state_when_dropped() {
    let (a, b) = {
        let _rng = torch_rng();
        (
            Tensor::randn([4, 8], (Kind::Float, Device::Cpu)),
            Tensor::randn([8, 3], (Kind::Float, Device::Cpu)),
        )
    };
    assert!(!Autocast::is_enabled(Device::Cpu).unwrap());
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
    {
        let _outer = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
        assert!(Autocast::is_enabled(Device::Cpu).unwrap());
        assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        // Reductions stay in the input's precision under autocast.
        assert_eq!(a.sum(Kind::Float).kind(), Kind::Float);
        {
            let _inner = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        }
        // Leaving the inner region keeps the outer one on.
        assert!(Autocast::is_enabled(Device::Cpu).unwrap());
        assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
    }
    assert!(!Autocast::is_enabled(Device::Cpu).unwrap());
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
}

#[test]
fn autocast_rejects_a_full_precision_dtype() {
    let err = Autocast::enter(Device::Cpu, Kind::Float)
        .err()
        .expect("f32 is no lower precision");
    assert!(err.to_string().contains("bf16 or f16"), "{err}");
    assert!(!Autocast::is_enabled(Device::Cpu).unwrap());
}

/// transformers' results under autocast for one model, and the CPU kernel paths that computed
/// them (see `xtask/fixtures/t5_autocast.py` and `flan_model::cpu_kernels`).
struct AutocastReference {
    tensors: HashMap<String, Tensor>,
    kernels: Vec<CpuKernels>,
    file: PathBuf,
}

/// The model's reference made on this process's kernel path (`true`), else the first by name.
fn autocast_reference(name: &str, here: &CpuKernels) -> (AutocastReference, bool) {
    let dir = fixture_dir(name).join("autocast_bf16");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let references: Vec<AutocastReference> = files
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(&file).unwrap();
            let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            let json = header
                .metadata()
                .as_ref()
                .and_then(|m| m.get("cpu_kernels").cloned())
                .unwrap_or_else(|| panic!("{}: no cpu_kernels metadata", file.display()));
            AutocastReference {
                tensors: Tensor::read_safetensors(&file)
                    .unwrap()
                    .into_iter()
                    .collect(),
                kernels: serde_json::from_str(&json).unwrap(),
                file,
            }
        })
        .collect();
    assert!(!references.is_empty(), "{}: no references", dir.display());
    let same = references
        .iter()
        .position(|r| r.kernels.iter().any(|k| k.same_kernels(here)));
    let mut references = references;
    match same {
        Some(i) => (references.swap_remove(i), true),
        None => (references.swap_remove(0), false),
    }
}

/// Norm-wise relative difference.
fn norm_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12)
}

/// Where this process runs transformers' kernels (the reference's probe digest equals ours), the
/// same casts at the same places must give transformers' numbers: logits and loss within 1e-6,
/// gradients too (only the fp32 summation order of embedding gradients differs).
///
/// On another kernel path (another CPU, or a cap such as `ONEDNN_MAX_CPU_ISA`), bf16 products sum
/// their fp32 partial products in another order and may round to the neighbouring bf16 value:
/// one bf16 unit in the last place, 2^-7 relative. So each result must lie within 2^-7 of the
/// reference (elementwise for logits, relative to max(|x|, 1); norm-wise for gradients; the
/// fixtures' own spread across the AMX, AVX512-BF16, AVX-512 and AVX2 paths was at most 4.6e-3),
/// and closer to transformers' autocast result than to the fp32 result by at least half: a cast
/// missing or added moves it by the autocast shift itself (4.9e-3 to 3.2e-2 on these models).
#[test]
fn logits_loss_and_gradients_under_bf16_autocast_match_transformers() {
    const BF16_ULP: f64 = 1.0 / 128.0;
    let here = CpuKernels::detect().unwrap();
    for name in MODELS {
        let (reference, exact) = autocast_reference(name, &here);
        let want = &reference.tensors;
        if !exact {
            eprintln!(
                "{name}: no fixture from this kernel path ({}); comparing with {} ({}) within \
                 bf16 rounding. `cargo xtask fixtures t5_autocast` on this machine adds one.",
                here.summary(),
                reference.file.display(),
                reference.kernels[0].summary()
            );
        }
        let model = load(name);
        let r = reference_tensors(name);
        let (logits, loss) = {
            let _autocast = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            model.forward_with_labels(&r["input_ids"], &r["attention_mask"], &r["labels"], false)
        };
        // Backward runs outside the region, as with torch.autocast.
        loss.backward();
        assert_eq!(logits.kind(), Kind::BFloat16, "{name}");
        let logits = logits.to_kind(Kind::Float);
        let want_logits = want["logits"].to_kind(Kind::Float);
        let err = max_rel_err(&logits, &want_logits);
        let autocast_shift = max_rel_err(&want_logits, &r["logits"]);
        assert!(
            autocast_shift > 1e-3,
            "{name}: autocast changed nothing ({autocast_shift})"
        );
        let loss_err = max_rel_err(&loss.view([1]), &want["loss"]);
        let loss_shift = max_rel_err(&want["loss"], &r["loss"]);
        if exact {
            // The same casts at the same places give the same bf16 roundings: equal logits,
            // while autocast itself moves them far from the fp32 reference.
            assert!(err < 1e-6, "{name}: logits rel err {err}");
            assert!(
                loss_err < 1e-6,
                "{name}: loss {loss:?} vs {:?}",
                want["loss"]
            );
        } else {
            assert!(
                err <= BF16_ULP && err < autocast_shift / 2.0,
                "{name}: logits rel err {err} (autocast shift {autocast_shift})"
            );
            assert!(
                loss_err <= BF16_ULP && loss_err < loss_shift / 2.0,
                "{name}: loss {loss:?} vs {:?} (autocast shift {loss_shift})",
                want["loss"]
            );
        }

        // The fp32 gradients, for the autocast shift of each gradient.
        let fp32_grads: HashMap<String, Tensor> = if exact {
            HashMap::new()
        } else {
            let fp32 = load(name);
            let (_, loss) = fp32.forward_with_labels(
                &r["input_ids"],
                &r["attention_mask"],
                &r["labels"],
                false,
            );
            loss.backward();
            fp32.named_parameters()
                .iter()
                .map(|(n, p)| (n.clone(), p.grad()))
                .collect()
        };

        // transformers 5.x ties a head missing from the files to `shared.weight` (one
        // parameter, one gradient) where flan-model loads a copy: compare the summed gradient.
        let head_tied_there = !want.contains_key("grad.lm_head.weight");
        let tied_sum = |grads: &HashMap<String, Tensor>, pname: &str, g: &Tensor| match grads
            .get("lm_head.weight")
        {
            Some(head) if pname == "shared.weight" && head_tied_there => g + head,
            _ => g.shallow_clone(),
        };
        let grads: HashMap<String, Tensor> = model
            .named_parameters()
            .iter()
            .map(|(n, p)| (n.clone(), p.grad()))
            .collect();
        for (pname, g) in &grads {
            assert_eq!(
                g.kind(),
                Kind::Float,
                "{name}: {pname} gradient is not fp32"
            );
            if pname == "lm_head.weight" && head_tied_there {
                continue;
            }
            let g = tied_sum(&grads, pname, g);
            let w = &want[&format!("grad.{pname}")];
            let err = norm_rel_err(&g, w);
            if exact {
                // Only the fp32 summation order of embedding gradients differs.
                assert!(err < 1e-6, "{name}: {pname} gradient rel err {err}");
            } else {
                let shift = norm_rel_err(&tied_sum(&fp32_grads, pname, &fp32_grads[pname]), w);
                assert!(
                    err <= BF16_ULP && err < shift / 2.0,
                    "{name}: {pname} gradient rel err {err} (autocast shift {shift})"
                );
            }
        }
    }
}
