//! Our own fp32 product for decoding steps (`csrc/fma_linear.cpp`): `x · weightᵀ` with every
//! output summed as one fused multiply-add chain over the input positions, restarted every
//! `k_block` positions, the blocks' sums added in order.
//!
//! Why: on an AMD EPYC, MKL takes its generic (`def`) kernels, and at the row counts of batched
//! decoding (32 rows) they reach about half of the machine's fp32 peak. Their summation order
//! there is exactly this one, with blocks of 192 positions: emulating the chains in Python
//! reproduced MKL's products bit for bit at 32 rows and input widths 512 and 1024, and no other
//! block length did (a single unbroken chain matched 5–7% of the outputs). A kernel that sums in
//! the same order gives the same bits, so [`crate::prepacked_linear`] offers it as a candidate
//! for each block length in [`K_BLOCKS`], and its probe check keeps the one, if any, that is
//! bitwise the plain product on the machine at hand. Elsewhere (another MKL, one row, where MKL
//! runs `sgemv` in another order) no length passes and nothing changes.
//!
//! The vector width does not change the bits (each lane is an output column with its own chain),
//! so the AVX-512 and AVX2 kernels agree; which runs follows libtorch's CPU capability.

use std::sync::OnceLock;

use tch::Tensor;

use crate::ffi::{self, tensor_ptr};
use crate::prepacked_linear::tensor_from_shim;
use crate::Result;

/// The block lengths (input positions per chain) offered as candidates; a length at least the
/// input width is one unbroken chain, and is offered once.
pub(crate) const K_BLOCKS: [i64; 6] = [128, 192, 256, 384, 512, i64::MAX];

/// The distinct block lengths of [`K_BLOCKS`] for inputs `inner` wide.
pub(crate) fn k_blocks(inner: i64) -> Vec<i64> {
    let mut blocks: Vec<i64> = K_BLOCKS.iter().map(|&b| b.min(inner.max(1))).collect();
    blocks.dedup();
    blocks
}

/// Whether this process has the kernels: an x86-64 CPU with AVX2 and FMA (or AVX-512) and
/// libtorch's CPU capability at least AVX2.
pub fn fma_linear_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: no arguments; cannot fail (the shim catches every C++ exception).
    *AVAILABLE.get_or_init(|| unsafe { ffi::flan_model_fma_linear_panel_width() } > 0)
}

/// `weight` `[out, in]` (contiguous fp32) laid out in the kernels' panels.
pub(crate) fn pack(weight: &Tensor) -> Result<Option<Tensor>> {
    tensor_from_shim("packing a weight for the FMA kernel", |out| {
        // SAFETY: a live tensor, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_fma_linear_pack(tensor_ptr(weight), out) }
    })
}

