//! Packing with t5x semantics: several (inputs, targets) examples per row up to fixed encoder and
//! decoder lengths, with segment ids (1, 2, ... per row; 0 is padding) and positions that restart
//! at 0 in each segment. Decoder inputs are the targets shifted right within each segment, with 0
//! (T5's decoder start token) at each segment start. Batches are plain row-major integer buffers;
//! flan-model turns them into tensors.

use crate::error::{Error, Result};
use crate::truncation::{truncate_keep_last, Truncation};

/// One example as token ids (EOS included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedExample {
    /// Encoder ids.
    pub inputs: Vec<u32>,
    /// Decoder target ids.
    pub targets: Vec<u32>,
}

/// One batch, row-major, with t5x feature names. Encoder fields are `[batch_size, input_len]`,
/// decoder fields `[batch_size, target_len]`. An unpacked (padded) batch uses the same struct with
/// one segment per row.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedBatch {
    /// Rows.
    pub batch_size: usize,
    /// Encoder length.
    pub input_len: usize,
    /// Decoder length.
    pub target_len: usize,
    /// Encoder token ids (0 = pad).
    pub encoder_input_tokens: Vec<i64>,
    /// Encoder segment ids (1.. per row, 0 = pad).
    pub encoder_segment_ids: Vec<i64>,
    /// Encoder positions (restart at 0 per segment).
    pub encoder_positions: Vec<i64>,
    /// Decoder targets.
    pub decoder_target_tokens: Vec<i64>,
    /// Decoder inputs: targets shifted right per segment, 0 at each segment start.
    pub decoder_input_tokens: Vec<i64>,
    /// Decoder segment ids.
    pub decoder_segment_ids: Vec<i64>,
    /// Decoder positions.
    pub decoder_positions: Vec<i64>,
    /// 1.0 on real target tokens, 0.0 on padding.
    pub decoder_loss_weights: Vec<f32>,
}

impl PackedBatch {
    /// An all-padding batch.
    pub fn zeros(batch_size: usize, input_len: usize, target_len: usize) -> Self {
        let enc = batch_size * input_len;
        let dec = batch_size * target_len;
        PackedBatch {
            batch_size,
            input_len,
            target_len,
            encoder_input_tokens: vec![0; enc],
            encoder_segment_ids: vec![0; enc],
            encoder_positions: vec![0; enc],
            decoder_target_tokens: vec![0; dec],
            decoder_input_tokens: vec![0; dec],
            decoder_segment_ids: vec![0; dec],
            decoder_positions: vec![0; dec],
            decoder_loss_weights: vec![0.0; dec],
        }
    }

    /// A padded batch with one example per row (examples are truncated to the lengths, keeping
    /// their last token — the EOS).
    pub fn unpacked(examples: &[TokenizedExample], input_len: usize, target_len: usize) -> Self {
        let mut batch = Self::zeros(examples.len(), input_len, target_len);
        for (row, ex) in examples.iter().enumerate() {
            let (mut inputs, mut targets) = (ex.inputs.clone(), ex.targets.clone());
            truncate_keep_last(&mut inputs, input_len);
            truncate_keep_last(&mut targets, target_len);
            batch.write_segment(row, 0, 0, 1, &inputs, &targets);
        }
        batch
    }

    fn write_segment(
        &mut self,
        row: usize,
        enc_at: usize,
        dec_at: usize,
        segment: i64,
        inputs: &[u32],
        targets: &[u32],
    ) {
        let e0 = row * self.input_len + enc_at;
        for (i, &tok) in inputs.iter().enumerate() {
            self.encoder_input_tokens[e0 + i] = i64::from(tok);
            self.encoder_segment_ids[e0 + i] = segment;
            self.encoder_positions[e0 + i] = i as i64;
        }
        let d0 = row * self.target_len + dec_at;
        for (i, &tok) in targets.iter().enumerate() {
            self.decoder_target_tokens[d0 + i] = i64::from(tok);
            self.decoder_input_tokens[d0 + i] = if i == 0 { 0 } else { i64::from(targets[i - 1]) };
            self.decoder_segment_ids[d0 + i] = segment;
            self.decoder_positions[d0 + i] = i as i64;
            self.decoder_loss_weights[d0 + i] = 1.0;
        }
    }

