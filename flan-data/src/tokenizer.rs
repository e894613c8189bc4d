//! T5 tokenization on top of Hugging Face `tokenizers`.
//!
//! T5 fixes a few ids that the rest of the workspace relies on: `<pad>` is 0 (also the decoder
//! start token), `</s>` is 1 and is appended to every sequence, `<unk>` is 2, and the span-corruption
//! sentinels `<extra_id_0>`, `<extra_id_1>`, ... sit at the top of the vocabulary in reverse order
//! (`<extra_id_0>` has the largest id). [`Tokenizer`] checks those conventions when it loads a
//! `tokenizer.json`, and [`Tokenizer::train_unigram`] produces a new SentencePiece-style Unigram
//! tokenizer that follows them, saved in the same `tokenizer.json` layout `transformers` reads.

use crate::error::{Error, Result};
use crate::unigram::UnigramViterbi;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Replace, Sequence as NormalizerSequence, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

/// The padding token (also the decoder start token of T5).
pub const PAD_TOKEN: &str = "<pad>";
/// The end-of-sequence token, appended to every encoded sequence.
pub const EOS_TOKEN: &str = "</s>";
/// The unknown-piece token.
pub const UNK_TOKEN: &str = "<unk>";
/// T5 checkpoints carry 100 sentinels.
pub const DEFAULT_NUM_SENTINELS: usize = 100;

/// The SentencePiece word-boundary marker used by T5's pre-tokenizer.
const METASPACE: char = '\u{2581}';

/// A T5 tokenizer: a Hugging Face tokenizer whose special ids follow T5's conventions.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
    eos_id: u32,
    unk_id: u32,
    /// Whether [`Tokenizer::encode_pieces`] may encode word chunks separately and cache them
    /// (see [`chunks`]); decided once from the pipeline when the tokenizer is loaded.
    chunked: bool,
    /// Identifies the vocabulary in the per-thread chunk cache (clones share it).
    cache_id: u64,
    /// When set, chunk-cache misses made of ASCII go straight to the model (see `ModelPath`).
    model_path: Option<ModelPath>,
    /// Texts holding one of these are encoded whole (see `AddedTokens`).
    added: AddedTokens,
    /// The chunk cache all threads share, behind each thread's own.
    shared: Arc<SharedChunkCache>,
}

/// What the pipeline does to a chunk of ASCII from a text without added tokens, when its
/// normalizer leaves ASCII alone: nothing but Metaspace's work — each single space becomes `▁`
/// and starts a new pre-token, and the first pre-token gets the `▁` prefix. Such a chunk can
/// then be cut into pre-tokens here and handed to the model itself, skipping the pipeline's
/// per-call machinery (normalized-string alignments, splits, offsets, the `Encoding`), which
/// costs over half of a miss (5.2 µs against 2.3 µs per word on the CoT mixture's new words).
/// Template junctions ("question?\nAnswer: ") are most of the misses once words are cached,
/// which is why line breaks and single spaces are taken too.
#[derive(Clone)]
struct ModelPath {
    prefix: String,
    /// The model's segmentation on a flat trie, when the model is Unigram without byte
    /// fallback (else the model itself is asked).
    viterbi: Option<Arc<UnigramViterbi>>,
    /// Whether chunks may hold whitespace and control characters: not when the normalizer
    /// strips the text's ends, which a chunk cannot know it sits at.
    whitespace: bool,
}

impl ModelPath {
    fn for_pipeline(inner: &tokenizers::Tokenizer) -> Option<ModelPath> {
        let pre = serde_json::to_value(inner.get_pre_tokenizer()?).ok()?;
        let prefix = pre["replacement"].as_str()?.to_string();
        if pre["type"] != "Metaspace"
            || pre["split"] == serde_json::Value::Bool(false)
            || !matches!(pre["prepend_scheme"].as_str(), Some("always" | "first"))
        {
            return None;
        }
        let whitespace = match inner.get_normalizer() {
            None => true,
            Some(n) => {
                let n = serde_json::to_value(n).ok()?;
                if !normalizer_keeps_ascii(&n) {
                    return None;
                }
                !normalizer_strips(&n)
            }
        };
        let viterbi = serde_json::to_value(inner.get_model())
            .ok()
            .and_then(|model| UnigramViterbi::from_model_json(&model))
            .map(Arc::new);
        Some(ModelPath {
            prefix,
            viterbi,
            whitespace,
        })
    }

    /// Whether a chunk of text without added tokens (see [`AddedTokens::occur_in`]) may take
    /// this path.
    fn applies_to(&self, chunk: &str) -> bool {
        let bytes = chunk.as_bytes();
        let byte_ok = |b: u8| {
            if self.whitespace {
                b.is_ascii()
            } else {
                b.is_ascii_graphic()
            }
        };
        // A leading space or a run of spaces is what normalizers collapse or strip.
        !bytes.is_empty()
            && bytes[0] != b' '
            && !chunk.contains("  ")
            && bytes.iter().all(|&b| byte_ok(b))
    }

