//! The fast path of a chunk-cache miss: chunks of ASCII from a text without added tokens go
//! straight to the model when the pipeline would only do Metaspace's work on them.

use super::*;

/// What the pipeline does to a chunk of ASCII from a text without added tokens, when its
/// normalizer leaves ASCII alone: nothing but Metaspace's work — each single space becomes `▁`
/// and starts a new pre-token, and the first pre-token gets the `▁` prefix. Such a chunk can
/// then be cut into pre-tokens here and handed to the model itself, skipping the pipeline's
/// per-call machinery (normalized-string alignments, splits, offsets, the `Encoding`), which
/// costs over half of a miss (5.2 µs against 2.3 µs per word on the CoT mixture's new words).
/// Template junctions ("question?\nAnswer: ") are most of the misses once words are cached,
/// which is why line breaks and single spaces are taken too.
#[derive(Clone)]
pub(super) struct ModelPath {
    prefix: String,
    /// The model's segmentation on a flat trie, when the model is Unigram without byte
    /// fallback (else the model itself is asked).
    pub(super) viterbi: Option<Arc<UnigramViterbi>>,
    /// Whether chunks may hold whitespace and control characters: not when the normalizer
    /// strips the text's ends, which a chunk cannot know it sits at.
    whitespace: bool,
}

impl ModelPath {
    pub(super) fn for_pipeline(inner: &tokenizers::Tokenizer) -> Option<ModelPath> {
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
    pub(super) fn applies_to(&self, chunk: &str) -> bool {
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
    pub(super) fn pre_tokens<'a>(&'a self, chunk: &'a str) -> impl Iterator<Item = String> + 'a {
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
pub(super) struct AddedTokens {
    /// First bytes of the added tokens, to skip the substring search for most texts.
    starts: [bool; 256],
    contents: Vec<String>,
    /// Whether some added token is matched after normalization, where non-ASCII text may turn
    /// into one (NFKC maps full-width `＜` to `<`).
    normalized: bool,
}

impl AddedTokens {
    pub(super) fn of(inner: &tokenizers::Tokenizer) -> AddedTokens {
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
    pub(super) fn occur_in(&self, text: &str) -> bool {
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
pub(super) fn normalizer_keeps_ascii(n: &serde_json::Value) -> bool {
    normalizer_within(n, false)
}
