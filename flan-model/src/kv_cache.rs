//! The decoder's key/value cache, owned by the caller so one model serves many requests.
//!
//! Self-attention keys and values grow by the new positions at every step; cross-attention keys
//! and values are projected from the encoder output once, on the first step, and reused.

use tch::Tensor;

/// Cached keys and values of one decoder block, each `[batch, heads, len, d_kv]`.
#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    pub(crate) self_kv: Option<(Tensor, Tensor)>,
    pub(crate) cross_kv: Option<(Tensor, Tensor)>,
}

/// Keys and values of every decoder block for a batch of sequences being decoded.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    len: i64,
    /// Self-attention position bias of a query at the last of `L` positions over all of them,
    /// `[1, heads, 1, L]`; its last `p + 1` entries are the bias of the query at `p`.
    pub(crate) step_bias: Option<Tensor>,
    /// Additive cross-attention mask `[rows, 1, 1, source_len]`, built on the first step.
    pub(crate) cross_mask: Option<Tensor>,
}

impl KvCache {
    /// An empty cache for a decoder with `num_layers` blocks.
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
            len: 0,
            step_bias: None,
            cross_mask: None,
        }
    }

    /// Number of decoder positions already cached (the position of the next query).
    pub fn len(&self) -> i64 {
        self.len
    }

    /// True before the first decoding step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn advance(&mut self, steps: i64) {
        self.len += steps;
    }

    /// Keeps, in order, the batch rows named by `rows` (int64 indices): how beam search follows
    /// the surviving beams, and how finished sequences are dropped from a batch.
    pub fn reorder(&mut self, rows: &Tensor) {
        let pick = |kv: &mut Option<(Tensor, Tensor)>| {
            if let Some((k, v)) = kv.take() {
                *kv = Some((k.index_select(0, rows), v.index_select(0, rows)));
            }
        };
        for layer in &mut self.layers {
            pick(&mut layer.self_kv);
            pick(&mut layer.cross_kv);
        }
        if let Some(mask) = self.cross_mask.take() {
            self.cross_mask = Some(mask.index_select(0, rows));
        }
    }
}
