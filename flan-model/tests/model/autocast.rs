//! Mixed precision: the `Autocast` guard's switching, and logits, loss and gradients under bf16
//! autocast against transformers under `torch.autocast("cpu", dtype=torch.bfloat16)`.

use std::collections::HashMap;

use flan_model::Autocast;
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

#[test]
fn logits_loss_and_gradients_under_bf16_autocast_match_transformers() {
    for name in MODELS {
        let model = load(name);
        let r = reference_tensors(name);
        let want: HashMap<String, Tensor> =
            Tensor::read_safetensors(fixture_dir(name).join("autocast_bf16.safetensors"))
                .unwrap()
                .into_iter()
                .collect();
        let (logits, loss) = {
            let _autocast = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            model.forward_with_labels(&r["input_ids"], &r["attention_mask"], &r["labels"], false)
        };
        // Backward runs outside the region, as with torch.autocast.
        loss.backward();
        assert_eq!(logits.kind(), Kind::BFloat16, "{name}");
        let logits = logits.to_kind(Kind::Float);
        let want_logits = want["logits"].to_kind(Kind::Float);
        // The same casts at the same places give the same bf16 roundings: equal logits, while
        // autocast itself moves them far from the fp32 reference.
        let err = max_rel_err(&logits, &want_logits);
        let autocast_shift = max_rel_err(&want_logits, &r["logits"]);
        assert!(err < 1e-6, "{name}: logits rel err {err}");
        assert!(
            autocast_shift > 1e-3,
            "{name}: autocast changed nothing ({autocast_shift})"
        );
        let loss_err = max_rel_err(&loss.view([1]), &want["loss"]);
        assert!(
            loss_err < 1e-6,
            "{name}: loss {loss:?} vs {:?}",
            want["loss"]
        );

        // transformers 5.x ties a head missing from the files to `shared.weight` (one
        // parameter, one gradient) where flan-model loads a copy: compare the summed gradient.
        let head_tied_there = !want.contains_key("grad.lm_head.weight");
        let grads: HashMap<&str, Tensor> = model
            .named_parameters()
            .iter()
            .map(|(n, p)| (n.as_str(), p.grad()))
            .collect();
        for (pname, g) in &grads {
            assert_eq!(
                g.kind(),
                Kind::Float,
                "{name}: {pname} gradient is not fp32"
            );
            if *pname == "lm_head.weight" && head_tied_there {
                continue;
            }
            let g = match grads.get("lm_head.weight") {
                Some(head) if *pname == "shared.weight" && head_tied_there => g + head,
                _ => g.shallow_clone(),
            };
            let w = &want[&format!("grad.{pname}")];
            // Only the fp32 summation order of embedding gradients differs.
            let err = (&g - w).norm().double_value(&[]) / w.norm().double_value(&[]).max(1e-12);
            assert!(err < 1e-6, "{name}: {pname} gradient rel err {err}");
        }
    }
}