    /// The pre-tokens Metaspace makes of a chunk this path applies to, each with its `▁`.
    fn pre_tokens<'a>(&'a self, chunk: &'a str) -> impl Iterator<Item = String> + 'a {
        chunk
            .split(' ')
            .map(|piece| format!("{}{piece}", self.prefix))
    }
}

/// The vocabulary's added tokens (T5's `<pad>`, `</s>`, `<unk>`, sentinels), as far as chunking
/// cares: the pipeline cuts them out of the text before pre-tokenizing, so a space next to one
/// becomes a `▁` token of its own ("a <extra_id_0> b" has three pieces between `a` and `b`), which
/// chunks split at that space would lose. Texts holding one are encoded whole.
#[derive(Clone)]
struct AddedTokens {
    /// First bytes of the added tokens, to skip the substring search for most texts.
    starts: [bool; 256],
    contents: Vec<String>,
    /// Whether some added token is matched after normalization, where non-ASCII text may turn
    /// into one (NFKC maps full-width `＜` to `<`).
    normalized: bool,
}

impl AddedTokens {
    fn of(inner: &tokenizers::Tokenizer) -> AddedTokens {
        let mut starts = [false; 256];
        let mut contents = Vec::new();
        let mut normalized = false;
        for token in inner.get_added_tokens_decoder().values() {
            if let Some(&b) = token.content.as_bytes().first() {
                starts[usize::from(b)] = true;
                contents.push(token.content.clone());
            }
            normalized |= token.normalized;
        }
        AddedTokens {
            starts,
            contents,
            normalized,
        }
    }

    /// Whether the pipeline may find an added token in `text`.
    fn occur_in(&self, text: &str) -> bool {
        text.bytes().enumerate().any(|(i, b)| {
            (self.normalized && !b.is_ascii())
                || (self.starts[usize::from(b)]
                    && self
                        .contents
                        .iter()
                        .any(|t| text[i..].starts_with(t.as_str())))
        })
    }
}

/// Normalizers that leave printable ASCII text exactly as it is: those of
/// [`normalizer_is_ascii_local`] but `Precompiled`, whose charsmap may rewrite ASCII.
fn normalizer_keeps_ascii(n: &serde_json::Value) -> bool {
    normalizer_within(n, false)
}

/// Entries of the per-thread chunk cache before it is cleared.
const CHUNK_CACHE_LIMIT: usize = 1 << 20;

/// Ids of chunks.
type ChunkMap = ahash::AHashMap<Box<str>, Box<[u32]>>;

/// A thread's cached ids of chunks, tagged with the `cache_id` of the tokenizer that filled it.
type ChunkCache = (u64, ChunkMap);

/// The second cache level, shared by all threads (and clones of one tokenizer): without it every
/// thread of the pipeline encodes every new word itself, twice the misses on two threads. A
/// thread asks it only on a miss of its own cache, so the locks are rarely taken (and sharded,
/// so that two threads seldom want the same one).
struct SharedChunkCache {
    shards: Vec<std::sync::Mutex<ChunkMap>>,
    hasher: ahash::RandomState,
}

impl SharedChunkCache {
    const SHARDS: usize = 16;

    fn new() -> SharedChunkCache {
        SharedChunkCache {
            shards: (0..Self::SHARDS).map(|_| Default::default()).collect(),
            hasher: ahash::RandomState::new(),
        }
    }

    fn get_or_encode(
        &self,
        chunk: &str,
        encode: impl FnOnce(&str) -> Result<Vec<u32>>,
    ) -> Result<Box<[u32]>> {
        let shard = &self.shards[self.hasher.hash_one(chunk) as usize % Self::SHARDS];
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is never left half-updated by the operations below.
        let lock = || shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ids) = lock().get(chunk) {
            return Ok(ids.clone());
        }
        // Encoded outside the lock: two threads may both encode a chunk, never block on it.
        let fresh: Box<[u32]> = encode(chunk)?.into_boxed_slice();
        let mut map = lock();
        if map.len() > CHUNK_CACHE_LIMIT / Self::SHARDS {
            map.clear();
        }
        map.insert(chunk.into(), fresh.clone());
        Ok(fresh)
    }
}

