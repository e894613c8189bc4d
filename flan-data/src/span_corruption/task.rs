//! Span corruption as a task of a mixture spec (`format = "span_corruption"`).
//!
//! The documents are read (or, with `synthetic_world = { documents, seed }`, generated: the
//! synthetic suite's world text, [`crate::synthetic::world`]) when the mixture is built; their
//! token ids, and so the chunks that are the task's examples, exist once the mixture has a
//! tokenizer ([`Mixture::with_tokenizer`](crate::Mixture::with_tokenizer)). The mixture draws chunk
//! indices as it draws the examples of other tasks (a seeded permutation per epoch), so the
//! task's only state is how often it has been drawn, which the mixture cursor already stores;
//! the mask of a draw is seeded by (stream seed, task name, draw number).

use super::stream::{corrupt_seeded, splitmix};
use super::{
    compute_input_and_target_lengths, document_files, read_documents, ChunkCounts, Document,
    NoiseShape, Sentinels, SpanCorruptionConfig,
};
use crate::error::{Error, Result};
use crate::pack::TokenizedExample;
use crate::source::{Skipped, Strictness};
use crate::spec::{MixtureSpec, SourceFormat, TaskSpec};
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// T5's noise density.
pub const DEFAULT_NOISE_DENSITY: f64 = 0.15;
/// T5's mean noise span length.
pub const DEFAULT_MEAN_NOISE_SPAN_LENGTH: f64 = 3.0;

/// A span-corruption task: its documents and, once tokenized, its chunks.
#[derive(Debug, Clone)]
pub struct SpanCorruptionTask {
    /// Task name (the spec's `name`, else `synthetic_world` for generated documents, else the
    /// file or directory stem).
    pub name: String,
    /// Its submixture.
    pub submixture: String,
    /// The objective's settings (`raw_length` resolved).
    pub config: SpanCorruptionConfig,
    /// The files read, in order (none when the documents come from `synthetic_world`).
    pub files: Vec<PathBuf>,
    /// The documents, in file order (or in generated order, each with provenance
    /// `synthetic_world/seed-<seed>` and its 1-based index as line).
    pub documents: Vec<Document>,
    /// Blank lines and blank `text` fields: not documents, counted.
    pub blank: usize,
    /// Records skipped in lenient mode.
    pub skipped: Skipped,
    salt: u64,
    /// The chunks, or why they could not be made; `None` before a tokenizer was given.
    chunks: Option<std::result::Result<Chunks, String>>,
}

/// The task's documents as token ids, cut into chunks.
#[derive(Debug, Clone)]
struct Chunks {
    sentinels: Sentinels,
    ids: Vec<u32>,
    /// Each chunk's range in `ids` (chunks never cross documents).
    chunks: Vec<Range<usize>>,
    counts: ChunkCounts,
}

