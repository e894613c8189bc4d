//! Training a T5-style SentencePiece Unigram tokenizer on a corpus, saved in the `tokenizer.json`
//! layout transformers reads.

use super::trainer::EmSettings;
use super::*;
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Replace, Sequence as NormalizerSequence, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;
use tokenizers::{
    NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
};

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

impl Tokenizer {
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

        // Our own trainer rather than the crate's (see `trainer`): same algorithm, same
        // result in every run and on any number of threads.
        let words = count_words(&inner, corpus)?;
        let settings = EmSettings {
            vocab_size: config.vocab_size,
            max_piece_length: config.max_piece_length,
            n_sub_iterations: config.n_sub_iterations,
            shrinking_factor: config.shrinking_factor,
            seed_size: 1_000_000,
            special_tokens: [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN].map(String::from).to_vec(),
        };
        let vocab = super::trainer::train(&settings, words)?;
        let unk_id = settings.special_tokens.len() - 1;
        let model = Unigram::from(vocab, Some(unk_id), false).map_err(|e| tok_err(None, e))?;
        inner.with_model(model);
        let specials: Vec<AddedToken> = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN]
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        inner.add_special_tokens(&specials);

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

/// Each word of the corpus (normalized and split as the tokenizer's pipeline does before its
/// model, as the `tokenizers` crate's `train` feeds its trainer) with its count, sorted by word.
/// Counted in parallel; counts are integers, so the result does not depend on the order.
fn count_words<I, S>(inner: &tokenizers::Tokenizer, corpus: I) -> Result<Vec<(String, u32)>>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let split = |text: &str| -> Result<Vec<String>> {
        let mut normalized = NormalizedString::from(text);
        if let Some(n) = inner.get_normalizer() {
            n.normalize(&mut normalized).map_err(|e| tok_err(None, e))?;
        }
        let mut pre = PreTokenizedString::from(normalized);
        if let Some(p) = inner.get_pre_tokenizer() {
            p.pre_tokenize(&mut pre).map_err(|e| tok_err(None, e))?;
        }
        Ok(pre
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_owned())
            .collect())
    };
    let counts = corpus
        .par_bridge()
        .map(|text| {
            let mut map: ahash::AHashMap<String, u32> = ahash::AHashMap::new();
            for word in split(text.as_ref())? {
                *map.entry(word).or_default() += 1;
            }
            Ok(map)
        })
        .try_reduce(ahash::AHashMap::new, |mut a, b| {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
            Ok(a)
        })?;
    let mut words: Vec<(String, u32)> = counts.into_iter().collect();
    words.sort_unstable();
    Ok(words)
}
