//! Bias-free linear layers whose decoding steps multiply by a weight packed for MKL's GEMM.
//!
//! Why: a decoding step at batch 32 multiplies 32 rows by every decoder weight and the output
//! head, and at so few rows MKL's plain `sgemm` spends much of its time reformatting the weight
//! into its kernel's layout, again at every step. `cblas_sgemm_pack` does that once, and
//! `cblas_sgemm_compute` multiplies by the packed copy. Greedy decoding of 64 tokens at batch 32
//! (random weights, 113-token prompts, three alternating runs each): the bench's small shape went
//! from 479–520 to 609–631 new tokens/s, the tiny shape from 2558–2699 to 2857–3326.
//!
//! Numerics: the packed product is used only where it is bitwise the plain one, which is what
//! transformers computes. That depends on the shape, not on the data: on this machine's MKL the
//! two sum in the same order for 16 rows or more and an input width up to 768, and in another
//! order (a few ulps apart) for fewer rows or wider inputs. Rather than hard-code what one CPU and
//! one MKL do, each weight's packed copy is checked once per row count against the plain product
//! on a probe input whose values use every mantissa bit; a copy that differs is dropped and that
//! weight keeps the plain product at that row count.
//!
//! A weight is packed the first time a step needs it at a given number of rows and kept for
//! later steps and later generations (for at most two row counts per weight), until
//! the weight changes: the cached copy remembers the weight's storage (which it keeps alive, so
//! the address cannot be reused) and its version counter, which every in-place update bumps.
//! Packing and checking the small shape's 73 decoder and head weights takes about 0.3 s. The
//! copies take about the weights' size in memory per row count (MKL reserves more address space
//! than it writes).
//!
//! Errors: the shim refuses operands that are not contiguous fp32 CPU matrices of matching shapes
//! (and packing where MKL's GEMM is missing) with libtorch's message. The layer checks dtype,
//! device and availability before calling it, so such an error means a case those checks missed;
//! the step then takes the plain product, which is the same number and raises any real problem
//! with the operands itself.

use std::cell::RefCell;
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

use crate::ffi::{self, owned_tensor, tensor_ptr};
use crate::lora::LoraLinear;
use crate::t5::Pass;
use crate::Result;

/// Fewest rows for which a step uses the packed product (see the module docs).
const MIN_PACKED_ROWS: i64 = 16;

/// Row counts a weight keeps packed copies for: a batch size and, say, the last smaller batch of
/// an evaluation.
const MAX_ROW_COUNTS: usize = 2;

/// Whether this libtorch has MKL's packed GEMM (x86-64 builds with MKL).
pub fn prepacked_gemm_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: no arguments; cannot fail (the shim catches C++ exceptions of the lookup).
    *AVAILABLE.get_or_init(|| unsafe { ffi::flan_model_prepacked_linear_available() } == 1)
}

/// `weight` `[out, in]` packed for inputs of `rows` rows.
fn pack(weight: &Tensor, rows: i64) -> Result<Option<Tensor>> {
    let mut out = std::ptr::null_mut();
    // SAFETY: a live tensor, read during the call, and a valid out-pointer; the shim catches
    // every C++ exception.
    let message =
        unsafe { ffi::flan_model_prepacked_linear_pack(tensor_ptr(weight), rows, &mut out) };
    ffi::check(message, ffi::libtorch("packing a weight for MKL's GEMM"))?;
    // SAFETY: on success `out` is null or a fresh at::Tensor* that we own.
    Ok(unsafe { owned_tensor(out) })
}

/// `x [rows, in] · weightᵀ` through `packed`, the weight packed for `rows` rows; None where the
/// packed kernel does not apply in the current mode (autograd, CPU autocast).
fn packed_linear(
    x: &Tensor,
    packed: &Tensor,
    weight: &Tensor,
    rows: i64,
) -> Result<Option<Tensor>> {
    let mut out = std::ptr::null_mut();
    // SAFETY: three live tensors, read during the call, and a valid out-pointer; the shim
    // catches every C++ exception.
    let message = unsafe {
        ffi::flan_model_prepacked_linear_forward(
            tensor_ptr(x),
            tensor_ptr(packed),
            tensor_ptr(weight),
            rows,
            &mut out,
        )
    };
    ffi::check(message, ffi::libtorch("multiplying by a packed weight"))?;
    // SAFETY: on success `out` is null or a fresh at::Tensor* that we own.
    Ok(unsafe { owned_tensor(out) })
}

/// Whether `t` is an fp32 CPU tensor, as the packed kernel needs (its other requirements are
/// checked by the shim).
fn fp32_on_cpu(t: &Tensor) -> bool {
    t.kind() == Kind::Float && t.device() == Device::Cpu
}

