//! The model thread: it owns the T5 (tch tensors are not `Sync`, and one thread keeps libtorch's
//! intra-op threads to itself), takes jobs from a channel and runs the continuous batch.
//!
//! Each loop admits waiting sequences into the batch up to `max_batch` (a sequence is encoded
//! once, on admission), runs scoring jobs between steps, then runs one decoding step for every
//! row and sends each row's token to its request. A row leaves when it generates EOS, reaches
//! its `max_new_tokens`, or its request is gone (client disconnected, timed out, or a stop
//! sequence matched: the HTTP side drops the receiver or sets the cancel flag). When every
//! sender of the channel is dropped the worker finishes the rows it has and returns.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flan_model::continuous::{DecodeBatch, EncodedSequence};
use flan_model::generate::{generate, sample_token, EarlyStopping, GenerationConfig, Strategy};
use flan_model::memory::Call;
use flan_model::score::{score_batch, TargetScore};
use flan_model::step_copies::CopyReserve;
use flan_model::{fallible, T5ForConditionalGeneration};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot};

use crate::state::Shared;

/// Sampling settings of one sequence (transformers' order: temperature, top-k, top-p).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits (> 0).
    pub temperature: f64,
    /// Keep the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of mass >= p.
    pub top_p: Option<f64>,
}

/// How one sequence is decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeParams {
    /// At most this many tokens (EOS included).
    pub max_new_tokens: usize,
    /// None: greedy.
    pub sampling: Option<Sampling>,
    /// The seed of this sequence's own RNG (used when sampling).
    pub seed: u64,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It generated EOS.
    EosToken,
    /// It reached `max_new_tokens`.
    Length,
}

/// What the worker tells a request about one of its sequences (`index`).
#[derive(Debug)]
pub enum Event {
    /// A new token and its log-probability under the model.
    Token {
        /// Which sequence of the request.
        index: usize,
        /// Token id.
        id: i64,
        /// Log-probability (fp32 log-softmax of the unwarped logits).
        logprob: f32,
        /// Set when this token ends the sequence.
        finish: Option<FinishReason>,
    },
    /// The model failed on this sequence (a libtorch error); the server goes on.
    Failed {
        /// What failed.
        message: String,
    },
}

/// One sequence to generate.
#[derive(Debug)]
pub struct GenerateJob {
    /// The request's id (for logs).
    pub request_id: u64,
    /// Which sequence of its request.
    pub index: usize,
    /// Encoder input ids (EOS included).
    pub input_ids: Vec<i64>,
    /// Decoding settings.
    pub params: DecodeParams,
    /// Where the tokens go; a closed receiver cancels the sequence.
    pub events: mpsc::UnboundedSender<Event>,
    /// Set by the request to cancel this sequence only (a stop sequence matched).
    pub cancel: Arc<AtomicBool>,
    /// When the request arrived (time to first token).
    pub arrived: Instant,
}

/// Log-likelihoods of `targets` given one input.
#[derive(Debug)]
pub struct ScoreJob {
    /// Encoder input ids.
    pub input_ids: Vec<i64>,
    /// Target ids (EOS included).
    pub targets: Vec<Vec<i64>>,
    /// The answer, or the model's error.
    pub reply: oneshot::Sender<Result<Vec<TargetScore>, String>>,
}

/// A beam search over one input (transformers' defaults: length penalty 1, `early_stopping`
/// false), run whole between two decoding steps.
#[derive(Debug)]
pub struct BeamJob {
    /// Encoder input ids.
    pub input_ids: Vec<i64>,
    /// Beams.
    pub num_beams: usize,
    /// At most this many tokens (EOS included).
    pub max_new_tokens: usize,
    /// The best hypothesis (ids, length-penalised score), or the model's error.
    pub reply: oneshot::Sender<Result<(Vec<i64>, f64), String>>,
}

/// Work for the model thread.
#[derive(Debug)]
pub enum Job {
    /// A beam search, run between two decoding steps (it holds up the batch while it runs).
    Beam(BeamJob),
    /// A sequence to decode in the continuous batch.
    Generate(GenerateJob),
    /// A scoring call, run between two decoding steps.
    Score(ScoreJob),
}