impl SpanCorruptionTask {
    /// Reads the documents of `task_spec` (paths resolved against `data_dir`) and checks that a
    /// whole chunk, corrupted, fits `spec.input_len` and `spec.target_len`.
    pub fn load(spec: &MixtureSpec, data_dir: &Path, task_spec: &TaskSpec) -> Result<Self> {
        let name = task_name(task_spec);
        let ctx = format!("task `{name}` (format = \"span_corruption\")");
        let noise_density = task_spec.noise_density.unwrap_or(DEFAULT_NOISE_DENSITY);
        let mean_noise_span_length = task_spec
            .mean_noise_span_length
            .unwrap_or(DEFAULT_MEAN_NOISE_SPAN_LENGTH);
        let with_ctx = |e: Error| Error::config(&ctx, crate::error::chain(&e));
        let raw_length = match task_spec.raw_length {
            Some(n) => n,
            None => {
                compute_input_and_target_lengths(
                    spec.input_len,
                    noise_density,
                    mean_noise_span_length,
                )
                .map_err(with_ctx)?
                .0
            }
        };
        if raw_length == 0 {
            return Err(Error::config(&ctx, "raw_length must be at least 1"));
        }
        // Inputs and targets grow with the chunk's length, so a whole chunk is the longest.
        let shape =
            NoiseShape::new(raw_length, noise_density, mean_noise_span_length).map_err(with_ctx)?;
        let inputs = shape.length - shape.noise_tokens + shape.noise_spans + 1;
        let targets = shape.noise_tokens + shape.noise_spans + 1;
        if inputs > spec.input_len || targets > spec.target_len {
            return Err(Error::config(
                &ctx,
                format!(
                    "a chunk of raw_length {raw_length} corrupts into {inputs} input and \
                     {targets} target tokens, over input_len {} / target_len {}; lower \
                     raw_length (or leave it out: it then fills input_len)",
                    spec.input_len, spec.target_len
                ),
            ));
        }
        let submixture = task_spec.submixture.clone().unwrap_or_default();
        let strictness = if task_spec.lenient {
            Strictness::Lenient
        } else {
            Strictness::Strict
        };
        // A spec built in code has not been through `MixtureSpec::validate`.
        if let Some(problem) = task_spec.source_problem() {
            return Err(Error::config(&ctx, problem));
        }
        let mut files = Vec::new();
        let mut documents = Vec::new();
        let mut blank = 0;
        let mut skipped = Skipped::default();
        if let Some(world) = &task_spec.synthetic_world {
            // Generated documents are never blank and have no line to skip.
            documents = world.documents().map_err(with_ctx)?;
        } else {
            files = document_files(&data_dir.join(&task_spec.path))?;
            let read: Vec<_> = files
                .par_iter()
                .map(|f| read_documents(f, strictness))
                .collect::<Result<_>>()?;
            for (docs, b, s) in read {
                documents.extend(docs);
                blank += b;
                skipped.merge(&s);
            }
            if documents.is_empty() {
                return Err(Error::config(&ctx, "its files hold no document"));
            }
        }
        Ok(SpanCorruptionTask {
            salt: crate::hash::fnv1a(&name),
            name,
            submixture,
            config: SpanCorruptionConfig {
                noise_density,
                mean_noise_span_length,
                raw_length,
            },
            files,
            documents,
            blank,
            skipped,
            chunks: None,
        })
    }

    fn context(&self) -> String {
        format!("task `{}` (format = \"span_corruption\")", self.name)
    }

    /// Tokenizes the documents (in parallel) and cuts them into chunks. What goes wrong (a
    /// vocabulary without enough sentinels, no token at all) is kept and returned by
    /// [`SpanCorruptionTask::check`] and by every draw.
    pub fn tokenize(&mut self, tokenizer: &Tokenizer) {
        self.chunks = Some(
            self.make_chunks(tokenizer)
                .map_err(|e| crate::error::chain(&e)),
        );
    }

    fn make_chunks(&self, tokenizer: &Tokenizer) -> Result<Chunks> {
        let sentinels = Sentinels::of(tokenizer)?;
        let c = &self.config;
        let spans =
            NoiseShape::new(c.raw_length, c.noise_density, c.mean_noise_span_length)?.noise_spans;
        if spans > sentinels.len() {
            return Err(Error::config(
                "tokenizer",
                format!(
                    "a chunk of raw_length {} has {spans} noise spans, but the vocabulary has \
                     only {} sentinels",
                    c.raw_length,
                    sentinels.len()
                ),
            ));
        }
        let per_document: Vec<Vec<u32>> = self
            .documents
            .par_iter()
            .map(|d| tokenizer.encode_pieces(&d.text))
            .collect::<Result<_>>()?;
        let mut counts = ChunkCounts::of_lengths(per_document.iter().map(Vec::len), c.raw_length);
        counts.empty += self.blank as u64;
        let mut ids = Vec::with_capacity(per_document.iter().map(Vec::len).sum());
        let mut chunks = Vec::with_capacity(counts.chunks as usize);
        for doc in per_document {
            let start = ids.len();
            ids.extend_from_slice(&doc);
            let mut at = start;
            while at < ids.len() {
                let end = (at + c.raw_length).min(ids.len());
                chunks.push(at..end);
                at = end;
            }
        }
        if chunks.is_empty() {
            return Err(Error::config(
                "tokenizer",
                "its documents have no token: nothing to corrupt",
            ));
        }
        Ok(Chunks {
            sentinels,
            ids,
            chunks,
            counts,
        })
    }

