//! Bias-free linear layers whose decoding steps compute the plain product with a faster kernel
//! where one gives it bitwise: MKL's packed GEMM (fp32), oneDNN over a reordered weight (bf16),
//! one batched product over chunks of the weight, or our own kernels (FMA chains in fp32 and
//! bf16, four lanes at one fp32 row: [`crate::fma_linear`]; libtorch's own bf16 dot order:
//! [`crate::bf16_dot_linear`]).
//!
//! Why packed: a decoding step at batch 32 multiplies 32 rows by every decoder weight and the
//! output head, and at so few rows MKL's plain `sgemm` spends much of its time reformatting the
//! weight into its kernel's layout, again at every step. `cblas_sgemm_pack` does that once, and
//! `cblas_sgemm_compute` multiplies by the packed copy. Greedy decoding of 64 tokens at batch 32
//! (random weights, 113-token prompts, three alternating runs each, Intel Xeon): the bench's small
//! shape went from 479–520 to 609–631 new tokens/s, the tiny shape from 2558–2699 to 2857–3326.
//!
//! Why chunked: on an AMD EPYC (MKL takes its generic `def` kernels there), a product of one row
//! by a weight (batch-1 decoding) runs in MKL's `xsgemv` on the calling thread alone, whatever
//! the intra-op thread count: `perf` showed the second thread spinning in libgomp for 46% of
//! the samples while the first spent 37% in `xsgemv`, so batch 1 got nothing from a second
//! thread (tiny shape 320 new tokens/s on one, 300 on two). One `bmm` over `C` row chunks of the
//! weight (`[C, out/C, in]`, the input broadcast, no copy) is MKL's batched GEMM, which spreads
//! the chunks over the threads, and each chunk's outputs are the same dot products in the same
//! order: bitwise the plain product. 1 row, 2 threads: the small shape's 32128×512 head 6.1 →
//! 3.1 ms, its 512×512 projections 24 → 11 µs; at 32 rows, chunks of about 1024 outputs also
//! keep each chunk's weight in cache (head 13.7 ms plain, 14.1 packed, 8.4 in 32 chunks).
//!
//! Why reordered (bf16): libtorch's bf16 linear is oneDNN's, handed the weight in its plain
//! layout at every call, which oneDNN's kernels then lay out their own way. The pair that
//! torch.compile's CPU weight prepacking uses, `mkldnn::_reorder_linear_weight` once and
//! `mkldnn::_linear_pointwise` at each step, skips that. On the AMD EPYC the check found it
//! bitwise the plain product for every decoder weight and head of both bench shapes at 1 and
//! 32 rows, and with 2 threads the small shape's 32128×512 head took 555 µs instead of 2144 at
//! one row and 2842 instead of 4818 at 32 rows, its 1024×512 projections 24 µs instead of 42 at
//! one row.
//!
//! Why our own kernel: MKL's generic fp32 kernels on the AMD EPYC sum at 32 rows, and oneDNN's
//! AVX512-BF16 kernels there at 1 and 32 rows, in orders a plain loop of FMAs (`vdpbf16ps` for
//! bf16) can follow (see [`crate::fma_linear`]), and slowly. Ours, 2 threads, hot cache: the
//! small shape's 32128×512 fp32 head at 32 rows 5.1 ms against 8.4 in 32 chunks and 14.4 plain;
//! its 1536×512 stacked q, k, v 219 µs against 290 and 344. Greedy decoding (probe, builds
//! alternating, same checksums): small fp32 batch 32 641–726 → 840–933 new tokens/s, tiny fp32
//! batch 32 3253 → 4321, small bf16 batch 1 156–174 → 234–261; every planned weight chose it.
//! bf16 at batch 32 stays near oneDNN's speed (the plans mix both). At one fp32 row, our
//! four-lane kernel sums as MKL's `sgemv` does, which reads weights from memory at about a third
//! of the bandwidth a plain `sum` reaches there (greedy batch 1, same checksums: tiny 1 thread
//! 313–342 → 625–711, 2 threads 600–643 → 1076–1079; small 2 threads 99–103 → 142–177).
//!
//! Numerics: a kernel is used only where it is bitwise the plain product, which is what
//! transformers computes. That depends on the shape, not on the data: on one Intel machine's MKL
//! the packed product sums in the same order for 16 rows or more and an input width up to 768,
//! and in another order (a few ulps apart) for fewer rows or wider inputs; chunks of 8 outputs,
//! or 64 chunks of the 32128-wide head at one row, sum in another order on the AMD one. Rather
//! than hard-code what one CPU and one MKL do, each candidate is checked once per weight and row
//! count against the plain product on a probe input whose values use every mantissa bit; one
//! that differs is dropped.
//!
//! Which kernel: the candidates that pass (the plain product included) take turns on the steps
//! themselves, `PLAN_TRIALS` calls each, and the one with the fastest median call is kept.
//! Timing them on the probe instead, alone and with a hot cache, misled: on the AMD EPYC the
//! packed and chunked products were within 5% of each other and of the plain one there, and the
//! plans chose packed for most weights, while in the steps, where each weight comes back only
//! after all the others, chunked products everywhere decoded the tiny shape's batch of 32 at
//! 3600–3770 new tokens/s, plain ones at 3270 and packed ones at 3070–3315 (small shape: 649–683,
//! 612–620, 593–596). Every candidate gives the same bits, so trying them on real steps changes
//! no output. The choice can differ between runs and machines; the numbers cannot.
//!
//! A plan is made the first time a step needs the weight at a given number of rows and kept for
//! later steps and later generations (for at most two row counts per weight), until the weight
//! changes: the plan remembers the weight's storage (which it keeps alive, so the address cannot
//! be reused) and its version counter, which every in-place update bumps. Planning the small
//! shape's 73 decoder and head weights takes well under a second. Packed, reordered and panel
//! copies take about the weights' size in memory per row count (MKL reserves more address space
//! than it writes), while a plan tries them and after, if one is kept; chunks are views of the
//! weight. A copy is made only where it leaves the call its memory ([`crate::step_copies`]);
//! a plan without one says so in [`PrepackedStats::short_of_memory`].
//!
//! Errors: the shim refuses operands that are not contiguous fp32 CPU matrices of matching shapes
//! (and packing where MKL's GEMM is missing) with libtorch's message. The layer checks dtype,
//! device and availability before calling it, so such an error means a case those checks missed;
//! the step then takes the plain product, which is the same number and raises any real problem
//! with the operands itself.

