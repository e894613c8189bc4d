//! The chunk cache: texts split at single spaces between printable ASCII (exact for T5-style
//! pipelines), each chunk's ids cached per thread and, behind that, across threads.

use super::*;

/// Entries of the per-thread chunk cache before it is cleared.
pub(super) const CHUNK_CACHE_LIMIT: usize = 1 << 20;

/// A chunk's text, inline in the map's slot when short (most words are): a lookup then compares
/// it without following a pointer to memory that is seldom in cache.
pub(super) type ChunkText = compact_str::CompactString;

/// A chunk's ids, inline when few (most words take a few).
pub(super) type ChunkIds = smallvec::SmallVec<[u32; 4]>;

/// Ids of chunks.
pub(super) type ChunkMap = ahash::AHashMap<ChunkText, ChunkIds>;

/// A thread's cached ids of chunks, tagged with the `cache_id` of the tokenizer that filled it.
pub(super) type ChunkCache = (u64, ChunkMap);

/// The second cache level, shared by all threads (and clones of one tokenizer): without it every
/// thread of the pipeline encodes every new word itself, twice the misses on two threads. A
/// thread asks it only on a miss of its own cache, so the locks are rarely taken (and sharded,
/// so that two threads seldom want the same one).
pub(super) struct SharedChunkCache {
    pub(super) shards: Vec<std::sync::Mutex<ChunkMap>>,
    hasher: ahash::RandomState,
}

impl SharedChunkCache {
    pub(super) const SHARDS: usize = 16;

    pub(super) fn new() -> SharedChunkCache {
        SharedChunkCache {
            shards: (0..Self::SHARDS).map(|_| Default::default()).collect(),
            hasher: ahash::RandomState::new(),
        }
    }

    pub(super) fn get_or_encode(
        &self,
        chunk: &str,
        encode: impl FnOnce(&str) -> Result<Vec<u32>>,
    ) -> Result<ChunkIds> {
        let shard = &self.shards[self.hasher.hash_one(chunk) as usize % Self::SHARDS];
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is never left half-updated by the operations below.
        let lock = || shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ids) = lock().get(chunk) {
            return Ok(ids.clone());
        }
        // Encoded outside the lock: two threads may both encode a chunk, never block on it.
        let fresh = ChunkIds::from_vec(encode(chunk)?);
        let mut map = lock();
        if map.len() > CHUNK_CACHE_LIMIT / Self::SHARDS {
            map.clear();
        }
        map.insert(chunk.into(), fresh.clone());
        Ok(fresh)
    }
}

thread_local! {
    pub(super) static CHUNK_CACHE: std::cell::RefCell<ChunkCache> =
        std::cell::RefCell::new((u64::MAX, ahash::AHashMap::new()));
}

/// Splits `text` at single spaces that have a printable ASCII character on both sides.
///
/// Why this is exact: T5-style pipelines normalise printable ASCII to itself (NFKC, T5's
/// precompiled charsmap) and only collapse runs of two or more spaces, so such a space survives
/// normalisation unchanged; the Metaspace pre-tokenizer (split on, prefix `▁` prepended) then
/// cuts the text there, and the model tokenizes every pre-token on its own. Encoding each chunk
/// separately therefore yields the same ids as encoding the whole text, and chunks — mostly
/// words — repeat so much that a cache makes tokenization an order of magnitude faster.
pub fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 1;
    std::iter::from_fn(move || {
        while i + 1 < bytes.len() {
            let at = i;
            i += 1;
            if bytes[at] == b' '
                && bytes[at - 1].is_ascii_graphic()
                && bytes[at + 1].is_ascii_graphic()
            {
                let chunk = &text[start..at];
                start = at + 1;
                return Some(chunk);
            }
        }
        if start <= bytes.len() {
            let chunk = &text[start..];
            start = bytes.len() + 1;
            return Some(chunk);
        }
        None
    })
}

/// Whether the pipeline of `inner` allows chunked encoding: a Metaspace pre-tokenizer that splits
/// and prepends `▁`, and no added token containing a space.
pub(super) fn supports_chunks(inner: &tokenizers::Tokenizer) -> bool {
    let Some(pre) = inner.get_pre_tokenizer() else {
        return false;
    };
    let Ok(pre) = serde_json::to_value(pre) else {
        return false;
    };
    let metaspace = pre["type"] == "Metaspace"
        && pre["split"] != serde_json::Value::Bool(false)
        && pre["prepend_scheme"] != "never";
    let normalizer_ok = match inner.get_normalizer().map(serde_json::to_value) {
        None => true,
        Some(Ok(n)) => normalizer_is_ascii_local(&n),
        Some(Err(_)) => false,
    };
    metaspace
        && normalizer_ok
        && inner
            .get_added_tokens_decoder()
            .values()
            .all(|t| !t.content.contains(' '))
}

/// Whether the normalizer (a [`normalizer_within`] one) strips whitespace at the text's ends.
pub(super) fn normalizer_strips(n: &serde_json::Value) -> bool {
    match n["type"].as_str() {
        Some("Sequence") => n["normalizers"]
            .as_array()
            .is_some_and(|v| v.iter().any(normalizer_strips)),
        Some("Strip") => true,
        _ => false,
    }
}

/// Normalizers known to map printable ASCII to itself and touch only runs of 2+ spaces.
pub(super) fn normalizer_is_ascii_local(n: &serde_json::Value) -> bool {
    normalizer_within(n, true)
}

/// The normalizers of [`normalizer_is_ascii_local`], `Precompiled` (T5's charsmap) included only
/// when `precompiled` is true.
pub(super) fn normalizer_within(n: &serde_json::Value, precompiled: bool) -> bool {
    match n["type"].as_str() {
        Some("Sequence") => n["normalizers"]
            .as_array()
            .is_some_and(|v| v.iter().all(|m| normalizer_within(m, precompiled))),
        Some("NFKC" | "NFC" | "NFD" | "NFKD" | "Strip") => true,
        Some("Precompiled") => precompiled,
        Some("Replace") => n["pattern"]["Regex"] == " {2,}" && n["content"] == " ",
        _ => false,
    }
}

pub(super) static NEXT_CACHE_ID: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
