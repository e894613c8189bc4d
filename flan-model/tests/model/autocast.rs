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
fn the_current_region_is_read_without_changing_it() {
    assert_eq!(Autocast::current(Device::Cpu).unwrap(), None);
    for kind in [Kind::BFloat16, Kind::Half] {
        let _region = Autocast::enter(Device::Cpu, kind).unwrap();
        assert_eq!(Autocast::current(Device::Cpu).unwrap(), Some(kind));
        assert_eq!(Autocast::current(Device::Cpu).unwrap(), Some(kind));
        assert!(Autocast::is_enabled(Device::Cpu).unwrap());
    }
    assert_eq!(Autocast::current(Device::Cpu).unwrap(), None);
    assert!(!Autocast::is_enabled(Device::Cpu).unwrap());
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

impl AutocastReference {
    fn made_with(&self, here: &CpuKernels) -> bool {
        self.kernels.iter().any(|k| k.same_kernels(here))
    }
}

/// Every reference of the model, by file name.
fn autocast_references(name: &str) -> Vec<AutocastReference> {
    let dir = fixture_dir(name).join("autocast_bf16");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no references", dir.display());
    files
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
        .collect()
}

/// Norm-wise relative difference.
fn norm_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12)
}

/// One bf16 unit in the last place, relative: 2^-7.
const BF16_ULP: f64 = 1.0 / 128.0;

/// flan-model's logits (as fp32), loss and parameter gradients under autocast, and the fp32
/// references: the logits and loss transformers computed (`reference.safetensors`) and the
/// gradients flan-model computes without autocast.
struct Computed {
    logits: Tensor,
    loss: Tensor,
    grads: HashMap<String, Tensor>,
    fp32_logits: Tensor,
    fp32_loss: Tensor,
    fp32_grads: HashMap<String, Tensor>,
}

fn compute(name: &str) -> Computed {
    let r = reference_tensors(name);
    let grads = |model: &flan_model::T5ForConditionalGeneration| -> HashMap<String, Tensor> {
        model
            .named_parameters()
            .iter()
            .map(|(n, p)| (n.clone(), p.grad()))
            .collect()
    };
    let model = load(name);
    let (logits, loss) = {
        let _autocast = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
        model.forward_with_labels(&r["input_ids"], &r["attention_mask"], &r["labels"], false)
    };
    // Backward runs outside the region, as with torch.autocast.
    loss.backward();
    assert_eq!(logits.kind(), Kind::BFloat16, "{name}");
    let fp32 = load(name);
    let (_, fp32_loss) =
        fp32.forward_with_labels(&r["input_ids"], &r["attention_mask"], &r["labels"], false);
    fp32_loss.backward();
    Computed {
        logits: logits.to_kind(Kind::Float),
        loss: loss.view([1]),
        grads: grads(&model),
        fp32_logits: r["logits"].shallow_clone(),
        fp32_loss: r["loss"].shallow_clone(),
        fp32_grads: grads(&fp32),
    }
}

/// Compares `ours` with one reference: within 1e-6 when `exact`, else within bf16 rounding and
/// at most half the autocast shift of each tensor. The first failure, as a message.
fn compare(
    name: &str,
    ours: &Computed,
    reference: &AutocastReference,
    exact: bool,
) -> Result<(), String> {
    let want = &reference.tensors;
    let want_logits = want["logits"].to_kind(Kind::Float);
    let autocast_shift = max_rel_err(&want_logits, &ours.fp32_logits);
    if autocast_shift <= 1e-3 {
        return Err(format!(
            "{name}: autocast changed nothing ({autocast_shift})"
        ));
    }
    let within = |what: &str, err: f64, shift: f64| {
        let ok = if exact {
            err < 1e-6
        } else {
            err <= BF16_ULP && err < shift / 2.0
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{name}: {what} rel err {err} (autocast shift {shift})"
            ))
        }
    };
    within(
        "logits",
        max_rel_err(&ours.logits, &want_logits),
        autocast_shift,
    )?;
    within(
        "loss",
        max_rel_err(&ours.loss, &want["loss"]),
        max_rel_err(&want["loss"], &ours.fp32_loss),
    )?;
    // transformers 5.x ties a head missing from the files to `shared.weight` (one parameter, one
    // gradient) where flan-model loads a copy: compare the summed gradient.
    let head_tied_there = !want.contains_key("grad.lm_head.weight");
    let tied_sum = |grads: &HashMap<String, Tensor>, pname: &str| match grads.get("lm_head.weight")
    {
        Some(head) if pname == "shared.weight" && head_tied_there => &grads[pname] + head,
        _ => grads[pname].shallow_clone(),
    };
    for (pname, g) in &ours.grads {
        if g.kind() != Kind::Float {
            return Err(format!("{name}: {pname} gradient is not fp32"));
        }
        if pname == "lm_head.weight" && head_tied_there {
            continue;
        }
        let w = &want[&format!("grad.{pname}")];
        // Exact or not, only the fp32 summation order of embedding gradients differs.
        let err = norm_rel_err(&tied_sum(&ours.grads, pname), w);
        let shift = norm_rel_err(&tied_sum(&ours.fp32_grads, pname), w);
        within(&format!("{pname} gradient"), err, shift)?;
    }
    Ok(())
}

/// Where this process runs the kernels a reference was made with (its probe digest is listed),
/// the same casts at the same places must give transformers' numbers: logits, loss and
/// gradients within 1e-6.
///
/// On another kernel path (another CPU, or a cap such as `ONEDNN_MAX_CPU_ISA`), bf16 products sum
/// their fp32 partial products in another order and may round to the neighbouring bf16 value:
/// one bf16 unit in the last place, 2^-7 relative. So the results must lie within 2^-7 of a
/// recorded kernel path (elementwise for logits, relative to max(|x|, 1); norm-wise for
/// gradients) and closer to transformers' autocast result than to the fp32 result by at least
/// half: a cast missing or added moves them by the autocast shift itself (4.9e-3 to 3.2e-2 on
/// these models). The recorded paths themselves differ by up to 1.2e-2 (ATen's scalar loops
/// against AMX), so the nearest one is the one that must match.
#[test]
fn logits_loss_and_gradients_under_bf16_autocast_match_transformers() {
    let here = CpuKernels::detect().unwrap();
    for name in MODELS {
        let ours = compute(name);
        let references = autocast_references(name);
        if let Some(same) = references.iter().find(|r| r.made_with(&here)) {
            if let Err(e) = compare(name, &ours, same, true) {
                panic!("{e} ({} on {})", same.file.display(), here.summary());
            }
            continue;
        }
        eprintln!(
            "{name}: no reference from this kernel path ({}); comparing within bf16 rounding. \
             `cargo xtask fixtures t5_autocast` on this machine adds one.",
            here.summary()
        );
        let verdicts: Vec<String> = references
            .iter()
            .map(|r| match compare(name, &ours, r, false) {
                Ok(()) => String::new(),
                Err(e) => format!("{e} against {}", r.file.display()),
            })
            .collect();
        assert!(
            verdicts.iter().any(String::is_empty),
            "no recorded kernel path within bf16 rounding:\n{}",
            verdicts.join("\n")
        );
    }
}
