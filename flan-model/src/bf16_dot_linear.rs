//! Our own bf16 product for decoding steps (`csrc/bf16_dot_linear.cpp`): `x · weightᵀ` with
//! every output summed as libtorch's AVX2 build sums a bf16 dot product
//! (`bf16_dot_with_fp32_arith`), then rounded to bf16.
//!
//! Why: on a CPU without AVX-512 (an AMD EPYC of the Zen 3 family, say) libtorch has no oneDNN
//! bf16 matmul, and a bf16 linear is one such dot product per (row, output), each reading and
//! widening both operands again with its accumulators in memory: in `perf` of tiny bf16 greedy
//! decoding at batch 32 on one thread there, 79% of the samples. This kernel widens each weight
//! row once for all the rows and keeps the accumulators in registers. At one row (batch-1
//! decoding), which reads every weight once and waits on memory, each thread reads its outputs'
//! weights as two or four interleaved streams rather than one: on the Zen 3 EPYC that read cold
//! weights 10-40% faster, and small bf16 greedy decoding at batch 1 went from 147-175 to
//! 163-207 new tokens/s at 2 threads (98-112 to 120-131 at one), same tokens.
//!
//! The order (from the function's disassembly, and matched by an emulation in Python on every
//! output of libtorch's products at 1 to 32 rows, widths 100 to 1024, 1 and 2 threads): 64
//! chains of FMAs, position `i` in chain `i % 64`, over the positions up to the last multiple of
//! 64; the chains (eight vectors of eight lanes) added as ((0 + 4) + (2 + 6)) + ((1 + 5) +
//! (3 + 7)), then the lanes the same way; then eight chains over the positions up to the last
//! multiple of 16, added the same way and to the first sum; then the rest in sequence.
//!
//! [`crate::prepacked_linear`] offers the kernel as a candidate where [`in_plain_order`] says it
//! sums as libtorch's plain product does at the layer's shape, and its probe check keeps it only
//! where it is bitwise that product. libtorch's AVX-512 build sums in 16-lane vectors (another
//! order) and uses oneDNN where the CPU has AVX-512, so the kernel is offered only under the AVX2
//! capability ([`bf16_dot_linear_available`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tch::Tensor;

use crate::ffi::{self, tensor_ptr};
use crate::prepacked_linear::tensor_from_shim;
use crate::Result;

/// Whether this process's libtorch sums bf16 products in the kernel's order: its AVX2 build
/// (the CPU capability libtorch chose, or `ATEN_CPU_CAPABILITY=avx2`) on a CPU with AVX2 and FMA.
pub fn bf16_dot_linear_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: no arguments; cannot fail (the shim catches every C++ exception).
    *AVAILABLE.get_or_init(|| unsafe { ffi::flan_model_bf16_dot_linear_available() } == 1)
}

/// Whether the kernel gives libtorch's plain product of `rows` rows by an `[out, inner]` bf16
/// weight on [`crate::fma_linear::order_probe`], whose cancelling terms show summation orders
/// through bf16's rounding (a random probe mostly does not). Remembered per shape (and thread
/// count) for the process: the order belongs to the kernels, not to the data.
pub(crate) fn in_plain_order(rows: i64, out: i64, inner: i64) -> bool {
    type Shape = (i64, i64, i64, i32);
    static KNOWN: Mutex<BTreeMap<Shape, bool>> = Mutex::new(BTreeMap::new());
    if !bf16_dot_linear_available() {
        return false;
    }
    let shape = (rows, out, inner, tch::get_num_threads());
    if let Some(known) = KNOWN.lock().ok().and_then(|k| k.get(&shape).copied()) {
        return known;
    }
    let (x, weight) = crate::fma_linear::order_probe(rows, out, inner);
    let plain = x.linear::<&Tensor>(&weight, None);
    let same = product(&x, &weight)
        .ok()
        .flatten()
        .is_some_and(|y| y.equal(&plain));
    if let Ok(mut known) = KNOWN.lock() {
        known.insert(shape, same);
    }
    same
}

