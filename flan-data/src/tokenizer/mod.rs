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

mod chunks;
mod fast_path;
#[cfg(test)]
mod tests;
mod trainer;
mod training;

pub use chunks::chunks;
use chunks::*;
use fast_path::*;
pub use training::UnigramTrainingConfig;

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
}