use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::autocast::Autocast;
use crate::bf16_dot_linear;
use crate::ffi::{self, owned_tensor, tensor_ptr};
use crate::fma_linear::{self, fma_linear_available};
use crate::inference_mode::InferenceMode;
use crate::lora::LoraLinear;
use crate::step_copies::{self, ShortOfMemory, WeightCopy};
use crate::t5::Pass;
use crate::Result;

/// Fewest rows for which a step tries the packed product (see the module docs).
const MIN_PACKED_ROWS: i64 = 16;

/// Most rows of the order probe on which [`PrepackedLinear`] judges the bf16 dot kernel for a
/// product outside decoding steps (see `bf16_dot_forward`).
const EVAL_ORDER_ROWS: i64 = 8;

/// Most rows for which a step plans a kernel: decoding steps (batch × beams) and not a
/// prompt's worth of positions.
const MAX_PLANNED_ROWS: i64 = 256;

/// Outputs per chunk a chunked product aims at: about 2 MB of a 512-wide fp32 weight, which
/// stays in cache while the rows go through it.
const CHUNK_OUTPUTS: i64 = 1024;

/// Fewest outputs per chunk: narrower chunks sum in another order on some MKL kernels, and
/// gain nothing.
const MIN_CHUNK_OUTPUTS: i64 = 32;

/// Row counts a weight keeps plans for: a batch size and, say, the last smaller batch of an
/// evaluation.
pub(crate) const MAX_ROW_COUNTS: usize = 2;

/// Steps each candidate kernel of a plan takes, in turn, before the fastest is kept (see the
/// module docs).
pub(crate) const PLAN_TRIALS: usize = 4;

/// Whether this libtorch has MKL's packed GEMM (x86-64 builds with MKL).
pub fn prepacked_gemm_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: no arguments; cannot fail (the shim catches C++ exceptions of the lookup).
    *AVAILABLE.get_or_init(|| unsafe { ffi::flan_model_prepacked_linear_available() } == 1)
}

/// Whether this libtorch has oneDNN's reordered linear weights (builds with oneDNN).
pub fn onednn_linear_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: no arguments; cannot fail (the shim catches C++ exceptions of the lookup).
    *AVAILABLE.get_or_init(|| unsafe { ffi::flan_model_onednn_linear_available() } == 1)
}

/// Runs a shim function that hands a tensor back through its out-pointer: the tensor, or None
/// where the shim computed nothing; a failure becomes an error `during` this step.
pub(crate) fn tensor_from_shim(
    during: &'static str,
    call: impl FnOnce(*mut *mut c_void) -> *mut c_char,
) -> Result<Option<Tensor>> {
    let mut out = std::ptr::null_mut();
    let message = call(&mut out);
    ffi::check(message, ffi::libtorch(during))?;
    // SAFETY: on success `out` is null or a fresh at::Tensor* that we own.
    Ok(unsafe { owned_tensor(out) })
}

/// `weight` `[out, in]` packed for inputs of `rows` rows.
fn pack(weight: &Tensor, rows: i64) -> Result<Option<Tensor>> {
    tensor_from_shim("packing a weight for MKL's GEMM", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_prepacked_linear_pack(tensor_ptr(weight), rows, out) }
    })
}

/// `x [rows, in] · weightᵀ` through `packed`, the weight packed for `rows` rows; None where the
/// packed kernel does not apply in the current mode (autograd, CPU autocast).
fn packed_linear(
    x: &Tensor,
    packed: &Tensor,
    weight: &Tensor,
    rows: i64,
) -> Result<Option<Tensor>> {
    let (x, packed, weight) = (tensor_ptr(x), tensor_ptr(packed), tensor_ptr(weight));
    tensor_from_shim("multiplying by a packed weight", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_prepacked_linear_forward(x, packed, weight, rows, out) }
    })
}

/// `weight` `[out, in]`, bf16, reordered by oneDNN for inputs of `rows` rows.
fn onednn_pack(weight: &Tensor, rows: i64) -> Result<Option<Tensor>> {
    tensor_from_shim("reordering a weight for oneDNN", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_onednn_linear_pack(tensor_ptr(weight), rows, out) }
    })
}

/// `x [rows, in] · weightᵀ` through `packed`, the weight reordered by oneDNN; None where the
/// kernel does not apply in the current mode (autograd, CPU autocast).
fn onednn_linear(x: &Tensor, packed: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    let (x, packed, weight) = (tensor_ptr(x), tensor_ptr(packed), tensor_ptr(weight));
    tensor_from_shim("multiplying by a oneDNN-reordered weight", |out| {
        // SAFETY: live tensors, read during the call, and a valid out-pointer; the shim
        // catches every C++ exception.
        unsafe { ffi::flan_model_onednn_linear_forward(x, packed, weight, out) }
    })
}

/// How many row chunks of a weight with `out` outputs a chunked product uses on `threads`
/// intra-op threads: the fewest that divide `out` evenly, give every thread a chunk and keep
/// chunks near [`CHUNK_OUTPUTS`] outputs; None where that leaves fewer than two chunks or chunks
/// narrower than [`MIN_CHUNK_OUTPUTS`].
pub(crate) fn chunk_count(out: i64, threads: i64) -> Option<i64> {
    let want = threads
        .max((out + CHUNK_OUTPUTS - 1) / CHUNK_OUTPUTS)
        .max(2);
    (want..=out / MIN_CHUNK_OUTPUTS).find(|c| out % c == 0)
}

