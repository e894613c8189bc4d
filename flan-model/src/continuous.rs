//! Continuous batching: sequences join a running decode batch at a step boundary and leave it
//! when they finish, instead of waiting for a whole batch (as Text Generation Inference batches
//! its requests).
//!
//! Each sequence is encoded once, alone ([`EncodedSequence::encode`]), and its cross-attention
//! keys and values are projected then; joining the batch concatenates them (padded to the longest
//! source, padding masked) and adds a row to the self-attention buffers. The rows of a
//! [`DecodeBatch`] sit at different decoder positions: each step writes every row's new key and
//! value at that row's own position, gives each row the relative position bias of its own query
//! position, and masks the keys past it. Masked keys get zero weight, so a row's logits are its
//! batch-1 logits up to the summation order of the longer (zero-padded) rows; greedy token ids
//! equal [`crate::generate::generate`]'s for the same input whatever else is in the batch (the
//! tests check this with rows joining and leaving at different steps).
//!
//! ```no_run
//! use flan_model::continuous::{DecodeBatch, EncodedSequence};
//! use flan_model::T5ForConditionalGeneration;
//! # fn main() -> flan_model::Result<()> {
//! # let (model, _) = T5ForConditionalGeneration::from_pretrained("m", tch::Device::Cpu, tch::Kind::Float)?;
//! let mut batch = DecodeBatch::new(&model);
//! batch.join(EncodedSequence::encode(&model, &[71, 1712, 10, 1])?)?;
//! let start = model.config().decoder_start_token_id();
//! let logits = batch.step(&model, &[start])?;
//! let next = logits.argmax()?;
//! # Ok(()) }
//! ```

use tch::{Device, Kind, Tensor};

use crate::inference_mode::InferenceMode;
use crate::kv_cache::{KvCache, RaggedKv};
use crate::position_bias::additive_mask;
use crate::t5::T5ForConditionalGeneration;
use crate::{Error, Result};

/// Positions a new batch's self-attention buffers start with; they double when a row needs more.
const INITIAL_CAPACITY: i64 = 32;

/// One input, encoded and ready to join a [`DecodeBatch`].
#[derive(Debug)]
pub struct EncodedSequence {
    /// Per decoder block, cross-attention keys and values `[1, heads, source_len, d_kv]`.
    cross: Vec<(Tensor, Tensor)>,
    source_len: i64,
}

impl EncodedSequence {
    /// Runs the encoder over `input_ids` (one sequence, no padding: what a batch-1
    /// [`crate::generate::generate`] call computes) and projects every decoder block's
    /// cross-attention keys and values.
    pub fn encode(model: &T5ForConditionalGeneration, input_ids: &[i64]) -> Result<Self> {
        if input_ids.is_empty() {
            return Err(Error::InvalidInput(
                "an input needs at least one token".into(),
            ));
        }
        let len = input_ids.len() as i64;
        InferenceMode::run(|| {
            let ids = Tensor::from_slice(input_ids)
                .view([1, len])
                .to_device(model.device());
            let mask = ids.ones_like();
            let hidden = model.encode(&ids, &mask, false);
            EncodedSequence {
                cross: model.project_cross(&hidden),
                source_len: len,
            }
        })
    }

    /// Number of input tokens.
    pub fn source_len(&self) -> usize {
        self.source_len as usize
    }
}

/// Logits of one step, fp32 `[rows, vocab]`, one row per sequence of the batch in batch order.
#[derive(Debug)]
pub struct StepLogits(Tensor);

impl StepLogits {
    /// Each row's greedy token (first index of the maximum, as [`crate::generate::generate`]).
    pub fn argmax(&self) -> Result<Vec<i64>> {
        InferenceMode::run(|| crate::generate::argmax_rows(&self.0))?
    }

    /// Row `row`'s logits on the CPU (what sampling draws from).
    pub fn row(&self, row: usize) -> Result<Vec<f32>> {
        InferenceMode::run(|| crate::generate::to_vec_f32(&self.0.select(0, row as i64)))
    }

    /// The log-probability of `chosen[i]` in row `i` (fp32 log-softmax).
    pub fn logprobs(&self, chosen: &[i64]) -> Result<Vec<f32>> {
        InferenceMode::run(|| crate::generate::chosen_logprobs(&self.0, chosen))
    }

    /// The logits tensor.
    pub fn tensor(&self) -> &Tensor {
        &self.0
    }
}

