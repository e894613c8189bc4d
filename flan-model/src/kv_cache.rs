//! The decoder's key/value cache, owned by the caller so one model serves many requests.
//!
//! Self-attention keys and values grow by the new positions at every step; cross-attention keys
//! and values are projected from the encoder output once, on the first step, and reused.

use tch::Tensor;

/// Self-attention keys and values of one decoder block, each a buffer `[batch, heads, capacity,
/// d_kv]` of which the first `len` positions are filled.
///
/// Why buffers and not a `cat` per step: appending by concatenation copies every cached
/// position at every step, which made the cache quadratic in the generated length (at batch 32
/// of the bench's tiny shape, the eight concatenations of a late step moved 16 MB). A step now
/// writes only its new positions; the buffer grows by doubling, and a capacity known in advance
/// ([`KvCache::with_capacity`]) is allocated once.
#[derive(Debug)]
pub(crate) struct GrowingKv {
    keys: Tensor,
    values: Tensor,
    len: i64,
}

impl GrowingKv {
    /// Appends `[batch, heads, n, d_kv]` keys and values; returns views of all of them so far.
    fn append(
        slot: &mut Option<GrowingKv>,
        keys: Tensor,
        values: Tensor,
        capacity: i64,
    ) -> (Tensor, Tensor) {
        let n = keys.size()[2];
        let kv = match slot.take() {
            Some(kv) => kv.reserve(n, capacity),
            None => GrowingKv {
                keys: Self::buffer(&keys, n.max(capacity)),
                values: Self::buffer(&values, n.max(capacity)),
                len: 0,
            },
        };
        kv.keys.narrow(2, kv.len, n).copy_(&keys);
        kv.values.narrow(2, kv.len, n).copy_(&values);
        let kv = GrowingKv {
            len: kv.len + n,
            ..kv
        };
        let views = (kv.keys.narrow(2, 0, kv.len), kv.values.narrow(2, 0, kv.len));
        *slot = Some(kv);
        views
    }

    /// An uninitialised buffer like `like` with `capacity` positions on dim 2.
    fn buffer(like: &Tensor, capacity: i64) -> Tensor {
        let mut shape = like.size();
        shape[2] = capacity;
        Tensor::empty(shape.as_slice(), (like.kind(), like.device()))
    }

    /// Room for `n` more positions: the same buffers if they have it, else buffers of at least
    /// double the capacity (and at least `capacity`) holding the filled positions.
    fn reserve(self, n: i64, capacity: i64) -> GrowingKv {
        let have = self.keys.size()[2];
        if self.len + n <= have {
            return self;
        }
        let grown = (2 * have).max(self.len + n).max(capacity);
        let regrow = |old: &Tensor| {
            let new = Self::buffer(old, grown);
            new.narrow(2, 0, self.len)
                .copy_(&old.narrow(2, 0, self.len));
            new
        };
        GrowingKv {
            keys: regrow(&self.keys),
            values: regrow(&self.values),
            len: self.len,
        }
    }

    /// Keeps the batch rows `rows`, compacted to the filled positions (the next append regrows).
    fn reorder(self, rows: &Tensor) -> GrowingKv {
        GrowingKv {
            keys: self.keys.narrow(2, 0, self.len).index_select(0, rows),
            values: self.values.narrow(2, 0, self.len).index_select(0, rows),
            len: self.len,
        }
    }
}

/// Self-attention keys and values of one decoder block for rows at different positions (see
/// [`crate::continuous`]): zero-filled buffers `[rows, heads, capacity, d_kv]` where row `i` has
/// its first `positions[i]` entries filled; a step writes each row's new key at that row's own
/// position and attention reads the first `visible` positions (the rest masked per row).
#[derive(Debug)]
pub(crate) struct RaggedKv {
    pub(crate) keys: Tensor,
    pub(crate) values: Tensor,
    /// Where this step writes: `[rows, heads, 1, d_kv]` int64, each row's position repeated.
    pub(crate) write_at: Tensor,
    /// Positions attention reads this step (the longest row's, plus the new one).
    pub(crate) visible: i64,
}

impl RaggedKv {
    fn append(&mut self, keys: Tensor, values: Tensor) -> (Tensor, Tensor) {
        let _ = self.keys.scatter_(2, &self.write_at, &keys);
        let _ = self.values.scatter_(2, &self.write_at, &values);
        (
            self.keys.narrow(2, 0, self.visible),
            self.values.narrow(2, 0, self.visible),
        )
    }
}