    fn ready(&self) -> Result<&Chunks> {
        match &self.chunks {
            Some(Ok(c)) => Ok(c),
            Some(Err(message)) => Err(Error::config(self.context(), message.clone())),
            None => Err(Error::config(
                self.context(),
                "its examples are token ids: build the mixture with a tokenizer \
                 (`Mixture::with_tokenizer`; `flan mixture --tokenizer FILE`)",
            )),
        }
    }

    /// Whether the task has its chunks; the error names the task and what is missing.
    pub fn check(&self) -> Result<()> {
        self.ready().map(|_| ())
    }

    /// Its examples: the chunks once tokenized, else the documents (so that a mixture without a
    /// tokenizer still has rates, e.g. to train one).
    pub fn examples(&self) -> usize {
        match &self.chunks {
            Some(Ok(c)) => c.chunks.len(),
            _ => self.documents.len(),
        }
    }

    /// What chunking did, once tokenized (blank lines count as empty documents).
    pub fn counts(&self) -> Option<ChunkCounts> {
        match &self.chunks {
            Some(Ok(c)) => Some(c.counts),
            _ => None,
        }
    }

    /// The token ids of chunk `chunk` (without EOS).
    pub fn chunk(&self, chunk: usize) -> Result<&[u32]> {
        let c = self.ready()?;
        let range = c.chunks.get(chunk).cloned().ok_or_else(|| {
            Error::config(
                self.context(),
                format!("no chunk {chunk} of {}", c.chunks.len()),
            )
        })?;
        Ok(&c.ids[range])
    }

    /// The corrupted example of chunk `chunk` at the task's `draw`-th draw of the stream with
    /// `seed`: the mask is seeded by (seed, task name, draw), so each epoch masks a chunk anew
    /// and other tasks of the mixture do not move it.
    pub fn example(&self, chunk: usize, seed: u64, draw: u64) -> Result<TokenizedExample> {
        let tokens = self.chunk(chunk)?;
        let c = self.ready()?;
        let key = splitmix(seed ^ splitmix(self.salt ^ splitmix(draw)));
        corrupt_seeded(tokens, &self.config, &c.sentinels, key)
    }
}

/// The spec's `name`, else `synthetic_world` for generated documents, else the stem of the file
/// or directory, else (a wildcard) `span_corruption`.
fn task_name(task_spec: &TaskSpec) -> String {
    task_spec.name.clone().unwrap_or_else(|| {
        if task_spec.synthetic_world.is_some() {
            return "synthetic_world".to_string();
        }
        let stem = task_spec
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        if stem.is_empty() || stem.contains('*') {
            "span_corruption".to_string()
        } else {
            stem.to_string()
        }
    })
}

/// The span-corruption tasks of `spec` (paths resolved against `spec_dir`), and the names of
/// those the spec holds out.
pub fn load_span_tasks(
    spec: &MixtureSpec,
    spec_dir: &Path,
) -> Result<(Vec<SpanCorruptionTask>, Vec<String>)> {
    let data_dir = spec_dir.join(&spec.data_dir);
    let mut tasks: Vec<SpanCorruptionTask> = Vec::new();
    let mut excluded = Vec::new();
    for task_spec in spec
        .tasks
        .iter()
        .filter(|t| t.format == SourceFormat::SpanCorruption)
    {
        let name = task_name(task_spec);
        if spec.is_excluded(&name) {
            excluded.push(name);
        } else {
            tasks.push(SpanCorruptionTask::load(spec, &data_dir, task_spec)?);
        }
    }
    Ok((tasks, excluded))
}
