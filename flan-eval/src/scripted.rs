//! A model that answers from a script: for tests and for checking the evaluator end to end
//! without weights. Tokens are counted as whitespace-separated words plus EOS.

use crate::model::{Decoding, EvalModel, GenerateRequest};
use crate::text::py_split;
use crate::Result;

/// The script: `(prompt, seed, sample index) -> output`.
pub type Responder = Box<dyn FnMut(&str, u64, usize) -> String>;

/// A scripted stand-in for a real model.
pub struct ScriptedModel {
    respond: Responder,
    max_input_tokens: usize,
    /// Prompts seen by `generate`, in call order (tests inspect them).
    pub seen_prompts: Vec<String>,
    /// Number of batched calls made.
    pub calls: usize,
}

impl ScriptedModel {
    /// A model whose every output comes from `respond`.
    pub fn new(respond: impl FnMut(&str, u64, usize) -> String + 'static) -> Self {
        ScriptedModel {
            respond: Box::new(respond),
            max_input_tokens: usize::MAX,
            seen_prompts: Vec::new(),
            calls: 0,
        }
    }

    /// Sets the prompt budget in (whitespace) tokens.
    pub fn with_max_input_tokens(mut self, n: usize) -> Self {
        self.max_input_tokens = n;
        self
    }
}

impl EvalModel for ScriptedModel {
    fn name(&self) -> String {
        "scripted".to_string()
    }

    fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    fn count_tokens(&mut self, text: &str) -> Result<usize> {
        Ok(py_split(text).count() + 1)
    }

    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        config: &Decoding,
    ) -> Result<Vec<Vec<String>>> {
        self.calls += 1;
        Ok(requests
            .iter()
            .map(|r| {
                self.seen_prompts.push(r.prompt.clone());
                (0..config.num_return_sequences)
                    .map(|k| (self.respond)(&r.prompt, r.seed, k))
                    .collect()
            })
            .collect())
    }

    /// Log-probability 0 for the scripted greedy answer, -1 per differing word otherwise.
    fn score(&mut self, inputs: &[String], targets: &[String]) -> Result<Vec<f64>> {
        self.calls += 1;
        Ok(inputs
            .iter()
            .zip(targets)
            .map(|(input, target)| {
                let answer = (self.respond)(input, 0, 0);
                let a: Vec<&str> = py_split(&answer).collect();
                let t: Vec<&str> = py_split(target).collect();
                let same = a.iter().zip(&t).filter(|(x, y)| x == y).count();
                -((a.len().max(t.len()) - same) as f64)
            })
            .collect())
    }

    /// Logit 1 for the candidate the scripted greedy answer starts with, 0 for the others.
    fn first_token_logits(
        &mut self,
        prompts: &[String],
        candidates: &[String],
    ) -> Result<Vec<Vec<f32>>> {
        self.calls += 1;
        Ok(prompts
            .iter()
            .map(|p| {
                let answer = (self.respond)(p, 0, 0);
                let first = py_split(&answer).next().unwrap_or("").to_string();
                candidates
                    .iter()
                    .map(|c| if *c == first { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect())
    }
}
