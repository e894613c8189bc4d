//! Data parallelism through the trainer, two processes on loopback (Gloo): 2 ranks × batch b
//! end with the parameters of 1 process × batch 2b on the same examples, with Adafactor and with
//! AdamW; both ranks end identical; only rank 0 writes; the checkpoint of the 2-rank run refuses
//! a single-process resume; and a rank killed mid-run makes the other stop with an error in
//! bounded time.

use std::path::Path;
use std::process::Command;

use flan_data::pack::{PackedBatch, TokenizedExample};
use flan_train::distributed::Distributed;
use flan_train::model::TrainModel;
use flan_train::source::BatchSource;
use flan_train::trainer::Trainer;
use tch::{Device, Tensor};

use crate::common::{losses, TinyData, TinySeq2Seq};

const STEPS: usize = 3;
/// Examples per rank per step (b); the single process takes 2b.
const PER_RANK: usize = 2;

/// Fixed batches, one per step.
struct FixedBatches {
    batches: Vec<PackedBatch>,
    next: usize,
}

impl BatchSource for FixedBatches {
    fn next_batch(&mut self) -> flan_train::Result<Option<PackedBatch>> {
        // Round and round: a run longer than the list (the kill test) never runs dry.
        let b = self.batches.get(self.next % self.batches.len()).cloned();
        self.next += 1;
        Ok(b)
    }
    fn cursor(&self) -> flan_train::Result<serde_json::Value> {
        Ok(serde_json::json!({ "next": self.next }))
    }
    fn restore(&mut self, cursor: &serde_json::Value) -> flan_train::Result<()> {
        self.next = cursor["next"].as_u64().unwrap_or(0) as usize;
        Ok(())
    }
}

/// The examples of every step: 2b tokenized mixture examples each.
fn step_examples(data: &TinyData) -> Vec<Vec<TokenizedExample>> {
    let examples = data
        .mixture
        .stream(5)
        .next_batch(STEPS * 2 * PER_RANK)
        .unwrap();
    let tokenized: Vec<TokenizedExample> = examples
        .iter()
        .map(|e| TokenizedExample {
            inputs: data.tokenizer.encode(&e.inputs).unwrap(),
            targets: data.tokenizer.encode(&e.targets).unwrap(),
        })
        .collect();
    tokenized.chunks(2 * PER_RANK).map(<[_]>::to_vec).collect()
}

/// Rank `rank` of `world` gets its slice of each step's examples (the whole step when world = 1).
fn batches_for(data: &TinyData, rank: usize, world: usize) -> FixedBatches {
    let per = 2 * PER_RANK / world;
    let batches = step_examples(data)
        .iter()
        .map(|step| PackedBatch::unpacked(&step[rank * per..(rank + 1) * per], 64, 8))
        .collect();
    FixedBatches { batches, next: 0 }
}

fn trainer(
    data: &TinyData,
    out: &Path,
    optimizer: &str,
    rank: usize,
    world: usize,
) -> Trainer<TinySeq2Seq, FixedBatches> {
    let steps = std::env::var("FLAN_DP_STEPS").unwrap_or_else(|_| STEPS.to_string());
    let steps = format!("train.steps={steps}");
    let kind = format!("optimizer.kind={optimizer}");
    let cfg = data.config(
        out,
        &[
            &steps,
            &kind,
            "model.dropout=0.0",
            "checkpoint.every=0",
            "seed=3",
        ],
    );
    tch::manual_seed(3);
    let model = TinySeq2Seq::new(data.tokenizer.vocab_size() as i64, 32, 0.0);
    Trainer::new(cfg, model, batches_for(data, rank, world)).unwrap()
}

fn save_parameters(model: &TinySeq2Seq, path: &Path) {
    let params = model.parameters();
    Tensor::write_safetensors(&params, path).unwrap();
}

/// Not a test on its own: one rank of `two_ranks_take_the_steps_of_one_process_with_twice_the_batch`.
#[test]
#[ignore = "entry point of a child process; run by the data-parallel test"]
fn rank_child() {
    let (Ok(dir), Ok(optimizer)) = (
        std::env::var("FLAN_DP_TEST_DIR"),
        std::env::var("FLAN_DP_OPTIMIZER"),
    ) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let data = TinyData::at(&dir);
    let dist = Distributed::from_env(Device::Cpu)
        .unwrap()
        .expect("WORLD_SIZE=2");
    let (rank, world) = (dist.rank(), dist.world_size());
    let out = dir.join(format!("dp-{optimizer}"));
    let mut trainer = trainer(&data, &out, &optimizer, rank, world)
        .with_distributed(dist)
        .unwrap();
    assert_eq!(trainer.is_primary(), rank == 0);
    // The error chain as a user sees it (flan-dist's c10d error is the source).
    let summary = trainer
        .run()
        .unwrap_or_else(|e| panic!("{}", flan_data::error::chain(&e)));
    let want = std::env::var("FLAN_DP_STEPS").map_or(STEPS as u64, |s| s.parse().unwrap());
    assert_eq!(summary.steps, want);
    save_parameters(
        trainer.model(),
        &dir.join(format!("{optimizer}-rank{rank}.safetensors")),
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read(path: &Path) -> Vec<(String, Tensor)> {
    let mut t = Tensor::read_safetensors(path).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// Rank `rank` of 2 as a child process of this test binary.
fn spawn_rank(data: &TinyData, optimizer: &str, rank: usize, port: &str, steps: usize) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "data_parallel::rank_child",
        "--nocapture",
    ])
    .env("FLAN_DP_TEST_DIR", data.path())
    .env("FLAN_DP_OPTIMIZER", optimizer)
    .env("FLAN_DP_STEPS", steps.to_string())
    .env("RANK", rank.to_string())
    .env("WORLD_SIZE", "2")
    .env("MASTER_ADDR", "127.0.0.1")
    .env("MASTER_PORT", port)
    .env(flan_train::distributed::TIMEOUT_ENV, "60");
    cmd
}

