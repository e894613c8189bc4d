//! T5's pretraining objective, span corruption, as `t5.data.preprocessors.span_corruption`
//! defines it: a token sequence is masked by [`random_spans_noise_mask`] (15% noise in spans of
//! mean length 3), the inputs keep the other tokens with one sentinel in place of each noise
//! span, the targets hold each noise span after its sentinel, and both end with EOS
//! ([`corrupt`]). [`compute_input_and_target_lengths`] gives the raw length that fills an input
//! length after corruption (512 → 568 raw tokens, 114 target tokens). [`documents`] reads the
//! text to corrupt (or a spec's `synthetic_world` generates it, [`crate::synthetic::world`]),
//! and [`SpanCorruptionStream`] turns it into a seeded, shardable, resumable stream of
//! [`TokenizedExample`](crate::TokenizedExample)s the packer takes. In a mixture spec,
//! `format = "span_corruption"` makes a [`SpanCorruptionTask`] the mixture draws from like any
//! other task.

mod corrupt;
mod documents;
mod mask;
mod stream;
mod task;

pub use corrupt::{corrupt, uncorrupt, Sentinels};
pub use documents::{document_files, read_documents, Document};
pub use mask::{compute_input_and_target_lengths, random_spans_noise_mask, NoiseShape};
pub use stream::{ChunkCounts, SpanCorruptionConfig, SpanCorruptionCursor, SpanCorruptionStream};
pub use task::{
    load_span_tasks, SpanCorruptionTask, DEFAULT_MEAN_NOISE_SPAN_LENGTH, DEFAULT_NOISE_DENSITY,
};
