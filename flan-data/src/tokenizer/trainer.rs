//! The Unigram trainer: SentencePiece's EM as the `tokenizers` crate implements it
//! (`models::unigram::trainer`), step for step, but with every floating-point sum in a fixed
//! order, so that the same corpus gives the same `tokenizer.json`, byte for byte, in every run
//! and on any number of threads.
//!
//! Why not the crate's trainer: its results depended on chance (issue 22; two runs of
//! `flan mixture --train-tokenizer` gave scores such as -2.5490787990121184 and
//! -2.549078799012115, hence other piece orders and ids). Three things made them so:
//! - the word counts are kept in an `AHashMap`, whose keys are seeded at random per map, and
//!   the sentences are taken in its iteration order; the E step sums the expected counts of
//!   all sentences in that order, and floating-point addition is not associative;
//! - the E step splits the sentences into `len / current_num_threads()` chunks, so chunk
//!   boundaries, hence the order of the sums, depend on the thread count;
//! - `finalize` walks the required characters in an `AHashSet`'s order, which decides the
//!   small penalties given to characters EM dropped and the order of equal scores.
//!
//! Here words are sorted, chunks have a fixed size and are added in their order, and the
//! required characters are walked in character order. The lattice (forward-backward, Viterbi,
//! n-best) is the crate's own [`Lattice`], filled as the crate's `populate_nodes` fills it.

use crate::error::Result;
use ahash::AHashMap;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tokenizers::models::unigram::Lattice;

/// A piece and its score (log probability).
pub(super) type Piece = (String, f64);

/// What the crate subtracts from the lowest score for a character no piece covers.
const UNK_PENALTY: f64 = 10.0;
/// Sentences per chunk of the E step and of pruning: fixed, so that the order of every sum
/// is too, whatever the number of threads.
const CHUNK: usize = 256;
/// Chunks computed at once (their per-piece vectors are held until added in order).
const WAVE: usize = 16;

/// Settings, with the crate's meanings.
#[derive(Debug, Clone)]
pub(super) struct EmSettings {
    /// Pieces in the final vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Longest piece, in characters.
    pub max_piece_length: usize,
    /// EM iterations per pruning round.
    pub n_sub_iterations: u32,
    /// Share of pieces kept per pruning round.
    pub shrinking_factor: f64,
    /// Most seed pieces taken from the suffix array.
    pub seed_size: usize,
    /// Special tokens, placed first (ids 0, 1, ...) with score 0.
    pub special_tokens: Vec<String>,
}

/// The digamma function, as the crate approximates it.
fn digamma(mut x: f64) -> f64 {
    let mut result = 0.0;
    while x < 7.0 {
        result -= 1.0 / x;
        x += 1.0;
    }
    x -= 1.0 / 2.0;
    let xx = 1.0 / x;
    let xx2 = xx * xx;
    let xx4 = xx2 * xx2;
    result += x.ln() + (1.0 / 24.0) * xx2 - 7.0 / 960.0 * xx4 + (31.0 / 8064.0) * xx4 * xx2
        - (127.0 / 30720.0) * xx4 * xx4;
    result
}

/// The model during training: pieces (id 0 is the training `<UNK>`) and a lookup by text.
struct Model {
    pieces: Vec<Piece>,
    ids: AHashMap<String, usize>,
    min_score: f64,
    /// Longest piece in characters (lookups stop there).
    max_chars: usize,
}

impl Model {
    fn new(pieces: Vec<Piece>) -> Model {
        let mut ids = AHashMap::with_capacity(pieces.len());
        let mut min_score = f64::INFINITY;
        let mut max_chars = 1;
        for (id, (piece, score)) in pieces.iter().enumerate() {
            // A piece listed twice keeps its last id, as the crate's map does.
            ids.insert(piece.clone(), id);
            if *score < min_score {
                min_score = *score;
            }
            max_chars = max_chars.max(piece.chars().count());
        }
        Model {
            pieces,
            ids,
            min_score,
            max_chars,
        }
    }