/// `x [rows, in] · weightᵀ` `[rows, out_features]` over `packed` (from [`pack`]), in chains of
/// `k_block` positions; None where the kernel does not apply in the current mode (autograd, CPU
/// autocast).
pub(crate) fn product(
    x: &Tensor,
    packed: &Tensor,
    out_features: i64,
    k_block: i64,
) -> Result<Option<Tensor>> {
    let (x, packed) = (tensor_ptr(x), tensor_ptr(packed));
    tensor_from_shim("multiplying through the FMA kernel", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_fma_linear_forward(x, packed, out_features, k_block, out) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InferenceMode;
    use proptest::prelude::*;
    use tch::{Device, Kind};

    /// Deterministic `[rows, cols]` values with full mantissas, a few exact zeros and both signs.
    fn values(seed: u64, rows: i64, cols: i64) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let i = i as u64 + seed * 7919;
                if i % 37 == 0 {
                    0.0
                } else {
                    ((i as f64 * 0.618_033_988_749_894_9).fract() - 0.5) as f32 * 3.0
                }
            })
            .collect()
    }

    /// The order the kernel promises, one scalar FMA at a time.
    fn chains(x: &[f32], w: &[f32], rows: i64, out: i64, inner: i64, block: i64) -> Vec<f32> {
        let (rows, out, inner) = (rows as usize, out as usize, inner as usize);
        let block = block.min(inner.max(1) as i64) as usize;
        let mut y = vec![0.0f32; rows * out];
        for r in 0..rows {
            for c in 0..out {
                let mut sum = 0.0f32;
                for (b, start) in (0..inner).step_by(block).enumerate() {
                    let mut acc = 0.0f32;
                    for k in start..(start + block).min(inner) {
                        acc = x[r * inner + k].mul_add(w[c * inner + k], acc);
                    }
                    sum = if b == 0 { acc } else { sum + acc };
                }
                y[r * out + c] = sum;
            }
        }
        y
    }

    fn tensor(v: &[f32], rows: i64, cols: i64) -> Tensor {
        Tensor::from_slice(v).view([rows, cols])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any shape (a partial last panel, rows that fill no whole tile, widths that end mid
        /// block) gives exactly the promised chains.
        #[test]
        fn the_kernel_sums_in_the_promised_order(
            rows in 1i64..=19,
            out in 1i64..=110,
            inner in 0i64..=420,
            block in prop::sample::select(vec![1i64, 7, 128, 192, 384, i64::MAX]),
            seed in 0u64..1000,
        ) {
            if !fma_linear_available() {
                return Ok(());
            }
            let (x, w) = (values(seed, rows, inner), values(seed + 1, out, inner));
            let _mode = InferenceMode::enter().unwrap();
            let packed = pack(&tensor(&w, out, inner)).unwrap().unwrap();
            let y = product(&tensor(&x, rows, inner), &packed, out, block).unwrap().unwrap();
            let want = chains(&x, &w, rows, out, inner, block);
            let got = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
            prop_assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    /// Different block lengths really are different orders: on a probe input most pairs differ
    /// somewhere, which is what lets the plan's check tell them apart.
    #[test]
    fn block_lengths_give_different_bits() {
        if !fma_linear_available() {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let (rows, out, inner) = (32, 96, 512);
        let x = crate::prepacked_linear::probe_input(rows, inner, Kind::Float);
        let w = tensor(&values(3, out, inner), out, inner);
        let packed = pack(&w).unwrap().unwrap();
        let products: Vec<Tensor> = k_blocks(inner)
            .iter()
            .map(|&b| product(&x, &packed, out, b).unwrap().unwrap())
            .collect();
        // 512 and an unbroken chain are the same length here.
        assert_eq!(products.len(), 5);
        for (i, a) in products.iter().enumerate() {
            for b in &products[i + 1..] {
                assert!(!a.equal(b));
            }
        }
    }

    #[test]
    fn grad_mode_and_autocast_take_the_plain_product() {
        if !fma_linear_available() {
            return;
        }
        let w = tensor(&values(1, 50, 64), 50, 64);
        let x = tensor(&values(2, 4, 64), 4, 64);
        let packed = {
            let _mode = InferenceMode::enter().unwrap();
            pack(&w).unwrap().unwrap()
        };
        // tch's default: grad mode on.
        assert!(product(&x, &packed, 50, 192).unwrap().is_none());
        let _mode = InferenceMode::enter().unwrap();
        let _autocast = crate::Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
        assert!(product(&x, &packed, 50, 192).unwrap().is_none());
    }

    #[test]
    fn mismatched_operands_are_refused_with_libtorchs_message() {
        if !fma_linear_available() {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let w = tensor(&values(1, 50, 64), 50, 64);
        let packed = pack(&w).unwrap().unwrap();
        let err = |x: &Tensor, out: i64, block: i64| {
            product(x, &packed, out, block).unwrap_err().to_string()
        };
        let x = tensor(&values(2, 4, 64), 4, 64);
        let narrow = x.narrow(1, 0, 32).contiguous();
        assert!(err(&narrow, 50, 192).contains("for a packed weight of shape"));
        assert!(err(&x.transpose(0, 1), 50, 192).contains("must be a contiguous 2-d tensor"));
        assert!(err(&x.to_kind(Kind::Double), 50, 192).contains("must be Float"));
        assert!(err(&x, 500, 192).contains("do not fill"));
        assert!(err(&x, 50, 0).contains("blocks of 0"));
        assert!(pack(&w.to_kind(Kind::BFloat16))
            .unwrap_err()
            .to_string()
            .contains("must be Float"));
    }
}
