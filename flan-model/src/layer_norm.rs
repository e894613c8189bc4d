//! T5's layer norm: RMS normalisation without mean subtraction or bias, variance in fp32.
//!
//! Small inputs (a decoding step's rows) go through one call to `csrc/rms_norm.cpp`, which does
//! the composite's arithmetic with its bits: decoding a token runs three norms per block, and
//! the composite's eight libtorch calls cost far more in dispatch than in arithmetic. The kernel
//! adds each row's squares in ATen's cascade order over vectors of its build's lane count; it is
//! used for a (dtype, width) only after [`fused_agrees`] has found it bitwise the composite.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tch::{Kind, Tensor};

use crate::ffi::{self, tensor_ptr};
use crate::prepacked_linear::tensor_from_shim;

/// `weight * x / sqrt(mean(x^2) + eps)`, with the variance computed in fp32 and the normalised
/// value cast back to the weight's dtype before scaling (as transformers does for f16/bf16).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    let key = key(
        x.kind(),
        weight.kind(),
        weight.size().first().copied().unwrap_or(0),
    );
    // The kernel is asked first, the probe only once the kernel applies: in a mode where it
    // declines (autocast, autograd) the probe would decline too, learn nothing, and be paid
    // again on every call.
    if let Some(key) = key.filter(|&k| known(k) != Some(false)) {
        if let Ok(Some((y, _))) = fused(x, weight, eps, 0, false) {
            if fused_agrees(key) {
                return y;
            }
        }
    }
    composite(x, weight, eps)
}

/// The norm as libtorch operations (what transformers' `T5LayerNorm` runs).
fn composite(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    // Casts only where the dtype changes: a same-dtype `to_kind` is free on the data but is
    // still a dispatch, and decoding one token makes hundreds of these small calls.
    let x32 = cast(x, Kind::Float);
    let normed = &x32 * (mean_square(&x32) + eps).rsqrt();
    weight * cast(&normed, weight.kind())
}

/// Each row's mean square, in fp32, as the composite computes it.
fn mean_square(x32: &Tensor) -> Tensor {
    x32.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float)
}

fn cast(x: &Tensor, kind: Kind) -> Tensor {
    if x.kind() == kind {
        x.shallow_clone()
    } else {
        x.to_kind(kind)
    }
}

/// The kernel's norm of `x` (and, with `variance`, the rows' mean squares), its sums over
/// vectors of `lanes` lanes (0: libtorch's own); None where it does not apply (autograd,
/// autocast, 32768 elements or more, other dtypes or layouts).
fn fused(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    lanes: i32,
    variance: bool,
) -> crate::Result<Option<(Tensor, Option<Tensor>)>> {
    let (x, weight) = (tensor_ptr(x), tensor_ptr(weight));
    let mut var = std::ptr::null_mut();
    let var_out = if variance {
        &mut var as *mut _
    } else {
        std::ptr::null_mut()
    };
    let y = tensor_from_shim("normalising through the rms norm kernel", |out| {
        // SAFETY: live tensors, read during the call, valid out-pointers (or null for the
        // variance); the shim catches every C++ exception.
        unsafe { ffi::flan_model_rms_norm_forward(x, weight, eps, lanes, out, var_out) }
    })?;
    // SAFETY: on success `var` is null or a fresh at::Tensor* that we own.
    let var = unsafe { ffi::owned_tensor(var) };
    Ok(y.map(|y| (y, var)))
}

/// What [`fused_agrees`] remembers a verdict by: whether the input and the weight are bf16 (else
/// fp32), and the width. None for other dtypes.
type Key = (bool, bool, i64);

fn key(x_kind: Kind, weight_kind: Kind, width: i64) -> Option<Key> {
    let supported = |k: Kind| matches!(k, Kind::Float | Kind::BFloat16);
    (supported(x_kind) && supported(weight_kind) && width > 0).then_some((
        x_kind == Kind::BFloat16,
        weight_kind == Kind::BFloat16,
        width,
    ))
}

static KNOWN: Mutex<BTreeMap<Key, bool>> = Mutex::new(BTreeMap::new());

/// Probes run in this process (for tests: a mode where the kernel declines must not pay one).
static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// bf16 or fp32, as a [`Key`] spells them.
fn kind(bf16: bool) -> Kind {
    if bf16 {
        Kind::BFloat16
    } else {
        Kind::Float
    }
}

