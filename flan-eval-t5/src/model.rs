//! [`EvalModel`] for flan-model's T5: the bridge between the evaluator (strings in, strings and
//! scores out) and the network (token ids and tensors).

use crate::{Error, Result};
use flan_data::tokenizer::Tokenizer;
use flan_eval::{Decoding, EvalModel, GenerateRequest};
use flan_model::fallible;
use flan_model::generate::{self, Strategy};
use flan_model::memory::{human_bytes, Call, MemoryBudget, MemoryEstimate};
use flan_model::score::score_batch;
use flan_model::{Dtype, ModelSource, T5ForConditionalGeneration};
use std::borrow::Borrow;
use tch::{Device, Kind, Tensor};

/// A T5 with its tokenizer: owned (a loaded checkpoint), or borrowed (`&T5ForConditionalGeneration`:
/// the model a training run is changing, evaluated in place, in its own dtype and with its
/// adapter).
pub struct T5EvalModel<M: Borrow<T5ForConditionalGeneration> = T5ForConditionalGeneration> {
    model: M,
    tokenizer: Tokenizer,
    name: String,
    max_input_tokens: usize,
    /// Memory a model call may take; `None` checks nothing (see [`T5EvalModel::with_budget`]).
    budget: Option<MemoryBudget>,
}

/// Loads a model in Hugging Face layout (config.json, model.safetensors, tokenizer.json), with
/// its LoRA adapter when `source` has one (see [`ModelSource`]), in `dtype` on `device` (resolved
/// by the caller, e.g. with [`flan_model::DeviceSpec::resolve_from_env`]), as `flan generate
/// --dtype` does (a bf16 checkpoint loads as bf16 without an fp32 copy: see
/// [`T5ForConditionalGeneration::from_pretrained`]); prompts are budgeted to `max_input_tokens`.
pub fn load(
    source: &ModelSource,
    device: Device,
    dtype: Dtype,
    max_input_tokens: usize,
) -> Result<T5EvalModel> {
    let (model, _report, _adapter) = source.load(device, dtype.kind())?;
    let tokenizer_file = source.tokenizer_file();
    let tokenizer = Tokenizer::from_file(&tokenizer_file).map_err(|source| Error::Tokenizer {
        file: tokenizer_file.clone(),
        source,
    })?;
    Ok(T5EvalModel {
        model,
        tokenizer,
        name: source.describe(),
        max_input_tokens,
        budget: None,
    })
}

impl<M: Borrow<T5ForConditionalGeneration>> T5EvalModel<M> {
    /// Wraps a model already in memory (e.g. the untrained network a run starts from).
    pub fn new(model: M, tokenizer: Tokenizer, name: String, max_input_tokens: usize) -> Self {
        T5EvalModel {
            model,
            tokenizer,
            name,
            max_input_tokens,
            budget: None,
        }
    }

    /// Refuses every model call whose [`MemoryEstimate`] exceeds `budget` (an error instead of
    /// an allocation failure or the OOM killer). Without a budget no call is checked.
    pub fn with_budget(mut self, budget: Option<MemoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The budget model calls are checked against, if any.
    pub fn budget(&self) -> Option<&MemoryBudget> {
        self.budget.as_ref()
    }

    /// What `call` would take on this model.
    pub fn estimate(&self, call: Call) -> MemoryEstimate {
        MemoryEstimate::of(
            self.model.borrow().config(),
            self.model.borrow().kind(),
            call,
        )
    }

    /// The estimate of `call` and the budget it exceeds, or `None` when it fits (or nothing is
    /// checked).
    fn over_budget(&self, call: Call) -> Option<(MemoryEstimate, &MemoryBudget)> {
        let budget = self.budget.as_ref()?;
        let need = self.estimate(call);
        (need.bytes > budget.bytes).then_some((need, budget))
    }

    /// [`Self::over_budget`] as an error, just before a call.
    fn check_call(&self, call: Call) -> flan_eval::Result<()> {
        match self.over_budget(call) {
            None => Ok(()),
            Some((need, budget)) => Err(model_err(format!(
                "a model call of {call:?} needs about {}, more than the {} available ({}); \
                 lower --max-input-tokens or --batch-size",
                human_bytes(need.bytes),
                human_bytes(budget.bytes),
                budget.source
            ))),
        }
    }

    /// Number of parameters (each tensor counted once, tied embeddings once).
    pub fn parameter_count(&self) -> u64 {
        self.model
            .borrow()
            .named_parameters()
            .iter()
            .map(|(_, t)| t.numel() as u64)
            .sum()
    }
}

fn model_err(e: impl std::fmt::Display) -> flan_eval::Error {
    flan_eval::Error::Model(e.to_string())
}

/// [`model_err`] for typed errors, keeping their causes in the text.
fn model_chain(e: impl std::error::Error + 'static) -> flan_eval::Error {
    flan_eval::Error::Model(flan_data::error::chain(&e))
}

impl<M: Borrow<T5ForConditionalGeneration>> T5EvalModel<M> {
    fn ids(&self, text: &str) -> flan_eval::Result<Vec<i64>> {
        let ids = self.tokenizer.encode(text).map_err(model_chain)?;
        Ok(ids.into_iter().map(i64::from).collect())
    }

