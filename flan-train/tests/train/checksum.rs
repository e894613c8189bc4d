//! Damaged checkpoints: 4 KB flipped inside the newest checkpoint's `model.safetensors` or
//! `optimizer.safetensors` (size unchanged) is found by its digest, the run falls back to the
//! previous checkpoint and continues exactly as a run resumed from that checkpoint does; an
//! unreadable `trainer_state.json` is reported, not passed over in silence; with
//! `checkpoint.on_corrupt = "stop"` the run refuses to start, naming the file.

use std::path::Path;

use flan_train::checkpoint::{CheckpointManager, STATE_FILE};
use flan_train::config::OnCorrupt;
use rand::{Rng, SeedableRng};

use crate::common::{losses, TinyData};

const SETTINGS: [&str; 6] = [
    "train.steps=12",
    "checkpoint.every=3",
    "batch.grad_accum=2",
    "model.dropout=0.1",
    "seed=7",
    // AdamW: its state is as large as the weights, so 4 KB fit inside its tensors.
    "optimizer.kind=adamw",
];

/// Inverts 4096 bytes at a seeded position in the tensor data (past the safetensors header), as
/// a bad sector or a stray write would; the size stays the same.
fn flip_4k(path: &Path, seed: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(
        bytes.len() >= header + 4096,
        "{} is too small",
        path.display()
    );
    let at = rand_chacha::ChaCha8Rng::seed_from_u64(seed).gen_range(header..=bytes.len() - 4096);
    for b in &mut bytes[at..at + 4096] {
        *b = !*b;
    }
    let len = bytes.len();
    std::fs::write(path, bytes).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len() as usize, len);
}

#[test]
fn a_damaged_newest_checkpoint_is_found_and_the_previous_one_resumes_exactly() {
    let _rng = crate::common::torch_rng_lock();
    let data = TinyData::new();
    for (i, file) in ["model.safetensors", "optimizer.safetensors"]
        .into_iter()
        .enumerate()
    {
        let run = data.path().join(format!("run-{i}"));
        let first = data
            .trainer(data.config(&run, &SETTINGS))
            .run_until(9)
            .unwrap();
        assert_eq!(first.steps, 9);
        let manager = CheckpointManager::new(&run, 3);
        flip_4k(&manager.dir_of(9).join(file), 19 + i as u64);

        // Found, and named.
        let choice = manager.latest_intact(OnCorrupt::Previous).unwrap();
        assert_eq!(choice.checkpoint.as_ref().unwrap().state.step, 6);
        assert!(choice.verified);
        assert_eq!(choice.rejected.len(), 1);
        let why = choice.rejected[0].to_string();
        assert!(
            why.contains("step-00000009") && why.contains(file) && why.contains("checksum"),
            "{why}"
        );
        let err = manager
            .latest_intact(OnCorrupt::Stop)
            .unwrap_err()
            .to_string();
        assert!(err.contains(file) && err.contains("on_corrupt"), "{err}");

        // The reference: a run resumed from the intact checkpoint of step 6 by name.
        let reference = data.path().join(format!("reference-{i}"));
        let mut trainer = data.trainer(data.config(&reference, &SETTINGS));
        trainer.resume_from(&manager.dir_of(6)).unwrap();
        trainer.run().unwrap();
        drop(trainer);

        // Automatic resume passes over step 9 and continues from step 6 (a new process: a
        // model with another initialisation).
        tch::manual_seed(4242);
        let mut cfg = data.config(&run, &SETTINGS);
        cfg.seed = 7;
        let mut trainer = data.trainer(cfg);
        let from = trainer.resume_latest().unwrap().unwrap();
        assert!(from.ends_with("step-00000006"), "{}", from.display());
        let summary = trainer.run().unwrap();
        assert_eq!((summary.resumed_from, summary.steps), (6, 12));
        drop(trainer);

        let (got, want) = (losses(&run), losses(&reference));
        assert_eq!(got.len(), 12, "metrics read as one run");
        assert_eq!(want.len(), 6);
        for ((step, a), (_, b)) in got[6..].iter().zip(&want) {
            assert!(a.is_finite(), "{file}: step {step}");
            assert_eq!(a.to_bits(), b.to_bits(), "{file}: step {step}: {a} vs {b}");
        }
        // The continued run wrote step 9 anew: intact again.
        let rewritten = flan_train::checkpoint::Checkpoint::open(&manager.dir_of(9)).unwrap();
        assert!(rewritten.verify().unwrap());
    }
}

#[test]
fn an_unreadable_training_state_is_reported() {
    let _rng = crate::common::torch_rng_lock();
    let data = TinyData::new();
    let run = data.path().join("run");
    data.trainer(data.config(&run, &SETTINGS))
        .run_until(6)
        .unwrap();
    let manager = CheckpointManager::new(&run, 3);
    std::fs::write(
        manager.dir_of(6).join(STATE_FILE),
        "{\"format\": 2, \"step\": ",
    )
    .unwrap();
    let choice = manager.latest_intact(OnCorrupt::Previous).unwrap();
    assert_eq!(choice.checkpoint.unwrap().state.step, 3);
    let why = choice.rejected[0].to_string();
    assert!(
        why.contains("step-00000006") && why.contains(STATE_FILE),
        "{why}"
    );
    // Missing altogether: said too.
    std::fs::remove_file(manager.dir_of(6).join(STATE_FILE)).unwrap();
    let why = manager.latest_intact(OnCorrupt::Previous).unwrap().rejected[0].to_string();
    assert!(
        why.contains(STATE_FILE) && why.contains("not a complete checkpoint"),
        "{why}"
    );
    let err = manager
        .latest_intact(OnCorrupt::Stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains(STATE_FILE), "{err}");
}