    /// The id of a lattice node's piece, from its text (the crate keeps node ids private): an
    /// `<UNK>` node covers a character that is no piece, so its text is found in no entry.
    fn id_of(&self, piece: &str) -> usize {
        self.ids.get(piece).copied().unwrap_or(0)
    }

    fn bos_eos(&self) -> (usize, usize) {
        (self.pieces.len() + 1, self.pieces.len() + 2)
    }

    /// Fills a lattice as the crate's `Unigram::populate_nodes` does: at each character, every
    /// piece that starts there in order of length, and `<UNK>` (id 0) when no piece covers the
    /// character alone.
    fn populate(&self, lattice: &mut Lattice) {
        let text = lattice.sentence().to_owned();
        let sentence = text.as_str();
        let unk_score = self.min_score - UNK_PENALTY;
        let mut found = Vec::new();
        for (begin, c) in sentence.char_indices() {
            let mblen = c.len_utf8();
            found.clear();
            let mut has_single = false;
            for (n, (offset, ch)) in sentence[begin..].char_indices().enumerate() {
                if n >= self.max_chars {
                    break;
                }
                let end = begin + offset + ch.len_utf8();
                if let Some(&id) = self.ids.get(&sentence[begin..end]) {
                    found.push((end - begin, self.pieces[id].1, id));
                    has_single |= end - begin == mblen;
                }
            }
            for &(len, score, id) in &found {
                lattice.insert(begin, len, score, id);
            }
            if !has_single {
                lattice.insert(begin, mblen, unk_score, 0);
            }
        }
    }
}

/// Maps fixed-size chunks of `sentences` in parallel and folds their results in chunk order.
fn ordered_chunks<T: Send>(
    sentences: &[(String, u32)],
    map: impl Fn(usize, &[(String, u32)]) -> T + Sync,
    mut fold: impl FnMut(T),
) {
    let chunks: Vec<(usize, &[(String, u32)])> = sentences
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| (i * CHUNK, c))
        .collect();
    for wave in chunks.chunks(WAVE) {
        let results: Vec<T> = wave.par_iter().map(|&(start, c)| map(start, c)).collect();
        results.into_iter().for_each(&mut fold);
    }
}

/// The seed pieces: every character, then the most frequent substrings (frequency × length)
/// from a suffix array of all sentences, as log probabilities.
fn seed_pieces(settings: &EmSettings, sentences: &[(String, u32)]) -> Result<Vec<Piece>> {
    let mut flat = String::new();
    let mut chars: BTreeMap<char, u32> = BTreeMap::new();
    for (s, n) in sentences {
        if s.is_empty() {
            continue;
        }
        flat.push_str(s);
        flat.push('\0');
        for c in s.chars().filter(|&c| c != '\0') {
            *chars.entry(c).or_default() += n;
        }
    }
    let suffix = esaxx_rs::suffix(&flat).map_err(|e| super::tok_err(None, format!("{e:?}")))?;
    let mut substrings: Vec<(u32, &[char])> = suffix
        .iter()
        .filter(|(s, _)| s.len() > 1 && s.len() <= settings.max_piece_length && !s.contains(&'\0'))
        .map(|(s, freq)| (freq * s.len() as u32, s))
        .collect();
    let mut by_count: Vec<(u32, char)> = chars.into_iter().map(|(c, n)| (n, c)).collect();
    by_count.sort_by(|a, b| b.cmp(a));
    substrings.sort_by(|a, b| b.cmp(a));
    let mut seeds: Vec<Piece> = by_count
        .into_iter()
        .map(|(n, c)| (c.to_string(), f64::from(n)))
        .collect();
    for (score, s) in substrings {
        if seeds.len() >= settings.seed_size {
            break;
        }
        seeds.push((s.iter().collect(), f64::from(score)));
    }
    let sum: f64 = seeds.iter().map(|(_, s)| s).sum();
    let logsum = sum.ln();
    for (_, s) in &mut seeds {
        *s = s.ln() - logsum;
    }
    Ok(seeds)
}

