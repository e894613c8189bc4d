//! flan-data's packer and flan-model's packed forward meet here, where the trainer turns packed
//! batches into tensors ([`packed_tensors`]): each example of a real packed batch gets the logits
//! it gets alone.

use std::path::Path;

use flan_data::pack::{pack_all, TokenizedExample};
use flan_model::T5ForConditionalGeneration;
use flan_train::batch::packed_tensors;
use tch::{Device, Kind, Tensor};

fn fixture_model(name: &str) -> T5ForConditionalGeneration {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../flan-model/tests/fixtures")
        .join(name);
    T5ForConditionalGeneration::from_pretrained(&dir, Device::Cpu, Kind::Float)
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
        .0
}

/// Deterministic token ids in `3..vocab`.
fn tokens(seed: u64, len: usize, vocab: i64) -> Vec<i64> {
    (0..len)
        .map(|i| 3 + ((seed as i64 * 7919 + i as i64 * 104729) % (vocab - 3)).abs())
        .collect()
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().clamp_min(1.0);
    ((a - b).abs() / scale).max().double_value(&[])
}

#[test]
fn flan_data_packer_batches_give_each_example_its_alone_logits() {
    let model = fixture_model("odd");
    let examples: Vec<TokenizedExample> = (0..5u64)
        .map(|k| TokenizedExample {
            inputs: tokens(10 + k, 3 + k as usize, 60)
                .iter()
                .map(|&t| t as u32)
                .chain([1])
                .collect(),
            targets: tokens(20 + k, 2 + k as usize, 60)
                .iter()
                .map(|&t| t as u32)
                .chain([1])
                .collect(),
        })
        .collect();
    let (batches, _) = pack_all(&examples, 2, 16, 12).unwrap();
    let mut seen = 0;
    for batch in &batches {
        let packed = packed_tensors(batch, Device::Cpu).unwrap();
        let logits = tch::no_grad(|| model.forward_packed(&packed, false));
        let seg: Vec<i64> = Vec::try_from(packed.decoder_segment_ids.view([-1])).unwrap();
        let targets: Vec<i64> = Vec::try_from(packed.decoder_target_tokens.view([-1])).unwrap();
        let enc_seg: Vec<i64> = Vec::try_from(packed.encoder_segment_ids.view([-1])).unwrap();
        let enc_tok: Vec<i64> = Vec::try_from(packed.encoder_input_tokens.view([-1])).unwrap();
        let (rows, t, s) = (batch.batch_size, batch.target_len, batch.input_len);
        for row in 0..rows {
            for segment in 1..=8i64 {
                let pick = |ids: &[i64], segs: &[i64], len: usize| -> Vec<i64> {
                    (0..len)
                        .filter(|&j| segs[row * len + j] == segment)
                        .map(|j| ids[row * len + j])
                        .collect()
                };
                let tgt = pick(&targets, &seg, t);
                if tgt.is_empty() {
                    continue;
                }
                let inp = pick(&enc_tok, &enc_seg, s);
                let start = (0..t).position(|j| seg[row * t + j] == segment).unwrap() as i64;
                let input = Tensor::from_slice(&inp).view([1, -1]);
                let labels = Tensor::from_slice(&tgt).view([1, -1]);
                let alone = tch::no_grad(|| {
                    model
                        .forward_with_labels(&input, &input.ones_like(), &labels, false)
                        .0
                });
                let part = logits
                    .narrow(0, row as i64, 1)
                    .narrow(1, start, tgt.len() as i64);
                let err = max_rel_err(&part, &alone);
                assert!(err < 1e-4, "row {row} segment {segment}: rel err {err}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, examples.len());
}