/// Sequences being decoded together, each at its own position (see the module docs). Rows are
/// kept in join order; [`DecodeBatch::retain`] drops rows.
#[derive(Debug)]
pub struct DecodeBatch {
    /// Ragged self-attention buffers and the padded cross-attention keys and values per block;
    /// empty (no buffers) while the batch has no rows.
    cache: KvCache,
    /// Each row's next decoder position (the number of tokens it has fed).
    positions: Vec<i64>,
    /// Each row's source length.
    source_lens: Vec<i64>,
    /// Which padded source positions are tokens, bool `[rows, source_len]`.
    source_mask: Option<Tensor>,
    /// The additive cross-attention mask `[rows, 1, 1, source_len]` built from `source_mask`.
    cross_mask: Option<Tensor>,
    /// Positions the self-attention buffers hold.
    capacity: i64,
    heads: i64,
    d_kv: i64,
    kind: Kind,
    device: Device,
}

impl DecodeBatch {
    /// An empty batch for `model`.
    pub fn new(model: &T5ForConditionalGeneration) -> Self {
        let cfg = model.config();
        DecodeBatch {
            cache: KvCache::new(model.num_decoder_layers()),
            positions: Vec::new(),
            source_lens: Vec::new(),
            source_mask: None,
            cross_mask: None,
            capacity: 0,
            heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            kind: model.kind(),
            device: model.device(),
        }
    }

    /// Number of sequences in the batch.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// True when no sequence is being decoded.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Each row's next decoder position (tokens fed so far).
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    /// Adds `seq` as the last row; its first step feeds the decoder start token.
    pub fn join(&mut self, seq: EncodedSequence) -> Result<()> {
        self.join_all(vec![seq])
    }

    /// Adds `seqs` as the last rows, in order: one concatenation per buffer however many join
    /// (joining one at a time copies the whole batch's cache once per sequence).
    pub fn join_all(&mut self, seqs: Vec<EncodedSequence>) -> Result<()> {
        let layers = self.cache.layers.len();
        if let Some(seq) = seqs.iter().find(|s| s.cross.len() != layers) {
            return Err(Error::InvalidInput(format!(
                "a sequence encoded for {} decoder blocks joins a batch of {layers}",
                seq.cross.len()
            )));
        }
        if seqs.is_empty() {
            return Ok(());
        }
        InferenceMode::run(|| self.join_inner(seqs))
    }

    fn join_inner(&mut self, seqs: Vec<EncodedSequence>) {
        let fresh = self.is_empty();
        let old_source = self.source_lens.iter().copied().max().unwrap_or(0);
        let lens: Vec<i64> = seqs.iter().map(|s| s.source_len).collect();
        let source = lens.iter().copied().fold(old_source, i64::max);
        if fresh {
            self.capacity = INITIAL_CAPACITY;
        }
        let joining = seqs.len() as i64;
        let mut crosses: Vec<_> = seqs.into_iter().map(|s| s.cross.into_iter()).collect();
        let pad = |t: Tensor, from: i64| t.constant_pad_nd([0, 0, 0, source - from]);
        for layer in self.cache.layers.iter_mut() {
            let mut keys = Vec::new();
            let mut values = Vec::new();
            if let Some((k, v)) = layer.cross_kv.take().filter(|_| !fresh) {
                keys.push(pad(k, old_source));
                values.push(pad(v, old_source));
            }
            for (cross, &len) in crosses.iter_mut().zip(&lens) {
                let (k, v) = cross.next().expect("checked: one per decoder block");
                keys.push(pad(k, len));
                values.push(pad(v, len));
            }
            layer.cross_kv = Some((Tensor::cat(&keys, 0), Tensor::cat(&values, 0)));
            let zeros = Tensor::zeros(
                [joining, self.heads, self.capacity, self.d_kv],
                (self.kind, self.device),
            );
            layer.ragged = Some(match layer.ragged.take().filter(|_| !fresh) {
                Some(r) => RaggedKv {
                    keys: Tensor::cat(&[r.keys, zeros.shallow_clone()], 0),
                    values: Tensor::cat(&[r.values, zeros], 0),
                    ..r
                },
                None => RaggedKv {
                    keys: zeros.shallow_clone(),
                    values: zeros.copy(),
                    write_at: Tensor::zeros([0], (Kind::Int64, self.device)),
                    visible: 0,
                },
            });
        }
        let positions = Tensor::arange(source, (Kind::Int64, self.device)).unsqueeze(0);
        let new_rows = positions.lt_tensor(
            &Tensor::from_slice(&lens)
                .to_device(self.device)
                .unsqueeze(1),
        );
        let mask = match self.source_mask.take().filter(|_| !fresh) {
            Some(m) => Tensor::cat(&[m.constant_pad_nd([0, source - old_source]), new_rows], 0),
            None => new_rows,
        };
        self.set_source_mask(mask);
        self.positions.extend(std::iter::repeat_n(0, lens.len()));
        self.source_lens.extend(lens);
    }

