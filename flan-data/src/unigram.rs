//! The Unigram model's Viterbi segmentation of one pre-token, as the `tokenizers` crate computes
//! it (same pieces, same ties, same handling of unknown characters), on a flat trie.
//!
//! Why not call the crate's model: its trie keeps a hash map per node and its search allocates a
//! `String` per matched prefix and looks every one up again by text, which made a chunk-cache
//! miss cost microseconds; misses are a large share of the pipeline until the cache is warm.
//! What must match, read from `tokenizers`' `Unigram::encode_optimized` and `tokenize`:
//! - candidates are taken by start position, then by length (trie order); a candidate replaces
//!   the best path ending at its end only when its score is strictly higher, so the first of
//!   equal scores stays;
//! - a character no piece covers on its own gets `<unk>` with the lowest score minus 10;
//! - on the way back, consecutive nodes whose id is the unknown id (also the literal `<unk>`
//!   piece) are fused into one string, which is then looked up by text (unknown id if absent);
//! - a piece listed twice takes the id (and score) of its last listing.
//!
//! Vocabularies with byte fallback are left to the crate.

use ahash::AHashMap;

/// What the `tokenizers` crate subtracts from the lowest piece score for an unknown character.
const UNK_PENALTY: f64 = 10.0;

const NO_CHILD: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct TrieNode {
    /// Children: `edges[first_edge..first_edge + edge_count]`, sorted by byte.
    first_edge: u32,
    edge_count: u32,
    /// The piece ending here: (id, score).
    piece: Option<(u32, f64)>,
}

/// A Unigram model ready to segment pre-tokens.
#[derive(Debug, Clone)]
pub(crate) struct UnigramViterbi {
    nodes: Vec<TrieNode>,
    edges: Vec<(u8, u32)>,
    /// The root's children by first byte (most lookups).
    root: [u32; 256],
    unk_id: Option<u32>,
    unk_score: f64,
    /// Ids by piece text, for fused unknown runs.
    ids: AHashMap<String, u32>,
}

/// One cell of the lattice: the best path ending at a byte position.
#[derive(Debug, Clone, Copy)]
struct Best {
    score: f64,
    /// Where its last piece starts; `u32::MAX` while unreached.
    start: u32,
    id: u32,
}

impl UnigramViterbi {
    /// From the model's JSON (`{"type": "Unigram", "vocab": [[piece, score], ...], "unk_id",
    /// "byte_fallback"}`); `None` for other models and for byte fallback.
    pub(crate) fn from_model_json(model: &serde_json::Value) -> Option<UnigramViterbi> {
        if model["type"] != "Unigram" || model["byte_fallback"] == true {
            return None;
        }
        let unk_id = match &model["unk_id"] {
            serde_json::Value::Null => None,
            v => Some(u32::try_from(v.as_u64()?).ok()?),
        };
        let vocab: Vec<(String, f64)> = model["vocab"]
            .as_array()?
            .iter()
            .map(|entry| Some((entry[0].as_str()?.to_string(), entry[1].as_f64()?)))
            .collect::<Option<_>>()?;
        Some(Self::new(&vocab, unk_id))
    }

    pub(crate) fn new(vocab: &[(String, f64)], unk_id: Option<u32>) -> UnigramViterbi {
        let mut ids: AHashMap<String, u32> = AHashMap::with_capacity(vocab.len());
        let mut min_score = f64::INFINITY;
        for (id, (piece, score)) in vocab.iter().enumerate() {
            ids.insert(piece.clone(), id as u32);
            min_score = min_score.min(*score);
        }
        // A nested trie first, then flattened with sorted edges.
        #[derive(Default)]
        struct Building {
            children: std::collections::BTreeMap<u8, usize>,
            piece: Option<(u32, f64)>,
        }
        let mut building = vec![Building::default()];
        for (piece, &id) in &ids {
            let mut node = 0;
            for &b in piece.as_bytes() {
                node = match building[node].children.get(&b) {
                    Some(&child) => child,
                    None => {
                        building.push(Building::default());
                        let child = building.len() - 1;
                        building[node].children.insert(b, child);
                        child
                    }
                };
            }
            if node != 0 {
                building[node].piece = Some((id, vocab[id as usize].1));
            }
        }
        let mut nodes = Vec::with_capacity(building.len());
        let mut edges = Vec::new();
        for node in &building {
            nodes.push(TrieNode {
                first_edge: edges.len() as u32,
                edge_count: node.children.len() as u32,
                piece: node.piece,
            });
            edges.extend(node.children.iter().map(|(&b, &c)| (b, c as u32)));
        }
        let mut root = [NO_CHILD; 256];
        for &(b, child) in &edges[..building[0].children.len()] {
            root[usize::from(b)] = child;
        }
        UnigramViterbi {
            nodes,
            edges,
            root,
            unk_id,
            unk_score: min_score - UNK_PENALTY,
            ids,
        }
    }

    fn child(&self, node: u32, byte: u8) -> u32 {
        let n = &self.nodes[node as usize];
        let edges = &self.edges[n.first_edge as usize..(n.first_edge + n.edge_count) as usize];
        edges
            .iter()
            .find(|(b, _)| *b == byte)
            .map_or(NO_CHILD, |(_, c)| *c)
    }