    /// The examples back, row by row and segment by segment.
    pub fn unpack(&self) -> Vec<TokenizedExample> {
        let mut out = Vec::new();
        for row in 0..self.batch_size {
            let enc = row * self.input_len..(row + 1) * self.input_len;
            let dec = row * self.target_len..(row + 1) * self.target_len;
            let max_seg = self.encoder_segment_ids[enc.clone()]
                .iter()
                .chain(&self.decoder_segment_ids[dec.clone()])
                .copied()
                .max()
                .unwrap_or(0);
            for seg in 1..=max_seg {
                let pick = |ids: &[i64], segs: &[i64]| -> Vec<u32> {
                    ids.iter()
                        .zip(segs)
                        .filter(|(_, &s)| s == seg)
                        .map(|(&t, _)| t as u32)
                        .collect()
                };
                out.push(TokenizedExample {
                    inputs: pick(
                        &self.encoder_input_tokens[enc.clone()],
                        &self.encoder_segment_ids[enc.clone()],
                    ),
                    targets: pick(
                        &self.decoder_target_tokens[dec.clone()],
                        &self.decoder_segment_ids[dec.clone()],
                    ),
                });
            }
        }
        out
    }

    /// Non-padding tokens (encoder and decoder).
    pub fn real_tokens(&self) -> usize {
        self.encoder_segment_ids
            .iter()
            .chain(&self.decoder_segment_ids)
            .filter(|&&s| s != 0)
            .count()
    }

    /// Share of non-padding tokens over all encoder and decoder slots.
    pub fn efficiency(&self) -> f64 {
        let slots = self.batch_size * (self.input_len + self.target_len);
        if slots == 0 {
            0.0
        } else {
            self.real_tokens() as f64 / slots as f64
        }
    }
}

/// Running totals of a packer, for the efficiency report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackStats {
    /// Examples packed.
    pub examples: u64,
    /// What was cut to fit the lengths.
    #[serde(flatten)]
    pub truncation: Truncation,
    /// Batches emitted.
    pub batches: u64,
    /// Non-padding tokens emitted.
    pub real_tokens: u64,
    /// Token slots emitted.
    pub slots: u64,
}

impl PackStats {
    /// Share of non-padding tokens.
    pub fn efficiency(&self) -> f64 {
        if self.slots == 0 {
            0.0
        } else {
            self.real_tokens as f64 / self.slots as f64
        }
    }
}

struct OpenRow {
    enc_used: usize,
    dec_used: usize,
    segments: i64,
}

/// Streaming first-fit packer: each example goes into the first open row of the current batch
/// with room for both its inputs and its targets; when none has room and the batch is full, the
/// batch is emitted. Examples longer than the lengths are truncated (EOS kept) and counted.
pub struct Packer {
    batch_size: usize,
    input_len: usize,
    target_len: usize,
    batch: PackedBatch,
    rows: Vec<OpenRow>,
    stats: PackStats,
}

impl Packer {
    /// A packer for batches of `batch_size` rows.
    pub fn new(batch_size: usize, input_len: usize, target_len: usize) -> Result<Self> {
        if batch_size == 0 || input_len == 0 || target_len == 0 {
            return Err(Error::config(
                "packer",
                format!("batch_size, input_len and target_len must be > 0, got {batch_size}, {input_len}, {target_len}"),
            ));
        }
        Ok(Packer {
            batch_size,
            input_len,
            target_len,
            batch: PackedBatch::zeros(batch_size, input_len, target_len),
            rows: Vec::with_capacity(batch_size),
            stats: PackStats {
                truncation: Truncation::new((input_len, target_len)),
                ..PackStats::default()
            },
        })
    }