/// Cached keys and values of one decoder block.
#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    self_kv: Option<GrowingKv>,
    /// Set instead of `self_kv` when the rows sit at different positions.
    pub(crate) ragged: Option<RaggedKv>,
    /// Cross-attention keys and values `[batch, heads, source_len, d_kv]`.
    pub(crate) cross_kv: Option<(Tensor, Tensor)>,
    /// Positions to allocate self-attention buffers for on the first step.
    capacity: i64,
}

impl LayerCache {
    /// Appends this step's self-attention keys and values `[batch, heads, n, d_kv]` and returns
    /// all keys and values so far (views into the cache's buffers).
    pub(crate) fn append_self(&mut self, keys: Tensor, values: Tensor) -> (Tensor, Tensor) {
        if let Some(ragged) = &mut self.ragged {
            return ragged.append(keys, values);
        }
        GrowingKv::append(&mut self.self_kv, keys, values, self.capacity)
    }
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
    /// The most positions [`KvCache::with_capacity`] allocates before they are needed.
    pub const MAX_INITIAL_CAPACITY: usize = 1024;

    /// An empty cache for a decoder with `num_layers` blocks; its buffers grow as needed.
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }

    /// An empty cache that allocates room for `positions` decoder positions (at most
    /// [`KvCache::MAX_INITIAL_CAPACITY`]) on its first step, so that generation, which knows it
    /// feeds at most `max_new_tokens` inputs, does not regrow it.
    pub fn with_capacity(num_layers: usize, positions: usize) -> Self {
        // A hint, not a promise: a huge `max_new_tokens` must not allocate its buffers up front.
        let capacity = positions.min(Self::MAX_INITIAL_CAPACITY) as i64;
        KvCache {
            layers: (0..num_layers)
                .map(|_| LayerCache {
                    capacity,
                    ..LayerCache::default()
                })
                .collect(),
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
        for layer in &mut self.layers {
            layer.self_kv = layer.self_kv.take().map(|kv| kv.reorder(rows));
            if let Some((k, v)) = layer.cross_kv.take() {
                layer.cross_kv = Some((k.index_select(0, rows), v.index_select(0, rows)));
            }
        }
        if let Some(mask) = self.cross_mask.take() {
            self.cross_mask = Some(mask.index_select(0, rows));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn random(batch: i64, n: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn([batch, 2, n, 3], (Kind::Float, Device::Cpu))
    }

    /// Appends in uneven pieces, through regrowth from each starting capacity, a reorder and a
    /// batch that shrinks: always what concatenating everything gives.
    #[test]
    fn appends_equal_concatenation_through_regrowth_and_reorder() {
        for capacity in [0, 1, 2, 5, 64] {
            let mut layer = LayerCache {
                capacity,
                ..LayerCache::default()
            };
            let (mut want_k, mut want_v) = (random(3, 0, 0), random(3, 0, 0));
            for (step, n) in [1, 2, 1, 1, 3, 1, 4].into_iter().enumerate() {
                let seed = 2 * step as i64 + 1;
                let (k, v) = (
                    random(want_k.size()[0], n, seed),
                    random(want_k.size()[0], n, seed + 100),
                );
                want_k = Tensor::cat(&[&want_k, &k], 2);
                want_v = Tensor::cat(&[&want_v, &v], 2);
                let (got_k, got_v) = layer.append_self(k, v);
                assert!(
                    got_k.equal(&want_k),
                    "keys, capacity {capacity}, step {step}"
                );
                assert!(
                    got_v.equal(&want_v),
                    "values, capacity {capacity}, step {step}"
                );
                if step == 3 {
                    // Beam search's reorder, and a row dropped.
                    let rows = Tensor::from_slice(&[2i64, 0]);
                    want_k = want_k.index_select(0, &rows);
                    want_v = want_v.index_select(0, &rows);
                    let kv = layer.self_kv.take().map(|kv| kv.reorder(&rows));
                    layer.self_kv = kv;
                }
            }
        }
    }

    #[test]
    fn initial_capacity_is_capped() {
        let cache = KvCache::with_capacity(2, usize::MAX);
        assert_eq!(
            cache.layers[0].capacity,
            KvCache::MAX_INITIAL_CAPACITY as i64
        );
        assert_eq!(KvCache::with_capacity(1, 7).layers[0].capacity, 7);
    }
}
