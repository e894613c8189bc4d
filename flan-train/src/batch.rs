//! A packed batch on the device: flan-data's [`PackedBatch`] (plain integer buffers, t5x feature
//! names) turned into tensors, with the counts the metrics need.

use flan_data::PackedBatch;
use flan_model::PackedTensors;
use tch::{Device, Tensor};

use crate::{Error, Result};

/// Counts of one micro-batch, taken on the host before it goes to the device.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchCounts {
    /// Examples (segments) in the batch.
    pub examples: u64,
    /// Real (non-padding) encoder tokens.
    pub input_tokens: u64,
    /// Real target tokens: the loss is averaged over these.
    pub target_tokens: u64,
    /// Token slots (rows × (input_len + target_len)), real or padding.
    pub slots: u64,
}

impl BatchCounts {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: &BatchCounts) {
        self.examples += other.examples;
        self.input_tokens += other.input_tokens;
        self.target_tokens += other.target_tokens;
        self.slots += other.slots;
    }

    /// Share of slots holding real tokens.
    pub fn packing_efficiency(&self) -> f64 {
        if self.slots == 0 {
            0.0
        } else {
            (self.input_tokens + self.target_tokens) as f64 / self.slots as f64
        }
    }
}

/// A micro-batch on its device: flan-model's packed tensors (`[rows, input_len]` /
/// `[rows, target_len]`, int64; weights fp32) and the host-side counts the metrics need.
#[derive(Debug)]
pub struct DeviceBatch {
    /// The batch as the model consumes it.
    pub tensors: PackedTensors,
    /// Host-side counts.
    pub counts: BatchCounts,
}

impl DeviceBatch {
    /// Checks the buffers' shapes and copies them to `device`.
    pub fn from_packed(b: &PackedBatch, device: Device) -> Result<DeviceBatch> {
        let tensors = packed_tensors(b, device)?;
        let (il, tl) = (b.input_len, b.target_len);
        let counts = BatchCounts {
            examples: count_segments(&b.encoder_segment_ids, il),
            input_tokens: b.encoder_segment_ids.iter().filter(|&&s| s != 0).count() as u64,
            target_tokens: b.decoder_loss_weights.iter().filter(|&&w| w > 0.0).count() as u64,
            slots: (b.batch_size * (il + tl)) as u64,
        };
        Ok(DeviceBatch { tensors, counts })
    }
}

/// Copies a [`PackedBatch`] (plain row-major buffers) to `device` as the model's
/// [`PackedTensors`], checking that every field has `batch_size x input_len` or
/// `batch_size x target_len` values.
pub fn packed_tensors(batch: &PackedBatch, device: Device) -> Result<PackedTensors> {
    let enc = [batch.batch_size as i64, batch.input_len as i64];
    let dec = [batch.batch_size as i64, batch.target_len as i64];
    let check = |len: usize, shape: [i64; 2], name: &str| -> Result<()> {
        if len as i64 != shape[0] * shape[1] {
            return Err(Error::Batch {
                message: format!(
                    "packed batch field `{name}` has {len} values, expected {}x{}",
                    shape[0], shape[1]
                ),
            });
        }
        Ok(())
    };
    let ints = |data: &[i64], shape: [i64; 2], name: &str| -> Result<Tensor> {
        check(data.len(), shape, name)?;
        Ok(Tensor::from_slice(data).view(shape).to_device(device))
    };
    check(
        batch.decoder_loss_weights.len(),
        dec,
        "decoder_loss_weights",
    )?;
    Ok(PackedTensors {
        encoder_input_tokens: ints(&batch.encoder_input_tokens, enc, "encoder_input_tokens")?,
        encoder_segment_ids: ints(&batch.encoder_segment_ids, enc, "encoder_segment_ids")?,
        encoder_positions: ints(&batch.encoder_positions, enc, "encoder_positions")?,
        decoder_target_tokens: ints(&batch.decoder_target_tokens, dec, "decoder_target_tokens")?,
        decoder_input_tokens: ints(&batch.decoder_input_tokens, dec, "decoder_input_tokens")?,
        decoder_segment_ids: ints(&batch.decoder_segment_ids, dec, "decoder_segment_ids")?,
        decoder_positions: ints(&batch.decoder_positions, dec, "decoder_positions")?,
        decoder_loss_weights: Tensor::from_slice(&batch.decoder_loss_weights)
            .view(dec)
            .to_device(device),
    })
}

/// Number of examples: the largest segment id of each row (ids run 1..=n within a row).
fn count_segments(segment_ids: &[i64], row_len: usize) -> u64 {
    if row_len == 0 {
        return 0;
    }
    segment_ids
        .chunks(row_len)
        .map(|row| row.iter().copied().max().unwrap_or(0).max(0) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flan_data::TokenizedExample;
    use tch::Kind;

    #[test]
    fn counts_and_shapes_of_a_packed_batch() {
        let ex = |i: &[u32], t: &[u32]| TokenizedExample {
            inputs: i.to_vec(),
            targets: t.to_vec(),
        };
        let (batches, _) = flan_data::pack::pack_all(
            &[
                ex(&[5, 6, 1], &[7, 1]),
                ex(&[8, 1], &[9, 10, 1]),
                ex(&[4, 1], &[1]),
            ],
            2,
            6,
            6,
        )
        .unwrap();
        let b = DeviceBatch::from_packed(&batches[0], Device::Cpu).unwrap();
        assert_eq!(b.tensors.encoder_input_tokens.size(), vec![2, 6]);
        assert_eq!(b.tensors.decoder_loss_weights.kind(), Kind::Float);
        assert_eq!(b.counts.examples, 3);
        assert_eq!(b.counts.input_tokens, 7);
        assert_eq!(b.counts.target_tokens, 6);
        assert_eq!(b.counts.slots, 24);
        let mut broken = batches[0].clone();
        broken.decoder_positions.pop();
        let err = DeviceBatch::from_packed(&broken, Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("decoder_positions"), "{err}");
    }
}
