//! The model interface the evaluator drives. Implemented for flan-model's T5 in flan-eval-t5 (the
//! core of this crate has no libtorch) and for [`crate::scripted::ScriptedModel`] in tests.

use crate::Result;
use serde::{Deserialize, Serialize};

/// How the evaluator asks a model to decode: greedy, or sampling for self-consistency (seeds
/// come per prompt in [`GenerateRequest`]). flan-eval-t5 maps it onto flan-model's
/// `generate::GenerationConfig`, which also knows beam search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoding {
    /// Upper bound on generated tokens (EOS excluded).
    pub max_new_tokens: usize,
    /// Sample instead of greedy decoding.
    pub do_sample: bool,
    /// Softmax temperature when sampling.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens when sampling (`None`: all).
    pub top_k: Option<usize>,
    /// Nucleus sampling mass when sampling (`None`: 1.0).
    pub top_p: Option<f64>,
    /// Outputs per prompt (self-consistency's k; 1 for greedy).
    pub num_return_sequences: usize,
}

impl Decoding {
    /// Greedy decoding of one output of at most `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Decoding {
            max_new_tokens,
            do_sample: false,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            num_return_sequences: 1,
        }
    }
}

/// One prompt to complete, with the seed of its random choices (derived per item so that
/// results do not depend on batch size or order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateRequest {
    /// The encoder input.
    pub prompt: String,
    /// Seed for sampling; ignored by greedy decoding.
    pub seed: u64,
}

/// What the evaluator needs from a model. All calls are batched.
pub trait EvalModel {
    /// A name for reports (e.g. the model directory).
    fn name(&self) -> String;

    /// The longest encoder input, in tokens, prompts are trimmed to (by dropping exemplars).
    fn max_input_tokens(&self) -> usize;

    /// Number of encoder tokens `text` becomes (EOS included), for the prompt budget.
    fn count_tokens(&mut self, text: &str) -> Result<usize>;

    /// Decoded outputs: `config.num_return_sequences` per request, in request order.
    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        config: &Decoding,
    ) -> Result<Vec<Vec<String>>>;

    /// Sum of log-probabilities of each target (EOS included) given its input.
    fn score(&mut self, inputs: &[String], targets: &[String]) -> Result<Vec<f64>>;

    /// Logits of the first decoder step (from the decoder start token) at the first token of
    /// each candidate string, per prompt: `out[i][j]` for prompt `i`, candidate `j`. This is
    /// MMLU rank classification as in hendrycks/test `evaluate_flan.py`.
    fn first_token_logits(
        &mut self,
        prompts: &[String],
        candidates: &[String],
    ) -> Result<Vec<Vec<f32>>>;
}
