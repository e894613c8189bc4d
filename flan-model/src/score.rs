//! Scoring: the log-likelihood of given targets for given inputs, batched — what rank
//! classification in flan-eval compares across answer options.

use tch::{Kind, Tensor};

use crate::inference_mode::InferenceMode;
use crate::t5::T5ForConditionalGeneration;
use crate::{Error, Result};

/// Log-likelihood of one target sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetScore {
    /// Sum of the log-probabilities of the target tokens (EOS included when the ids have it).
    pub logprob: f64,
    /// Number of target tokens scored.
    pub num_tokens: usize,
}

fn pad_rows(rows: &[Vec<i64>], value: i64) -> Tensor {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for r in rows {
        flat.extend_from_slice(r);
        flat.extend(std::iter::repeat_n(value, width - r.len()));
    }
    Tensor::from_slice(&flat).view([rows.len() as i64, width as i64])
}

/// Scores `targets[i]` given `inputs[i]` (token ids; targets usually end with EOS) in one padded
/// batch: teacher forcing with decoder inputs shifted right, log-softmax in fp32.
pub fn score_batch(
    model: &T5ForConditionalGeneration,
    inputs: &[Vec<i64>],
    targets: &[Vec<i64>],
) -> Result<Vec<TargetScore>> {
    if inputs.len() != targets.len() {
        return Err(Error::InvalidInput(format!(
            "{} inputs but {} targets",
            inputs.len(),
            targets.len()
        )));
    }
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(i) = targets.iter().position(Vec::is_empty) {
        return Err(Error::InvalidInput(format!("target {i} has no tokens")));
    }
    let device = model.device();
    let input_ids = pad_rows(inputs, model.config().pad_token_id).to_device(device);
    let mask_rows: Vec<Vec<i64>> = inputs.iter().map(|r| vec![1; r.len()]).collect();
    let mask = pad_rows(&mask_rows, 0).to_device(device);
    let labels = pad_rows(targets, -100).to_device(device);
    InferenceMode::run(|| {
        let decoder_input_ids = model.shift_right(&labels);
        let logits = model.forward(&input_ids, &mask, &decoder_input_ids, None, false);
        let logprobs = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
        let valid = labels.ne(-100);
        let picked = logprobs
            .gather(-1, &labels.clamp_min(0).unsqueeze(-1), false)
            .squeeze_dim(-1)
            * valid.to_kind(Kind::Float);
        let sums = Vec::<f64>::try_from(
            picked
                .sum_dim_intlist(-1, false, Kind::Double)
                .to_device(tch::Device::Cpu),
        )?;
        Ok(sums
            .into_iter()
            .zip(targets)
            .map(|(logprob, t)| TargetScore {
                logprob,
                num_tokens: t.len(),
            })
            .collect())
    })?
}