/// The verdict of [`fused_agrees`] for `key`, if it has been reached.
fn known(key: Key) -> Option<bool> {
    KNOWN.lock().ok().and_then(|k| k.get(&key).copied())
}

/// Whether the kernel gives the composite's bits for inputs of `key`, found on [`probe`] rows
/// (the rows' mean squares and the norms) and remembered for the process: the summation order
/// belongs to libtorch's build, not the data.
fn fused_agrees(key: Key) -> bool {
    if let Some(known) = known(key) {
        return known;
    }
    let (x_kind, weight_kind, width) = (kind(key.0), kind(key.1), key.2);
    let Some(same) = tch::no_grad(|| matches_composite(x_kind, weight_kind, width, 0)) else {
        // The kernel declined the probe (autocast, say): nothing learnt about its order.
        return false;
    };
    if let Ok(mut known) = KNOWN.lock() {
        known.insert(key, same);
    }
    same
}

/// Whether the kernel over `lanes` lanes gives the composite's mean squares and norms on the
/// probe; None where it declined.
fn matches_composite(x_kind: Kind, weight_kind: Kind, width: i64, lanes: i32) -> Option<bool> {
    PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (x, weight) = probe(x_kind, weight_kind, width)?;
    let eps = 1e-6;
    let (y, var) = fused(&x, &weight, eps, lanes, true).ok()??;
    let same_var = var.is_some_and(|v| v.equal(&mean_square(&cast(&x, Kind::Float))));
    Some(same_var && y.equal(&composite(&x, &weight, eps)))
}

/// Rows whose sums of squares come out differently in different orders: magnitudes spread over
/// 2^-12 to 2^12, so that the small squares are lost or kept depending on what they are added
/// to. As many rows as fit below the kernel's size limit (at most 16); None where not one does.
fn probe(x_kind: Kind, weight_kind: Kind, width: i64) -> Option<(Tensor, Tensor)> {
    let rows = (32767 / width).min(16);
    if rows == 0 {
        return None;
    }
    let x = spread(0, rows, width, x_kind);
    let weight =
        ((Tensor::arange(width, (Kind::Double, tch::Device::Cpu)) * 0.414_213_562_373_095).frac()
            + 0.5)
            .to_kind(weight_kind);
    Some((x, weight))
}

