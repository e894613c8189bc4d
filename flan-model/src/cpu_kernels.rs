//! Which CPU kernels libtorch computes with in this process, so that results that depend on them
//! can be compared bit for bit where the kernels are the same, and with a stated tolerance where
//! they are not.
//!
//! libtorch picks its CPU kernels at run time, and each family sums in its own order:
//! - ATen's vectorised loops (softmax, reductions, norms, elementwise) by its CPU capability:
//!   `DEFAULT`, `AVX2` or `AVX512`, capped by `ATEN_CPU_CAPABILITY`;
//! - bf16 matrix products by oneDNN when oneDNN's ISA has AVX-512 (AVX-512 core with bf16
//!   emulated, native AVX512-BF16, or AMX tiles; capped by `ONEDNN_MAX_CPU_ISA`), else by ATen's
//!   own bf16 GEMM;
//! - fp32 matrix products by MKL, which dispatches on the CPU itself (`MKL_ENABLE_INSTRUCTIONS`
//!   caps it).
//!
//! oneDNN's choice is not reachable through libtorch's exported symbols, and MKL's is not
//! reported at all, so [`CpuKernels::detect`] asks the kernels themselves: it runs a fixed probe
//! (bf16 and fp32 products at the shapes a T5 uses, a weight-gradient-shaped product with a long
//! reduction, batched attention products, softmax, the RMS norm's mean of squares, GELU) on fixed
//! inputs and digests the bits of the results. Two processes that print the same digest computed
//! every probe bit for bit alike; the CPU's name, its kernel-selecting features and the caps are
//! recorded beside it for people.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{Autocast, Result};

/// The environment variables that cap libtorch's kernel choice.
pub const KERNEL_LIMITS: [&str; 3] = [
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
];

/// The x86 features (as `/proc/cpuinfo` names them) that select among libtorch's kernels.
const SELECTING_FEATURES: [&str; 11] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
];

/// What selects libtorch's CPU kernels in this process, and a digest of what they compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuKernels {
    /// The CPU's model name (`/proc/cpuinfo`; empty where there is none).
    pub cpu: String,
    /// The CPU's features among those that select kernels, in `/proc/cpuinfo` spelling.
    pub features: Vec<String>,
    /// The kernel caps set in this process's environment ([`KERNEL_LIMITS`]).
    pub limits: BTreeMap<String, String>,
    /// libtorch's intra-op threads when the probe ran.
    pub threads: i64,
    /// 16 hex digits digesting the bits of the probe's results.
    pub probe: String,
}

impl CpuKernels {
    /// Describes this process's CPU and runs the probe (a few milliseconds).
    pub fn detect() -> Result<CpuKernels> {
        let (cpu, flags) = proc_cpuinfo();
        let features = SELECTING_FEATURES
            .iter()
            .filter(|f| flags.iter().any(|g| g == *f))
            .map(|f| f.to_string())
            .collect();
        let limits = KERNEL_LIMITS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        Ok(CpuKernels {
            cpu,
            features,
            limits,
            threads: tch::get_num_threads().into(),
            probe: probe_digest()?,
        })
    }

    /// Whether `other` ran the probe bit for bit as this process did: then results of the same
    /// computations can be compared exactly.
    pub fn same_kernels(&self, other: &CpuKernels) -> bool {
        self.probe == other.probe
    }

    /// One line for messages: CPU, caps and digest.
    pub fn summary(&self) -> String {
        let limits: Vec<String> = self
            .limits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} [{}]{}{}, {} threads, probe {}",
            if self.cpu.is_empty() {
                "unknown CPU"
            } else {
                &self.cpu
            },
            self.features.join(" "),
            if limits.is_empty() { "" } else { " with " },
            limits.join(" "),
            self.threads,
            self.probe
        )
    }
}

/// Model name and flags of the first processor in `/proc/cpuinfo`.
fn proc_cpuinfo() -> (String, Vec<String>) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (field("model name"), flags)
}

/// `n` values in [-0.5, 0.5) on a 2^-24 grid from a fixed integer hash: exact in fp32 (autocast
/// rounds them to bf16 the same way on every CPU), and independent of libtorch's random
/// generator, whose normal sampler itself depends on the CPU capability.
fn probe_values(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(1);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn probe_tensor(seed: u64, shape: &[i64]) -> Tensor {
    let n = shape.iter().product::<i64>() as usize;
    Tensor::from_slice(&probe_values(seed, n)).view(shape)
}

/// FNV-1a over the bits of each result, as fp32.
fn probe_digest() -> Result<String> {
    let _no_grad = tch::no_grad_guard();
    let mut results = Vec::new();
    {
        let _bf16 = Autocast::enter(Device::Cpu, Kind::BFloat16)?;
        // Linear layers of small and mid-sized T5s, and a product long enough for oneDNN's
        // blocked kernels.
        for (seed, (m, k, n)) in [(8, 32, 48), (24, 48, 32), (64, 512, 300), (512, 2048, 64)]
            .into_iter()
            .enumerate()
        {
            let a = probe_tensor(2 * seed as u64, &[m, k]);
            let b = probe_tensor(2 * seed as u64 + 1, &[k, n]);
            results.push(a.matmul(&b));
        }
        // A weight gradient: the reduction runs over tokens.
        let a = probe_tensor(20, &[512, 64]);
        let b = probe_tensor(21, &[512, 96]);
        results.push(a.tr().matmul(&b));
        // Attention scores and values per head.
        let q = probe_tensor(22, &[4, 16, 8]);
        let k = probe_tensor(23, &[4, 8, 16]);
        results.push(q.matmul(&k));
    }
    let a = probe_tensor(30, &[64, 512]);
    let b = probe_tensor(31, &[512, 300]);
    results.push(a.matmul(&b));
    let x = probe_tensor(32, &[64, 3000]);
    results.push(x.softmax(-1, Kind::Float));
    results.push(
        x.pow_tensor_scalar(2)
            .mean_dim(Some([-1i64].as_slice()), true, Kind::Float),
    );
    results.push(x.gelu("tanh"));
    results.push(x.sum_dim_intlist(Some([-1i64].as_slice()), false, Kind::Float));

    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for t in results {
        let values = Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1))?;
        for v in values {
            for byte in v.to_bits().to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    Ok(format!("{hash:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_values_are_centred_and_depend_on_the_seed() {
        let v = probe_values(3, 4096);
        assert!(v.iter().all(|x| (-0.5..0.5).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.02, "{mean}");
        assert_ne!(probe_values(3, 8), probe_values(4, 8));
    }

    #[test]
    fn the_same_process_probes_alike_and_a_cap_is_recorded() {
        let a = CpuKernels::detect().unwrap();
        let b = CpuKernels::detect().unwrap();
        assert!(a.same_kernels(&b), "{} vs {}", a.summary(), b.summary());
        assert_eq!(a.probe.len(), 16);
        for (k, v) in &a.limits {
            assert!(KERNEL_LIMITS.contains(&k.as_str()));
            assert_eq!(std::env::var(k).as_deref(), Ok(v.as_str()));
        }
    }
}