    /// A prompt's ids cut to [`EvalModel::max_input_tokens`], EOS kept (the runner counts the
    /// cuts, or refuses such prompts, from [`EvalModel::count_tokens`]).
    fn prompt_ids(&self, text: &str) -> flan_eval::Result<Vec<i64>> {
        let mut ids = self.ids(text)?;
        flan_data::truncation::truncate_keep_last(&mut ids, self.max_input_tokens);
        Ok(ids)
    }

    /// Right-padded `[batch, len]` prompt ids and attention mask on the model's device.
    fn batch(&self, prompts: &[&str]) -> flan_eval::Result<(Tensor, Tensor)> {
        let rows: Vec<Vec<i64>> = prompts
            .iter()
            .map(|p| self.prompt_ids(p))
            .collect::<std::result::Result<_, _>>()?;
        let (ids, mask) =
            flan_model::padding::inputs_and_mask(&rows, i64::from(self.tokenizer.pad_id()));
        let device = self.model.borrow().device();
        Ok((ids.to_device(device), mask.to_device(device)))
    }

    /// The texts of generated sequences, refusing any whose score is NaN or infinite: such
    /// a model emits padding (empty text) that would be graded as a wrong answer.
    fn decode_all(
        &self,
        seqs: Vec<Vec<generate::Generated>>,
    ) -> flan_eval::Result<Vec<Vec<String>>> {
        seqs.into_iter()
            .map(|item| {
                item.iter()
                    .map(|g| {
                        if !g.score.is_finite() {
                            return Err(model_err(format!(
                                "a generated sequence has the log-probability {}: the \
                                 computation overflowed (the weights were checked at load)",
                                g.score
                            )));
                        }
                        self.decode(&g.token_ids)
                    })
                    .collect()
            })
            .collect()
    }

    fn decode(&self, ids: &[i64]) -> flan_eval::Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.tokenizer.decode(&ids, true).map_err(model_chain)
    }
}

