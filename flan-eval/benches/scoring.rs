//! Speed of the scoring path: answer extraction and re-scoring over all 6,511 BBH examples with
//! synthetic chain-of-thought outputs, numeric extraction, and SQuAD normalisation.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flan_eval::rescore::{rescore_records, PredictionRecord};
use flan_eval::{bbh, extract, squad, Benchmark, Mode};
use std::path::Path;

fn bbh_records() -> Vec<PredictionRecord> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bbh");
    let mut records = Vec::new();
    for name in bbh::task_names(&dir).expect("BBH data in ../shared/data/bbh") {
        let (task_path, _) = bbh::task_paths(&dir, &name);
        for ex in bbh::read_task(&task_path).expect("task file").examples {
            records.push(PredictionRecord {
                line: records.len() + 1,
                id: None,
                task: Some(name.clone()),
                outputs: vec![format!(
                    "Let us reason about it step by step for a while, with numbers 1, 2 and 3. So the answer is {}.",
                    ex.target
                )],
                targets: vec![ex.target],
            });
        }
    }
    records
}

fn scoring(c: &mut Criterion) {
    let records = bbh_records();
    c.bench_function("rescore_bbh_cot_6511", |b| {
        b.iter(|| rescore_records(black_box(&records), Benchmark::Bbh, Mode::Cot, None).unwrap())
    });
    let math = "Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day at the farmer's market. The answer is 1,018.";
    c.bench_function("math_answer", |b| {
        b.iter(|| extract::math_answer(black_box(math), &["The answer is", "答えは"]))
    });
    c.bench_function("squad_f1", |b| {
        b.iter(|| {
            squad::f1(
                black_box("The Eiffel Tower, in Paris!"),
                black_box("Eiffel tower"),
            )
        })
    });
}

criterion_group!(benches, scoring);
criterion_main!(benches);
