//! Our own products for decoding steps (`csrc/fma_linear.cpp`): `x · weightᵀ` with every output
//! summed as one chain of fused multiply-adds over the input positions, restarted every
//! `k_block` positions, the blocks' sums added in order. fp32 takes one FMA per position; bf16
//! one AVX512-BF16 `vdpbf16ps` per pair of positions (the odd position's product added first,
//! each step rounded to fp32), the sum rounded to bf16 at the end. For one fp32 row, a second
//! kernel sums in four chains without FMA (`four_lane_product`).
//!
//! Why: on an AMD EPYC, the plain products' kernels sum in exactly these orders, slowly.
//! - fp32: MKL takes its generic (`def`) kernels there, which at the row counts of batched
//!   decoding (32 rows) reach about half of the machine's peak. Emulating the chains in Python
//!   reproduced MKL's products bit for bit at 32 rows and input widths 512 and 1024 with blocks of
//!   192 positions, and no other block length did (a single unbroken chain matched 5–7% of the
//!   outputs).
//! - bf16: oneDNN's AVX512-BF16 kernels, which stream a batch-1 step's weights at about half of
//!   the memory bandwidth. The emulation matched them at 1 and 32 rows, widths 512 and 1024, with
//!   blocks of 512 positions; other block lengths and the even-first order each missed nearly
//!   every output. bf16 outputs hide most order differences in their rounding, so this was found
//!   on inputs built to show them (large terms that cancel, beside small ones).
//! - fp32 at one row: MKL's generic `sgemv` (SSE, four weight rows at a time), which streams
//!   weights from memory at about 8 GB/s on one core of the EPYC, where a plain `sum` reads 24–32.
//!   Its order comes from its disassembly (`mulps` then `addps`, a scalar head up to a 16-byte
//!   boundary, four lanes reduced as (0 + 2) + (1 + 3), a scalar tail), and an emulation matched
//!   it on every output at 1 and 2 threads, for the T5 shapes and at every 4-byte alignment.
//!
//! A kernel that sums in the same order gives the same bits, so [`crate::prepacked_linear`]
//! offers it as a candidate for each block length in `K_BLOCKS`, and its probe check keeps the
//! one, if any, that is bitwise the plain product on the machine at hand (bf16 also on the
//! cancelling input, `order_probe`); at one fp32 row it also offers the four-lane kernel, with
//! the head the weight's address gives (`four_lane_head`). Elsewhere (another MKL or oneDNN)
//! none passes and nothing changes.
//!
//! The vector width does not change the bits (each lane is an output column with its own chain),
//! so the fp32 AVX-512 and AVX2 kernels agree; which runs follows libtorch's CPU capability.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tch::{Kind, Tensor};

use crate::ffi::{self, tensor_ptr};
use crate::prepacked_linear::tensor_from_shim;
use crate::Result;

/// The block lengths (input positions per chain) offered as candidates; a length at least the
/// input width is one unbroken chain, and is offered once.
pub(crate) const K_BLOCKS: [i64; 6] = [128, 192, 256, 384, 512, i64::MAX];

/// The distinct block lengths of [`K_BLOCKS`] for inputs `inner` wide (all even, as the bf16
/// kernel's pairs need, for an even `inner`).
pub(crate) fn k_blocks(inner: i64) -> Vec<i64> {
    let mut blocks: Vec<i64> = K_BLOCKS.iter().map(|&b| b.min(inner.max(1))).collect();
    blocks.dedup();
    blocks
}

/// Whether this process has the kernel for `kind` weights: fp32 on an x86-64 CPU with AVX2 and
/// FMA and libtorch's CPU capability at least AVX2; bf16 with AVX512-BF16 and the capability at
/// AVX512.
pub fn fma_linear_available(kind: Kind) -> bool {
    static FP32: OnceLock<bool> = OnceLock::new();
    static BF16: OnceLock<bool> = OnceLock::new();
    // c10::ScalarType's numbers.
    let (cell, scalar_type) = match kind {
        Kind::Float => (&FP32, 6),
        Kind::BFloat16 => (&BF16, 15),
        _ => return false,
    };
    // SAFETY: a plain integer argument; cannot fail (the shim catches every C++ exception).
    *cell.get_or_init(|| unsafe { ffi::flan_model_fma_linear_panel_width(scalar_type) } > 0)
}