    /// Appends the ids of `text` (one pre-token, `▁` included) to `out`. `false` (and `out`
    /// untouched) when the best path needs an unknown id the vocabulary does not have, where
    /// the crate reports an error.
    pub(crate) fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> bool {
        let bytes = text.as_bytes();
        let n = bytes.len();
        if n == 0 {
            return true;
        }
        let unreached = Best {
            score: 0.0,
            start: u32::MAX,
            id: 0,
        };
        let mut best = vec![unreached; n + 1];
        let mut pos = 0;
        while pos < n {
            let till = best[pos].score;
            let char_len = utf8_len(bytes[pos]);
            let mut covers_char = false;
            let mut node = self.root[usize::from(bytes[pos])];
            let mut end = pos + 1;
            while node != NO_CHILD {
                if let Some((id, score)) = self.nodes[node as usize].piece {
                    let candidate = score + till;
                    let cell = &mut best[end];
                    if cell.start == u32::MAX || candidate > cell.score {
                        *cell = Best {
                            score: candidate,
                            start: pos as u32,
                            id,
                        };
                    }
                    covers_char |= end - pos == char_len;
                }
                if end >= n {
                    break;
                }
                node = self.child(node, bytes[end]);
                end += 1;
            }
            if !covers_char {
                let candidate = self.unk_score + till;
                let cell = &mut best[pos + char_len];
                if cell.start == u32::MAX || candidate > cell.score {
                    // The crate fails here, and only here, without an unknown id.
                    let Some(unk) = self.unk_id else {
                        return false;
                    };
                    *cell = Best {
                        score: candidate,
                        start: pos as u32,
                        id: unk,
                    };
                }
            }
            pos += char_len;
        }
        // Back from the end; runs of unknown ids become one string looked up by text.
        let mark = out.len();
        let mut end = n;
        let mut unk_run_end = None;
        while end > 0 {
            let cell = best[end];
            let start = cell.start as usize;
            if Some(cell.id) == self.unk_id {
                unk_run_end.get_or_insert(end);
            } else {
                if let Some(run_end) = unk_run_end.take() {
                    out.push(self.fused_id(&text[end..run_end]));
                }
                out.push(cell.id);
            }
            end = start;
        }
        if let Some(run_end) = unk_run_end {
            out.push(self.fused_id(&text[..run_end]));
        }
        out[mark..].reverse();
        true
    }

    fn fused_id(&self, run: &str) -> u32 {
        match self.ids.get(run) {
            Some(&id) => id,
            // Only called for runs of unknown-id nodes, so the unknown id exists.
            None => self.unk_id.unwrap_or(0),
        }
    }
}

/// Bytes of the UTF-8 character that starts with `first` (1 for a continuation byte, which a
/// `str` never starts a character with).
fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokenizers::models::unigram::Unigram;
    use tokenizers::Model;

    fn theirs(model: &Unigram, text: &str) -> Vec<u32> {
        model
            .tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    }

    fn ours(model: &UnigramViterbi, text: &str) -> Vec<u32> {
        let mut out = vec![7777];
        assert!(model.encode_into(text, &mut out));
        assert_eq!(out[0], 7777, "appends");
        out.split_off(1)
    }

    /// A vocabulary with ties (`a`+`b` = `ab`), a duplicate piece, the literal `<unk>`,
    /// multi-byte pieces and characters (`c`, `é`'s neighbours) that no piece covers.
    fn awkward_vocab() -> Vec<(String, f64)> {
        [
            ("<unk>", 0.0),
            ("a", -1.0),
            ("b", -1.0),
            ("ab", -2.0),
            ("abab", -3.5),
            ("ba", -2.5),
            ("ba", -1.25),
            ("é", -2.0),
            ("éa", -2.5),
            ("\u{2581}", -1.5),
            ("\u{2581}a", -1.0),
            ("ü", -9.0),
            ("bü", -3.0),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect()
    }

    #[test]
    fn equals_the_crate_on_an_awkward_vocabulary() {
        let vocab = awkward_vocab();
        let theirs_model = Unigram::from(vocab.clone(), Some(0), false).unwrap();
        let ours_model = UnigramViterbi::new(&vocab, Some(0));
        for text in [
            "ab",
            "abab",
            "ba",
            "cc",
            "acb",
            "<unk>a",
            "éaé",
            "xüy",
            "\u{2581}ab",
            "",
        ] {
            assert_eq!(
                ours(&ours_model, text),
                theirs(&theirs_model, text),
                "{text:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn equals_the_crate_on_random_text(text in "[abcéü\u{2581}<>unk]{0,16}") {
            let vocab = awkward_vocab();
            let theirs_model = Unigram::from(vocab.clone(), Some(0), false).unwrap();
            let ours_model = UnigramViterbi::new(&vocab, Some(0));
            prop_assert_eq!(ours(&ours_model, &text), theirs(&theirs_model, &text), "{:?}", text);
        }
    }

    #[test]
    fn without_an_unknown_id_it_declines_where_the_crate_fails() {
        let vocab = awkward_vocab()[1..].to_vec();
        let theirs_model = Unigram::from(vocab.clone(), None, false).unwrap();
        let ours_model = UnigramViterbi::new(&vocab, None);
        let mut out = vec![];
        assert!(!ours_model.encode_into("abc", &mut out) && out.is_empty());
        assert!(theirs_model.tokenize("abc").is_err());
        assert_eq!(ours(&ours_model, "abab"), theirs(&theirs_model, "abab"));
    }

    #[test]
    fn byte_fallback_is_left_to_the_crate() {
        let json = serde_json::json!({"type": "Unigram", "unk_id": 0, "byte_fallback": true,
            "vocab": [["<unk>", 0.0], ["a", -1.0]]});
        assert!(UnigramViterbi::from_model_json(&json).is_none());
        let json = serde_json::json!({"type": "Unigram", "unk_id": 0, "byte_fallback": false,
            "vocab": [["<unk>", 0.0], ["a", -1.0]]});
        assert!(UnigramViterbi::from_model_json(&json).is_some());
    }
}
