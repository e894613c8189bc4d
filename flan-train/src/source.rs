//! Where batches come from: the [`BatchSource`] trait the loop pulls from, and
//! [`MixtureBatches`], the flan-data mixture stream tokenized and packed (t5x first-fit packing)
//! or padded one example per row.
//!
//! Exact resume needs a cursor that says where the *next* batch starts. With packing, the example
//! that did not fit into the emitted batch opens the next one, so the cursor is the mixture cursor
//! just before that example: replaying from it into a fresh packer rebuilds the same batches.

use std::collections::VecDeque;
use std::sync::Arc;

use flan_data::pipeline::tokenize_example;
use flan_data::{
    Mixture, MixtureCursor, MixtureStream, Overlong, PackedBatch, Packer, TokenizedExample,
    Tokenizer, Truncation,
};

use crate::{Error, Result};

/// A resumable sequence of micro-batches.
pub trait BatchSource {
    /// The next micro-batch, or `None` when the data is exhausted (the mixture never is).
    fn next_batch(&mut self) -> Result<Option<PackedBatch>>;
    /// Where the next batch starts, for checkpoints.
    fn cursor(&self) -> Result<serde_json::Value>;
    /// Continues from a cursor written by [`BatchSource::cursor`].
    fn restore(&mut self, cursor: &serde_json::Value) -> Result<()>;
    /// What was cut to fit the lengths so far (reported, never silent).
    fn truncation(&self) -> Truncation {
        Truncation::default()
    }
}

/// The mixture stream, tokenized in parallel chunks and packed (or padded) into batches.
pub struct MixtureBatches {
    mixture: Arc<Mixture>,
    stream: MixtureStream,
    tokenizer: Arc<Tokenizer>,
    rows: usize,
    input_len: usize,
    target_len: usize,
    pack: bool,
    packer: Packer,
    /// Tokenized examples not yet given to the packer, each with the cursor just before it.
    queue: VecDeque<(MixtureCursor, TokenizedExample)>,
    /// Where the next batch starts.
    next_start: MixtureCursor,
    truncation: Truncation,
    /// Whether an example over the lengths is cut (counted in `truncation`) or refused.
    overlong: Overlong,
    /// `(index, count)`: this reader's shard of the stream positions.
    shard: (u64, u64),
}

/// How many examples to render and tokenize at once (in parallel, by flan-data and rayon).
const CHUNK: usize = 256;

impl MixtureBatches {
    /// Batches of `rows` rows of `input_len`/`target_len` tokens from `mixture`'s stream `seed`.
    pub fn new(
        mixture: Arc<Mixture>,
        tokenizer: Arc<Tokenizer>,
        seed: u64,
        rows: usize,
        (input_len, target_len): (usize, usize),
        pack: bool,
    ) -> Result<Self> {
        let stream = mixture.stream(seed);
        let next_start = stream.cursor();
        Ok(MixtureBatches {
            packer: Packer::new(rows, input_len, target_len).map_err(data_error)?,
            mixture,
            stream,
            tokenizer,
            rows,
            input_len,
            target_len,
            pack,
            queue: VecDeque::new(),
            next_start,
            truncation: Truncation::new((input_len, target_len)),
            overlong: Overlong::Truncate,
            shard: (0, 1),
        })
    }

    /// Refuses examples longer than the lengths instead of cutting them.
    pub fn with_overlong(mut self, overlong: Overlong) -> Self {
        self.overlong = overlong;
        self
    }

    /// Reads only the stream positions `p` with `p % count == index` (one rank of a
    /// data-parallel run), also after a restore.
    pub fn with_shard(mut self, index: u64, count: u64) -> Result<Self> {
        self.shard = (index, count);
        self.stream = self
            .mixture
            .resume(self.next_start.clone())
            .and_then(|s| s.shard(index, count))
            .map_err(data_error)?;
        Ok(self)
    }

