//! What checkpoint checksums cost: the xxh3-64 digest of a checkpoint file, written and then
//! read back as a save and a resume do (from the page cache, as right after a save). The file is
//! the size of the default run's checkpoint (`configs/finetune-default`: 7.6M fp32 parameters,
//! AdamW's two moments, about 91 MB of weights and optimiser state).
//!
//!     eval "$(cargo xtask env)" && cargo bench -p flan-train --bench checkpoint_digest

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flan_train::checkpoint::FileDigest;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 7.6M parameters × 4 bytes × (weights + 2 AdamW moments).
const BYTES: usize = 7_600_000 * 4 * 3;

fn digest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.bin");
    let mut data = vec![0u8; BYTES];
    ChaCha8Rng::seed_from_u64(0).fill_bytes(&mut data);
    std::fs::write(&path, &data).unwrap();
    let mut group = c.benchmark_group("checkpoint_digest");
    group.throughput(Throughput::Bytes(BYTES as u64));
    group.sample_size(20);
    group.bench_function("xxh3_64 of the default run's checkpoint", |b| {
        b.iter(|| FileDigest::of_file(&path).unwrap())
    });
    group.finish();
}

criterion_group!(benches, digest);
criterion_main!(benches);