impl<M: Borrow<T5ForConditionalGeneration>> EvalModel for T5EvalModel<M> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    fn count_tokens(&mut self, text: &str) -> flan_eval::Result<usize> {
        Ok(self.ids(text)?.len())
    }

    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        config: &Decoding,
    ) -> flan_eval::Result<Vec<Vec<String>>> {
        let mut out = Vec::with_capacity(requests.len());
        if config.do_sample {
            // Sampling: one call per request with its own seed, so that an item's samples do
            // not depend on which other items share its batch; its k samples form the batch.
            for r in requests {
                let gen = generate::GenerationConfig {
                    max_new_tokens: config.max_new_tokens,
                    strategy: Strategy::Sample {
                        temperature: config.temperature,
                        top_k: config.top_k,
                        top_p: config.top_p,
                        seed: r.seed,
                    },
                    num_return_sequences: config.num_return_sequences,
                    use_cache: true,
                };
                let (ids, mask) = self.batch(&[r.prompt.as_str()])?;
                self.check_call(Call::Generate {
                    batch: 1,
                    input_len: ids.size()[1] as u64,
                    max_new_tokens: config.max_new_tokens as u64,
                    rows_per_input: config.num_return_sequences as u64,
                    beam: false,
                })?;
                let seqs = fallible::catch("generating", || {
                    generate::generate(self.model.borrow(), &ids, &mask, &gen)
                })
                .map_err(model_chain)?;
                out.extend(self.decode_all(seqs)?);
            }
        } else {
            let prompts: Vec<&str> = requests.iter().map(|r| r.prompt.as_str()).collect();
            let (ids, mask) = self.batch(&prompts)?;
            self.check_call(Call::Generate {
                batch: prompts.len() as u64,
                input_len: ids.size()[1] as u64,
                max_new_tokens: config.max_new_tokens as u64,
                rows_per_input: 1,
                beam: false,
            })?;
            let gen = generate::GenerationConfig::greedy(config.max_new_tokens);
            let seqs = fallible::catch("generating", || {
                generate::generate(self.model.borrow(), &ids, &mask, &gen)
            })
            .map_err(model_chain)?;
            out.extend(self.decode_all(seqs)?);
        }
        Ok(out)
    }

    fn score(&mut self, inputs: &[String], targets: &[String]) -> flan_eval::Result<Vec<f64>> {
        let inputs: Vec<Vec<i64>> = inputs
            .iter()
            .map(|t| self.prompt_ids(t))
            .collect::<std::result::Result<_, _>>()?;
        let targets: Vec<Vec<i64>> = targets
            .iter()
            .map(|t| self.ids(t))
            .collect::<std::result::Result<_, _>>()?;
        let width = |rows: &[Vec<i64>]| rows.iter().map(Vec::len).max().unwrap_or(1) as u64;
        self.check_call(Call::Score {
            batch: inputs.len() as u64,
            input_len: width(&inputs),
            target_len: width(&targets),
        })?;
        let scores = fallible::catch("scoring", || {
            score_batch(self.model.borrow(), &inputs, &targets)
        })
        .map_err(model_chain)?;
        // A NaN score would rank (and be reported) as if it meant something.
        if let Some(i) = scores.iter().position(|s| !s.logprob.is_finite()) {
            return Err(model_err(format!(
                "the log-probability of target {i} of this batch is {}: the computation \
                 overflowed (the weights were checked at load)",
                scores[i].logprob
            )));
        }
        Ok(scores.into_iter().map(|s| s.logprob).collect())
    }

    /// evaluate_flan.py: one decoder step from the start token (pad, 0) and the logits at the
    /// first token id of each candidate as the tokenizer encodes it alone ("A" -> "▁A").
    fn first_token_logits(
        &mut self,
        prompts: &[String],
        candidates: &[String],
    ) -> flan_eval::Result<Vec<Vec<f32>>> {
        let mut candidate_ids = Vec::with_capacity(candidates.len());
        for c in candidates {
            let ids = self.ids(c)?;
            candidate_ids.push(
                *ids.first()
                    .ok_or_else(|| model_err(format!("{c:?} has no tokens")))?,
            );
        }
        // Candidates that share a first token cannot be told apart by this rule; say so rather
        // than let the first of them win every time.
        for (j, id) in candidate_ids.iter().enumerate() {
            if let Some(k) = candidate_ids[..j].iter().position(|x| x == id) {
                return Err(model_err(format!(
                    "candidates {:?} and {:?} share the first token id {id}; first-token rank \
                     classification cannot separate them (try --mmlu-answer score)",
                    candidates[k], candidates[j]
                )));
            }
        }
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let (ids, mask) = self.batch(&refs)?;
        self.check_call(Call::Score {
            batch: prompts.len() as u64,
            input_len: ids.size()[1] as u64,
            target_len: 1,
        })?;
        let start = self.model.borrow().config().decoder_start_token_id();
        let device = self.model.borrow().device();
        let rows = fallible::catch("ranking the first token", || {
            let decoder_input =
                Tensor::full([prompts.len() as i64, 1], start, (Kind::Int64, device));
            let logits = tch::no_grad(|| {
                self.model
                    .borrow()
                    .forward(&ids, &mask, &decoder_input, None, false)
                    .to_kind(Kind::Float)
                    .select(1, 0)
                    .index_select(1, &Tensor::from_slice(&candidate_ids).to_device(device))
                    .to_device(Device::Cpu)
            });
            Ok(Vec::<Vec<f32>>::try_from(&logits)?)
        })
        .map_err(model_chain)?;
        if rows.iter().flatten().any(|x| !x.is_finite()) {
            return Err(model_err(
                "the first-token logits are not finite: the computation overflowed (the \
                 weights were checked at load)",
            ));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(dir: &Path) -> ModelSource {
        ModelSource {
            base: dir.to_path_buf(),
            adapter: None,
        }
    }

    fn tiny() -> T5EvalModel {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1");
        load(&fixture(&dir), Device::Cpu, Dtype::F32, 512).unwrap()
    }

    fn requests(prompts: &[&str], seed: u64) -> Vec<GenerateRequest> {
        prompts
            .iter()
            .map(|p| GenerateRequest {
                prompt: p.to_string(),
                seed,
            })
            .collect()
    }

    #[test]
    fn batched_generation_equals_one_by_one_and_sampling_follows_the_seed() {
        let mut m = tiny();
        let prompts = [
            "Q: a short one\nA:",
            "Q: a much longer question with many more words\nA:",
        ];
        let greedy = Decoding::greedy(6);
        let together = m.generate(&requests(&prompts, 0), &greedy).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let alone = m.generate(&requests(&[p], 0), &greedy).unwrap();
            assert_eq!(alone[0], together[i], "padding changed prompt {i}'s output");
        }
        let sample = Decoding {
            do_sample: true,
            temperature: 1.0,
            num_return_sequences: 4,
            ..Decoding::greedy(6)
        };
        let a = m.generate(&requests(&prompts[..1], 7), &sample).unwrap();
        let b = m.generate(&requests(&prompts[..1], 7), &sample).unwrap();
        assert_eq!(a, b, "same seed, same samples");
        assert_eq!(a[0].len(), 4);
        // An item's samples do not depend on its batch neighbours.
        let c = m.generate(&requests(&prompts, 7), &sample).unwrap();
        assert_eq!(c[0], a[0]);
    }

    #[test]
    fn scores_are_log_probabilities_and_budget_counts_eos() {
        let mut m = tiny();
        assert_eq!(m.count_tokens("").unwrap(), 1, "EOS only");
        let s = m
            .score(
                &["Q: x\nA:".into(), "Q: x\nA:".into()],
                &["yes".into(), "no".into()],
            )
            .unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|x| x.is_finite() && *x < 0.0), "{s:?}");
        // The tiny fixture's vocabulary splits "A" and "B" into the same first piece.
        let err = m
            .first_token_logits(&["Q?".into()], &["A".into(), "B".into()])
            .unwrap_err();
        assert!(err.to_string().contains("share the first token"), "{err}");
    }

    /// The runner counts a prompt over the limit as cut to it (from `count_tokens`); the model
    /// must receive exactly that: the first tokens and the EOS.
    #[test]
    fn prompts_reach_the_model_cut_to_the_limit_with_their_eos() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1");
        let mut m = load(&fixture(&dir), Device::Cpu, Dtype::F32, 6).unwrap();
        let prompt = "Q: a question longer than six tokens\nA:";
        let full = m.ids(prompt).unwrap();
        assert!(m.count_tokens(prompt).unwrap() > 6);
        let (ids, mask) = m.batch(&[prompt, "Q"]).unwrap();
        assert_eq!(ids.size(), [2, 6]);
        let row = Vec::<i64>::try_from(ids.get(0)).unwrap();
        assert_eq!(row[..5], full[..5]);
        assert_eq!(row[5], i64::from(m.tokenizer.eos_id()));
        assert_eq!(i64::try_from(mask.get(0).sum(Kind::Int64)).unwrap(), 6);
        // Scores see the same cut prompt; targets are never cut by the prompt limit.
        let cut = m.score(&[prompt.into()], &["yes it is".into()]).unwrap();
        let prefix: String = m
            .tokenizer
            .decode(
                &full[..5].iter().map(|&i| i as u32).collect::<Vec<_>>(),
                false,
            )
            .unwrap();
        let mut wide = load(&fixture(&dir), Device::Cpu, Dtype::F32, 512).unwrap();
        let same = wide.score(&[prefix], &["yes it is".into()]).unwrap();
        assert!((cut[0] - same[0]).abs() < 1e-9, "{cut:?} vs {same:?}");
    }
}