/// A deterministic `[rows, inner]` input in (-0.5, 0.5) whose values fill the mantissa (the
/// fractional parts of multiples of the plastic number's inverse): any difference in summation
/// order between two products shows in the last bits of some of their outputs.
fn probe_input(rows: i64, inner: i64) -> Tensor {
    let n = Tensor::arange(rows * inner, (tch::Kind::Double, tch::Device::Cpu)) + 1.0;
    let x = n * 0.754_877_666_246_692_7;
    (x.frac() - 0.5)
        .to_kind(tch::Kind::Float)
        .view([rows, inner])
}

/// What the packed weights of a model amount to ([`crate::T5ForConditionalGeneration::prepacked_decoding_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepackedStats {
    /// (weight, row count) pairs packed and checked against the plain product.
    pub checked: usize,
    /// Of those, the ones that gave it bitwise and are used.
    pub in_use: usize,
}

#[derive(Debug)]
struct PackedCopy {
    rows: i64,
    /// None: the packed product differed from the plain one at this row count.
    data: Option<Tensor>,
    /// An alias of the weight's storage when it was packed: keeps that storage alive, so a
    /// weight whose data is later replaced cannot show the same address.
    source: Tensor,
    version: i64,
}

/// A bias-free linear layer's weight `[out, in]` (PyTorch's layout), its packed copies, and the
/// LoRA adapter on it, if any.
#[derive(Debug)]
pub(crate) struct PrepackedLinear {
    /// The module's name in the checkpoint (`encoder.block.0.layer.0.SelfAttention.q`,
    /// `lm_head`): what PEFT's `target_modules` match and its adapter keys start with.
    pub(crate) name: String,
    pub(crate) weight: Tensor,
    packed: RefCell<Vec<PackedCopy>>,
    pub(crate) lora: RefCell<Option<LoraLinear>>,
}

impl PrepackedLinear {
    pub(crate) fn new(name: String, weight: Tensor) -> Self {
        PrepackedLinear {
            name,
            weight,
            packed: RefCell::new(Vec::new()),
            lora: RefCell::new(None),
        }
    }

    /// The layer's output: [`Self::forward_step`] in a one-position decoding step, else
    /// [`Self::forward`], plus the LoRA adapter's term when one is attached.
    pub(crate) fn apply(&self, x: &Tensor, pass: Pass) -> Tensor {
        let base = match pass {
            Pass::DecodeStep => self.forward_step(x),
            Pass::Train | Pass::Eval => self.forward(x),
        };
        match self.lora.borrow().as_ref() {
            Some(lora) => lora.add_to(base, x, pass),
            None => base,
        }
    }

