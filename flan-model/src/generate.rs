//! Decoding strategies over a [`T5ForConditionalGeneration`]: greedy, beam search (transformers
//! semantics) and seeded sampling, all batched with padding masks and a [`KvCache`].
//!
//! The model encodes once; each step feeds only the newest token and the cache supplies the
//! rest (cross-attention keys/values are projected once per sequence). `use_cache: false` runs the
//! full decoder every step instead; it exists to check that both give the same tokens.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::inference_mode::InferenceMode;
use crate::kv_cache::KvCache;
use crate::memory::Call;
use crate::step_copies::CopyReserve;
use crate::t5::T5ForConditionalGeneration;
use crate::{Error, Result};

/// When beam search stops (transformers' `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EarlyStopping {
    /// Stop a batch item as soon as `num_beams` hypotheses are finished.
    True,
    /// Stop when the best running beam can no longer beat the worst finished hypothesis,
    /// judged at the current length (transformers' heuristic).
    False,
    /// Stop only when no running beam can beat the finished ones at any length.
    Never,
}

impl std::str::FromStr for EarlyStopping {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "true" => Ok(EarlyStopping::True),
            "false" => Ok(EarlyStopping::False),
            "never" => Ok(EarlyStopping::Never),
            other => Err(format!("expected true, false or never, got {other:?}")),
        }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// argmax (first index on ties).
    Greedy,
    /// Beam search.
    Beam {
        /// Beams per input.
        num_beams: usize,
        /// Finished score = sum of log-probs / generated_len^length_penalty.
        length_penalty: f64,
        /// Stopping rule.
        early_stopping: EarlyStopping,
    },
    /// Ancestral sampling: temperature, then top-k, then top-p, from a seeded ChaCha RNG.
    Sample {
        /// Divides the logits (> 0).
        temperature: f64,
        /// Keep only the k most likely tokens (ties at the k-th kept).
        top_k: Option<usize>,
        /// Keep the smallest set with cumulative probability >= p (at least one token).
        top_p: Option<f64>,
        /// Seed of the RNG; the same seed gives the same samples.
        seed: u64,
    },
}

/// Settings of one generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Maximum number of generated tokens (EOS included).
    pub max_new_tokens: usize,
    /// Decoding strategy.
    pub strategy: Strategy,
    /// Outputs per input (<= num_beams for beam search).
    pub num_return_sequences: usize,
    /// Use the KV cache (default); false recomputes the whole prefix every step.
    pub use_cache: bool,
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerationConfig {
            max_new_tokens,
            strategy: Strategy::Greedy,
            num_return_sequences: 1,
            use_cache: true,
        }
    }

    /// Checks the settings and their combinations (also done by [`generate`]), so that a caller
    /// can refuse them before any work.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if self.num_return_sequences == 0 {
            return bad("num_return_sequences must be at least 1".into());
        }
        match &self.strategy {
            Strategy::Greedy if self.num_return_sequences > 1 => {
                bad("greedy decoding returns one sequence per input; use sampling or beams".into())
            }
            Strategy::Beam { num_beams, .. } if *num_beams == 0 => {
                bad("num_beams must be at least 1".into())
            }
            Strategy::Beam { num_beams, .. } if self.num_return_sequences > *num_beams => {
                bad(format!(
                    "num_return_sequences ({}) must not exceed num_beams ({num_beams})",
                    self.num_return_sequences
                ))
            }
            Strategy::Sample { temperature, .. } if temperature.is_nan() || *temperature <= 0.0 => {
                bad(format!("temperature must be > 0, got {temperature}"))
            }
            Strategy::Sample { top_k: Some(0), .. } => bad("top_k must be at least 1".into()),
            Strategy::Sample { top_p: Some(p), .. } if !(*p > 0.0 && *p <= 1.0) => {
                bad(format!("top_p must be in (0, 1], got {p}"))
            }
            _ => Ok(()),
        }
    }
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated ids without the decoder start token, with EOS when it was generated.
    pub token_ids: Vec<i64>,
    /// Beam search: the length-penalised score; otherwise the sum of log-probabilities of the
    /// chosen tokens under the (unwarped) model distribution.
    pub score: f64,
}

