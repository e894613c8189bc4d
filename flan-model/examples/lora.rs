//! Makes a LoRA adapter with flan-model on a Hugging Face T5 directory and saves it in PEFT's
//! format, with the adapted model's logits on the directory's reference batch, so that
//! `xtask/fixtures/t5_lora.py` can check that peft loads it and computes the same logits.
//!
//! usage: cargo run -p flan-model --example lora -- BASE_DIR OUT_DIR

use flan_model::{LoraConfig, LoraInit, ModuleSelector, T5ForConditionalGeneration};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, output] = args.as_slice() else {
        eprintln!("usage: lora BASE_DIR OUT_DIR");
        std::process::exit(2);
    };
    let run = || -> flan_model::Result<()> {
        let (model, _) =
            T5ForConditionalGeneration::from_pretrained(base, Device::Cpu, Kind::Float)?;
        let targets = ["q", "k", "v", "o", "wi_0", "wi_1", "wi", "wo", "lm_head"];
        let config = LoraConfig::new(
            4,
            8.0,
            0.05,
            ModuleSelector::Names(targets.iter().map(|s| s.to_string()).collect()),
        );
        tch::manual_seed(7);
        model.add_lora(&config, LoraInit::Peft)?;
        // PEFT starts B at zero; random B makes the check see every adapter.
        tch::no_grad(|| {
            for (_, p) in model.adapter_parameters() {
                p.shallow_clone().copy_(&(p.randn_like() * 0.2));
            }
        });
        let out = Path::new(output);
        model.save_adapter(out, Some(base))?;
        let reference: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(Path::new(base).join("reference.safetensors"))?
                .into_iter()
                .collect();
        let (logits, _) = tch::no_grad(|| {
            model.forward_with_labels(
                &reference["input_ids"],
                &reference["attention_mask"],
                &reference["labels"],
                false,
            )
        });
        Tensor::write_safetensors(&[("logits", logits)], out.join("flan_logits.safetensors"))?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("lora: {e}");
        std::process::exit(1);
    }
}