/// `x [rows, in] · weightᵀ` as one batched product over `chunks` row chunks of the weight,
/// `[rows, out]`.
fn chunked_linear(x: &Tensor, weight: &Tensor, chunks: i64) -> Result<Tensor> {
    let (out, inner) = weight.size2()?;
    let rows = x.size2()?.0;
    let w = weight
        .f_view([chunks, out / chunks, inner])?
        .f_transpose(1, 2)?;
    Ok(x.f_unsqueeze(0)?
        .f_expand([chunks, rows, inner], false)?
        .f_bmm(&w)?
        .f_transpose(0, 1)?
        .f_reshape([rows, out])?)
}

/// Whether `t` is an fp32 CPU tensor, as the packed kernel needs (its other requirements are
/// checked by the shim).
fn fp32_on_cpu(t: &Tensor) -> bool {
    t.kind() == Kind::Float && t.device() == Device::Cpu
}

/// Whether `t` is a bf16 CPU tensor, as oneDNN's reordered product is used for.
fn bf16_on_cpu(t: &Tensor) -> bool {
    t.kind() == Kind::BFloat16 && t.device() == Device::Cpu
}

/// `(rows, inner)` of a decoding step's input `x` `[.., inner]` to a `kind` weight, where a
/// planned kernel may multiply it: at most [`MAX_PLANNED_ROWS`] rows of the weight's dtype on
/// the CPU, in inference mode (generation's) without autocast. Plans are made and used in that
/// one mode, in which the candidates compute what the plain product does and nothing else.
pub(crate) fn step_rows(x: &Tensor, kind: Kind) -> Option<(i64, i64)> {
    let shape = x.size();
    let (&inner, outer) = shape.split_last()?;
    let rows: i64 = outer.iter().product();
    let plannable = (1..=MAX_PLANNED_ROWS).contains(&rows)
        && x.device() == Device::Cpu
        && x.kind() == kind
        && InferenceMode::is_enabled()
        && !Autocast::is_enabled(Device::Cpu).unwrap_or(true);
    plannable.then_some((rows, inner))
}

/// A deterministic `[rows, inner]` input in (-0.5, 0.5) whose values fill the mantissa (the
/// fractional parts of multiples of the plastic number's inverse): any difference in summation
/// order between two products shows in the last bits of some of their outputs.
pub(crate) fn probe_input(rows: i64, inner: i64, kind: Kind) -> Tensor {
    let n = Tensor::arange(rows * inner, (tch::Kind::Double, tch::Device::Cpu)) + 1.0;
    let x = n * 0.754_877_666_246_692_7;
    (x.frac() - 0.5).to_kind(kind).view([rows, inner])
}

/// What the decoding-step kernels of a model amount to
/// ([`crate::T5ForConditionalGeneration::prepacked_decoding_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepackedStats {
    /// (weight, row count) pairs planned: their candidates checked against the plain product.
    pub checked: usize,
    /// Of those, the ones that multiply by a packed copy (MKL's, or oneDNN's reordered one).
    pub in_use: usize,
    /// Of those, the ones that multiply chunk by chunk in one batched product.
    pub chunked: usize,
    /// Of those, the ones still trying their candidates on the steps (none chosen yet).
    pub trying: usize,
    /// Of those, the ones multiplied as part of one product over the stacked weights of the
    /// layers that read the same input (see [`crate::stacked_linears`]).
    pub stacked: usize,
    /// Of those, the ones multiplied by our own FMA kernel (see [`crate::fma_linear`]).
    pub fma: usize,
    /// Of those, the ones multiplied by our own four-lane kernel, at one fp32 row (see
    /// [`crate::fma_linear`]).
    pub four_lanes: usize,
    /// Of those, the ones multiplied by our own kernel in libtorch's AVX2 bf16 dot order (see
    /// [`crate::bf16_dot_linear`]).
    pub bf16_dots: usize,
    /// Plans (and stacks) that went without a copy of the weights because it would not have
    /// left the call its memory (see [`crate::step_copies`]): their products ran plain, or
    /// through another kernel.
    pub short_of_memory: usize,
}

/// The kernel a decoding step uses for one weight at one row count.
#[derive(Debug)]
enum StepKernel {
    /// libtorch's linear (no candidate passed the check, or none was faster).
    Plain,
    /// MKL's GEMM over this packed copy (fp32).
    Packed(WeightCopy),
    /// oneDNN's linear over this reordered copy (bf16).
    OneDnnPacked(WeightCopy),
    /// One batched product over this many row chunks of the weight.
    Chunked(i64),
    /// Our own FMA kernel over the weight's panels, in chains of `k_block` input positions
    /// (fp32 and bf16; see [`crate::fma_linear`]).
    Fma { panels: WeightCopy, k_block: i64 },
    /// Our own four-lane kernel over the weight's panels, its first `head` positions summed in
    /// sequence (one fp32 row; see [`crate::fma_linear::four_lane_head`]).
    FourLanes { panels: WeightCopy, head: i64 },
    /// Our own kernel in libtorch's AVX2 bf16 dot order, over the weight itself (see
    /// [`crate::bf16_dot_linear`]).
    Bf16Dots,
}

#[cfg(test)]
impl StepKernel {
    fn name(&self) -> &'static str {
        match self {
            StepKernel::Plain => "plain",
            StepKernel::Packed(_) => "packed",
            StepKernel::OneDnnPacked(_) => "onednn",
            StepKernel::Chunked(_) => "chunked",
            StepKernel::Fma { .. } => "fma",
            StepKernel::FourLanes { .. } => "four_lanes",
            StepKernel::Bf16Dots => "bf16_dots",
        }
    }
}

#[derive(Debug)]
struct StepPlan {
    rows: i64,
    /// Whether a candidate was left out because its copy would not have fit.
    short_of_memory: bool,
    /// The candidates that gave the plain product bitwise, the plain product first; once one is
    /// chosen, that one alone (the others' packed copies freed).
    kernels: Vec<StepKernel>,
    /// Each candidate's call times on the steps so far; empty once one is chosen.
    trials: Vec<Vec<Duration>>,
    /// An alias of the weight's storage when the plan was made: keeps that storage alive, so a
    /// weight whose data is later replaced cannot show the same address.
    source: Tensor,
    version: i64,
}

