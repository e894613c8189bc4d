//! Decoding-step copies of weights and the memory budget: a binary of its own without the test
//! harness, since it sets `FLAN_MEMORY_LIMIT` for the process (other tests read it).
//!
//! With no room, no copy is made and the plans say so; with some room, copies stop where it ends;
//! with plenty, they are made and freed with the plans. The outputs are the plain products' in
//! every case.

use flan_model::generate::{generate, Generated, GenerationConfig};
use flan_model::memory::LIMIT_VAR;
use flan_model::prepacked_linear::PrepackedStats;
use flan_model::step_copies::{held_copy_bytes, DEFAULT_RESERVE};
use flan_model::T5ForConditionalGeneration;
use tch::Tensor;

// The model tests' helpers; this binary uses two of them.
#[path = "model/common.rs"]
#[allow(dead_code)]
mod common;

fn main() {
    let name = "step_copies_keep_within_the_memory_budget_and_change_no_output";
    step_copies_keep_within_the_memory_budget_and_change_no_output();
    println!("test {name} ... ok");
}

type Outputs = (Vec<Vec<Generated>>, Vec<Vec<Generated>>);

/// Greedy outputs at batch 20 and of the first prompt alone (two row counts), and the plans.
fn run(
    model: &T5ForConditionalGeneration,
    ids: &Tensor,
    mask: &Tensor,
) -> (Outputs, PrepackedStats) {
    let greedy = GenerationConfig::greedy(8);
    let batched = generate(model, ids, mask, &greedy).unwrap();
    let single = generate(model, &ids.narrow(0, 0, 1), &mask.narrow(0, 0, 1), &greedy).unwrap();
    ((batched, single), model.prepacked_decoding_stats())
}

fn set_limit(value: &str) {
    std::env::set_var(LIMIT_VAR, value);
}

fn step_copies_keep_within_the_memory_budget_and_change_no_output() {
    let (model, rows) = common::random_model_and_prompts(640, false);
    let (ids, mask) = common::padded(&rows);
    model.set_prepacked_decoding(false);
    let (plain, _) = run(&model, &ids, &mask);
    assert_eq!(held_copy_bytes(), 0);

    // Plenty of room: the stacks (at least) copy their weights; dropping the plans frees them.
    set_limit("1T");
    model.set_prepacked_decoding(true);
    let (outputs, stats) = run(&model, &ids, &mask);
    assert_eq!(outputs, plain, "with every copy");
    assert_eq!(stats.short_of_memory, 0, "{stats:?}");
    assert!(stats.stacked > 0, "{stats:?}");
    let all = held_copy_bytes();
    assert!(all > 0);
    model.set_prepacked_decoding(false);
    assert_eq!(held_copy_bytes(), 0, "the copies go with the plans");

    // No room beyond the call's reserve: no copy at all, the same outputs.
    set_limit(&DEFAULT_RESERVE.to_string());
    model.set_prepacked_decoding(true);
    let (outputs, stats) = run(&model, &ids, &mask);
    assert_eq!(outputs, plain, "without copies");
    assert_eq!(held_copy_bytes(), 0);
    assert!(stats.short_of_memory > 0, "{stats:?}");
    assert_eq!(
        (stats.stacked, stats.in_use, stats.fma, stats.four_lanes),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    model.set_prepacked_decoding(false);

    // Room for half of them: copies stop within it.
    let half = all / 2;
    set_limit(&(DEFAULT_RESERVE + half).to_string());
    model.set_prepacked_decoding(true);
    let (outputs, stats) = run(&model, &ids, &mask);
    assert_eq!(outputs, plain, "with some copies");
    let held = held_copy_bytes();
    assert!(
        held > 0 && held <= half,
        "{held} bytes held, {half} allowed"
    );
    assert!(stats.short_of_memory > 0, "{stats:?}");
    model.set_prepacked_decoding(false);
    assert_eq!(held_copy_bytes(), 0);
    std::env::remove_var(LIMIT_VAR);
}