/// A sequence in the batch.
struct Row {
    job: GenerateJob,
    /// The token to feed next (the decoder start token first).
    last: i64,
    generated: usize,
    rng: ChaCha8Rng,
}

impl Row {
    fn gone(&self) -> bool {
        self.job.events.is_closed() || self.job.cancel.load(Ordering::Relaxed)
    }
}

/// How long an idle worker waits for a job before it looks again (it also wakes on every job).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Runs the worker until every job sender is gone and the batch is empty.
pub fn run(model: T5ForConditionalGeneration, jobs: Receiver<Job>, shared: Arc<Shared>) {
    let max_batch = shared.limits.max_batch_size.max(1);
    // The decoding steps' copies of the weights leave room for the fullest batch the limits
    // allow (see flan_model::step_copies); a beam job's generate call sets its own.
    let fullest = Call::Generate {
        batch: max_batch as u64,
        input_len: shared.limits.max_input_tokens as u64,
        max_new_tokens: shared.limits.max_new_tokens as u64,
        rows_per_input: 1,
        beam: false,
    };
    let _reserve = CopyReserve::for_call(model.config(), model.kind(), fullest);
    let start = model.config().decoder_start_token_id();
    let eos = model.config().eos_token_id;
    let mut batch = DecodeBatch::new(&model);
    let mut rows: Vec<Row> = Vec::new();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    loop {
        // Take what has arrived; block only when there is nothing to do.
        if rows.is_empty() && waiting.is_empty() {
            if !open {
                break;
            }
            match jobs.recv_timeout(IDLE_POLL) {
                Ok(job) => waiting.push_back(job),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        while open {
            match jobs.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        // Admit up to the batch size (each encoded alone, all joining in one concatenation);
        // scoring runs now, between steps.
        let mut joining = Vec::new();
        while rows.len() + joining.len() < max_batch {
            let Some(job) = waiting.pop_front() else {
                break;
            };
            shared.dequeued(1);
            match job {
                Job::Score(job) => score(&model, job),
                Job::Beam(job) => beam(&model, job),
                Job::Generate(job) => {
                    if let Some(ready) = prepare(&model, job, start, &shared) {
                        joining.push(ready);
                    }
                }
            }
        }
        if !joining.is_empty() {
            let (new_rows, seqs): (Vec<Row>, Vec<EncodedSequence>) = joining.into_iter().unzip();
            match fallible::catch("joining the batch", || batch.join_all(seqs)) {
                Ok(()) => rows.extend(new_rows),
                Err(e) => {
                    tracing::error!("flan serve: {e}");
                    for row in new_rows {
                        let _ = row.job.events.send(Event::Failed {
                            message: e.to_string(),
                        });
                    }
                    // The batch's buffers may be half-extended: its rows fail too.
                    for row in rows.drain(..) {
                        let _ = row.job.events.send(Event::Failed {
                            message: e.to_string(),
                        });
                    }
                    batch = DecodeBatch::new(&model);
                }
            }
        }
        shared.metrics.set_queue_depth(shared.queued());
        if rows.is_empty() {
            shared.metrics.set_batch_size(0);
            continue;
        }
        step(&model, &mut batch, &mut rows, eos, &shared);
    }
    tracing::info!("flan serve: the model worker stopped");
}

/// Encodes `job`'s input (None when it was cancelled while waiting, or the encoder failed).
fn prepare(
    model: &T5ForConditionalGeneration,
    job: GenerateJob,
    start: i64,
    shared: &Shared,
) -> Option<(Row, EncodedSequence)> {
    if job.events.is_closed() || job.cancel.load(Ordering::Relaxed) {
        shared.metrics.cancelled();
        return None;
    }
    let seq = match fallible::catch("encoding", || {
        EncodedSequence::encode(model, &job.input_ids)
    }) {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(request_id = job.request_id, "flan serve: {e}");
            let _ = job.events.send(Event::Failed {
                message: e.to_string(),
            });
            return None;
        }
    };
    shared.metrics.input(job.input_ids.len());
    let rng = ChaCha8Rng::seed_from_u64(job.params.seed);
    let row = Row {
        job,
        last: start,
        generated: 0,
        rng,
    };
    Some((row, seq))
}

/// One decoding step over every row; rows that finish or are gone leave the batch.
fn step(
    model: &T5ForConditionalGeneration,
    batch: &mut DecodeBatch,
    rows: &mut Vec<Row>,
    eos: i64,
    shared: &Shared,
) {
    shared.metrics.step(rows.len());
    let tokens: Vec<i64> = rows.iter().map(|r| r.last).collect();
    let chosen = fallible::catch("decoding", || {
        let logits = batch.step(model, &tokens)?;
        let greedy = if rows.iter().any(|r| r.job.params.sampling.is_none()) {
            logits.argmax()?
        } else {
            Vec::new()
        };
        let mut chosen = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter_mut().enumerate() {
            chosen.push(match row.job.params.sampling {
                None => greedy[i],
                Some(s) => {
                    let raw = logits.row(i)?;
                    sample_token(&raw, s.temperature, s.top_k, s.top_p, &mut row.rng) as i64
                }
            });
        }
        let logprobs = logits.logprobs(&chosen)?;
        Ok((chosen, logprobs))
    });
    let (chosen, logprobs) = match chosen {
        Ok(c) => c,
        Err(e) => {
            // The batch's state is unknown after a failed step: every row fails, the server
            // goes on with an empty batch.
            tracing::error!("flan serve: {e}");
            for row in rows.drain(..) {
                let _ = row.job.events.send(Event::Failed {
                    message: e.to_string(),
                });
            }
            *batch = DecodeBatch::new(model);
            return;
        }
    };
    let mut keep = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter_mut().enumerate() {
        let (id, logprob) = (chosen[i], logprobs[i]);
        if row.generated == 0 {
            shared
                .metrics
                .first_token(row.job.arrived.elapsed().as_secs_f64());
        }
        row.generated += 1;
        row.last = id;
        shared.metrics.generated(1);
        let finish = if id == eos {
            Some(FinishReason::EosToken)
        } else if row.generated >= row.job.params.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        let index = row.job.index;
        let sent = row.job.events.send(Event::Token {
            index,
            id,
            logprob,
            finish,
        });
        if finish.is_some() {
            keep.push(false);
        } else if sent.is_err() || row.gone() {
            shared.metrics.cancelled();
            keep.push(false);
        } else {
            keep.push(true);
        }
    }
    if let Err(e) = batch.retain(&keep) {
        tracing::error!("flan serve: {e}");
    }
    let mut flags = keep.iter();
    rows.retain(|_| *flags.next().unwrap_or(&false));
    shared.metrics.set_batch_size(rows.len());
}

fn beam(model: &T5ForConditionalGeneration, job: BeamJob) {
    if job.reply.is_closed() {
        return;
    }
    let config = GenerationConfig {
        max_new_tokens: job.max_new_tokens,
        strategy: Strategy::Beam {
            num_beams: job.num_beams,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
        },
        num_return_sequences: 1,
        use_cache: true,
    };
    let len = job.input_ids.len() as i64;
    let result = fallible::catch("beam search", || {
        let ids = tch::Tensor::from_slice(&job.input_ids).view([1, len]);
        let mask = ids.ones_like();
        let out = generate(model, &ids, &mask, &config)?;
        Ok(out
            .into_iter()
            .next()
            .and_then(|mut r| r.pop())
            .map(|g| (g.token_ids, g.score))
            .unwrap_or_default())
    })
    .map_err(|e| e.to_string());
    let _ = job.reply.send(result);
}

fn score(model: &T5ForConditionalGeneration, job: ScoreJob) {
    if job.reply.is_closed() {
        return;
    }
    let inputs = vec![job.input_ids.clone(); job.targets.len()];
    let result = fallible::catch("scoring", || score_batch(model, &inputs, &job.targets))
        .map_err(|e| e.to_string());
    let _ = job.reply.send(result);
}