impl StepPlan {
    /// Keeps the candidate with the fastest median trial and drops the others.
    fn choose(&mut self) {
        let median = |t: &Vec<Duration>| {
            let mut t = t.clone();
            t.sort();
            t.get(t.len() / 2).copied().unwrap_or(Duration::MAX)
        };
        let fastest = (0..self.kernels.len())
            .min_by_key(|&i| median(&self.trials[i]))
            .unwrap_or(0);
        let kernel = self.kernels.swap_remove(fastest);
        self.kernels = vec![kernel];
        self.trials.clear();
    }

    /// The kernel in use, or `trying` while the candidates take turns.
    #[cfg(test)]
    fn kernel_name(&self) -> &'static str {
        match self.kernels.as_slice() {
            [] => "plain",
            [only] => only.name(),
            _ => "trying",
        }
    }
}

/// A bias-free linear layer's weight `[out, in]` (PyTorch's layout), its decoding-step plans,
/// and the LoRA adapter on it, if any.
#[derive(Debug)]
pub(crate) struct PrepackedLinear {
    /// The module's name in the checkpoint (`encoder.block.0.layer.0.SelfAttention.q`,
    /// `lm_head`): what PEFT's `target_modules` match and its adapter keys start with.
    pub(crate) name: String,
    pub(crate) weight: Tensor,
    plans: RefCell<Vec<StepPlan>>,
    pub(crate) lora: RefCell<Option<LoraLinear>>,
    /// Whether plans watch the weight's version counter (see [`Self::of_private_weight`]).
    versioned: bool,
}

impl PrepackedLinear {
    pub(crate) fn new(name: String, weight: Tensor) -> Self {
        PrepackedLinear {
            name,
            weight,
            plans: RefCell::new(Vec::new()),
            lora: RefCell::new(None),
            versioned: true,
        }
    }

    /// A layer over a weight that nothing else holds and nothing updates, such as one made in
    /// inference mode (whose tensors keep no version counter): its plans need not watch for
    /// in-place updates.
    pub(crate) fn of_private_weight(name: String, weight: Tensor) -> Self {
        PrepackedLinear {
            versioned: false,
            ..PrepackedLinear::new(name, weight)
        }
    }