    /// Renders and tokenizes the next chunk of the stream into the queue.
    fn refill(&mut self) -> Result<()> {
        let start = self.stream.cursor();
        let tokenizer = &self.tokenizer;
        let examples = self
            .stream
            .next_batch_with(CHUNK, |e| {
                let tokens = tokenize_example(tokenizer, &e, usize::MAX, usize::MAX)?;
                Ok((e.position, e.task_index, tokens))
            })
            .map_err(data_error)?;
        if self.overlong == Overlong::Error {
            self.refuse_overlong(&examples)?;
        }
        // The cursor before example i: its own position, and the task draws of every position
        // before it, other shards' included (replayed on an unsharded stream: counting only this
        // shard's examples made a data-parallel resume draw other examples).
        let mut replay = self.mixture.resume(start).map_err(data_error)?;
        for (position, _, tok) in examples {
            replay.advance_to(position);
            self.queue.push_back((replay.cursor(), tok));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<(MixtureCursor, TokenizedExample)> {
        if self.queue.is_empty() {
            self.refill()?;
        }
        self.queue.pop_front().ok_or_else(|| Error::Data {
            message: "the mixture stream yielded no examples".into(),
        })
    }

    /// The error for the first example over the lengths, if any.
    fn refuse_overlong(&self, examples: &[(u64, usize, TokenizedExample)]) -> Result<()> {
        let over = examples.iter().find_map(|(position, task, ex)| {
            let (len, limit, what) = if ex.inputs.len() > self.input_len {
                (ex.inputs.len(), self.input_len, "inputs have")
            } else if ex.targets.len() > self.target_len {
                (ex.targets.len(), self.target_len, "targets have")
            } else {
                return None;
            };
            Some((position, task, len, limit, what))
        });
        match over {
            None => Ok(()),
            Some((position, task, len, limit, what)) => Err(Error::Data {
                message: format!(
                    "example {position} of the mixture stream (task `{}`): its {what} {len} \
                     tokens, over the limit of {limit} (data.input_len / data.target_len); \
                     data.overlong = \"error\" refuses it, \"truncate\" cuts and counts it",
                    self.mixture
                        .rates()
                        .get(*task)
                        .map_or("?", |r| r.task.as_str())
                ),
            }),
        }
    }

    fn count_truncation(&mut self, ex: &TokenizedExample) {
        self.truncation.record((ex.inputs.len(), ex.targets.len()));
    }
}

impl BatchSource for MixtureBatches {
    fn next_batch(&mut self) -> Result<Option<PackedBatch>> {
        if !self.pack {
            let mut examples = Vec::with_capacity(self.rows);
            while examples.len() < self.rows {
                let (_, ex) = self.pop()?;
                self.count_truncation(&ex);
                examples.push(ex);
            }
            self.next_start = match self.queue.front() {
                Some((cursor, _)) => cursor.clone(),
                None => self.stream.cursor(),
            };
            // Padded to the batch's longest example (within the limits), as transformers'
            // seq2seq collator pads: longer rows only lengthen attention's grid.
            let longest = |len: fn(&TokenizedExample) -> usize, limit: usize| {
                examples
                    .iter()
                    .map(len)
                    .max()
                    .unwrap_or(1)
                    .clamp(1, limit.max(1))
            };
            return Ok(Some(PackedBatch::unpacked(
                &examples,
                longest(|e| e.inputs.len(), self.input_len),
                longest(|e| e.targets.len(), self.target_len),
            )));
        }
        loop {
            let (before, ex) = self.pop()?;
            self.count_truncation(&ex);
            if let Some(batch) = self.packer.push(&ex) {
                // `ex` opened the next batch: it starts just before `ex`.
                self.next_start = before;
                return Ok(Some(batch));
            }
        }
    }

    fn cursor(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.next_start).map_err(|e| Error::Data {
            message: format!("cannot record the mixture cursor: {e}"),
        })
    }

    fn restore(&mut self, cursor: &serde_json::Value) -> Result<()> {
        let cursor: MixtureCursor =
            serde_json::from_value(cursor.clone()).map_err(|e| Error::Data {
                message: format!("the checkpoint's data cursor is not a mixture cursor: {e}"),
            })?;
        let (index, count) = self.shard;
        self.stream = self
            .mixture
            .resume(cursor.clone())
            .and_then(|s| s.shard(index, count))
            .map_err(data_error)?;
        self.packer =
            Packer::new(self.rows, self.input_len, self.target_len).map_err(data_error)?;
        self.queue.clear();
        self.next_start = cursor;
        Ok(())
    }

    fn truncation(&self) -> Truncation {
        self.truncation
    }
}

fn data_error(e: flan_data::Error) -> Error {
    Error::Data {
        message: flan_data::error::chain(&e),
    }
}