    fn set_source_mask(&mut self, mask: Tensor) {
        let rows = mask.size()[0];
        let source = mask.size()[1];
        self.cross_mask = Some(additive_mask(&mask.view([rows, 1, 1, source]), self.kind));
        self.source_mask = Some(mask);
    }

    /// Keeps the rows whose `keep` entry is true, in order (finished and abandoned sequences
    /// leave); the padded source shrinks to the longest kept one.
    pub fn retain(&mut self, keep: &[bool]) -> Result<()> {
        if keep.len() != self.len() {
            return Err(Error::InvalidInput(format!(
                "retain got {} flags for a batch of {} rows",
                keep.len(),
                self.len()
            )));
        }
        if keep.iter().all(|&k| k) {
            return Ok(());
        }
        let kept: Vec<i64> = (0..keep.len() as i64)
            .filter(|&i| keep[i as usize])
            .collect();
        self.positions = kept.iter().map(|&i| self.positions[i as usize]).collect();
        self.source_lens = kept.iter().map(|&i| self.source_lens[i as usize]).collect();
        if kept.is_empty() {
            // Drop every buffer: the next join starts afresh.
            *self = DecodeBatch {
                cache: KvCache::new(self.cache.layers.len()),
                positions: Vec::new(),
                source_lens: Vec::new(),
                source_mask: None,
                cross_mask: None,
                capacity: 0,
                ..*self
            };
            return Ok(());
        }
        let source = self.source_lens.iter().copied().max().unwrap_or(0);
        InferenceMode::run(|| {
            let rows = Tensor::from_slice(&kept).to_device(self.device);
            for layer in &mut self.cache.layers {
                if let Some((k, v)) = layer.cross_kv.take() {
                    layer.cross_kv = Some((
                        k.index_select(0, &rows).narrow(2, 0, source),
                        v.index_select(0, &rows).narrow(2, 0, source),
                    ));
                }
                if let Some(r) = layer.ragged.as_mut() {
                    r.keys = r.keys.index_select(0, &rows);
                    r.values = r.values.index_select(0, &rows);
                }
            }
            if let Some(mask) = self.source_mask.take() {
                let mask = mask.index_select(0, &rows).narrow(1, 0, source);
                self.set_source_mask(mask);
            }
        })
    }

    /// Feeds `tokens[i]` to row `i` at its position (the decoder start token on a row's first
    /// step) and returns the logits of every row's next token.
    pub fn step(
        &mut self,
        model: &T5ForConditionalGeneration,
        tokens: &[i64],
    ) -> Result<StepLogits> {
        if tokens.len() != self.len() || self.is_empty() {
            return Err(Error::InvalidInput(format!(
                "a step of {} tokens over a batch of {} rows",
                tokens.len(),
                self.len()
            )));
        }
        let rows = self.len() as i64;
        let key_len = self.positions.iter().copied().max().unwrap_or(0) + 1;
        let logits = InferenceMode::run(|| {
            if key_len > self.capacity {
                self.grow((2 * self.capacity).max(key_len));
            }
            let positions = Tensor::from_slice(&self.positions).to_device(self.device);
            let write_at = positions
                .view([rows, 1, 1, 1])
                .expand([rows, self.heads, 1, self.d_kv], false)
                .contiguous();
            for layer in &mut self.cache.layers {
                if let Some(r) = layer.ragged.as_mut() {
                    r.write_at = write_at.shallow_clone();
                    r.visible = key_len;
                }
            }
            let ids = Tensor::from_slice(tokens)
                .view([rows, 1])
                .to_device(self.device);
            let cross_mask = self
                .cross_mask
                .as_ref()
                .expect("a batch with rows has a cross mask")
                .shallow_clone();
            let logits =
                model.decode_rows_step(&ids, &positions, key_len, &cross_mask, &mut self.cache);
            logits.select(1, 0).to_kind(Kind::Float)
        })?;
        for p in &mut self.positions {
            *p += 1;
        }
        Ok(StepLogits(logits))
    }

    /// Self-attention buffers of `capacity` positions holding the filled ones.
    fn grow(&mut self, capacity: i64) {
        let rows = self.len() as i64;
        for layer in &mut self.cache.layers {
            if let Some(r) = layer.ragged.as_mut() {
                let regrow = |old: &Tensor| {
                    let new = Tensor::zeros(
                        [rows, self.heads, capacity, self.d_kv],
                        (self.kind, self.device),
                    );
                    new.narrow(2, 0, self.capacity).copy_(old);
                    new
                };
                r.keys = regrow(&r.keys);
                r.values = regrow(&r.values);
            }
        }
        self.capacity = capacity;
    }
}
