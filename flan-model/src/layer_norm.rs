//! T5's layer norm: RMS normalisation without mean subtraction or bias, variance in fp32.

use tch::{Kind, Tensor};

/// `weight * x / sqrt(mean(x^2) + eps)`, with the variance computed in fp32 and the normalised
/// value cast back to the weight's dtype before scaling (as transformers does for f16/bf16).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    // Casts only where the dtype changes: a same-dtype `to_kind` is free on the data but is
    // still a dispatch, and decoding one token makes hundreds of these small calls.
    let x32 = cast(x, Kind::Float);
    let variance = x32.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
    let normed = x32 * (variance + eps).rsqrt();
    weight * cast(&normed, weight.kind())
}

fn cast(x: &Tensor, kind: Kind) -> Tensor {
    if x.kind() == kind {
        x.shallow_clone()
    } else {
        x.to_kind(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