    /// Adds an example; returns a full batch when one is completed.
    pub fn push(&mut self, ex: &TokenizedExample) -> Option<PackedBatch> {
        let (mut inputs, mut targets) = (ex.inputs.clone(), ex.targets.clone());
        truncate_keep_last(&mut inputs, self.input_len);
        truncate_keep_last(&mut targets, self.target_len);
        self.stats.examples += 1;
        self.stats
            .truncation
            .record((ex.inputs.len(), ex.targets.len()));
        let fits = |r: &OpenRow| {
            r.enc_used + inputs.len() <= self.input_len
                && r.dec_used + targets.len() <= self.target_len
        };
        let mut emitted = None;
        let row = match self.rows.iter().position(fits) {
            Some(row) => row,
            None if self.rows.len() < self.batch_size => {
                self.rows.push(OpenRow {
                    enc_used: 0,
                    dec_used: 0,
                    segments: 0,
                });
                self.rows.len() - 1
            }
            None => {
                emitted = self.take_batch();
                self.rows.push(OpenRow {
                    enc_used: 0,
                    dec_used: 0,
                    segments: 0,
                });
                0
            }
        };
        let r = &mut self.rows[row];
        r.segments += 1;
        let (enc_at, dec_at, seg) = (r.enc_used, r.dec_used, r.segments);
        r.enc_used += inputs.len();
        r.dec_used += targets.len();
        self.batch
            .write_segment(row, enc_at, dec_at, seg, &inputs, &targets);
        emitted
    }

    fn take_batch(&mut self) -> Option<PackedBatch> {
        if self.rows.is_empty() {
            return None;
        }
        self.rows.clear();
        let batch = std::mem::replace(
            &mut self.batch,
            PackedBatch::zeros(self.batch_size, self.input_len, self.target_len),
        );
        self.stats.batches += 1;
        self.stats.real_tokens += batch.real_tokens() as u64;
        self.stats.slots += (batch.batch_size * (batch.input_len + batch.target_len)) as u64;
        Some(batch)
    }

    /// Emits the partly filled batch, if any (its empty rows are padding).
    pub fn finish(&mut self) -> Option<PackedBatch> {
        self.take_batch()
    }

    /// Totals so far (of emitted batches).
    pub fn stats(&self) -> PackStats {
        self.stats
    }
}

/// Packs a whole list of examples; the last batch may be partly filled.
pub fn pack_all(
    examples: &[TokenizedExample],
    batch_size: usize,
    input_len: usize,
    target_len: usize,
) -> Result<(Vec<PackedBatch>, PackStats)> {
    let mut packer = Packer::new(batch_size, input_len, target_len)?;
    let mut out: Vec<PackedBatch> = examples.iter().filter_map(|e| packer.push(e)).collect();
    out.extend(packer.finish());
    Ok((out, packer.stats()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(i: &[u32], t: &[u32]) -> TokenizedExample {
        TokenizedExample {
            inputs: i.to_vec(),
            targets: t.to_vec(),
        }
    }

    #[test]
    fn two_examples_share_a_row_with_t5x_features() {
        let (batches, stats) = pack_all(
            &[ex(&[5, 6, 1], &[7, 1]), ex(&[8, 1], &[9, 10, 1])],
            1,
            6,
            6,
        )
        .unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.encoder_input_tokens, vec![5, 6, 1, 8, 1, 0]);
        assert_eq!(b.encoder_segment_ids, vec![1, 1, 1, 2, 2, 0]);
        assert_eq!(b.encoder_positions, vec![0, 1, 2, 0, 1, 0]);
        assert_eq!(b.decoder_target_tokens, vec![7, 1, 9, 10, 1, 0]);
        assert_eq!(b.decoder_input_tokens, vec![0, 7, 0, 9, 10, 0]);
        assert_eq!(b.decoder_segment_ids, vec![1, 1, 2, 2, 2, 0]);
        assert_eq!(b.decoder_positions, vec![0, 1, 0, 1, 2, 0]);
        assert_eq!(b.decoder_loss_weights, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        assert!((stats.efficiency() - 10.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn unpacked_batch_has_one_segment_per_row_and_truncates_keeping_eos() {
        let b = PackedBatch::unpacked(&[ex(&[5, 6, 7, 1], &[8, 1]), ex(&[9, 1], &[1])], 3, 2);
        assert_eq!(b.encoder_input_tokens, vec![5, 6, 1, 9, 1, 0]);
        assert_eq!(b.decoder_input_tokens, vec![0, 8, 0, 0]);
        assert_eq!(b.unpack(), vec![ex(&[5, 6, 1], &[8, 1]), ex(&[9, 1], &[1])]);
        assert!(Packer::new(0, 1, 1).is_err());
    }
}
