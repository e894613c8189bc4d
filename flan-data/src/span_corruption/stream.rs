//! The corrupted examples of a set of documents, as a stream: each document is tokenized
//! (without EOS) when reached and split into chunks of `raw_length` tokens, as T5's
//! `split_tokens` does (the last chunk of a document may be shorter; it is kept), and chunk p of
//! the stream is corrupted with a mask drawn from a ChaCha8 stream keyed by (seed, p). So the
//! stream is the same in every run, a worker that takes every n-th position sees a disjoint
//! slice of it, and a cursor of three numbers resumes it exactly.

use super::{corrupt, random_spans_noise_mask, Document, Sentinels};
use crate::error::{Error, Result};
use crate::pack::TokenizedExample;
use crate::tokenizer::Tokenizer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The objective's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCorruptionConfig {
    /// Share of tokens that are noise (T5: 0.15).
    pub noise_density: f64,
    /// Mean length of a noise span (T5: 3).
    pub mean_noise_span_length: f64,
    /// Raw tokens per example before corruption (T5: 568 for 512-token inputs; see
    /// [`super::compute_input_and_target_lengths`]).
    pub raw_length: usize,
}

/// Where a stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCorruptionCursor {
    /// The stream's seed.
    pub seed: u64,
    /// The document being read.
    pub document: usize,
    /// The next chunk of that document.
    pub chunk: usize,
    /// The next global position (chunks before it, of every shard).
    pub position: u64,
}

/// What chunking did to the documents: nothing is dropped, long documents are split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChunkCounts {
    /// Documents with at least one token.
    pub documents: u64,
    /// Empty documents, skipped: text with no token after normalization (in a mixture task, also
    /// blank lines and blank `text` fields).
    pub empty: u64,
    /// Documents longer than `raw_length`, split into several chunks.
    pub split: u64,
    /// Chunks (examples).
    pub chunks: u64,
    /// Chunks shorter than `raw_length` (the ends of documents).
    pub short_chunks: u64,
}

impl ChunkCounts {
    /// Counts for `documents` (tokenized in parallel).
    pub fn of(documents: &[Document], tokenizer: &Tokenizer, raw_length: usize) -> Result<Self> {
        use rayon::prelude::*;
        let lengths: Vec<usize> = documents
            .par_iter()
            .map(|d| tokenizer.count_pieces(&d.text))
            .collect::<Result<_>>()?;
        Ok(Self::of_lengths(lengths, raw_length))
    }

    /// Counts for documents of `lengths` tokens.
    pub fn of_lengths(lengths: impl IntoIterator<Item = usize>, raw_length: usize) -> Self {
        let mut c = ChunkCounts::default();
        for n in lengths {
            if n == 0 {
                c.empty += 1;
                continue;
            }
            c.documents += 1;
            let chunks = n.div_ceil(raw_length) as u64;
            c.chunks += chunks;
            c.split += u64::from(chunks > 1);
            c.short_chunks += u64::from(n % raw_length != 0);
        }
        c
    }
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The seeded, shardable, resumable stream of corrupted chunks (one pass over the documents).
pub struct SpanCorruptionStream {
    documents: Arc<Vec<Document>>,
    tokenizer: Arc<Tokenizer>,
    sentinels: Sentinels,
    config: SpanCorruptionConfig,
    cursor: SpanCorruptionCursor,
    shard: (u64, u64),
    /// The tokens of `cursor.document`, once tokenized.
    current: Option<Vec<u32>>,
}

impl SpanCorruptionStream {
    /// A stream from the start.
    pub fn new(
        documents: Arc<Vec<Document>>,
        tokenizer: Arc<Tokenizer>,
        config: SpanCorruptionConfig,
        seed: u64,
    ) -> Result<Self> {
        let cursor = SpanCorruptionCursor {
            seed,
            document: 0,
            chunk: 0,
            position: 0,
        };
        Self::resume(documents, tokenizer, config, cursor)
    }

    /// A stream that continues where `cursor` was taken.
    pub fn resume(
        documents: Arc<Vec<Document>>,
        tokenizer: Arc<Tokenizer>,
        config: SpanCorruptionConfig,
        cursor: SpanCorruptionCursor,
    ) -> Result<Self> {
        if config.raw_length == 0 {
            return Err(Error::config(
                "span corruption",
                "raw_length must be at least 1",
            ));
        }
        // Checks the settings once, for the longest chunk.
        super::NoiseShape::new(
            config.raw_length,
            config.noise_density,
            config.mean_noise_span_length,
        )?;
        if cursor.document > documents.len() {
            return Err(Error::config(
                "span corruption cursor",
                format!(
                    "points at document {} of {}; taken on other documents?",
                    cursor.document,
                    documents.len()
                ),
            ));
        }
        Ok(SpanCorruptionStream {
            sentinels: Sentinels::of(&tokenizer)?,
            documents,
            tokenizer,
            config,
            cursor,
            shard: (0, 1),
            current: None,
        })
    }

    /// Keeps only positions p with p % count == index.
    pub fn shard(mut self, index: u64, count: u64) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::config(
                "shard",
                format!("need index < count, got {index} of {count}"),
            ));
        }
        self.shard = (index, count);
        Ok(self)
    }

    /// Where the stream stands.
    pub fn cursor(&self) -> SpanCorruptionCursor {
        self.cursor.clone()
    }

    /// The next chunk of tokens and its position, of any shard; `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<(u64, Vec<u32>)>> {
        loop {
            let Some(doc) = self.documents.get(self.cursor.document) else {
                return Ok(None);
            };
            if self.current.is_none() {
                self.current = Some(self.tokenizer.encode_pieces(&doc.text)?);
            }
            let tokens = self.current.as_deref().unwrap_or_default();
            let start = self.cursor.chunk * self.config.raw_length;
            if start >= tokens.len() {
                self.cursor.document += 1;
                self.cursor.chunk = 0;
                self.current = None;
                continue;
            }
            let end = (start + self.config.raw_length).min(tokens.len());
            let chunk = tokens[start..end].to_vec();
            self.cursor.chunk += 1;
            let position = self.cursor.position;
            self.cursor.position += 1;
            return Ok(Some((position, chunk)));
        }
    }

    /// The corrupted example of `tokens` at `position` (any shard gets the same).
    pub fn corrupt_at(&self, position: u64, tokens: &[u32]) -> Result<TokenizedExample> {
        corrupt_seeded(
            tokens,
            &self.config,
            &self.sentinels,
            splitmix(self.cursor.seed ^ splitmix(position)),
        )
    }
}

/// The span corruption of `tokens` with a mask drawn from a ChaCha8 generator seeded by `seed`.
pub(crate) fn corrupt_seeded(
    tokens: &[u32],
    config: &SpanCorruptionConfig,
    sentinels: &Sentinels,
    seed: u64,
) -> Result<TokenizedExample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mask = random_spans_noise_mask(
        tokens.len(),
        config.noise_density,
        config.mean_noise_span_length,
        &mut rng,
    )?;
    corrupt(tokens, &mask, sentinels)
}

impl Iterator for SpanCorruptionStream {
    type Item = Result<TokenizedExample>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_chunk() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some((position, tokens))) => {
                    if position % self.shard.1 == self.shard.0 {
                        return Some(self.corrupt_at(position, &tokens));
                    }
                }
            }
        }
    }
}
