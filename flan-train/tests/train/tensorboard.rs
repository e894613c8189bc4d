//! TensorBoard event files: flan's writer gives TensorBoard's own bytes for the same events
//! (`xtask/fixtures/tensorboard_events.py`), and a run that is stopped and resumed leaves event
//! files that, read as TensorBoard reads them, hold exactly the numbers of `metrics.jsonl`.

use std::collections::BTreeMap;
use std::path::Path;

use flan_train::metrics::scalars_of;
use flan_train::tensorboard::{event_files, read_events, record, Event, What};

use crate::common::TinyData;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorboard")
}

fn expected_events() -> Vec<Event> {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    let raw: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    raw.iter()
        .map(|e| Event {
            wall_time: e["wall_time"].as_f64().unwrap(),
            step: e["step"].as_u64().unwrap(),
            what: if let Some(v) = e["file_version"].as_str() {
                What::FileVersion(v.to_string())
            } else if e["session_start"] == true {
                What::SessionStart
            } else {
                What::Scalars(
                    e["scalars"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap().to_string(),
                                p[1].as_f64().unwrap() as f32,
                            )
                        })
                        .collect(),
                )
            },
        })
        .collect()
}

#[test]
fn our_records_are_tensorboards_bytes_and_its_file_reads_back() {
    let want = std::fs::read(fixture().join("reference.tfevents")).unwrap();
    let events = expected_events();
    let ours: Vec<u8> = events.iter().flat_map(record).collect();
    assert_eq!(
        ours, want,
        "byte for byte what TensorBoard's RecordWriter wrote"
    );
    assert_eq!(
        read_events(&fixture().join("reference.tfevents")).unwrap(),
        events
    );
}

/// Scalars by (tag, step) as TensorBoard shows them: files in order, and a `SessionLog.START`
/// at step s drops what earlier files logged from step s on (its `purge_orphaned_data`).
fn as_tensorboard_reads(dir: &Path) -> BTreeMap<(String, u64), f32> {
    let mut shown: BTreeMap<(String, u64), f32> = BTreeMap::new();
    for file in event_files(dir).unwrap() {
        for event in read_events(&file).unwrap() {
            match event.what {
                What::SessionStart => shown.retain(|(_, step), _| *step < event.step),
                What::Scalars(values) => {
                    for (tag, value) in values {
                        shown.insert((tag, event.step), value);
                    }
                }
                _ => {}
            }
        }
    }
    shown
}

#[test]
fn a_stopped_and_resumed_run_shows_the_numbers_of_its_metrics_file() {
    let _rng = crate::common::torch_rng_lock();
    let data = TinyData::new();
    let out = data.path().join("run");
    let settings = ["train.steps=6", "checkpoint.every=2", "seed=3"];
    // Stopped one step after the checkpoint of step 4: steps 5 is logged twice.
    data.trainer(data.config(&out, &settings))
        .run_until(5)
        .unwrap();
    let mut trainer = data.trainer(data.config(&out, &settings));
    trainer.resume_latest().unwrap().expect("a checkpoint");
    trainer.run().unwrap();

    let tb = out.join("tensorboard");
    assert_eq!(event_files(&tb).unwrap().len(), 2, "one file per process");
    let shown = as_tensorboard_reads(&tb);
    let mut want: BTreeMap<(String, u64), f32> = BTreeMap::new();
    for line in std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let (step, scalars) = scalars_of(&record).unwrap();
        for (tag, value) in scalars {
            want.insert((tag, step), value as f32);
        }
    }
    assert_eq!(
        want.keys()
            .map(|(_, s)| *s)
            .collect::<std::collections::BTreeSet<_>>(),
        (1..=6).collect(),
        "metrics.jsonl reads as one run"
    );
    assert!(want.contains_key(&("train/loss".to_string(), 6)));
    assert_eq!(shown, want);
}