/// Expected count of every piece over all sentences.
fn e_step(model: &Model, sentences: &[(String, u32)]) -> Vec<f64> {
    let (bos, eos) = model.bos_eos();
    let mut expected = vec![0.0; model.pieces.len()];
    ordered_chunks(
        sentences,
        |_, chunk| {
            let mut local = vec![0.0; model.pieces.len()];
            for (s, freq) in chunk {
                let mut lattice = Lattice::from(s, bos, eos);
                model.populate(&mut lattice);
                lattice.populate_marginal(f64::from(*freq), &mut local);
            }
            local
        },
        |local| {
            for (e, l) in expected.iter_mut().zip(local) {
                *e += l;
            }
        },
    );
    expected
}

/// New scores from expected counts (the Bayesian EM of SentencePiece: digamma); pieces expected
/// less than half a time are dropped, `<UNK>` is kept.
fn m_step(pieces: &[Piece], expected: &[f64]) -> Vec<Piece> {
    let mut kept: Vec<Piece> = Vec::with_capacity(pieces.len());
    let mut sum = 0.0;
    for (i, (freq, (piece, _))) in expected.iter().zip(pieces).enumerate() {
        if i == 0 {
            kept.push((piece.clone(), f64::NAN));
            continue;
        }
        if *freq < 0.5 {
            continue;
        }
        kept.push((piece.clone(), *freq));
        sum += freq;
    }
    let logsum = digamma(sum);
    kept.into_iter()
        .map(|(s, c)| (s, digamma(c) - logsum))
        .collect()
}

/// Drops the pieces whose removal costs the likelihood least, down to `shrinking_factor` of
/// them (not below 1.1 × the vocabulary size).
fn prune(settings: &EmSettings, model: &Model, sentences: &[(String, u32)]) -> Vec<Piece> {
    let pieces = &model.pieces;
    let (bos, eos) = model.bos_eos();
    let mut always_keep = vec![true; pieces.len()];
    let mut alternatives: Vec<Vec<usize>> = vec![Vec::new(); pieces.len()];
    for (id, (token, _)) in pieces.iter().enumerate() {
        if id == 0 {
            always_keep[id] = false;
            continue;
        }
        let mut lattice = Lattice::from(token, bos, eos);
        model.populate(&mut lattice);
        let nbests = lattice.nbest(2);
        if nbests.len() == 1 {
            always_keep[id] = true;
        } else if nbests[0].len() >= 2 {
            always_keep[id] = false;
        } else if nbests[0].len() == 1 {
            always_keep[id] = true;
            alternatives[id] = nbests[1]
                .iter()
                .map(|n| model.id_of(&lattice.piece(&n.borrow())))
                .collect();
        }
    }
    // Frequencies are sums of integer counts, exact in any order; kept in order all the same.
    let vsum: f64 = sentences.iter().map(|(_, n)| f64::from(*n)).sum();
    let mut freq = vec![0.0; pieces.len()];
    let mut inverted: Vec<Vec<usize>> = vec![Vec::new(); pieces.len()];
    ordered_chunks(
        sentences,
        |start, chunk| {
            let mut found: Vec<(usize, usize)> = Vec::new();
            for (i, (s, _)) in chunk.iter().enumerate() {
                let mut lattice = Lattice::from(s, bos, eos);
                model.populate(&mut lattice);
                for node in lattice.viterbi() {
                    found.push((start + i, model.id_of(&lattice.piece(&node.borrow()))));
                }
            }
            found
        },
        |found| {
            for (sentence, id) in found {
                freq[id] += f64::from(sentences[sentence].1);
                inverted[id].push(sentence);
            }
        },
    );
    let sum: f64 = freq.iter().sum();
    let logsum = sum.ln();
    let mut candidates: Vec<(usize, f64)> = Vec::new();
    let mut kept: Vec<Piece> = vec![pieces[0].clone()];
    for (id, (token, score)) in pieces.iter().enumerate().skip(1) {
        if freq[id] == 0.0 && !always_keep[id] {
            continue;
        } else if alternatives[id].is_empty() {
            kept.push((token.clone(), *score));
        } else {
            let mut f: f64 = inverted[id]
                .iter()
                .map(|&n| f64::from(sentences[n].1))
                .sum();
            if f == 0.0 || f.is_nan() {
                continue;
            }
            f /= vsum;
            let logprob_sp = freq[id].ln() - logsum;
            // As the crate (and SentencePiece) write it: the number of pieces with
            // alternatives stands where the number of alternatives was meant.
            let logsum_alt = (sum + freq[id] * (alternatives.len() - 1) as f64).ln();
            let logprob_alt: f64 = alternatives[id]
                .iter()
                .map(|&n| (freq[n] + freq[id]).ln() - logsum_alt)
                .sum();
            candidates.push((id, f * (logprob_sp - logprob_alt)));
        }
    }
    let desired = settings.vocab_size * 11 / 10;
    let pruned = desired.max((pieces.len() as f64 * settings.shrinking_factor) as usize);
    // Stable and total: equal losses keep piece order; a NaN loss sorts last.
    candidates.sort_by(|(_, a), (_, b)| b.total_cmp(a));
    for (id, _) in candidates {
        if kept.len() == pruned {
            break;
        }
        kept.push(pieces[id].clone());
    }
    kept
}