    /// The layer's output: [`Self::forward_step`] in a one-position decoding step, else
    /// [`Self::forward`], plus the LoRA adapter's term when one is attached.
    pub(crate) fn apply(&self, x: &Tensor, pass: Pass) -> Tensor {
        let base = match pass {
            Pass::DecodeStep => self.forward_step(x),
            Pass::Eval => self.forward_eval(x),
            Pass::Train => self.forward(x),
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

    /// The same product outside decoding steps and training (the encoder, the cross-attention's
    /// keys and values, scoring): through the bf16 dot kernel where it gives it bitwise; else
    /// [`Self::forward`].
    fn forward_eval(&self, x: &Tensor) -> Tensor {
        self.bf16_dot_forward(x).unwrap_or_else(|| self.forward(x))
    }

    /// `x · weightᵀ` through [`crate::bf16_dot_linear`] for a bf16 input and weight in inference
    /// mode, where the kernel sums as libtorch's plain product at the layer's shape: judged on at
    /// most [`EVAL_ORDER_ROWS`] rows, since libtorch's product there is one dot product per
    /// (row, output) whatever the row count (an emulation matched it at 1 to 4096 rows), so that
    /// prompts of every length share one check.
    fn bf16_dot_forward(&self, x: &Tensor) -> Option<Tensor> {
        if !bf16_dot_linear::bf16_dot_linear_available()
            || !bf16_on_cpu(&self.weight)
            || !self.weight.is_contiguous()
        {
            return None;
        }
        let mut shape = x.size();
        let (&inner, outer) = shape.split_last()?;
        let rows: i64 = outer.iter().product();
        let (out, weight_inner) = self.weight.size2().ok()?;
        let usable = rows > 0
            && inner == weight_inner
            && bf16_on_cpu(x)
            && InferenceMode::is_enabled()
            && !Autocast::is_enabled(Device::Cpu).unwrap_or(true)
            && bf16_dot_linear::in_plain_order(rows.min(EVAL_ORDER_ROWS), out, inner);
        if !usable {
            return None;
        }
        let x2 = x.f_contiguous().ok()?.f_view([rows, inner]).ok()?;
        let y = bf16_dot_linear::product(&x2, &self.weight).ok().flatten()?;
        *shape.last_mut()? = out;
        y.f_view(shape.as_slice()).ok()
    }

    /// The same product for a decoding step: through the kernel planned for `x`'s row count
    /// (see the module docs), which gives it bitwise; else [`Self::forward`].
    pub(crate) fn forward_step(&self, x: &Tensor) -> Tensor {
        self.planned_forward(x).unwrap_or_else(|| self.forward(x))
    }

    fn planned_forward(&self, x: &Tensor) -> Option<Tensor> {
        let (rows, inner) = step_rows(x, self.weight.kind())?;
        let x2 = x.f_view([rows, inner]).ok()?;
        let out = self.planned_product(rows, inner, &x2)?;
        let mut out_shape = x.size();
        *out_shape.last_mut()? = out.size()[1];
        Some(out.view(out_shape.as_slice()))
    }

    /// `x [rows, in] · weightᵀ` through `kernel` (None where it does not apply in the current
    /// mode or the shim refuses the operands: see the module docs).
    fn run(&self, kernel: &StepKernel, x: &Tensor) -> Option<Tensor> {
        match kernel {
            StepKernel::Plain => Some(self.forward(x)),
            StepKernel::Packed(packed) => {
                packed_linear(x, &packed.tensor, &self.weight, x.size()[0])
                    .ok()
                    .flatten()
            }
            StepKernel::OneDnnPacked(packed) => onednn_linear(x, &packed.tensor, &self.weight)
                .ok()
                .flatten(),
            StepKernel::Chunked(chunks) => chunked_linear(x, &self.weight, *chunks).ok(),
            StepKernel::Fma { panels, k_block } => {
                fma_linear::product(x, &panels.tensor, self.weight.size()[0], *k_block)
                    .ok()
                    .flatten()
            }
            StepKernel::FourLanes { panels, head } => {
                fma_linear::four_lane_product(x, &panels.tensor, self.weight.size()[0], *head)
                    .ok()
                    .flatten()
            }
            StepKernel::Bf16Dots => bf16_dot_linear::product(x, &self.weight).ok().flatten(),
        }
    }

    /// The kernels worth trying at `rows` rows, the plain product first, and whether a copy
    /// one of them needs was not made for want of memory (see [`crate::step_copies`]).
    fn candidates(&self, rows: i64) -> (Vec<StepKernel>, bool) {
        let mut kernels = vec![StepKernel::Plain];
        let mut short_of_memory = false;
        let Ok((out, inner)) = self.weight.size2() else {
            return (kernels, short_of_memory);
        };
        let weight_bytes = step_copies::copy_bytes(&self.weight);
        // A copy of the weight's size, if there is room for it (`make` gives None if the
        // kernel cannot have one).
        let mut copy =
            |make: &dyn Fn() -> Option<Tensor>| match step_copies::make_copy(weight_bytes, make) {
                Ok(copy) => copy,
                Err(ShortOfMemory) => {
                    short_of_memory = true;
                    None
                }
            };
        if let Some(chunks) = chunk_count(out, i64::from(tch::get_num_threads())) {
            kernels.push(StepKernel::Chunked(chunks));
        }
        if rows >= MIN_PACKED_ROWS && prepacked_gemm_available() && fp32_on_cpu(&self.weight) {
            if let Some(packed) = copy(&|| pack(&self.weight, rows).ok().flatten()) {
                kernels.push(StepKernel::Packed(packed));
            }
        }
        if onednn_linear_available() && bf16_on_cpu(&self.weight) {
            if let Some(packed) = copy(&|| onednn_pack(&self.weight, rows).ok().flatten()) {
                kernels.push(StepKernel::OneDnnPacked(packed));
            }
        }
        let kind = self.weight.kind();
        if fma_linear_available(kind) && self.weight.device() == Device::Cpu {
            let k_blocks = fma_linear::k_blocks_in_plain_order(kind, rows, out, inner);
            let head = match rows {
                1 => fma_linear::four_lane_head(&self.weight),
                _ => None,
            };
            let wanted = !k_blocks.is_empty() || head.is_some();
            if let Some(panels) = wanted
                .then(|| copy(&|| fma_linear::pack(&self.weight).ok().flatten()))
                .flatten()
            {
                kernels.extend(k_blocks.into_iter().map(|k_block| StepKernel::Fma {
                    panels: panels.share(),
                    k_block,
                }));
                if let Some(head) = head {
                    kernels.push(StepKernel::FourLanes { panels, head });
                }
            }
        }
        if bf16_on_cpu(&self.weight)
            && self.weight.is_contiguous()
            && bf16_dot_linear::in_plain_order(rows, out, inner)
        {
            kernels.push(StepKernel::Bf16Dots);
        }
        (kernels, short_of_memory)
    }

    /// Whether `kernel` multiplies `probe` into `plain`, this layer's plain product of it, bitwise.
    fn gives_plain_product(&self, kernel: &StepKernel, probe: &Tensor, plain: &Tensor) -> bool {
        matches!(kernel, StepKernel::Plain)
            || self
                .run(kernel, probe)
                .is_some_and(|product| product.equal(plain))
    }

    /// The candidates that give the plain product bitwise on a probe of `rows` rows of width
    /// `inner`, the plain product first, and whether one was left out for want of memory.
    fn passing_candidates(&self, rows: i64, inner: i64) -> (Vec<StepKernel>, bool) {
        let probe = probe_input(rows, inner, self.weight.kind());
        let plain = self.forward(&probe);
        let (kernels, short_of_memory) = self.candidates(rows);
        let passing = kernels
            .into_iter()
            .filter(|kernel| self.gives_plain_product(kernel, &probe, &plain))
            .collect();
        (passing, short_of_memory)
    }

    /// `x` `[rows, inner]` times the weight through the kernel planned for `rows` rows: the
    /// cached plan if the weight is unchanged since, else one made now. While the plan is still
    /// choosing, the candidate with the fewest trials runs and is timed. None where the kernel
    /// does not apply after all (the caller takes the plain product).
    fn planned_product(&self, rows: i64, inner: i64, x: &Tensor) -> Option<Tensor> {
        let mut plans = self.plans.try_borrow_mut().ok()?;
        let version = match self.versioned {
            true => self.weight.f_internal_version().ok()?,
            false => 0,
        };
        let address = self.weight.data_ptr();
        plans.retain(|p| p.version == version && p.source.data_ptr() == address);
        let index = match plans.iter().position(|p| p.rows == rows) {
            Some(index) => index,
            None => {
                if plans.len() >= MAX_ROW_COUNTS {
                    plans.remove(0);
                }
                let (kernels, short_of_memory) = self.passing_candidates(rows, inner);
                plans.push(StepPlan {
                    rows,
                    short_of_memory,
                    trials: vec![Vec::new(); kernels.len()],
                    kernels,
                    source: self.weight.detach(),
                    version,
                });
                plans.len() - 1
            }
        };
        let plan = &mut plans[index];
        if plan.kernels.len() <= 1 {
            return self.run(plan.kernels.first()?, x);
        }
        let turn = (0..plan.trials.len()).min_by_key(|&i| plan.trials[i].len())?;
        let start = Instant::now();
        let out = self.run(&plan.kernels[turn], x);
        // A kernel that refused the operands is never chosen.
        plan.trials[turn].push(out.as_ref().map_or(Duration::MAX, |_| start.elapsed()));
        if plan.trials.iter().all(|t| t.len() >= PLAN_TRIALS) {
            plan.choose();
        }
        out
    }

    /// Drops the plans (and the packed copies' memory).
    pub(crate) fn clear_prepacked(&self) {
        if let Ok(mut plans) = self.plans.try_borrow_mut() {
            plans.clear();
        }
    }

    /// `(rows, kernel name)` for each row count planned (oldest first).
    #[cfg(test)]
    pub(crate) fn planned_row_counts(&self) -> Vec<(i64, &'static str)> {
        self.plans
            .try_borrow()
            .map(|plans| plans.iter().map(|p| (p.rows, p.kernel_name())).collect())
            .unwrap_or_default()
    }

    /// Adds this layer's plans to `stats`.
    pub(crate) fn add_stats(&self, stats: &mut PrepackedStats) {
        let Ok(plans) = self.plans.try_borrow() else {
            return;
        };
        for plan in plans.iter() {
            stats.checked += 1;
            stats.short_of_memory += usize::from(plan.short_of_memory);
            match plan.kernels.as_slice() {
                [StepKernel::Packed(_) | StepKernel::OneDnnPacked(_)] => stats.in_use += 1,
                [StepKernel::Chunked(_)] => stats.chunked += 1,
                [StepKernel::Fma { .. }] => stats.fma += 1,
                [StepKernel::FourLanes { .. }] => stats.four_lanes += 1,
                [StepKernel::Bf16Dots] => stats.bf16_dots += 1,
                [_, _, ..] => stats.trying += 1,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InferenceMode;
    use proptest::prelude::*;
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

    #[test]
    fn chunk_counts_divide_the_outputs_and_give_every_thread_a_chunk() {
        assert_eq!(
            chunk_count(32128, 2),
            Some(32),
            "t5-small's head: 1004 outputs each"
        );
        assert_eq!(
            chunk_count(32100, 2),
            Some(50),
            "Flan-T5's head: 642 outputs each"
        );
        assert_eq!(chunk_count(8192, 2), Some(8));
        assert_eq!(chunk_count(512, 2), Some(2));
        assert_eq!(chunk_count(512, 1), Some(2), "at least two chunks");
        assert_eq!(chunk_count(640, 4), Some(4));
        assert_eq!(
            chunk_count(96, 8),
            None,
            "chunks of 12 outputs are too narrow"
        );
        assert_eq!(chunk_count(34, 2), None);
        assert_eq!(chunk_count(97, 2), None, "a prime");
    }

    /// The shapes of the bench's tiny and small decoders (and their heads) at decoding batch
    /// sizes, one row included: the step's product is bitwise the plain one, planned once.
    #[test]
    fn a_step_equals_the_plain_product_bitwise_at_decoder_shapes() {
        for (rows, inner, out) in [
            (1, 256, 8192),
            (1, 512, 1024),
            (4, 512, 512),
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
            let planned = linear.planned_row_counts();
            assert_eq!(planned.len(), 1, "{rows}x{inner}: planned once");
            assert_eq!(planned[0].0, rows);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever kernel a plan tries or picks, at any row count and shape, a step gives the
        /// plain product bitwise: on the first call, while the candidates take turns, and after.
        #[test]
        fn any_plan_gives_the_plain_product(
            rows in 1i64..40,
            inner in prop::sample::select(vec![64i64, 200, 256, 512, 640, 1024]),
            out in prop::sample::select(vec![40i64, 96, 256, 640, 1000, 2048, 4096]),
            seed in 0i64..1000,
        ) {
            let linear = PrepackedLinear::new("test".into(), matrix(seed, out, inner, 0.05));
            let x = matrix(seed + 1, rows, inner, 1.0);
            let (candidates, _) =
                InferenceMode::run(|| linear.passing_candidates(rows, inner)).unwrap();
            for _ in 0..candidates.len() * PLAN_TRIALS + 2 {
                let (step, plain) = step_and_plain(&linear, &x);
                prop_assert!(step.equal(&plain));
            }
            let planned = linear.planned_row_counts();
            prop_assert_eq!(planned.len(), 1);
            prop_assert_ne!(planned[0].1, "trying");
        }
    }

    /// The candidates take turns on the first steps, each `PLAN_TRIALS` times, then one is kept
    /// for good; the steps are the plain product throughout.
    #[test]
    fn a_plan_tries_its_candidates_on_the_steps_then_keeps_one() {
        let linear = PrepackedLinear::new("test".into(), matrix(3, 640, 256, 0.05));
        let x = matrix(4, 32, 256, 1.0);
        let (candidates, _) = InferenceMode::run(|| linear.passing_candidates(32, 256)).unwrap();
        assert!(candidates.len() >= 2, "plain and chunked at least");
        for call in 1..=candidates.len() * PLAN_TRIALS {
            let (step, plain) = step_and_plain(&linear, &x);
            assert!(step.equal(&plain), "call {call}");
            let kernel = linear.planned_row_counts()[0].1;
            if call < candidates.len() * PLAN_TRIALS {
                assert_eq!(kernel, "trying", "call {call}");
                let plans = linear.plans.borrow();
                let trials: Vec<usize> = plans[0].trials.iter().map(Vec::len).collect();
                let (fewest, most) = (trials.iter().min(), trials.iter().max());
                assert!(most.unwrap() - fewest.unwrap() <= 1, "in turn: {trials:?}");
            }
        }
        let chosen = linear.planned_row_counts()[0].1;
        assert_ne!(chosen, "trying");
        assert_eq!(
            linear.plans.borrow()[0].kernels.len(),
            1,
            "the others dropped"
        );
        for _ in 0..3 {
            let (step, plain) = step_and_plain(&linear, &x);
            assert!(step.equal(&plain));
        }
        assert_eq!(linear.planned_row_counts()[0].1, chosen, "kept");
    }

    /// The check catches a candidate that is not the plain product: here, a packed copy of
    /// another weight, chunks of another weight's shape, and our FMA kernel over another weight
    /// or in another order.
    #[test]
    fn the_check_rejects_a_kernel_that_differs() {
        let linear = PrepackedLinear::new("test".into(), matrix(3, 96, 256, 0.05));
        InferenceMode::run(|| {
            let probe = probe_input(32, 256, Kind::Float);
            let plain = linear.forward(&probe);
            let check = |k: &StepKernel| linear.gives_plain_product(k, &probe, &plain);
            assert!(check(&StepKernel::Plain));
            assert!(check(&StepKernel::Chunked(3)));
            let other = PrepackedLinear::new("other".into(), matrix(4, 96, 256, 0.05));
            let other_plain = other.forward(&probe);
            assert!(other.gives_plain_product(&StepKernel::Chunked(3), &probe, &other_plain));
            assert!(!other.gives_plain_product(&StepKernel::Chunked(3), &probe, &plain));
            if prepacked_gemm_available() {
                let pack = |w: &Tensor| pack(w, 32).unwrap().expect("MKL packs fp32");
                let packed = |w: &Tensor| StepKernel::Packed(WeightCopy::counted(pack(w)));
                assert!(check(&packed(&linear.weight)));
                assert!(!check(&packed(&other.weight)));
            }
            if fma_linear_available(Kind::Float) {
                // Our FMA kernel: another weight's panels are refused, and of the block lengths
                // (each a different order on the probe) at most one can pass.
                let fma = |w: &Tensor, k_block| StepKernel::Fma {
                    panels: WeightCopy::counted(fma_linear::pack(w).unwrap().unwrap()),
                    k_block,
                };
                let passing: Vec<i64> = fma_linear::k_blocks(256)
                    .into_iter()
                    .filter(|&k_block| check(&fma(&linear.weight, k_block)))
                    .collect();
                assert!(passing.len() <= 1, "{passing:?}");
                for k_block in fma_linear::k_blocks(256) {
                    assert!(!check(&fma(&other.weight, k_block)));
                }
            }
        })
        .unwrap();
    }

    /// The check catches a oneDNN-reordered copy of another bf16 weight, and the shim refuses
    /// operands it cannot take with libtorch's message.
    #[test]
    fn reordered_bf16_copies_are_checked_and_their_operands_refused() {
        let bf16 = |seed| matrix(seed, 96, 256, 0.05).to_kind(Kind::BFloat16);
        let linear = PrepackedLinear::new("test".into(), bf16(3));
        let other = bf16(4);
        let message = |r: Result<Option<Tensor>>| match r {
            Err(crate::Error::Libtorch { message, .. }) => message,
            other => panic!("expected a libtorch error, got {other:?}"),
        };
        let m = message(onednn_pack(&matrix(3, 96, 256, 0.05), 32));
        if !onednn_linear_available() {
            assert!(m.contains("no oneDNN linear"), "{m}");
            return;
        }
        assert!(m.contains("the weight must be BFloat16, got Float"), "{m}");
        // A CPU without bf16 support in oneDNN refuses to reorder: the layer then never offers
        // the candidate.
        let (Ok(Some(own)), Ok(Some(foreign))) =
            (onednn_pack(&linear.weight, 32), onednn_pack(&other, 32))
        else {
            return;
        };
        InferenceMode::run(|| {
            let probe = probe_input(32, 256, Kind::BFloat16);
            let plain = linear.forward(&probe);
            let check = |k: StepKernel| linear.gives_plain_product(&k, &probe, &plain);
            let reordered =
                |t: &Tensor| StepKernel::OneDnnPacked(WeightCopy::counted(t.shallow_clone()));
            assert!(!check(reordered(&foreign)));
            let product = onednn_linear(&probe, &own, &linear.weight)
                .unwrap()
                .unwrap();
            assert_eq!(product.size(), vec![32, 96]);
            assert_eq!(check(reordered(&own)), product.equal(&plain));
            let narrow = probe_input(32, 128, Kind::BFloat16);
            let m = message(onednn_linear(&narrow, &own, &linear.weight));
            assert!(m.contains("input of shape [32, 128]"), "{m}");
            let m = message(onednn_linear(&probe, &own, &other.view([256, 96])));
            assert!(m.contains("mkldnn tensor of shape [256, 96]"), "{m}");
        })
        .unwrap();
        // Outside inference mode, with autograd on, nothing is computed.
        let probe = probe_input(4, 256, Kind::BFloat16);
        assert!(onednn_linear(&probe, &own, &linear.weight)
            .unwrap()
            .is_none());
    }

    /// Wide inputs, where one machine's MKL sums the packed product in another order: whatever
    /// the check decides, the step returns the plain product, and it plans once.
    #[test]
    fn wide_inputs_still_give_the_plain_product() {
        for inner in [1024, 2048] {
            let linear = PrepackedLinear::new("test".into(), matrix(3, 96, inner, 0.05));
            let x = matrix(4, 32, inner, 1.0);
            let (step, plain) = step_and_plain(&linear, &x);
            assert!(step.equal(&plain), "width {inner}");
            let counts = linear.planned_row_counts();
            assert_eq!(counts.len(), 1, "width {inner}: planned once");
            let _ = step_and_plain(&linear, &x);
            assert_eq!(linear.planned_row_counts(), counts);
        }
    }

    #[test]
    fn autograd_keeps_the_plain_product() {
        let weight = matrix(5, 64, 256, 0.05).set_requires_grad(true);
        let linear = PrepackedLinear::new("test".into(), weight.shallow_clone());
        let (step, plain) = step_and_plain(&linear, &matrix(6, 8, 256, 1.0));
        assert!(step.equal(&plain));
        let planned = linear.planned_row_counts();
        assert_eq!(planned.len(), 1, "8 rows in inference mode: planned");
        assert_ne!(planned[0].1, "packed", "8 rows: never packed");
        linear.clear_prepacked();
        // Outside inference mode with a weight that wants gradients: the product is libtorch's,
        // with its gradient, and no plan is made.
        let x = matrix(7, 32, 256, 1.0);
        let out = linear.forward_step(&x);
        assert!(out.requires_grad());
        assert!(linear.planned_row_counts().is_empty());
        out.sum(Kind::Float).backward();
        let want = x
            .sum_dim_intlist(0, false, Kind::Float)
            .unsqueeze(0)
            .expand([64, 256], false);
        assert!(weight.grad().allclose(&want, 1e-5, 1e-5, false));
    }

    /// Under CPU autocast a step takes libtorch's product (in autocast's dtype) and plans
    /// nothing: a plan made there would not be the plain fp32 product.
    #[test]
    fn autocast_keeps_the_plain_product() {
        let linear = PrepackedLinear::new("test".into(), matrix(5, 640, 256, 0.05));
        let x = matrix(6, 4, 256, 1.0);
        let (step, plain) = InferenceMode::run(|| {
            let _bf16 = Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            (linear.forward_step(&x), linear.forward(&x))
        })
        .unwrap();
        assert_eq!(step.kind(), Kind::BFloat16);
        assert!(step.equal(&plain));
        assert!(linear.planned_row_counts().is_empty());
    }

    /// bf16 weights (how Flan-T5 is usually run) are planned too: the chunked product and
    /// oneDNN's reordered copy are used where the check finds them bitwise libtorch's bf16
    /// linear, and the step is that product either way.
    #[test]
    fn bf16_steps_give_the_plain_bf16_product() {
        for (rows, out) in [(1, 8192), (32, 1024)] {
            let weight = matrix(8, out, 512, 0.05).to_kind(Kind::BFloat16);
            let linear = PrepackedLinear::new("test".into(), weight);
            let x = matrix(9, rows, 512, 1.0).to_kind(Kind::BFloat16);
            let (step, plain) = step_and_plain(&linear, &x);
            assert_eq!(step.kind(), Kind::BFloat16);
            assert!(step.equal(&plain), "{rows} rows by {out}");
            let planned = linear.planned_row_counts();
            assert_eq!(planned.len(), 1);
            assert_ne!(planned[0].1, "packed", "MKL's packed GEMM is fp32 only");
        }
    }

    /// Products outside decoding steps (an encoder's, many rows of a 3-d input) take the bf16
    /// dot kernel where it sums as libtorch does at the layer's shape, and are the plain product
    /// bitwise either way; fp32, autograd and shapes it was not judged on stay plain.
    #[test]
    fn bf16_eval_products_give_the_plain_bf16_product() {
        let weight = matrix(8, 640, 256, 0.05).to_kind(Kind::BFloat16);
        let linear = PrepackedLinear::new("test".into(), weight);
        let x = matrix(9, 300, 256, 1.0)
            .to_kind(Kind::BFloat16)
            .view([3, 100, 256]);
        let (eval, kernel, plain) = InferenceMode::run(|| {
            (
                linear.apply(&x, Pass::Eval),
                linear.bf16_dot_forward(&x),
                linear.forward(&x),
            )
        })
        .unwrap();
        assert_eq!(eval.size(), [3, 100, 640]);
        assert!(eval.equal(&plain));
        let judged = bf16_dot_linear::in_plain_order(EVAL_ORDER_ROWS, 640, 256);
        assert_eq!(kernel.is_some(), judged);
        if let Some(kernel) = kernel {
            assert!(kernel.equal(&plain));
        }
        // Outside inference mode, on an fp32 layer, on a non-contiguous input: see the docs.
        assert!(linear.bf16_dot_forward(&x).is_none());
        let fp32 = PrepackedLinear::new("test".into(), matrix(8, 64, 256, 0.05));
        let x32 = x.to_kind(Kind::Float);
        assert!(InferenceMode::run(|| fp32.bf16_dot_forward(&x32))
            .unwrap()
            .is_none());
        let strided = x.transpose(0, 1);
        let (kernel, plain) =
            InferenceMode::run(|| (linear.bf16_dot_forward(&strided), linear.forward(&strided)))
                .unwrap();
        assert_eq!(kernel.is_some(), judged);
        if let Some(kernel) = kernel {
            assert!(kernel.equal(&plain));
        }
    }

    /// A weight updated in place (an optimiser step) or given new data (a dtype round trip, a
    /// checkpoint) is planned again: a stale packed copy would silently compute with the old
    /// weights.
    #[test]
    fn a_changed_weight_is_planned_again() {
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
        assert_eq!(linear.planned_row_counts().len(), 1, "stale plans dropped");
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
        assert!(m.contains("the weight must be Float, got Double"), "{m}");
        let m = message(pack(&matrix(13, 64, 256, 0.05), 0));
        assert!(m.contains("cannot pack for 0 rows"), "{m}");

        let weight = matrix(13, 64, 256, 0.05);
        let packed = pack(&weight, 32).unwrap().expect("MKL packs fp32");
        let narrow = matrix(14, 32, 128, 1.0);
        let m =
            InferenceMode::run(|| message(packed_linear(&narrow, &packed, &weight, 32))).unwrap();
        assert!(m.contains("input of shape [32, 128]"), "{m}");
        // The layer does not hand the shim what it would refuse: an fp64 layer never tries to
        // pack.
        let linear = PrepackedLinear::new("test".into(), double);
        let x = matrix(15, 32, 256, 1.0).to_kind(Kind::Double);
        let (step, plain) = step_and_plain(&linear, &x);
        assert!(step.equal(&plain));
        assert!(linear
            .planned_row_counts()
            .iter()
            .all(|(_, kernel)| *kernel != "packed"));
    }

    #[test]
    fn at_most_two_row_counts_are_kept() {
        let linear = PrepackedLinear::new("test".into(), matrix(11, 128, 256, 0.05));
        for rows in [16, 24, 32] {
            let x = matrix(12, rows, 256, 1.0);
            let (step, plain) = step_and_plain(&linear, &x);
            assert!(step.equal(&plain), "{rows} rows");
        }
        let rows: Vec<i64> = linear.planned_row_counts().iter().map(|p| p.0).collect();
        assert_eq!(rows, vec![24, 32]);
        linear.clear_prepacked();
        assert!(linear.planned_row_counts().is_empty());
    }
}