/// `rows × width` values with magnitudes over 2^-12 to 2^12 (so that summation orders show),
/// from `seed`.
fn spread(seed: u64, rows: i64, width: i64, kind: Kind) -> Tensor {
    let i = Tensor::arange(rows * width, (Kind::Double, tch::Device::Cpu)) + (seed as f64 * 7919.0);
    let mantissa = (&i * 0.618_033_988_749_894_9).frac() + 1.0;
    let exponent = ((&i * 0.754_877_666_246_692_7).frac() * 24.0 - 12.0).floor();
    let sign = (&i * 0.569_840_290_998_053_3)
        .frac()
        .ge(0.5)
        .to_kind(Kind::Double)
        * 2.0
        - 1.0;
    (mantissa * exponent.exp2() * sign)
        .to_kind(kind)
        .view([rows, width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::Device;

    /// Lanes of libtorch's float vectors in its chosen build (8 or 16), 0 where the kernel does
    /// not know the build.
    fn native_lanes() -> i32 {
        // SAFETY: no arguments; cannot fail (the shim catches every C++ exception).
        unsafe { ffi::flan_model_rms_norm_lanes() }
    }

    #[test]
    fn rms_norm_matches_hand_computation() {
        let x = Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]);
        let w = Tensor::from_slice(&[1.0f32, 2.0]);
        let y = rms_norm(&x, &w, 0.0);
        // rms = sqrt((9 + 16) / 2) = sqrt(12.5)
        let rms = 12.5f64.sqrt();
        let got: Vec<f32> = Vec::try_from(y.view([-1])).unwrap();
        assert!((got[0] as f64 - 3.0 / rms).abs() < 1e-6);
        assert!((got[1] as f64 - 2.0 * 4.0 / rms).abs() < 1e-6);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any width from one vector up (tails of every length, the T5 widths, rows long enough
        /// for the cascade's second level), any row count below the size limit and every dtype
        /// pairing: the
        /// kernel's norms and mean squares are the composite's bits.
        #[test]
        fn the_kernel_gives_the_composites_bits(
            width in prop_oneof![16i64..=300, Just(512i64), Just(768), Just(1024), Just(2048), Just(4096),
                Just(16384), Just(30000)],
            rows in 1i64..=6,
            x_bf16 in any::<bool>(),
            w_bf16 in any::<bool>(),
            seed in 0u64..1000,
        ) {
            if native_lanes() == 0 {
                return Ok(());
            }
            let _no_grad = tch::no_grad_guard();
            // Below the size limit; the widest rows reach the cascade's second level.
            let rows = rows.min(32767 / width);
            let x = spread(seed, rows, width, kind(x_bf16)).view([rows, 1, width]);
            let w = spread(seed + 1, 1, width, kind(w_bf16)).view([width]);
            let (y, var) = fused(&x, &w, 1e-6, 0, true).unwrap().expect("the kernel applies");
            prop_assert!(var.unwrap().equal(&mean_square(&cast(&x, Kind::Float))));
            prop_assert!(y.equal(&composite(&x, &w, 1e-6)));
            prop_assert!(rms_norm(&x, &w, 1e-6).equal(&y));
        }
    }

    /// The probe sees a wrong lane count: summed over 16 lanes where libtorch sums over 8 (or
    /// the reverse), its mean squares differ from the composite's.
    #[test]
    fn the_probe_tells_lane_counts_apart() {
        let native = native_lanes();
        if native == 0 {
            return;
        }
        let other = if native == 8 { 16 } else { 8 };
        let _no_grad = tch::no_grad_guard();
        for width in [64, 512, 768, 1024, 4096] {
            for (x_kind, w_kind) in [(Kind::Float, Kind::Float), (Kind::BFloat16, Kind::BFloat16)] {
                assert_eq!(matches_composite(x_kind, w_kind, width, native), Some(true));
                assert_eq!(
                    matches_composite(x_kind, w_kind, width, other),
                    Some(false),
                    "width {width}, {x_kind:?}"
                );
            }
        }
        assert!(fused_agrees(
            key(Kind::BFloat16, Kind::BFloat16, 512).unwrap()
        ));
    }

    /// Where the kernel does not apply, rms_norm is the composite: gradients flow, autocast is
    /// followed, large inputs keep libtorch's parallel sums.
    #[test]
    fn the_kernel_declines_autograd_autocast_and_large_or_strided_inputs() {
        let x = spread(3, 4, 64, Kind::Float);
        let w = spread(4, 1, 64, Kind::Float).view([64]);
        let declined = |x: &Tensor, w: &Tensor| fused(x, w, 1e-6, 0, false).unwrap().is_none();

        let trained = spread(4, 1, 64, Kind::Float)
            .view([64])
            .set_requires_grad(true);
        assert!(declined(&x, &trained));
        let y = rms_norm(&x, &trained, 1e-6);
        assert!(y.requires_grad());
        y.sum(Kind::Float).backward();
        assert!(trained.grad().defined());

        let _no_grad = tch::no_grad_guard();
        assert!(declined(
            &spread(5, 64, 512, Kind::Float),
            &spread(6, 1, 512, Kind::Float).view([512])
        ));
        assert!(declined(
            &x.transpose(0, 1).contiguous().transpose(0, 1),
            &w
        ));
        assert!(declined(&x.to_kind(Kind::Half), &w));
        let narrow = (
            x.narrow(1, 0, 8).contiguous(),
            w.narrow(0, 0, 8).contiguous(),
        );
        assert_eq!(declined(&narrow.0, &narrow.1), native_lanes() != 8);
        {
            let _autocast = crate::Autocast::enter(Device::Cpu, Kind::BFloat16).unwrap();
            assert!(declined(&x, &w));
            // Where the kernel declines, no probe is paid and no verdict reached, for a width no
            // other test uses (other tests may probe meanwhile: the count only bounds).
            let (x, w) = (
                spread(7, 2, 4000, Kind::Float),
                spread(8, 1, 4000, Kind::Float),
            );
            let probes = || PROBES.load(std::sync::atomic::Ordering::Relaxed);
            let before = probes();
            for _ in 0..50 {
                let _ = rms_norm(&x, &w.view([4000]), 1e-6);
            }
            assert!(probes() - before < 50);
            assert_eq!(known(key(Kind::Float, Kind::Float, 4000).unwrap()), None);
        }
        if native_lanes() != 0 {
            assert!(!declined(&x, &w));
        }
    }
}