/// Trains on `sentences` (pre-tokenized words and their counts, in any order: they are
/// sorted here) and returns the final vocabulary: the special tokens (score 0), then the
/// pieces by decreasing score.
pub(super) fn train(
    settings: &EmSettings,
    mut sentences: Vec<(String, u32)>,
) -> Result<Vec<Piece>> {
    sentences.sort_unstable();
    let required: BTreeSet<char> = sentences.iter().flat_map(|(s, _)| s.chars()).collect();
    let specials = settings.special_tokens.len();
    if required.len() + specials > settings.vocab_size {
        return Err(super::tok_err(
            None,
            format!(
                "vocab_size {} cannot hold the {} distinct characters of the corpus and {specials} special tokens",
                settings.vocab_size,
                required.len()
            ),
        ));
    }
    let mut pieces: Vec<Piece> = vec![("<UNK>".into(), f64::NAN)];
    pieces.extend(seed_pieces(settings, &sentences)?);
    let desired = settings.vocab_size * 11 / 10;
    let mut model = Model::new(pieces.clone());
    loop {
        for _ in 0..settings.n_sub_iterations {
            let expected = e_step(&model, &sentences);
            pieces = m_step(&pieces, &expected);
            model = Model::new(pieces.clone());
        }
        if pieces.len() <= desired {
            break;
        }
        pieces = prune(settings, &model, &sentences);
        model = Model::new(pieces.clone());
    }
    Ok(finalize(settings, &model, &required))
}

/// Every required character (with its score, or just above the lowest when EM dropped it),
/// then the other pieces in model order up to the vocabulary size, sorted by decreasing score
/// (stable: ties keep that order), after the special tokens.
fn finalize(settings: &EmSettings, model: &Model, required: &BTreeSet<char>) -> Vec<Piece> {
    let mut penalty = 0.0;
    let mut inserted: BTreeSet<&str> = BTreeSet::from(["<UNK>"]);
    let mut pieces: Vec<Piece> = Vec::new();
    let chars: Vec<String> = required.iter().map(char::to_string).collect();
    for c in &chars {
        let score = match model.ids.get(c.as_str()) {
            Some(&id) => model.pieces[id].1,
            None => {
                let s = model.min_score + penalty;
                penalty += 0.0001;
                s
            }
        };
        inserted.insert(c);
        pieces.push((c.clone(), score));
    }
    let room = settings.vocab_size - settings.special_tokens.len();
    for (token, score) in &model.pieces {
        if pieces.len() >= room {
            break;
        }
        if !inserted.insert(token) {
            continue;
        }
        pieces.push((token.clone(), if score.is_nan() { 0.0 } else { *score }));
    }
    pieces.sort_by(|(_, a), (_, b)| b.total_cmp(a));
    settings
        .special_tokens
        .iter()
        .map(|t| (t.clone(), 0.0))
        .chain(pieces)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = -γ, ψ(10) = H₉ - γ.
        let gamma = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + gamma).abs() < 1e-9);
        let h9: f64 = (1..10).map(|k| 1.0 / k as f64).sum();
        assert!((digamma(10.0) - (h9 - gamma)).abs() < 1e-9);
    }
}
