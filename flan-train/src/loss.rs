//! The training loss: token cross-entropy summed with the loss weights (so padding counts for
//! nothing), plus t5x's optional z-loss z·log²Z that keeps the softmax normaliser near 1. The
//! trainer divides the sums by the number of real target tokens of the whole optimizer step (or by
//! t5x's fixed `loss_normalizing_factor`), so gradient accumulation gives the same gradient as one
//! large batch.

use tch::{Kind, Tensor};

/// Summed losses of one micro-batch, as 0-d fp32 tensors that still carry the graph.
pub struct LossSums {
    /// Σ w·(−log p(target)).
    pub cross_entropy: Tensor,
    /// Σ w·log²Z, where Z is the softmax normaliser of each position.
    pub z: Tensor,
}

/// `logits` `[..., vocab]`, `targets` and `weights` (int64, fp32) of the leading shape: `[rows,
/// len]` for a whole batch, `[n]` for target positions only. Computed in fp32 whatever the
/// logits' dtype.
pub fn loss_sums(logits: &Tensor, targets: &Tensor, weights: &Tensor, with_z: bool) -> LossSums {
    let logits = logits.to_kind(Kind::Float);
    let log_z = logits.logsumexp(-1, false);
    let target_logit = logits
        .gather(-1, &targets.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let cross_entropy = ((&log_z - target_logit) * weights).sum(Kind::Float);
    let z = if with_z {
        (log_z.square() * weights).sum(Kind::Float)
    } else {
        Tensor::zeros([], (Kind::Float, logits.device()))
    };
    LossSums { cross_entropy, z }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_torch_cross_entropy_and_ignores_padding() {
        tch::manual_seed(3);
        let logits = Tensor::randn([2, 3, 5], (Kind::Float, tch::Device::Cpu));
        let targets = Tensor::from_slice(&[1i64, 4, 0, 2, 0, 0]).view([2, 3]);
        let weights = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0, 0.0, 0.0]).view([2, 3]);
        let sums = loss_sums(&logits, &targets, &weights, true);
        // Reference: torch's mean cross-entropy over the real tokens, with padding as ignore_index.
        let labels = Tensor::from_slice(&[1i64, 4, -100, 2, -100, -100]);
        let mean = logits.view([6, 5]).cross_entropy_loss::<Tensor>(
            &labels,
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        );
        let ours = sums.cross_entropy.double_value(&[]) / 3.0;
        assert!((ours - mean.double_value(&[])).abs() < 1e-6);
        let lz = logits.logsumexp(-1, false).view([6]);
        let want_z: f64 = [0usize, 1, 3]
            .iter()
            .map(|&i| lz.double_value(&[i as i64]).powi(2))
            .sum();
        assert!((sums.z.double_value(&[]) - want_z).abs() < 1e-5);
    }
}