/// Generates for a batch: `input_ids` `[batch, len]` and `attention_mask` (1 = token). Returns,
/// per input, `num_return_sequences` sequences (best first for beam search).
pub fn generate(
    model: &T5ForConditionalGeneration,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    config: &GenerationConfig,
) -> Result<Vec<Vec<Generated>>> {
    config.check()?;
    if input_ids.dim() != 2 || input_ids.size() != attention_mask.size() {
        return Err(Error::InvalidInput(format!(
            "input_ids {:?} and attention_mask {:?} must both be [batch, len]",
            input_ids.size(),
            attention_mask.size()
        )));
    }
    // Step copies of the weights leave this call the memory it may need (see step_copies).
    let (rows_per_input, beam) = match &config.strategy {
        Strategy::Beam { num_beams, .. } => (*num_beams, true),
        _ => (config.num_return_sequences, false),
    };
    let call = Call::Generate {
        batch: input_ids.size()[0] as u64,
        input_len: input_ids.size()[1] as u64,
        max_new_tokens: config.max_new_tokens as u64,
        rows_per_input: rows_per_input as u64,
        beam,
    };
    let _reserve = CopyReserve::for_call(model.config(), model.kind(), call);
    // Nothing made here outlives the call but plain token ids and scores.
    InferenceMode::run(|| match &config.strategy {
        Strategy::Beam {
            num_beams,
            length_penalty,
            early_stopping,
        } => beam_search(
            model,
            input_ids,
            attention_mask,
            config,
            *num_beams,
            *length_penalty,
            *early_stopping,
        ),
        _ => token_by_token(model, input_ids, attention_mask, config),
    })?
}

/// The decoder side of one generation: encoder output, mask and the growing decoder state.
struct Decoder<'a> {
    model: &'a T5ForConditionalGeneration,
    encoder_hidden: Tensor,
    encoder_mask: Tensor,
    cache: Option<KvCache>,
    /// All decoder inputs so far `[rows, len]` (start token first).
    prefix: Tensor,
}

impl<'a> Decoder<'a> {
    fn new(
        model: &'a T5ForConditionalGeneration,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        rows_per_input: i64,
        use_cache: bool,
        max_new_tokens: usize,
    ) -> Self {
        let device = model.device();
        let input_ids = input_ids.to_device(device);
        let attention_mask = attention_mask.to_device(device);
        let batch = input_ids.size()[0];
        let encoder_hidden = model.encode(&input_ids, &attention_mask, false);
        // Rows of input i are i*r .. i*r + r (transformers' interleaved expansion).
        let expand = Tensor::arange(batch, (Kind::Int64, device)).repeat_interleave_self_int(
            rows_per_input,
            0,
            None,
        );
        let start = model.config().decoder_start_token_id();
        Decoder {
            model,
            encoder_hidden: encoder_hidden.index_select(0, &expand),
            encoder_mask: attention_mask.index_select(0, &expand),
            cache: use_cache
                .then(|| KvCache::with_capacity(model.num_decoder_layers(), max_new_tokens)),
            prefix: Tensor::full([batch * rows_per_input, 1], start, (Kind::Int64, device)),
        }
    }

    /// fp32 logits `[rows, vocab]` for the next position.
    fn next_logits(&mut self) -> Tensor {
        let logits = match &mut self.cache {
            Some(cache) => {
                let len = self.prefix.size()[1];
                let new = self.prefix.narrow(1, cache.len(), len - cache.len());
                self.model
                    .decode_step(&new, &self.encoder_hidden, &self.encoder_mask, cache)
            }
            None => self.model.decode(
                &self.prefix,
                &self.encoder_hidden,
                &self.encoder_mask,
                None,
                false,
            ),
        };
        let t = logits.size()[1];
        logits.select(1, t - 1).to_kind(Kind::Float)
    }

