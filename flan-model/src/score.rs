//! Scoring: the log-likelihood of given targets for given inputs, batched — what rank
//! classification in flan-eval compares across answer options.

use tch::Kind;

use crate::inference_mode::InferenceMode;
use crate::padding::{inputs_and_mask, pad_right};
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
    let (input_ids, mask) = inputs_and_mask(inputs, model.config().pad_token_id);
    let (input_ids, mask) = (input_ids.to_device(device), mask.to_device(device));
    let labels = pad_right(targets, -100).to_device(device);
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
