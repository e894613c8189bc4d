//! Fuzz target of the training config (see the `flan-fuzz` crate): `TrainConfig::load` on
//! mutated versions of the shipped configs with arbitrary `--set key=value` overrides, and
//! `TrainConfig::from_overrides` on overrides alone, then the checks a run makes before it
//! starts (`validate`, the dtypes, writing the config back as TOML). No input may panic; an
//! error about the file must name it.
//!
//! `FLAN_FUZZ_CASES=2000 cargo test -p flan-train --test fuzz -- --nocapture` runs more inputs.

use flan_fuzz::{documents, fuzz, names_file, Scratch};
use flan_train::config::TrainConfig;
use proptest::prelude::*;
use std::path::Path;

/// `key=value` overrides: known keys with odd values, and arbitrary text.
fn overrides() -> impl Strategy<Value = Vec<String>> {
    let key = prop_oneof![
        Just("train.steps"),
        Just("schedule.lr"),
        Just("schedule.kind"),
        Just("schedule.warmup_steps"),
        Just("batch.size"),
        Just("batch.accumulate"),
        Just("optimizer.kind"),
        Just("model.dropout"),
        Just("model.pretrained"),
        Just("model.config"),
        Just("data.input_len"),
        Just("data.target_len"),
        Just("data.pack"),
        Just("checkpoint.every"),
        Just("checkpoint.keep_last"),
        Just("seed"),
        Just("device"),
        Just("dtype"),
        Just("train"),
        Just("train.freeze"),
        Just("train.activation_checkpointing"),
        Just("a.b.c"),
    ];
    let value = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"\"".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("true".to_string()),
        Just(r#"["encoder.*", "*.SelfAttention.?.weight"]"#.to_string()),
        Just(r#"["", "*"]"#.to_string()),
        "[ -~]{0,12}",
    ];
    let one = prop_oneof![
        4 => (key, value).prop_map(|(k, v)| format!("{k}={v}")),
        1 => any::<String>(),
    ];
    proptest::collection::vec(one, 0..4)
}

fn exercise(cfg: &TrainConfig) -> Result<(), String> {
    let _ = cfg.validate();
    let _ = cfg.kind();
    let _ = cfg.autocast_kind();
    let _ = cfg.to_toml();
    Ok(())
}

#[test]
fn train_config() {
    let scratch = Scratch::new();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/finetune-default");
    let seeds = vec![
        std::fs::read(configs.join("train.toml")).unwrap(),
        std::fs::read(configs.join("pretrained.toml")).unwrap(),
    ];
    // The shipped configs start from common.toml (`base`), which sits beside the input.
    scratch.file(
        "common.toml",
        &std::fs::read(configs.join("common.toml")).unwrap(),
    );
    fuzz(
        "flan-train train_config",
        (documents(seeds), overrides()),
        |(bytes, sets)| {
            let path = scratch.file("train.toml", &bytes);
            match TrainConfig::load(&path, &sets) {
                Ok(cfg) => exercise(&cfg),
                Err(flan_train::Error::Override { .. }) => Ok(()),
                Err(e) => {
                    let text = flan_data::error::chain(&e);
                    // Errors about the file name it; the others name a key or an override.
                    if matches!(
                        e,
                        flan_train::Error::ConfigFile { .. }
                            | flan_train::Error::ConfigBase { .. }
                            | flan_train::Error::Io { .. }
                    ) {
                        names_file(&text, &path)
                    } else {
                        Ok(())
                    }
                }
            }
        },
    );
}

#[test]
fn train_overrides() {
    fuzz("flan-train train_overrides", overrides(), |sets| {
        if let Ok(cfg) = TrainConfig::from_overrides(&sets) {
            exercise(&cfg)?;
        }
        Ok(())
    });
}