    /// Appends `tokens` (one per row) after reordering rows by `rows` (beam search).
    fn push(&mut self, tokens: &[i64], rows: Option<&Tensor>) {
        let device = self.prefix.device();
        if let Some(rows) = rows {
            self.prefix = self.prefix.index_select(0, rows);
            if let Some(cache) = &mut self.cache {
                cache.reorder(rows);
            }
        }
        let next = Tensor::from_slice(tokens).view([-1, 1]).to_device(device);
        self.prefix = Tensor::cat(&[&self.prefix, &next], 1);
    }
}

pub(crate) fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().view([-1]))
        .expect("fp32 tensor converts to Vec<f32>")
}

/// The first index of each row's maximum, NaN counting as the maximum: `argmax`'s answer.
/// libtorch's `max.dim` gives the same indices on CPU (first on ties) at about a third of the
/// cost, as its argmax kernel does not vectorise (at batch 32 of an 8k vocabulary: 57 against
/// 165 µs a step).
pub(crate) fn argmax_rows(logits: &Tensor) -> Result<Vec<i64>> {
    let (_, indices) = logits.max_dim(-1, false);
    Vec::<i64>::try_from(indices.to_device(tch::Device::Cpu)).map_err(Error::Torch)
}

/// The log-probability of `chosen[i]` in row `i` of `logits` `[rows, vocab]` (fp32); only these
/// leave the device, not `rows × vocab` of them.
///
/// On CPU the log-softmax runs with denormals flushed. Its sum of `exp(x - max)` gets a
/// denormal term for every logit more than about 87 below the row's maximum, which is most of
/// a vocabulary once a model is confident, and x86 adds denormals in microcode: the step's
/// log-softmax took 340 µs instead of 65 at batch 32. Flushing leaves the result as it was:
/// the sum holds `exp(0) = 1` from the maximum, and terms below 1.2e-38 are far under half a
/// unit in the last place of anything that large.
pub(crate) fn chosen_logprobs(logits: &Tensor, chosen: &[i64]) -> Vec<f32> {
    let ids = Tensor::from_slice(chosen)
        .view([-1, 1])
        .to_device(logits.device());
    let flush = (logits.device() == tch::Device::Cpu)
        .then(crate::FlushDenormals::enter)
        .and_then(|guard| guard.ok());
    let logprobs = logits.log_softmax(-1, Kind::Float).gather(1, &ids, false);
    drop(flush);
    to_vec_f32(&logprobs)
}

