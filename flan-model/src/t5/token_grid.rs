//! Where a packed (or padded) batch's tokens sit in its `[rows, len]` grid, so that a training
//! pass computes on the tokens alone.
//!
//! Everything in a T5 block except attention works token by token: the norms, the q/k/v/o
//! projections, the feed-forward layers, dropout and the residual sums. Over the grid those ops
//! also compute every padding slot, and padding is most of a padded batch (the bench's batches
//! of 16 are 49% tokens in the encoder, 47% in the decoder) and a quarter or more of a packed
//! one. So a packed pass keeps its hidden states as `[tokens, d_model]`, the grid's non-padding
//! slots in row-major order, and only attention, which needs each row's positions, sees the
//! grid: the projected queries, keys and values are scattered into it (zeros in the padding
//! slots), and attention's output is gathered back to the tokens before the output projection.
//!
//! What this changes: nothing a token reads. Padding keys are masked (their softmax weight is
//! exactly 0 whatever their value), padding queries' outputs are dropped by the gather, and
//! padding never reached a loss. Each token's values are the same products and sums as on the
//! grid, though the products run over fewer rows, which BLAS may block differently, so equal to
//! rounding, not bitwise; and dropout draws its masks over the tokens, not the grid. The
//! gradients are the same sums without their zero terms.

use tch::Tensor;

/// The non-padding slots of a `[rows, len]` grid.
#[derive(Debug)]
pub(super) struct TokenGrid {
    /// Flat (row-major) indices of the slots that hold a token, ascending: `[tokens]` int64.
    index: Tensor,
    rows: i64,
    len: i64,
}

impl TokenGrid {
    /// The grid of `segment_ids` `[rows, len]`: slots with a nonzero segment hold a token.
    pub(super) fn of_segments(segment_ids: &Tensor) -> Self {
        let (rows, len) = segment_ids.size2().expect("segment ids are [rows, len]");
        TokenGrid {
            index: segment_ids.reshape([-1]).ne(0).nonzero().view([-1]),
            rows,
            len,
        }
    }

    /// The grid's length (its rows' number of slots): the attention's query or key length.
    pub(super) fn len(&self) -> i64 {
        self.len
    }

    /// `grid` `[rows, len]` or `[rows, len, d]` at the tokens' slots: `[tokens]` or
    /// `[tokens, d]`.
    pub(super) fn tokens(&self, grid: &Tensor) -> Tensor {
        let size = grid.size();
        let flat: Vec<i64> = std::iter::once(-1)
            .chain(size[2..].iter().copied())
            .collect();
        grid.reshape(flat).index_select(0, &self.index)
    }

    /// `tokens` `[tokens, d]` laid out on the grid, `[rows, len, d]`, zeros in the padding
    /// slots.
    pub(super) fn grid(&self, tokens: &Tensor) -> Tensor {
        let d = tokens.size()[1];
        Tensor::zeros([self.rows * self.len, d], (tokens.kind(), tokens.device()))
            .index_copy(0, &self.index, tokens)
            .view([self.rows, self.len, d])
    }

    /// A second handle on the same grid (the index is shared, not copied).
    pub(super) fn shallow_clone(&self) -> Self {
        TokenGrid {
            index: self.index.shallow_clone(),
            rows: self.rows,
            len: self.len,
        }
    }
}

/// Lays a projection on its grid when the pass runs on tokens (`grid` is Some); on a padded
/// pass it already is.
pub(super) fn on_grid(grid: Option<&TokenGrid>, x: Tensor) -> Tensor {
    match grid {
        Some(g) => g.grid(&x),
        None => x,
    }
}

/// Takes attention's output `[rows, len, inner]` back to the tokens when the pass runs on them.
pub(super) fn off_grid(grid: Option<&TokenGrid>, x: Tensor) -> Tensor {
    match grid {
        Some(g) => g.tokens(&x),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn tokens_and_grid_are_inverse_on_the_tokens() {
        let seg = Tensor::from_slice(&[1i64, 1, 0, 2, 0, 0, 1, 1]).view([2, 4]);
        let grid = TokenGrid::of_segments(&seg);
        assert_eq!(grid.index.kind(), Kind::Int64);
        assert_eq!(
            Vec::<i64>::try_from(&grid.index).unwrap(),
            vec![0, 1, 3, 6, 7]
        );
        let x = Tensor::arange(16, (Kind::Float, tch::Device::Cpu)).view([2, 4, 2]) + 1.0;
        let t = grid.tokens(&x);
        assert_eq!(t.size(), [5, 2]);
        let back = grid.grid(&t);
        let keep = seg.ne(0).unsqueeze(-1).to_kind(Kind::Float);
        assert!(back.equal(&(&x * &keep)));
        let ids = grid.tokens(&(&seg * 10));
        assert_eq!(
            Vec::<i64>::try_from(&ids).unwrap(),
            vec![10, 10, 20, 10, 10]
        );
    }
}