thread_local! {
    static CHUNK_CACHE: std::cell::RefCell<ChunkCache> =
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
fn supports_chunks(inner: &tokenizers::Tokenizer) -> bool {
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
fn normalizer_strips(n: &serde_json::Value) -> bool {
    match n["type"].as_str() {
        Some("Sequence") => n["normalizers"]
            .as_array()
            .is_some_and(|v| v.iter().any(normalizer_strips)),
        Some("Strip") => true,
        _ => false,
    }
}

/// Normalizers known to map printable ASCII to itself and touch only runs of 2+ spaces.
fn normalizer_is_ascii_local(n: &serde_json::Value) -> bool {
    normalizer_within(n, true)
}

/// The normalizers of [`normalizer_is_ascii_local`], `Precompiled` (T5's charsmap) included only
/// when `precompiled` is true.
fn normalizer_within(n: &serde_json::Value, precompiled: bool) -> bool {
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

static NEXT_CACHE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("pad_id", &self.pad_id)
            .field("eos_id", &self.eos_id)
            .field("unk_id", &self.unk_id)
            .finish()
    }
}

/// Settings of [`Tokenizer::train_unigram_with`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnigramTrainingConfig {
    /// Size of the piece vocabulary, including `<pad>`, `</s>` and `<unk>` but not the sentinels
    /// (T5: 32,000 pieces + 100 sentinels = 32,100 ids).
    pub vocab_size: usize,
    /// How many `<extra_id_N>` sentinels to add on top of the pieces.
    pub num_sentinels: usize,
    /// Longest piece, in characters (SentencePiece's default is 16).
    pub max_piece_length: usize,
    /// EM sub-iterations per pruning round.
    pub n_sub_iterations: u32,
    /// Share of pieces kept per pruning round.
    pub shrinking_factor: f64,
}

impl Default for UnigramTrainingConfig {
    fn default() -> Self {
        Self {
            vocab_size: 8000,
            num_sentinels: DEFAULT_NUM_SENTINELS,
            max_piece_length: 16,
            n_sub_iterations: 2,
            shrinking_factor: 0.75,
        }
    }
}

/// A `tokenizer.json` parsed by the `tokenizers` crate, whose deserializer panics on some
/// malformed sections (a `decoder` that is neither tagged nor a known untagged form:
/// `expect("Helper")`, found by fuzzing): the panic is contained and reported as a parse error.
fn parse_hf(bytes: &[u8]) -> std::result::Result<tokenizers::Tokenizer, String> {
    check_piece_lengths(bytes)?;
    flan_contain::catch_panic(|| tokenizers::Tokenizer::from_bytes(bytes))
        .map_err(|panic| format!("not a tokenizer.json the tokenizers library can read ({panic})"))?
        .map_err(|e| e.to_string())
}

/// The longest Unigram piece accepted, in bytes. SentencePiece caps pieces at 16 characters by
/// default; real vocabularies stay far below this.
const MAX_UNIGRAM_PIECE_BYTES: usize = 1024;

/// Refuses a Unigram vocabulary with an absurdly long piece before the `tokenizers` crate builds
/// its trie from it: the trie is one level per byte and is dropped recursively, so a piece of a
/// few thousand bytes overflows a thread's stack and aborts the process, which no error handling
/// can catch (found by fuzzing, with a 2,448-byte piece). Files that are not JSON, or not
/// Unigram, are left to the library's own parser and its errors.
fn check_piece_lengths(bytes: &[u8]) -> std::result::Result<(), String> {
    #[derive(serde::Deserialize)]
    struct File {
        model: Option<Model>,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        #[serde(rename = "type")]
        kind: Option<String>,
        vocab: Option<serde_json::Value>,
    }
    let Ok(File {
        model:
            Some(Model {
                kind: Some(kind),
                vocab: Some(serde_json::Value::Array(vocab)),
            }),
    }) = serde_json::from_slice::<File>(bytes)
    else {
        return Ok(());
    };
    if kind != "Unigram" {
        return Ok(());
    }
    for (i, entry) in vocab.iter().enumerate() {
        let piece = entry
            .get(0)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if piece.len() > MAX_UNIGRAM_PIECE_BYTES {
            return Err(format!(
                "Unigram vocabulary entry {i} is a piece of {} bytes, longer than any real \
                 vocabulary's (at most {MAX_UNIGRAM_PIECE_BYTES} accepted); the file is corrupt",
                piece.len()
            ));
        }
    }
    Ok(())
}

