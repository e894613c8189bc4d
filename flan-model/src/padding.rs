//! Batches of token-id rows of different lengths, padded on the right to the longest, as
//! transformers' tokenizers pad T5's inputs.

use tch::Tensor;

/// `rows` as one `[rows, width]` tensor, each row followed by `value` up to the longest row's
/// length (at least 1, so that an empty row still makes a valid tensor).
pub fn pad_right(rows: &[Vec<i64>], value: i64) -> Tensor {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(value, width - row.len()));
    }
    Tensor::from_slice(&flat).view([rows.len() as i64, width as i64])
}

/// Encoder input ids padded with `pad_id`, and their attention mask (1 on tokens, 0 on padding).
pub fn inputs_and_mask(rows: &[Vec<i64>], pad_id: i64) -> (Tensor, Tensor) {
    let ones: Vec<Vec<i64>> = rows.iter().map(|r| vec![1; r.len()]).collect();
    (pad_right(rows, pad_id), pad_right(&ones, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_on_the_right_with_their_mask() {
        let (ids, mask) = inputs_and_mask(&[vec![5, 6, 1], vec![7, 1]], 0);
        assert_eq!(
            Vec::<i64>::try_from(ids.view([-1])).unwrap(),
            [5, 6, 1, 7, 1, 0]
        );
        assert_eq!(
            Vec::<i64>::try_from(mask.view([-1])).unwrap(),
            [1, 1, 1, 1, 1, 0]
        );
        assert_eq!(pad_right(&[vec![]], -100).size(), [1, 1]);
    }
}