#[test]
fn two_ranks_take_the_steps_of_one_process_with_twice_the_batch() {
    let _rng = crate::common::torch_rng_lock();
    let data = TinyData::new();
    for optimizer in ["adafactor", "adamw"] {
        let port = free_port().to_string();
        let children: Vec<_> = (0..2)
            .map(|rank| {
                spawn_rank(&data, optimizer, rank, &port, STEPS)
                    .spawn()
                    .unwrap()
            })
            .collect();

        // Meanwhile: one process, both ranks' examples in one batch.
        let single_out = data.path().join(format!("single-{optimizer}"));
        let mut single = trainer(&data, &single_out, optimizer, 0, 1);
        single.run().unwrap();
        let expected = single.model().parameters();

        for mut child in children {
            assert!(
                child.wait().unwrap().success(),
                "a rank failed ({optimizer})"
            );
        }
        let rank0 = read(&data.path().join(format!("{optimizer}-rank0.safetensors")));
        let rank1 = read(&data.path().join(format!("{optimizer}-rank1.safetensors")));
        assert_eq!(rank0.len(), expected.len());
        for (((name, a), (_, b)), (_, e)) in rank0.iter().zip(&rank1).zip(&expected) {
            assert!(a.equal(b), "{optimizer}: {name} differs between the ranks");
            let diff = (a - e).abs().max().double_value(&[]);
            assert!(
                diff < 1e-5,
                "{optimizer}: {name} is {diff} away from the 1-process run"
            );
        }
        // Logged losses are the global batch's, and so is the gradient (its norm shows a mean
        // where a sum belongs, which scale-free optimizers like Adam would hide).
        let dp_out = data.path().join(format!("dp-{optimizer}"));
        assert_eq!(losses(&dp_out).len(), STEPS);
        for ((step, a), (_, b)) in losses(&dp_out).iter().zip(losses(&single_out)) {
            assert!((a - b).abs() < 1e-5, "{optimizer} step {step}: {a} vs {b}");
        }
        let records = |out: &Path| {
            flan_train::metrics::read_step_records(&out.join("metrics.jsonl")).unwrap()
        };
        for (a, b) in records(&dp_out).iter().zip(records(&single_out)) {
            let rel = (a.grad_norm - b.grad_norm).abs() / b.grad_norm;
            assert!(
                rel < 1e-5,
                "{optimizer} step {}: grad norm {} vs {}",
                a.step,
                a.grad_norm,
                b.grad_norm
            );
            assert_eq!(a.examples_seen, b.examples_seen);
        }
        // Only rank 0 wrote, and its checkpoint belongs to 2 processes.
        let mut resumed = trainer(&data, &dp_out, optimizer, 0, 1);
        let err = resumed.resume_latest().unwrap_err().to_string();
        assert!(err.contains("run of 2 processes"), "{err}");
    }
}

#[test]
fn a_killed_rank_makes_the_other_fail_in_bounded_time() {
    let data = TinyData::new();
    let port = free_port().to_string();
    let mut survivor = spawn_rank(&data, "adamw", 0, &port, 1_000_000)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut victim = spawn_rank(&data, "adamw", 1, &port, 1_000_000)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill rank 1 once the two are training together (rank 0 has logged steps).
    let metrics = data.path().join("dp-adamw").join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the ranks never started training"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = std::time::Instant::now();
    let status = loop {
        if let Some(status) = survivor.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed().as_secs() > 90 {
            let _ = survivor.kill();
            panic!("rank 0 still ran 90 s after its peer died");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let waited = killed.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut survivor.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "rank 0 must fail when rank 1 dies");
    assert!(stderr.contains("c10d"), "{stderr}");
    // Well inside the collective timeout (60 s): a closed connection is seen at once.
    assert!(waited.as_secs() < 60, "rank 0 took {waited:?} to notice");
}