fn tok_err(path: Option<&Path>, message: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        path: path.map(Path::to_path_buf),
        message: message.to_string(),
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` (as saved by `transformers` or by [`Tokenizer::save`]) and checks
    /// that `<pad>`, `</s>` and `<unk>` have ids 0, 1 and 2.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = parse_hf(&bytes).map_err(|e| tok_err(Some(path), e))?;
        Self::from_hf(inner, Some(path))
    }

    /// Parses a `tokenizer.json` held in memory.
    pub fn from_json(json: &str) -> Result<Tokenizer> {
        let inner = parse_hf(json.as_bytes()).map_err(|e| tok_err(None, e))?;
        Self::from_hf(inner, None)
    }

    /// Wraps a Hugging Face tokenizer after checking T5's special ids.
    ///
    /// Truncation and padding saved in the tokenizer are dropped: transformers writes the
    /// settings of the last call into `tokenizer.json` (`"truncation": {"max_length": 48, ...}`
    /// after `tok(..., truncation=True, max_length=48)`) and applies them only to calls that ask
    /// for truncation or padding, which flan decides itself ([`Tokenizer::encode_truncated`],
    /// counted by its callers).
    pub fn from_hf(mut inner: tokenizers::Tokenizer, path: Option<&Path>) -> Result<Tokenizer> {
        inner
            .with_truncation(None)
            .map_err(|e| tok_err(path, e))?
            .with_padding(None);
        let id = |token: &str, want: u32| -> Result<u32> {
            match inner.token_to_id(token) {
                Some(id) if id == want => Ok(id),
                Some(id) => Err(tok_err(
                    path,
                    format!("expected `{token}` to have id {want} (T5 convention), found {id}"),
                )),
                None => Err(tok_err(
                    path,
                    format!("the vocabulary has no `{token}` token"),
                )),
            }
        };
        let pad_id = id(PAD_TOKEN, 0)?;
        let eos_id = id(EOS_TOKEN, 1)?;
        let unk_id = id(UNK_TOKEN, 2)?;
        let chunked = supports_chunks(&inner);
        let model_path = if chunked {
            ModelPath::for_pipeline(&inner)
        } else {
            None
        };
        let cache_id = NEXT_CACHE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let added = AddedTokens::of(&inner);
        Ok(Tokenizer {
            inner,
            pad_id,
            eos_id,
            unk_id,
            chunked,
            cache_id,
            model_path,
            added,
            shared: Arc::new(SharedChunkCache::new()),
        })
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes `text` and appends `</s>`, as T5 does for inputs and targets.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode_pieces(text)?;
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Encodes `text` into at most `max_len` ids, the last of which is `</s>`: the text is cut
    /// first and the EOS kept, as seqio's `append_eos_after_trim` does. `max_len == 0` gives `[]`.
    pub fn encode_truncated(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        if max_len == 0 {
            return Ok(Vec::new());
        }
        let mut ids = self.encode_pieces(text)?;
        ids.truncate(max_len - 1);
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Encodes without `</s>`. The EOS is appended by us rather than by the post-processor so that
    /// a `tokenizer.json` without a T5 post-processor still yields T5 sequences.
    pub fn encode_pieces(&self, text: &str) -> Result<Vec<u32>> {
        if !self.chunked || self.added.occur_in(text) {
            return self.encode_whole(text);
        }
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        self.for_each_chunk(text, |chunk_ids| ids.extend_from_slice(chunk_ids))?;
        Ok(ids)
    }

    /// Number of ids [`Tokenizer::encode_pieces`] would return, without building them (chunk
    /// lengths come from the cache): the few-shot token budget asks this for every exemplar.
    pub fn count_pieces(&self, text: &str) -> Result<usize> {
        if !self.chunked || self.added.occur_in(text) {
            return Ok(self.encode_whole(text)?.len());
        }
        let mut count = 0;
        self.for_each_chunk(text, |chunk_ids| count += chunk_ids.len())?;
        Ok(count)
    }

    /// Hands the ids of each chunk of `text` (see [`chunks`]) to `f`, in order: from this
    /// thread's cache, else from the one all threads share, else encoded (and cached in both).
    fn for_each_chunk(&self, text: &str, mut f: impl FnMut(&[u32])) -> Result<()> {
        CHUNK_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let (owner, map) = &mut *cache;
            if *owner != self.cache_id || map.len() > CHUNK_CACHE_LIMIT {
                map.clear();
                *owner = self.cache_id;
            }
            for chunk in chunks(text) {
                match map.get(chunk) {
                    Some(cached) => f(cached),
                    None => {
                        let fresh = self.shared.get_or_encode(chunk, |c| self.encode_chunk(c))?;
                        f(&fresh);
                        map.insert(chunk.into(), fresh);
                    }
                }
            }
            Ok(())
        })
    }

    /// Whether encoding goes chunk by chunk through the cache (see [`chunks`]).
    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// Encodes one chunk (see [`chunks`]) for the cache: through the model alone when that is
    /// known to give the pipeline's ids (see `ModelPath`), else through the pipeline.
    fn encode_chunk(&self, chunk: &str) -> Result<Vec<u32>> {
        use tokenizers::Model;
        match &self.model_path {
            Some(path) if path.applies_to(chunk) && !self.added.occur_in(chunk) => {
                let mut ids = Vec::new();
                for pre_token in path.pre_tokens(chunk) {
                    if let Some(viterbi) = &path.viterbi {
                        if viterbi.encode_into(&pre_token, &mut ids) {
                            continue;
                        }
                    }
                    let tokens = self
                        .inner
                        .get_model()
                        .tokenize(&pre_token)
                        .map_err(|e| tok_err(None, e))?;
                    ids.extend(tokens.into_iter().map(|t| t.id));
                }
                Ok(ids)
            }
            _ => self.encode_whole(chunk),
        }
    }

    /// Encodes through the Hugging Face pipeline in one call, without `</s>`.
    pub fn encode_whole(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| tok_err(None, e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes many texts in parallel (rayon); each gets `</s>` appended.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// Like [`Tokenizer::encode_batch`] with truncation to `max_len` (EOS kept).
    pub fn encode_batch_truncated(&self, texts: &[&str], max_len: usize) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode_truncated(t, max_len))
            .collect()
    }

    /// Turns ids back into text. With `skip_special_tokens`, `<pad>`, `</s>`, `<unk>` and the
    /// sentinels are left out.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err(None, e))
    }

    /// Number of ids, sentinels and other added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of `<pad>` (0).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of `</s>` (1).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Id of `<unk>` (2).
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Id of the sentinel `<extra_id_{n}>`, if the vocabulary has it.
    pub fn sentinel_id(&self, n: usize) -> Option<u32> {
        self.inner.token_to_id(&format!("<extra_id_{n}>"))
    }

    /// Id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Writes the tokenizer as a single `tokenizer.json`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.inner
            .save(path, false)
            .map_err(|e| tok_err(Some(path), e))
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into `dir`,
    /// so that `transformers.AutoTokenizer.from_pretrained(dir)` gives a `T5TokenizerFast`.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.save(dir.join("tokenizer.json"))?;
        let sentinels: Vec<String> = (0..self.count_sentinels())
            .map(|n| format!("<extra_id_{n}>"))
            .collect();
        let config = serde_json::json!({
            "tokenizer_class": "T5Tokenizer",
            "pad_token": PAD_TOKEN,
            "eos_token": EOS_TOKEN,
            "unk_token": UNK_TOKEN,
            "extra_ids": sentinels.len(),
            "additional_special_tokens": sentinels,
            "model_max_length": 512,
        });
        let map = serde_json::json!({
            "pad_token": PAD_TOKEN,
            "eos_token": EOS_TOKEN,
            "unk_token": UNK_TOKEN,
            "additional_special_tokens": sentinels,
        });
        for (name, value) in [
            ("tokenizer_config.json", config),
            ("special_tokens_map.json", map),
        ] {
            let path: PathBuf = dir.join(name);
            let text = serde_json::to_string_pretty(&value).map_err(|e| tok_err(Some(&path), e))?;
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// How many consecutive sentinels `<extra_id_0>`, `<extra_id_1>`, ... the vocabulary holds.
    pub fn count_sentinels(&self) -> usize {
        (0..).take_while(|&n| self.sentinel_id(n).is_some()).count()
    }

    /// Trains a Unigram tokenizer of `vocab_size` pieces plus `num_sentinels` sentinels on a corpus.
    pub fn train_unigram<I, S>(
        corpus: I,
        vocab_size: usize,
        num_sentinels: usize,
    ) -> Result<Tokenizer>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let config = UnigramTrainingConfig {
            vocab_size,
            num_sentinels,
            ..Default::default()
        };
        Self::train_unigram_with(corpus, &config)
    }

    /// Trains a SentencePiece-style Unigram tokenizer with T5's pipeline: NFKC normalisation and
    /// runs of spaces collapsed (T5's `Precompiled` charsmap is NFKC-based), `▁` word boundaries,
    /// `</s>` appended by the post-processor, `<pad>`/`</s>`/`<unk>` at ids 0/1/2 and the sentinels
    /// above the pieces with `<extra_id_0>` last.
    pub fn train_unigram_with<I, S>(corpus: I, config: &UnigramTrainingConfig) -> Result<Tokenizer>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if config.vocab_size < 4 {
            return Err(tok_err(
                None,
                format!(
                    "vocab_size must be at least 4 (3 special tokens and a piece), got {}",
                    config.vocab_size
                ),
            ));
        }
        let specials: Vec<AddedToken> = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN]
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        let trainer = UnigramTrainer::builder()
            .show_progress(false)
            .vocab_size(config.vocab_size as u32)
            .special_tokens(specials)
            .unk_token(Some(UNK_TOKEN.to_string()))
            .max_piece_length(config.max_piece_length)
            .n_sub_iterations(config.n_sub_iterations)
            .shrinking_factor(config.shrinking_factor)
            .build()
            .map_err(|e| tok_err(None, e))?;
        let mut trainer = TrainerWrapper::UnigramTrainer(trainer);

        let mut inner = tokenizers::Tokenizer::new(Unigram::default());
        let collapse_spaces = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
            " ",
        )
        .map_err(|e| tok_err(None, e))?;
        inner.with_normalizer(Some(NormalizerSequence::new(vec![
            NFKC.into(),
            collapse_spaces.into(),
        ])));
        inner.with_pre_tokenizer(Some(Metaspace::new(METASPACE, PrependScheme::Always, true)));
        inner.with_decoder(Some(MetaspaceDecoder::new(
            METASPACE,
            PrependScheme::Always,
            true,
        )));
        inner
            .train(&mut trainer, corpus)
            .map_err(|e| tok_err(None, e))?;

        // The trained model has the specials at ids 0..3 (the trainer puts them first); make sure,
        // because everything downstream depends on it.
        let eos_id = inner.token_to_id(EOS_TOKEN).unwrap_or(u32::MAX);
        let post = TemplateProcessing::builder()
            .try_single(format!("$A:0 {EOS_TOKEN}:0"))
            .and_then(|b| b.try_pair(format!("$A:0 {EOS_TOKEN}:0 $B:0 {EOS_TOKEN}:0")))
            .map_err(|e| tok_err(None, e))?
            .special_tokens(vec![(EOS_TOKEN.to_string(), eos_id)])
            .build()
            .map_err(|e| tok_err(None, e))?;
        inner.with_post_processor(Some(post));

        // T5 layout: <extra_id_{n-1}> first, <extra_id_0> at the very top of the vocabulary.
        let sentinels: Vec<AddedToken> = (0..config.num_sentinels)
            .rev()
            .map(|n| AddedToken::from(format!("<extra_id_{n}>"), true))
            .collect();
        inner.add_special_tokens(&sentinels);
        Self::from_hf(inner, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let words = [
            "the", "cat", "sat", "on", "mat", "dog", "ran", "fast", "answer", "is", "so", "think",
            "step", "by", "question", "options", "yes", "no", "because", "number",
        ];
        (0..400)
            .map(|i| {
                (0..12)
                    .map(|j| words[(i * 7 + j * 3 + i / 5) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn small() -> Tokenizer {
        Tokenizer::train_unigram(corpus().into_iter(), 100, 10).unwrap()
    }

    /// Found by fuzzing: a control character inside a string of the `decoder` section makes
    /// the tokenizers library panic (`expect("Helper")`) instead of returning its error.
    #[test]
    fn a_malformed_decoder_is_an_error_not_a_panic() {
        let json = small().inner().to_string(false).unwrap();
        let decoder = json.find("\"decoder\":").unwrap();
        let quote = decoder + json[decoder..].find("\"replacement\":\"").unwrap() + 15;
        let bad = format!("{}\u{1}{}", &json[..quote], &json[quote..]);
        let err = Tokenizer::from_json(&bad).unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        assert!(Tokenizer::from_json(&json).is_ok());
    }

    /// Found by fuzzing: a Unigram piece of a few thousand bytes builds a trie as deep, whose
    /// recursive drop overflowed the stack and aborted the process.
    #[test]
    fn an_absurdly_long_unigram_piece_is_refused_before_the_trie_is_built() {
        let json = small().inner().to_string(false).unwrap();
        let with_piece = |len: usize| {
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            v["model"]["vocab"][3][0] = "a".repeat(len).into();
            v.to_string()
        };
        let err = Tokenizer::from_json(&with_piece(3000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("3000 bytes"), "{err}");
        assert!(Tokenizer::from_json(&with_piece(MAX_UNIGRAM_PIECE_BYTES)).is_ok());
    }

    #[test]
    fn trained_tokenizer_follows_t5_conventions() {
        let tok = small();
        assert_eq!((tok.pad_id(), tok.eos_id(), tok.unk_id()), (0, 1, 2));
        assert_eq!(tok.count_sentinels(), 10);
        let top = tok.vocab_size() as u32 - 1;
        assert_eq!(tok.sentinel_id(0), Some(top));
        assert_eq!(tok.sentinel_id(9), Some(top - 9));
        let ids = tok.encode("the cat sat on the mat").unwrap();
        assert_eq!(ids.last(), Some(&1));
        assert!(!ids[..ids.len() - 1].contains(&1));
        assert_eq!(tok.decode(&ids, true).unwrap(), "the cat sat on the mat");
    }

    #[test]
    fn chunks_split_only_at_single_spaces_between_printables() {
        fn split(t: &str) -> Vec<&str> {
            chunks(t).collect()
        }
        assert_eq!(split("a b"), vec!["a", "b"]);
        assert_eq!(split("a  b"), vec!["a  b"]);
        assert_eq!(split(" a b "), vec![" a", "b "]);
        assert_eq!(split("x\n y"), vec!["x\n y"]);
        assert_eq!(split("é b c"), vec!["é b", "c"]);
        assert_eq!(split(""), vec![""]);
        assert_eq!(split("ab"), vec!["ab"]);
    }

    #[test]
    fn chunked_encoding_equals_whole_encoding() {
        let tok = small();
        assert!(tok.is_chunked());
        for text in [
            "the cat sat on the mat",
            "  the   cat\n\nsat  ",
            "so the answer is (A) yes.\nOptions:\n- no\n- yes",
            "é the dog ran ü fast",
            "",
            " ",
        ] {
            assert_eq!(
                tok.encode_pieces(text).unwrap(),
                tok.encode_whole(text).unwrap(),
                "{text:?}"
            );
            assert_eq!(
                tok.count_pieces(text).unwrap(),
                tok.encode_whole(text).unwrap().len()
            );
        }
    }

    /// `small()` with a `Strip` normalizer in front: chunks cannot know they sit at the text's
    /// ends, so the model path must not take whitespace.
    fn small_stripping() -> Tokenizer {
        let mut json: serde_json::Value =
            serde_json::from_str(&small().inner().to_string(false).unwrap()).unwrap();
        let inner = json["normalizer"].clone();
        json["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": true, "strip_right": true}, inner]});
        Tokenizer::from_json(&json.to_string()).unwrap()
    }

    /// `small()` whose last ordinary pieces span a `▁` inside a word (`:▁`, `?▁`, `\n▁`), as
    /// SentencePiece vocabularies trained without splitting on whitespace have: encoding a chunk
    /// with spaces as one pre-token instead of Metaspace's would then pick them.
    fn small_with_cross_space_pieces() -> Tokenizer {
        let mut json: serde_json::Value =
            serde_json::from_str(&small().inner().to_string(false).unwrap()).unwrap();
        let vocab = json["model"]["vocab"].as_array_mut().unwrap();
        let n = vocab.len();
        for (k, piece) in [":\u{2581}", "?\u{2581}", "\n\u{2581}"]
            .into_iter()
            .enumerate()
        {
            vocab[n - 1 - k] = serde_json::json!([piece, 0.0]);
        }
        Tokenizer::from_json(&json.to_string()).unwrap()
    }

    /// Texts like the mixture's: words, punctuation, added-token look-alikes, digits and
    /// non-ASCII, joined by single and double spaces, line breaks and tabs (also at the ends).
    const TEXT: &str = "(( |  |\n|\t|\r\n| \n)?(the|cat|é|ü|<pad>|</s>|<extra_id_3>|\
                        [0-9]{1,4}|[.,;:()?!\"-]|[!-~]{1,6})){0,12}( |  |\n)?";

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, .. Default::default() })]
        /// Cache misses of ASCII go to the model alone, cut into Metaspace's pre-tokens; they
        /// must get the pipeline's ids, also for text the vocabulary lacks, digits, punctuation,
        /// line breaks, trailing spaces and added-token look-alikes.
        #[test]
        fn chunks_through_the_model_get_the_pipelines_ids(
            chunk in "[!-~]{1,12}|(the|cat|<pad>|</s>|<extra_id_3>|[0-9]{1,4}|[.,;:()?!]|\\n|\\t| ){1,6}",
        ) {
            for tok in [small(), small_stripping(), small_with_cross_space_pieces()] {
                proptest::prop_assert!(tok.model_path.is_some());
                proptest::prop_assert_eq!(tok.encode_chunk(&chunk).unwrap(), tok.encode_whole(&chunk).unwrap(), "{:?}", chunk);
            }
        }

        /// Whole texts: chunked, cached encoding (model path included) equals the pipeline's.
        #[test]
        fn chunked_encoding_of_any_text_equals_the_pipelines(text in TEXT) {
            for tok in [small(), small_stripping(), small_with_cross_space_pieces()] {
                proptest::prop_assert_eq!(tok.encode_pieces(&text).unwrap(), tok.encode_whole(&text).unwrap(), "{:?}", text);
                proptest::prop_assert_eq!(tok.count_pieces(&text).unwrap(), tok.encode_whole(&text).unwrap().len());
            }
        }
    }

    #[test]
    fn the_model_path_is_off_where_it_could_change_ids() {
        let tok = small();
        let path = tok.model_path.as_ref().unwrap();
        assert!(path.applies_to("cat."));
        assert!(
            path.applies_to("cat?\nAnswer: "),
            "line breaks and single spaces"
        );
        assert!(path.applies_to("a\tb"));
        // Texts with added tokens are encoded whole: a space next to one is a token of its own.
        assert!(tok.added.occur_in("a <extra_id_3> b") && !tok.added.occur_in("a < b"));
        let text = "the <extra_id_3> sat </s>";
        assert_eq!(
            tok.encode_pieces(text).unwrap(),
            tok.encode_whole(text).unwrap()
        );
        assert!(!path.applies_to("é"), "not ASCII");
        assert!(!path.applies_to(" a"), "a leading space");
        assert!(!path.applies_to("a  b"), "a run of spaces");
        assert!(!path.applies_to(""));
        assert_eq!(
            path.pre_tokens("cat?\nA: ").collect::<Vec<_>>(),
            ["\u{2581}cat?\nA:", "\u{2581}"]
        );
        // A normalizer that strips the text's ends keeps whitespace out of the model path.
        let stripping = small_stripping();
        let path = stripping.model_path.as_ref().unwrap();
        assert!(path.applies_to("cat."));
        assert!(!path.applies_to("a\tb") && !path.applies_to("cat: "));
        // A normalizer that may rewrite ASCII turns it off.
        let mut json: serde_json::Value =
            serde_json::from_str(&tok.inner().to_string(false).unwrap()).unwrap();
        json["normalizer"] = serde_json::json!({"type": "Lowercase"});
        let lower = Tokenizer::from_json(&json.to_string()).unwrap();
        assert!(lower.model_path.is_none());
        // T5's own charsmap may map ASCII elsewhere: chunked, but not through the model.
        let precompiled = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": ""});
        assert!(normalizer_is_ascii_local(&precompiled) && !normalizer_keeps_ascii(&precompiled));
        let ours = serde_json::json!({"type": "Sequence", "normalizers": [{"type": "NFKC"},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]});
        assert!(normalizer_keeps_ascii(&ours));
    }

    #[test]
    fn chunks_cached_by_another_thread_get_the_pipelines_ids() {
        let tok = small();
        let texts = [
            "the cat sat on the mat?\nAnswer: yes",
            "so the answer is (B) 42.",
            "é the dog ran ü fast",
        ];
        // The first thread fills the shared level; the second finds every chunk there, through
        // a clone (clones share it), and must get what the pipeline gives.
        std::thread::scope(|s| {
            s.spawn(|| texts.map(|t| tok.encode_pieces(t).unwrap()));
        });
        let clone = tok.clone();
        let from_shared = std::thread::scope(|s| {
            s.spawn(|| texts.map(|t| clone.encode_pieces(t).unwrap()))
                .join()
                .unwrap()
        });
        for (text, ids) in texts.iter().zip(from_shared) {
            assert_eq!(ids, tok.encode_whole(text).unwrap(), "{text:?}");
        }
        let shared: usize = tok
            .shared
            .shards
            .iter()
            .map(|m| m.lock().unwrap().len())
            .sum();
        let distinct: std::collections::HashSet<&str> =
            texts.iter().flat_map(|t| chunks(t)).collect();
        assert_eq!(shared, distinct.len());
    }

    #[test]
    fn truncation_keeps_eos_last() {
        let tok = small();
        let full = tok
            .encode("the cat sat on the mat because the dog ran fast")
            .unwrap();
        assert!(full.len() > 4);
        let cut = tok
            .encode_truncated("the cat sat on the mat because the dog ran fast", 4)
            .unwrap();
        assert_eq!(cut.len(), 4);
        assert_eq!(&cut[..3], &full[..3]);
        assert_eq!(cut[3], 1);
        assert!(tok.encode_truncated("cat", 0).unwrap().is_empty());
    }

    #[test]
    fn batch_matches_single_and_round_trips_through_json() {
        let tok = small();
        let texts = ["so the answer is yes", "think step by step", ""];
        let batch = tok.encode_batch(&texts).unwrap();
        for (t, ids) in texts.iter().zip(&batch) {
            assert_eq!(&tok.encode(t).unwrap(), ids);
        }
        assert_eq!(batch[2], vec![1]);
        let dir = tempfile::tempdir().unwrap();
        tok.save_pretrained(dir.path()).unwrap();
        let back = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        assert_eq!(back.vocab_size(), tok.vocab_size());
        assert_eq!(back.encode_batch(&texts).unwrap(), batch);
        // The HF post-processor appends the same EOS we append by hand.
        let hf = back.inner().encode("so the answer is yes", true).unwrap();
        assert_eq!(hf.get_ids(), &batch[0][..]);
    }

    #[test]
    fn wrong_special_ids_are_rejected_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["<pad>",0.0],["</s>",0.0]]}}"#;
        std::fs::write(&path, json).unwrap();
        let err = Tokenizer::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        assert!(err.contains("`<pad>` to have id 0"), "{err}");
        let missing = Tokenizer::from_file(dir.path().join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.json"), "{missing}");
    }
}