/// Greedy and sampling: one token per row per step, finished rows emit padding.
fn token_by_token(
    model: &T5ForConditionalGeneration,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    config: &GenerationConfig,
) -> Result<Vec<Vec<Generated>>> {
    let r = config.num_return_sequences;
    let batch = input_ids.size()[0] as usize;
    let rows = batch * r;
    let mut dec = Decoder::new(
        model,
        input_ids,
        attention_mask,
        r as i64,
        config.use_cache,
        config.max_new_tokens,
    );
    let eos = model.config().eos_token_id;
    let pad = model.config().pad_token_id;
    let mut out: Vec<Generated> = (0..rows)
        .map(|_| Generated {
            token_ids: Vec::new(),
            score: 0.0,
        })
        .collect();
    let mut finished = vec![false; rows];
    let mut rng = match &config.strategy {
        Strategy::Sample { seed, .. } => Some(ChaCha8Rng::seed_from_u64(*seed)),
        _ => None,
    };
    for _ in 0..config.max_new_tokens {
        let logits = dec.next_logits();
        let vocab = logits.size().last().copied().unwrap_or(0).max(1) as usize;
        let chosen: Vec<i64> = match (&config.strategy, rng.as_mut()) {
            (
                Strategy::Sample {
                    temperature,
                    top_k,
                    top_p,
                    ..
                },
                Some(rng),
            ) => {
                let raw = to_vec_f32(&logits);
                (0..rows)
                    .map(|i| {
                        // Every row draws, finished or not, so a row's samples do not depend on
                        // when the other rows finish.
                        let row = &raw[i * vocab..(i + 1) * vocab];
                        sample_token(row, *temperature, *top_k, *top_p, rng) as i64
                    })
                    .collect()
            }
            _ => argmax_rows(&logits)?,
        };
        let logprobs = chosen_logprobs(&logits, &chosen);
        let mut step = Vec::with_capacity(rows);
        for (i, &token) in chosen.iter().enumerate() {
            if finished[i] {
                step.push(pad);
                continue;
            }
            out[i].token_ids.push(token);
            out[i].score += logprobs[i] as f64;
            finished[i] = token == eos;
            step.push(token);
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        dec.push(&step, None);
    }
    let mut grouped = Vec::with_capacity(batch);
    let mut it = out.into_iter();
    for _ in 0..batch {
        grouped.push(it.by_ref().take(r).collect());
    }
    Ok(grouped)
}

/// Draws one token id from `logits` after temperature, top-k and top-p (transformers' order and
/// tie rules), with probabilities computed in f64.
pub fn sample_token(
    logits: &[f32],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    rng: &mut ChaCha8Rng,
) -> usize {
    let mut scores: Vec<f64> = logits.iter().map(|&x| x as f64 / temperature).collect();
    if let Some(k) = top_k.filter(|&k| k < scores.len()) {
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        for s in &mut scores {
            if *s < kth {
                *s = f64::NEG_INFINITY;
            }
        }
    }
    if let Some(p) = top_p.filter(|&p| p < 1.0) {
        let probs = softmax(&scores);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Ascending, as transformers sorts, then drop the low tail whose mass is <= 1 - p.
        order.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));
        let mut cumulative = 0.0;
        let last = order.len() - 1;
        for (rank, &idx) in order.iter().enumerate() {
            cumulative += probs[idx];
            if cumulative <= 1.0 - p && rank < last {
                scores[idx] = f64::NEG_INFINITY;
            }
        }
    }
    let probs = softmax(&scores);
    let u: f64 = rng.gen();
    let mut acc = 0.0;
    let mut fallback = 0;
    for (i, &q) in probs.iter().enumerate() {
        if q > 0.0 {
            fallback = i;
            acc += q;
            if u < acc {
                return i;
            }
        }
    }
    fallback
}

fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Finished hypotheses of one input (transformers' `BeamHypotheses`).
struct Hypotheses {
    beams: Vec<(f64, Vec<i64>)>,
    worst: f64,
    num_beams: usize,
    length_penalty: f64,
}

impl Hypotheses {
    fn add(&mut self, tokens: Vec<i64>, sum_logprobs: f64, generated_len: usize) {
        let score = sum_logprobs / (generated_len as f64).powf(self.length_penalty);
        if self.beams.len() < self.num_beams || score > self.worst {
            self.beams.push((score, tokens));
            if self.beams.len() > self.num_beams {
                let mut order: Vec<(f64, usize)> = self
                    .beams
                    .iter()
                    .enumerate()
                    .map(|(i, (s, _))| (*s, i))
                    .collect();
                order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                self.beams.remove(order[0].1);
                self.worst = order[1].0;
            } else {
                self.worst = self.worst.min(score);
            }
        }
    }

    /// `cur_len` counts generated tokens including the one just scored.
    fn is_done(
        &self,
        best_sum_logprobs: f64,
        cur_len: usize,
        max_new: usize,
        es: EarlyStopping,
    ) -> bool {
        if self.beams.len() < self.num_beams {
            return false;
        }
        let at = |len: usize| best_sum_logprobs / (len as f64).powf(self.length_penalty);
        match es {
            EarlyStopping::True => true,
            EarlyStopping::False => self.worst >= at(cur_len),
            EarlyStopping::Never => {
                let len = if self.length_penalty > 0.0 {
                    max_new
                } else {
                    cur_len
                };
                self.worst >= at(len)
            }
        }
    }
}

fn beam_search(
    model: &T5ForConditionalGeneration,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    config: &GenerationConfig,
    num_beams: usize,
    length_penalty: f64,
    early_stopping: EarlyStopping,
) -> Result<Vec<Vec<Generated>>> {
    let k = num_beams;
    let batch = input_ids.size()[0] as usize;
    let rows = batch * k;
    let device = model.device();
    let eos = model.config().eos_token_id;
    let pad = model.config().pad_token_id;
    let mut dec = Decoder::new(
        model,
        input_ids,
        attention_mask,
        k as i64,
        config.use_cache,
        config.max_new_tokens,
    );
    // Only the first beam of each input is live at the start.
    let mut beam_scores: Vec<f32> = (0..rows)
        .map(|i| if i % k == 0 { 0.0 } else { -1e9 })
        .collect();
    let mut seqs: Vec<Vec<i64>> = vec![Vec::new(); rows];
    let mut hyps: Vec<Hypotheses> = (0..batch)
        .map(|_| Hypotheses {
            beams: Vec::new(),
            worst: 1e9,
            num_beams: k,
            length_penalty,
        })
        .collect();
    let mut done = vec![false; batch];
    let mut step = 0;
    while step < config.max_new_tokens {
        step += 1;
        let logprobs = dec.next_logits().log_softmax(-1, Kind::Float);
        let vocab = logprobs.size()[1];
        let scores = logprobs
            + Tensor::from_slice(&beam_scores)
                .to_device(device)
                .unsqueeze(1);
        let (top_scores, top_ids) =
            scores
                .view([batch as i64, k as i64 * vocab])
                .topk(2 * k as i64, -1, true, true);
        let top_scores = to_vec_f32(&top_scores);
        let top_ids = Vec::<i64>::try_from(top_ids.to_device(tch::Device::Cpu).view([-1]))?;
        let mut next_scores = vec![0f32; rows];
        let mut next_tokens = vec![pad; rows];
        let mut next_rows = vec![0i64; rows];
        for b in 0..batch {
            if done[b] {
                for j in 0..k {
                    next_rows[b * k + j] = (b * k + j) as i64;
                }
                continue;
            }
            let mut filled = 0;
            for rank in 0..2 * k {
                let score = top_scores[b * 2 * k + rank];
                let id = top_ids[b * 2 * k + rank];
                let beam = (id / vocab) as usize;
                let token = id % vocab;
                let row = b * k + beam;
                if token == eos {
                    if rank >= k {
                        continue;
                    }
                    let mut tokens = seqs[row].clone();
                    tokens.push(eos);
                    hyps[b].add(tokens, score as f64, step);
                } else {
                    next_scores[b * k + filled] = score;
                    next_tokens[b * k + filled] = token;
                    next_rows[b * k + filled] = row as i64;
                    filled += 1;
                }
                if filled == k {
                    break;
                }
            }
            let best = top_scores[b * 2 * k] as f64;
            done[b] = hyps[b].is_done(best, step, config.max_new_tokens, early_stopping);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        let mut new_seqs = Vec::with_capacity(rows);
        for i in 0..rows {
            let mut s = seqs[next_rows[i] as usize].clone();
            s.push(next_tokens[i]);
            new_seqs.push(s);
        }
        seqs = new_seqs;
        beam_scores = next_scores;
        if step == config.max_new_tokens {
            break;
        }
        let reorder = Tensor::from_slice(&next_rows).to_device(device);
        dec.push(&next_tokens, Some(&reorder));
    }
    let mut out = Vec::with_capacity(batch);
    for (b, h) in hyps.iter_mut().enumerate() {
        if !done[b] {
            for j in 0..k {
                let row = b * k + j;
                let len = seqs[row].len();
                h.add(seqs[row].clone(), beam_scores[row] as f64, len);
            }
        }
        let mut best: Vec<(f64, Vec<i64>)> = h.beams.clone();
        // Highest score first; among equal scores the later-added wins, as in transformers.
        best.reverse();
        best.sort_by(|a, c| c.0.total_cmp(&a.0));
        out.push(
            best.into_iter()
                .take(config.num_return_sequences)
                .map(|(score, token_ids)| Generated { token_ids, score })
                .collect(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose `exp(x - max)` terms are mostly denormal (below 1.2e-38, i.e. more than 87.3
    /// under the maximum), with ties, a NaN and a chosen token that is not the maximum.
    fn denormal_heavy_logits() -> Tensor {
        let mut rows = Vec::new();
        for r in 0..5 {
            let row: Vec<f32> = (0..4000)
                .map(|j| match (r, j) {
                    (_, 7) | (1, 3999) => 4.0 + r as f32,
                    (2, 11) => f32::NAN,
                    _ => 4.0 + r as f32 - 87.4 - (j % 97) as f32 * 0.13 - (j % 5) as f32 * 3.1,
                })
                .collect();
            rows.push(Tensor::from_slice(&row));
        }
        Tensor::stack(&rows, 0)
    }

    #[test]
    fn argmax_rows_is_argmax_with_ties_and_nan() {
        let logits = denormal_heavy_logits();
        let want = Vec::<i64>::try_from(logits.argmax(-1, false)).unwrap();
        assert_eq!(argmax_rows(&logits).unwrap(), want);
        assert_eq!(want, [7, 7, 11, 7, 7]);
    }

    #[test]
    fn chosen_logprobs_are_the_unflushed_log_softmax() {
        let logits = denormal_heavy_logits();
        let denormal = (logits.narrow(0, 0, 1) - 4.0).exp();
        let denormal = denormal.gt(0.0).logical_and(&denormal.lt(1.17e-38));
        assert!(
            denormal.sum(Kind::Int64).int64_value(&[]) > 1000,
            "the test needs denormal terms"
        );
        assert!(!crate::FlushDenormals::is_enabled());
        let chosen = [7i64, 3999, 11, 100, 3];
        let got = chosen_logprobs(&logits, &chosen);
        assert!(
            !crate::FlushDenormals::is_enabled(),
            "the guard restores the mode"
        );
        let all = logits.log_softmax(-1, Kind::Float);
        for (row, &id) in chosen.iter().enumerate() {
            let want = all.double_value(&[row as i64, id]) as f32;
            assert!(
                got[row].to_bits() == want.to_bits() || (got[row].is_nan() && want.is_nan()),
                "row {row}: {} vs {want}",
                got[row]
            );
        }
    }

    #[test]
    fn top_k_one_is_argmax_and_seed_fixes_samples() {
        let logits = [0.1f32, 2.0, -1.0, 1.9];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            assert_eq!(sample_token(&logits, 1.0, Some(1), None, &mut rng), 1);
        }
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..50)
                .map(|_| sample_token(&logits, 1.0, None, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: p = 0.7 keeps the first two only.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [false; 4];
        for _ in 0..400 {
            seen[sample_token(&logits, 1.0, None, Some(0.7), &mut rng)] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
    }

    #[test]
    fn hypotheses_keep_the_best_num_beams() {
        let mut h = Hypotheses {
            beams: Vec::new(),
            worst: 1e9,
            num_beams: 2,
            length_penalty: 1.0,
        };
        h.add(vec![1], -4.0, 2); // -2
        h.add(vec![2], -3.0, 3); // -1
        h.add(vec![3], -9.0, 3); // -3: rejected
        h.add(vec![4], -1.0, 2); // -0.5: evicts -2
        let mut kept: Vec<i64> = h.beams.iter().map(|b| b.1[0]).collect();
        kept.sort();
        assert_eq!(kept, vec![2, 4]);
        assert_eq!(h.worst, -1.0);
        assert!(h.is_done(-10.0, 5, 10, EarlyStopping::False));
        assert!(!h.is_done(-1.0, 5, 10, EarlyStopping::False));
    }
}