/// The block lengths of [`k_blocks`] at which the bf16 kernel sums `rows` rows by an `[out,
/// inner]` weight as libtorch's plain product does, judged on [`order_probe`]; every length for
/// fp32, whose outputs show any order difference on the layer's own probe. Remembered per shape
/// (and thread count) for the process: the order belongs to the kernels, not to the data.
pub(crate) fn k_blocks_in_plain_order(kind: Kind, rows: i64, out: i64, inner: i64) -> Vec<i64> {
    type Shape = (i64, i64, i64, i32);
    static KNOWN: Mutex<BTreeMap<Shape, Vec<i64>>> = Mutex::new(BTreeMap::new());
    if kind != Kind::BFloat16 || inner == 0 {
        return k_blocks(inner);
    }
    let shape = (rows, out, inner, tch::get_num_threads());
    if let Some(known) = KNOWN.lock().ok().and_then(|k| k.get(&shape).cloned()) {
        return known;
    }
    let (x, weight) = order_probe(rows, out, inner);
    let plain = x.linear::<&Tensor>(&weight, None);
    let matching: Vec<i64> = match pack(&weight) {
        Ok(Some(panels)) => k_blocks(inner)
            .into_iter()
            .filter(|&k_block| {
                product(&x, &panels, out, k_block)
                    .ok()
                    .flatten()
                    .is_some_and(|y| y.equal(&plain))
            })
            .collect(),
        _ => Vec::new(),
    };
    if let Ok(mut known) = KNOWN.lock() {
        known.insert(shape, matching.clone());
    }
    matching
}

/// A bf16 input `[rows, inner]` of ones and a weight `[out, inner]` on which summation orders
/// show through bf16's rounding: in each output's terms, large values (±2²²) that cancel in
/// pairs, at scattered positions, beside small ones with full mantissas. The large partial sums
/// round the small terms at a coarse step, which depends on where the order puts them; the
/// result is small, so its bf16 rounding keeps the difference.
pub(crate) fn order_probe(rows: i64, out: i64, inner: i64) -> (Tensor, Tensor) {
    let weight = Tensor::empty([out, inner], (Kind::BFloat16, tch::Device::Cpu));
    // Built a few rows at a time, so that the fp64 arithmetic takes a few MB whatever the
    // layer's size.
    let chunk = (1 << 20) / inner.max(1) + 1;
    for first in (0..out).step_by(chunk as usize) {
        let count = chunk.min(out - first);
        let mut rows = weight.narrow(0, first, count);
        rows.copy_(&order_probe_rows(first, count, inner));
    }
    let x = Tensor::ones([rows, inner], (Kind::BFloat16, tch::Device::Cpu));
    (x, weight)
}

/// Rows `first..first + count` of [`order_probe`]'s weight.
fn order_probe_rows(first: i64, count: i64, inner: i64) -> Tensor {
    let options = (Kind::Double, tch::Device::Cpu);
    let k = Tensor::arange(inner, options).view([1, inner]);
    let n = Tensor::arange_start(first, first + count, options).view([count, 1]);
    let small = ((&n * inner + &k + 1.0) * 0.754_877_666_246_692_7).frac() * 2.0 - 1.0;
    let large = ((&k + 1.0) * (&n + 1.0) * 0.618_033_988_749_894_9)
        .frac()
        .lt(0.25);
    // Alternating signs along each row; a row's odd last one is left small.
    let running = large.to_kind(Kind::Int64).cumsum(1, Kind::Int64);
    let total = running.select(1, inner - 1).view([count, 1]);
    let unpaired = running.eq_tensor(&total) * total.remainder(2).eq(1) * &large;
    let large = large.logical_and(&unpaired.logical_not());
    let sign = (running.remainder(2) * 2 - 1).to_kind(Kind::Double);
    (sign * 4_194_304.0)
        .where_self(&large, &small)
        .to_kind(Kind::BFloat16)
}

/// `weight` `[out, in]` (contiguous fp32, or bf16 with `in` even) laid out in its kernel's panels.
pub(crate) fn pack(weight: &Tensor) -> Result<Option<Tensor>> {
    tensor_from_shim("packing a weight for the FMA kernel", |out| {
        // SAFETY: a live tensor, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_fma_linear_pack(tensor_ptr(weight), out) }
    })
}