    /// `x · weightᵀ`, libtorch's linear layer (the base product, without an adapter).
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear::<&Tensor>(&self.weight, None)
    }

    /// The same product for a decoding step: through the packed weight when `x` has at least
    /// [`MIN_PACKED_ROWS`] rows, the packed kernel applies (fp32 on CPU, no autograd, no
    /// autocast, MKL present) and gives the plain product bitwise at this shape; else
    /// [`Self::forward`].
    pub(crate) fn forward_step(&self, x: &Tensor) -> Tensor {
        self.packed_forward(x).unwrap_or_else(|| self.forward(x))
    }

    fn packed_forward(&self, x: &Tensor) -> Option<Tensor> {
        let shape = x.size();
        let (&inner, outer) = shape.split_last()?;
        let rows: i64 = outer.iter().product();
        if rows < MIN_PACKED_ROWS
            || !prepacked_gemm_available()
            || !fp32_on_cpu(x)
            || !fp32_on_cpu(&self.weight)
        {
            return None;
        }
        let packed = self.packed_for(rows, inner)?;
        let out = self.packed_product(&x.f_view([rows, inner]).ok()?, &packed)?;
        let mut out_shape = outer.to_vec();
        out_shape.push(out.size()[1]);
        Some(out.view(out_shape.as_slice()))
    }

    /// `x [rows, in]` times the packed weight (None where the kernel does not apply or the shim
    /// refuses the operands: see the module docs).
    fn packed_product(&self, x: &Tensor, packed: &Tensor) -> Option<Tensor> {
        packed_linear(x, packed, &self.weight, x.size()[0])
            .ok()
            .flatten()
    }

    /// Whether `packed` times a probe of `rows` rows of width `inner` is bitwise this layer's
    /// plain product.
    fn gives_plain_product(&self, packed: &Tensor, rows: i64, inner: i64) -> bool {
        let probe = probe_input(rows, inner);
        self.packed_product(&probe, packed)
            .is_some_and(|product| product.equal(&self.forward(&probe)))
    }

    /// The weight packed for `rows` rows of width `inner`: cached if the weight is unchanged
    /// since, else packed and checked now. None where packing does not apply or differs.
    fn packed_for(&self, rows: i64, inner: i64) -> Option<Tensor> {
        let mut cache = self.packed.try_borrow_mut().ok()?;
        let version = self.weight.f_internal_version().ok()?;
        let address = self.weight.data_ptr();
        cache.retain(|c| c.version == version && c.source.data_ptr() == address);
        if let Some(c) = cache.iter().find(|c| c.rows == rows) {
            return c.data.as_ref().map(Tensor::shallow_clone);
        }
        let data = pack(&self.weight, rows).ok().flatten()?;
        let same = self.gives_plain_product(&data, rows, inner);
        if cache.len() >= MAX_ROW_COUNTS {
            cache.remove(0);
        }
        cache.push(PackedCopy {
            rows,
            data: same.then(|| data.shallow_clone()),
            source: self.weight.detach(),
            version,
        });
        same.then_some(data)
    }

    /// Drops the packed copies (their memory).
    pub(crate) fn clear_prepacked(&self) {
        if let Ok(mut cache) = self.packed.try_borrow_mut() {
            cache.clear();
        }
    }

    /// `(rows, packed copy in use)` for each row count checked (oldest first).
    #[cfg(test)]
    pub(crate) fn packed_row_counts(&self) -> Vec<(i64, bool)> {
        self.packed
            .try_borrow()
            .map(|cache| cache.iter().map(|c| (c.rows, c.data.is_some())).collect())
            .unwrap_or_default()
    }

    /// Adds this layer's packed copies to `stats`.
    pub(crate) fn add_stats(&self, stats: &mut PrepackedStats) {
        let Ok(cache) = self.packed.try_borrow() else {
            return;
        };
        for copy in cache.iter() {
            stats.checked += 1;
            if copy.data.is_some() {
                stats.in_use += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InferenceMode;
    use tch::{Device, Kind};

    /// A deterministic `[rows, cols]` matrix of values about `std` in size, different for each
    /// `seed`: two incommensurate sine waves, with full mantissas. Not libtorch's generator,
    /// which is shared by the tests running in parallel.
    fn matrix(seed: i64, rows: i64, cols: i64, std: f64) -> Tensor {
        let n = Tensor::arange(rows * cols, (Kind::Double, Device::Cpu));
        let x = (n.shallow_clone() * (0.618_034 + seed as f64)).sin()
            + (n * (0.377_1 * (seed + 1) as f64)).sin() * 0.5;
        (x * std).to_kind(Kind::Float).view([rows, cols])
    }

    fn step_and_plain(linear: &PrepackedLinear, x: &Tensor) -> (Tensor, Tensor) {
        InferenceMode::run(|| (linear.forward_step(x), linear.forward(x))).unwrap()
    }

    /// The shapes of the bench's tiny and small decoders (and their heads) at decoding batch
    /// sizes: the step's product is bitwise the plain one, and with MKL present the packed copy
    /// is what computed it.
    #[test]
    fn packed_step_equals_the_plain_product_bitwise_at_decoder_shapes() {
        for (rows, inner, out) in [
            (16, 256, 640),
            (32, 256, 8000),
            (32, 512, 1024),
            (48, 640, 256),
        ] {
            let linear = PrepackedLinear::new("test".into(), matrix(1, out, inner, 0.05));
            let x = matrix(2, rows, inner, 1.0).view([rows, 1, inner]);
            let (step, plain) = step_and_plain(&linear, &x);
            assert_eq!(step.size(), vec![rows, 1, out]);
            assert!(step.equal(&plain), "{rows}x{inner} by {out}x{inner}");
            if prepacked_gemm_available() {
                assert_eq!(
                    linear.packed_row_counts(),
                    vec![(rows, true)],
                    "{rows}x{inner}"
                );
            }
        }
    }

    /// The check catches a packed copy that is not the plain product: here, another weight's.
    #[test]
    fn the_check_rejects_a_copy_that_differs() {
        if !prepacked_gemm_available() {
            return;
        }
        let linear = PrepackedLinear::new("test".into(), matrix(3, 96, 256, 0.05));
        let other = matrix(4, 96, 256, 0.05);
        let pack = |w: &Tensor| pack(w, 32).unwrap().expect("MKL packs fp32");
        InferenceMode::run(|| {
            assert!(linear.gives_plain_product(&pack(&linear.weight), 32, 256));
            assert!(!linear.gives_plain_product(&pack(&other), 32, 256));
        })
        .unwrap();
    }

    /// Wide inputs, where this machine's MKL sums the packed product in another order: whatever
    /// the check decides, the step returns the plain product, and it decides once.
    #[test]
    fn wide_inputs_still_give_the_plain_product() {
        for inner in [1024, 2048] {
            let linear = PrepackedLinear::new("test".into(), matrix(3, 96, inner, 0.05));
            let x = matrix(4, 32, inner, 1.0);
            let (step, plain) = step_and_plain(&linear, &x);
            assert!(step.equal(&plain), "width {inner}");
            let counts = linear.packed_row_counts();
            if prepacked_gemm_available() {
                assert_eq!(counts.len(), 1, "width {inner}: checked once");
            }
            let _ = step_and_plain(&linear, &x);
            assert_eq!(linear.packed_row_counts(), counts);
        }
    }

    #[test]
    fn few_rows_and_autograd_keep_the_plain_product() {
        let weight = matrix(5, 64, 256, 0.05).set_requires_grad(true);
        let linear = PrepackedLinear::new("test".into(), weight.shallow_clone());
        let (step, plain) = step_and_plain(&linear, &matrix(6, 8, 256, 1.0));
        assert!(step.equal(&plain));
        assert!(linear.packed_row_counts().is_empty(), "8 rows: not packed");
        // Outside inference mode with a weight that wants gradients: the product is libtorch's,
        // with its gradient.
        let x = matrix(7, 32, 256, 1.0);
        let out = linear.forward_step(&x);
        assert!(out.requires_grad());
        out.sum(Kind::Float).backward();
        let want = x
            .sum_dim_intlist(0, false, Kind::Float)
            .unsqueeze(0)
            .expand([64, 256], false);
        assert!(weight.grad().allclose(&want, 1e-5, 1e-5, false));
    }

    /// A weight updated in place (an optimiser step) or given new data (a dtype round trip, a
    /// checkpoint) is packed again: a stale copy would silently compute with the old weights.
    #[test]
    fn a_changed_weight_is_packed_again() {
        let weight = matrix(8, 320, 256, 0.05);
        let linear = PrepackedLinear::new("test".into(), weight.shallow_clone());
        let x = matrix(9, 32, 256, 1.0);
        let (first, _) = step_and_plain(&linear, &x);

        tch::no_grad(|| {
            let _ = weight.shallow_clone().g_add_scalar_(0.25);
        });
        let (step, plain) = step_and_plain(&linear, &x);
        assert!(step.equal(&plain), "after an in-place update");
        assert!(!step.equal(&first), "the update changed the product");

        weight.shallow_clone().set_data(&matrix(10, 320, 256, 0.05));
        let (step, plain) = step_and_plain(&linear, &x);
        assert!(step.equal(&plain), "after set_data");
        if prepacked_gemm_available() {
            assert_eq!(
                linear.packed_row_counts(),
                vec![(32, true)],
                "stale copies dropped"
            );
        }
    }

    /// Operands the packed kernel cannot take are refused in C++, and libtorch's message reaches
    /// Rust.
    #[test]
    fn the_shims_error_for_bad_operands_reaches_rust() {
        let message = |r: Result<Option<Tensor>>| match r {
            Err(crate::Error::Libtorch { message, .. }) => message,
            other => panic!("expected a libtorch error, got {other:?}"),
        };
        let double = matrix(13, 64, 256, 0.05).to_kind(Kind::Double);
        let m = message(pack(&double, 32));
        if !prepacked_gemm_available() {
            assert!(m.contains("no MKL packed GEMM"), "{m}");
            return;
        }
        assert!(m.contains("the weight must be fp32, got Double"), "{m}");
        let m = message(pack(&matrix(13, 64, 256, 0.05), 0));
        assert!(m.contains("cannot pack for 0 rows"), "{m}");

        let weight = matrix(13, 64, 256, 0.05);
        let packed = pack(&weight, 32).unwrap().expect("MKL packs fp32");
        let narrow = matrix(14, 32, 128, 1.0);
        let m =
            InferenceMode::run(|| message(packed_linear(&narrow, &packed, &weight, 32))).unwrap();
        assert!(m.contains("input of shape [32, 128]"), "{m}");
        // The layer does not hand the shim what it would refuse: an fp64 layer keeps the plain
        // product without trying to pack.
        let linear = PrepackedLinear::new("test".into(), double);
        let x = matrix(15, 32, 256, 1.0).to_kind(Kind::Double);
        let (step, plain) = step_and_plain(&linear, &x);
        assert!(step.equal(&plain));
        assert!(linear.packed_row_counts().is_empty());
    }

    #[test]
    fn at_most_two_row_counts_are_kept() {
        let linear = PrepackedLinear::new("test".into(), matrix(11, 128, 256, 0.05));
        for rows in [16, 24, 32] {
            let x = matrix(12, rows, 256, 1.0);
            let (step, plain) = step_and_plain(&linear, &x);
            assert!(step.equal(&plain), "{rows} rows");
        }
        if prepacked_gemm_available() {
            assert_eq!(linear.packed_row_counts(), vec![(24, true), (32, true)]);
        }
        linear.clear_prepacked();
        assert!(linear.packed_row_counts().is_empty());
    }
}