/// `x [rows, in] · weightᵀ` `[rows, out]` for a bf16 input and weight (contiguous, 2-d), summed
/// in the order of the module docs and rounded to bf16; None where the kernel does not apply in
/// the current mode (autograd, CPU autocast).
pub(crate) fn product(x: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    let (x, weight) = (tensor_ptr(x), tensor_ptr(weight));
    tensor_from_shim("multiplying through the bf16 dot kernel", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_bf16_dot_linear_forward(x, weight, out) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fma_linear::tests::bf16_values as values;
    use crate::InferenceMode;
    use proptest::prelude::*;
    use tch::{Device, Kind};

    fn bf16(v: &[f32], rows: i64, cols: i64) -> Tensor {
        Tensor::from_slice(v)
            .view([rows, cols])
            .to_kind(Kind::BFloat16)
    }

    /// The promised order, one scalar operation at a time (the products of bf16 values are
    /// exact in fp32, so each FMA is a product added with one rounding; Rust never fuses).
    fn dot(x: &[f32], w: &[f32]) -> f32 {
        let k = x.len();
        let (k64, k16) = (k / 64 * 64, k / 16 * 16);
        let p = |i: usize| x[i] * w[i];
        let mut chains = [0.0f32; 64];
        for i in 0..k64 {
            chains[i % 64] += p(i);
        }
        // Eight vectors of eight lanes: chain 8j + l is vector j's lane l.
        let lane = |j: usize, l: usize| chains[8 * j + l];
        let vector: Vec<f32> = (0..8)
            .map(|l| {
                ((lane(0, l) + lane(4, l)) + (lane(2, l) + lane(6, l)))
                    + ((lane(1, l) + lane(5, l)) + (lane(3, l) + lane(7, l)))
            })
            .collect();
        let lanes = |v: &[f32]| ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
        let mut tail = [0.0f32; 8];
        for i in (k64..k16).step_by(16) {
            for (l, t) in tail.iter_mut().enumerate() {
                *t += p(i + l);
            }
            for (l, t) in tail.iter_mut().enumerate() {
                *t += p(i + 8 + l);
            }
        }
        (k16..k).fold(lanes(&tail) + lanes(&vector), |s, i| s + p(i))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any shape (widths that end mid chain block, mid 16, at zero; one row or many) gives
        /// exactly the promised order, rounded to bf16 as libtorch rounds.
        #[test]
        fn the_kernel_sums_in_the_promised_order(
            rows in 1i64..=19,
            out in 1i64..=70,
            inner in 0i64..=300,
            seed in 0u64..1000,
        ) {
            if !bf16_dot_linear_available() {
                return Ok(());
            }
            let (x, w) = (values(seed, rows, inner), values(seed + 1, out, inner));
            let want: Vec<f32> = (0..rows as usize)
                .flat_map(|r| {
                    let (x, w) = (&x, &w);
                    let k = inner as usize;
                    (0..out as usize).map(move |c| dot(&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]))
                })
                .collect();
            let _mode = InferenceMode::enter().unwrap();
            let y = product(&bf16(&x, rows, inner), &bf16(&w, out, inner)).unwrap().unwrap();
            prop_assert!(y.equal(&bf16(&want, rows, out)));
        }
    }

    /// A one-row product reads each thread's outputs as one, two or four streams by the part's
    /// size: at 1 and 2 threads, output counts on either side of where a part reaches two
    /// streams (64 KB of weights) and four (4 MB), uneven splits among the streams included,
    /// give every output in the promised order.
    #[test]
    fn one_row_products_give_every_output_however_many_streams_read_them() {
        if !bf16_dot_linear_available() {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let threads = tch::get_num_threads();
        let inner = 256;
        let k = inner as usize;
        let x = values(5, 1, inner);
        for t in [1, 2] {
            tch::set_num_threads(t);
            // 512 bytes a weight row: 128 rows make 64 KB, 8192 rows 4 MB.
            for per_part in [127, 128, 131, 8191, 8195] {
                let out = per_part * i64::from(t) + i64::from(t) - 1;
                let w = values(6 + per_part as u64, out, inner);
                let want: Vec<f32> = w.chunks(k).map(|row| dot(&x, row)).collect();
                let y = product(&bf16(&x, 1, inner), &bf16(&w, out, inner))
                    .unwrap()
                    .unwrap();
                assert!(
                    y.equal(&bf16(&want, 1, out)),
                    "{out} outputs of width {inner} at {t} threads"
                );
            }
        }
        tch::set_num_threads(threads);
    }

    /// Whether libtorch's plain bf16 product is its own dot product here: its AVX2 build, and
    /// a CPU without the AVX-512 that sends bf16 matmuls to oneDNN instead.
    fn plain_is_atens_dot() -> bool {
        #[cfg(target_arch = "x86_64")]
        let onednn = std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq");
        #[cfg(not(target_arch = "x86_64"))]
        let onednn = true;
        bf16_dot_linear_available() && !onednn
    }

    /// Where libtorch's plain bf16 product is its AVX2 dot product, the kernel gives its bits
    /// on every output: the T5 shapes (and widths that end mid block) at 1, 7 and 32 rows, on
    /// random inputs and on the order probe, at 1 and 2 threads; and `in_plain_order` says so.
    /// Elsewhere, wherever the order probe passes, random inputs pass too.
    #[test]
    fn the_kernel_gives_libtorchs_bits_where_libtorch_sums_this_way() {
        if !bf16_dot_linear_available() {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let threads = tch::get_num_threads();
        for t in [1, 2] {
            tch::set_num_threads(t);
            for (out, inner) in [
                (256, 256),
                (640, 256),
                (256, 640),
                (1024, 512),
                (100, 200),
                (48, 100),
            ] {
                for rows in [1, 7, 32] {
                    let (px, pw) = crate::fma_linear::order_probe(rows, out, inner);
                    let ordered = product(&px, &pw)
                        .unwrap()
                        .unwrap()
                        .equal(&px.linear::<&Tensor>(&pw, None));
                    assert_eq!(in_plain_order(rows, out, inner), ordered);
                    let x = bf16(&values(3, rows, inner), rows, inner);
                    let w = bf16(&values(4, out, inner), out, inner);
                    let same = product(&x, &w)
                        .unwrap()
                        .unwrap()
                        .equal(&x.linear::<&Tensor>(&w, None));
                    if plain_is_atens_dot() {
                        assert!(
                            ordered && same,
                            "{rows}×{inner} by {out}×{inner} at {t} threads"
                        );
                    } else if ordered {
                        assert!(same, "{rows}×{inner} by {out}×{inner} at {t} threads");
                    }
                }
            }
        }
        tch::set_num_threads(threads);
    }

    /// The order probe tells this order from others: summed as one unbroken chain (the FMA
    /// kernel's order with no blocks), most of its outputs differ.
    #[test]
    fn the_order_probe_tells_this_order_from_an_unbroken_chain() {
        if !bf16_dot_linear_available() {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let (rows, out, inner) = (1, 256, 512);
        let (x, w) = crate::fma_linear::order_probe(rows, out, inner);
        let ours = product(&x, &w).unwrap().unwrap();
        let xs = Vec::<f32>::try_from(x.to_kind(Kind::Float).flatten(0, -1)).unwrap();
        let ws = Vec::<f32>::try_from(w.to_kind(Kind::Float).flatten(0, -1)).unwrap();
        let k = inner as usize;
        let unbroken: Vec<f32> = ws
            .chunks(k)
            .map(|row| (0..k).fold(0.0f32, |s, i| xs[i].mul_add(row[i], s)))
            .collect();
        let differ = ours
            .ne_tensor(&bf16(&unbroken, rows, out))
            .sum(Kind::Int64)
            .int64_value(&[]);
        assert!(differ > out / 2, "{differ} of {out} outputs differ");
    }

    #[test]
    fn grad_mode_and_autocast_take_the_plain_product() {
        if !bf16_dot_linear_available() {
            return;
        }
        let w = bf16(&values(1, 50, 64), 50, 64);
        let x = bf16(&values(2, 4, 64), 4, 64);
        // tch's default: grad mode on.
        assert!(product(&x, &w).unwrap().is_none());
        let _mode = InferenceMode::enter().unwrap();
        let _autocast = crate::Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
        assert!(product(&x, &w).unwrap().is_none());
    }

    #[test]
    fn mismatched_operands_are_refused_with_libtorchs_message() {
        if !bf16_dot_linear_available() {
            return;
        }
        let _mode = InferenceMode::enter().unwrap();
        let w = bf16(&values(1, 50, 64), 50, 64);
        let x = bf16(&values(2, 4, 64), 4, 64);
        let err = |x: &Tensor, w: &Tensor| product(x, w).unwrap_err().to_string();
        assert!(err(&x.narrow(1, 0, 32).contiguous(), &w).contains("for a weight of shape"));
        assert!(err(&x.transpose(0, 1), &w).contains("must be a contiguous 2-d tensor"));
        assert!(err(&x.to_kind(Kind::Float), &w).contains("must be BFloat16"));
        assert!(err(&x, &w.to_kind(Kind::Float)).contains("the weight must be BFloat16"));
        assert!(err(&x.view([4, 8, 8]), &w).contains("2-d"));
    }
}