/// The head (positions summed in sequence before the four chains) with which the four-lane
/// kernel (`four_lane_product`) sums as MKL's generic sgemv does for one row times `weight`,
/// where it might: a contiguous fp32 `[out, in]` weight with `out` and `in` multiples of four and
/// `in` at least the head plus four. Elsewhere MKL takes other paths (rows left over from its
/// groups of four, rows aligned differently, a scalar loop) and this gives None.
///
/// MKL multiplies four weight rows at a time and aligns its vector loop on their second
/// position's address: the head is the first position plus those before the first 16-byte
/// boundary, so it follows where the weight's data lies (4 for a 16-byte aligned weight).
pub(crate) fn four_lane_head(weight: &Tensor) -> Option<i64> {
    let (out, inner) = weight.size2().ok()?;
    let plain = weight.kind() == Kind::Float && weight.is_contiguous();
    let address = weight.data_ptr() as usize;
    if !plain || out % 4 != 0 || inner % 4 != 0 || address % 4 != 0 {
        return None;
    }
    let to_boundary = (16 - (address + 4) % 16) % 16;
    let head = 1 + (to_boundary / 4) as i64;
    (inner >= head + 4).then_some(head)
}

/// `x [1, in] · weightᵀ` `[1, out_features]` for one fp32 row over `packed` (from [`pack`]),
/// summed as MKL's generic sgemv does (see [`four_lane_head`]): products rounded, then added;
/// the first `head` in sequence; then four chains, the j-th over positions `head + 4i + j`, the
/// first from the head's sum; their sums added as (0 + 2) + (1 + 3); then the positions past the
/// last whole group of four in sequence. None where the kernel does not apply in the current mode.
pub(crate) fn four_lane_product(
    x: &Tensor,
    packed: &Tensor,
    out_features: i64,
    head: i64,
) -> Result<Option<Tensor>> {
    let (x, packed) = (tensor_ptr(x), tensor_ptr(packed));
    tensor_from_shim("multiplying through the four-lane kernel", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_fma_linear_four_lanes(x, packed, out_features, head, out) }
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
pub(crate) mod tests {
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

    /// The order the kernel promises, one scalar FMA at a time; with `pairs` (bf16), each pair
    /// of positions odd one first, as `vdpbf16ps` adds them (whose bf16 products are exact in
    /// fp32, so each step is one rounding, as an FMA's).
    fn chains(
        x: &[f32],
        w: &[f32],
        (rows, out, inner): (i64, i64, i64),
        block: i64,
        pairs: bool,
    ) -> Vec<f32> {
        let (rows, out, inner) = (rows as usize, out as usize, inner as usize);
        let block = block.min(inner.max(1) as i64) as usize;
        let mut y = vec![0.0f32; rows * out];
        for r in 0..rows {
            for c in 0..out {
                let mut sum = 0.0f32;
                for (b, start) in (0..inner).step_by(block).enumerate() {
                    let mut acc = 0.0f32;
                    for i in start..(start + block).min(inner) {
                        let k = if pairs { i ^ 1 } else { i };
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
            if !fma_linear_available(Kind::Float) {
                return Ok(());
            }
            let (x, w) = (values(seed, rows, inner), values(seed + 1, out, inner));
            let _mode = InferenceMode::enter().unwrap();
            let packed = pack(&tensor(&w, out, inner)).unwrap().unwrap();
            let y = product(&tensor(&x, rows, inner), &packed, out, block).unwrap().unwrap();
            let want = chains(&x, &w, (rows, out, inner), block, false);
            let got = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
            prop_assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    /// The four-lane kernel's promised order for one row, one scalar operation at a time (Rust
    /// rounds each product: it never fuses a multiply and an add).
    fn four_lanes(x: &[f32], w: &[f32], inner: usize, head: usize) -> Vec<f32> {
        w.chunks(inner)
            .map(|row| {
                let product = |i: usize| x[i] * row[i];
                let mut lanes = [0.0f32; 4];
                lanes[0] = (1..head).fold(product(0), |sum, i| sum + product(i));
                let groups_end = head + (inner - head) / 4 * 4;
                for i in (head..groups_end).step_by(4) {
                    for (j, lane) in lanes.iter_mut().enumerate() {
                        *lane += product(i + j);
                    }
                }
                let sum = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
                0.0 + (groups_end..inner).fold(sum, |sum, i| sum + product(i))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any shape (a partial last panel, widths that end mid group) and head gives exactly
        /// the promised order.
        #[test]
        fn the_four_lane_kernel_sums_in_the_promised_order(
            out in 1i64..=110,
            inner in 1i64..=420,
            head in 1i64..=4,
            seed in 0u64..1000,
        ) {
            if !fma_linear_available(Kind::Float) {
                return Ok(());
            }
            let head = head.min(inner);
            let (x, w) = (values(seed, 1, inner), values(seed + 1, out, inner));
            let _mode = InferenceMode::enter().unwrap();
            let packed = pack(&tensor(&w, out, inner)).unwrap().unwrap();
            let y = four_lane_product(&tensor(&x, 1, inner), &packed, out, head)
                .unwrap()
                .unwrap();
            let want = four_lanes(&x, &w, inner as usize, head as usize);
            let got = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
            prop_assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    /// `[out, inner]` fp32 values whose data starts `offset` floats past a 64-byte boundary.
    fn weight_at_offset(seed: u64, out: i64, inner: i64, offset: i64) -> Tensor {
        let buffer = Tensor::zeros([out * inner + 16], (Kind::Float, Device::Cpu));
        assert_eq!(buffer.data_ptr() as usize % 64, 0);
        let mut weight = buffer.narrow(0, offset, out * inner).view([out, inner]);
        weight
            .f_copy_(&tensor(&values(seed, out, inner), out, inner))
            .unwrap();
        weight
    }

    #[test]
    fn the_four_lane_head_follows_the_weights_address_and_shape() {
        let heads: Vec<Option<i64>> = (0..4)
            .map(|offset| four_lane_head(&weight_at_offset(1, 8, 32, offset)))
            .collect();
        assert_eq!(heads, [Some(4), Some(3), Some(2), Some(1)]);
        // Shapes where MKL takes other paths.
        assert_eq!(four_lane_head(&weight_at_offset(1, 6, 32, 0)), None);
        assert_eq!(four_lane_head(&weight_at_offset(1, 8, 30, 0)), None);
        // Too narrow for a head and a group of four.
        assert_eq!(four_lane_head(&weight_at_offset(1, 8, 8, 0)), Some(4));
        assert_eq!(four_lane_head(&weight_at_offset(1, 8, 4, 0)), None);
        assert_eq!(four_lane_head(&weight_at_offset(1, 8, 4, 3)), None);
        let w = weight_at_offset(1, 8, 32, 0);
        assert_eq!(four_lane_head(&w.to_kind(Kind::BFloat16)), None);
        assert_eq!(four_lane_head(&w.view([32, 8]).transpose(0, 1)), None);
    }

    /// On libtorch's own one-row product, at most one head gives its bits at each alignment of
    /// the weight; and where one does for an aligned weight (an MKL that sums this way, as on
    /// an AMD EPYC), the one that does at every alignment is `four_lane_head`'s.
    #[test]
    fn the_head_that_matches_libtorch_is_the_one_the_address_gives() {
        if !fma_linear_available(Kind::Float) {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let (out, inner) = (64, 96);
        let x = crate::prepacked_linear::probe_input(1, inner, Kind::Float);
        let matching: Vec<Vec<i64>> = (0..4)
            .map(|offset| {
                let w = weight_at_offset(2, out, inner, offset);
                let plain = x.linear::<&Tensor>(&w, None);
                let packed = pack(&w.contiguous()).unwrap().unwrap();
                (1..=4)
                    .filter(|&head| {
                        four_lane_product(&x, &packed, out, head)
                            .unwrap()
                            .unwrap()
                            .equal(&plain)
                    })
                    .collect()
            })
            .collect();
        assert!(matching.iter().all(|m| m.len() <= 1), "{matching:?}");
        if !matching[0].is_empty() {
            assert_eq!(matching, [[4], [3], [2], [1]]);
        }
    }

    /// Values as bf16 and back, so that the emulation sees what the bf16 kernel does.
    pub(crate) fn bf16_values(seed: u64, rows: i64, cols: i64) -> Vec<f32> {
        let t = tensor(&values(seed, rows, cols), rows, cols).to_kind(Kind::BFloat16);
        Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The bf16 kernel: the promised pair chains, rounded to bf16 (to nearest even, as
        /// libtorch converts), for any shape with an even input width.
        #[test]
        fn the_bf16_kernel_sums_in_the_promised_order(
            rows in 1i64..=19,
            out in 1i64..=110,
            half_inner in 0i64..=210,
            block in prop::sample::select(vec![2i64, 8, 128, 192, 384, i64::MAX]),
            seed in 0u64..1000,
        ) {
            if !fma_linear_available(Kind::BFloat16) {
                return Ok(());
            }
            let inner = 2 * half_inner;
            let (x, w) = (bf16_values(seed, rows, inner), bf16_values(seed + 1, out, inner));
            let bf16 = |v: &[f32], r, c| tensor(v, r, c).to_kind(Kind::BFloat16);
            let _mode = InferenceMode::enter().unwrap();
            let packed = pack(&bf16(&w, out, inner)).unwrap().unwrap();
            let y = product(&bf16(&x, rows, inner), &packed, out, block).unwrap().unwrap();
            let want = chains(&x, &w, (rows, out, inner), block, true);
            prop_assert!(y.equal(&bf16(&want, rows, out)));
        }
    }

    /// The order probe shows the bf16 kernel's block lengths apart, as the layer's own probe
    /// could not: its outputs' bf16 rounding hides most order differences.
    #[test]
    fn the_order_probe_tells_bf16_block_lengths_apart() {
        if !fma_linear_available(Kind::BFloat16) {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let (rows, out, inner) = (1, 256, 1024);
        let (x, w) = order_probe(rows, out, inner);
        let packed = pack(&w).unwrap().unwrap();
        let products: Vec<Tensor> = k_blocks(inner)
            .iter()
            .map(|&b| product(&x, &packed, out, b).unwrap().unwrap())
            .collect();
        for (i, a) in products.iter().enumerate() {
            for b in &products[i + 1..] {
                let differ = a.ne_tensor(b).sum(Kind::Int64).int64_value(&[]);
                assert!(differ > out / 2, "{differ} of {out} outputs differ");
            }
        }
        // The layer's own kind of probe: most pairs of lengths agree on every output.
        let probe = crate::prepacked_linear::probe_input(rows, inner, Kind::BFloat16);
        let weight = tensor(&values(5, out, inner), out, inner).to_kind(Kind::BFloat16);
        let packed = pack(&weight).unwrap().unwrap();
        let first = product(&probe, &packed, out, 128).unwrap().unwrap();
        let same = k_blocks(inner)
            .iter()
            .filter(|&&b| {
                product(&probe, &packed, out, b)
                    .unwrap()
                    .unwrap()
                    .equal(&first)
            })
            .count();
        assert!(
            same > 1,
            "only {same} of the lengths agree on a plain probe"
        );
    }

    /// The order probe's weight, built a few rows at a time, is the same as built whole, its
    /// large terms cancel in every row, and about a quarter of them are large.
    #[test]
    fn the_order_probe_is_the_same_built_in_pieces_and_cancels() {
        let (out, inner) = (2500, 1024);
        let (x, weight) = order_probe(3, out, inner);
        assert_eq!(x.size(), vec![3, inner]);
        assert!(weight.equal(&order_probe_rows(0, out, inner)));
        let large = weight.abs().to_kind(Kind::Float).gt(1e6);
        let large_sum = weight
            .to_kind(Kind::Double)
            .where_self(&large, &Tensor::zeros([1], (Kind::Double, Device::Cpu)))
            .sum_dim_intlist(1, false, Kind::Double);
        assert_eq!(large_sum.abs().max().double_value(&[]), 0.0);
        let share = large
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        assert!((0.2..0.3).contains(&share), "{share}");
    }

    /// Different block lengths really are different orders: on a probe input most pairs differ
    /// somewhere, which is what lets the plan's check tell them apart.
    #[test]
    fn block_lengths_give_different_bits() {
        if !fma_linear_available(Kind::Float) {
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
        if !fma_linear_available(Kind::Float) {
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
        if !fma_linear_available(Kind::Float) {
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
        assert!(err(&x.to_kind(Kind::Double), 50, 192).contains("must be Float or BFloat16"));
        assert!(err(&x.to_kind(Kind::BFloat16), 50, 192).contains("packed weight"));
        assert!(err(&x, 500, 192).contains("do not fill"));
        assert!(err(&x, 50, 0).contains("blocks of 0"));
        assert!(pack(&w.to_kind(Kind::Double))
            .unwrap_err()
            .to_string()
            .contains("must be Float or BFloat16"));
        let four = |x: &Tensor, head: i64| {
            four_lane_product(x, &packed, 50, head)
                .unwrap_err()
                .to_string()
        };
        assert!(four(&x, 4).contains("takes one row"));
        let one = x.narrow(0, 0, 1);
        assert!(four(&one, 0).contains("a head of 0"));
        assert!(four(&one, 5).contains("a head of 5"));
        assert!(four(&one.to_kind(Kind::BFloat16), 4).contains("four-lane kernel is fp32"));
        if fma_linear_available(Kind::BFloat16) {
            let odd = w.narrow(1, 0, 63).contiguous().to_kind(Kind::BFloat16);
            let message = pack(&odd).unwrap_err().to_string();
            assert!(message.contains("needs an even input width"), "{message}");
            let bf16 = pack(&w.to_kind(Kind::BFloat16)).unwrap().unwrap();
            let x = x.to_kind(Kind::BFloat16);
            let message = product(&x, &bf16, 50, 31).unwrap_err().to_string();
            assert!(message.contains("bf16 needs an even number"), "{message}");
        }
    }
}
