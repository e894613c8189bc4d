//! One generation request on the HTTP side: its sequences are queued as jobs, and their tokens
//! come back as [`Update`]s with the text each token adds, stop sequences applied, until every
//! sequence is finished, the request's time is up, or the model fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::state::{Refused, Shared};
use crate::worker::{DecodeParams, Event, FinishReason, GenerateJob, Job, Sampling};

/// Why a sequence ended, as both APIs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// EOS.
    EosToken,
    /// `max_new_tokens`.
    Length,
    /// A stop sequence matched.
    StopSequence,
}

impl Finish {
    /// TGI's name.
    pub fn tgi(self) -> &'static str {
        match self {
            Finish::EosToken => "eos_token",
            Finish::Length => "length",
            Finish::StopSequence => "stop_sequence",
        }
    }

    /// OpenAI's name.
    pub fn openai(self) -> &'static str {
        match self {
            Finish::Length => "length",
            _ => "stop",
        }
    }
}

/// One generated token of one sequence.
#[derive(Debug, Clone)]
pub struct Update {
    /// Which sequence.
    pub index: usize,
    /// Token id.
    pub id: i64,
    /// Its log-probability.
    pub logprob: f32,
    /// Whether it is a special token (EOS).
    pub special: bool,
    /// The text it adds to the sequence's output (empty for EOS and for a token that only
    /// completes a stop sequence's match beyond what is shown).
    pub text: String,
    /// Set when this token ended the sequence.
    pub finish: Option<Finish>,
}

/// A sequence as the request sees it.
#[derive(Debug)]
pub struct Sequence {
    /// Generated ids (EOS included when generated).
    pub ids: Vec<i64>,
    /// Log-probabilities of `ids`.
    pub logprobs: Vec<f32>,
    /// The text so far (up to and including a matched stop sequence).
    pub text: String,
    /// Set once the sequence ended.
    pub finish: Option<Finish>,
    cancel: Arc<AtomicBool>,
}

/// What a request asks of each of its sequences.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Token ids of each prompt.
    pub prompts: Vec<Vec<i64>>,
    /// Sequences per prompt.
    pub n: usize,
    /// Decoding of the first sequence of each prompt; sequence `j` uses `seed + j`.
    pub params: DecodeParams,
    /// Stop sequences.
    pub stop: Vec<String>,
}

/// A running request.
pub struct Session {
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Every sequence, prompt-major (`prompt * n + j`).
    pub sequences: Vec<Sequence>,
    stop: Vec<String>,
    deadline: tokio::time::Instant,
}

impl Session {
    /// Queues the plan's sequences (all or none: 429 over the queue limit, 503 while the model
    /// is not loaded or the server is shutting down).
    pub fn start(
        shared: &Arc<Shared>,
        id: u64,
        plan: Plan,
        arrived: Instant,
    ) -> Result<Self, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sequences = Vec::new();
        let mut jobs = Vec::new();
        for prompt in &plan.prompts {
            for j in 0..plan.n {
                let cancel = Arc::new(AtomicBool::new(false));
                let seed = plan.params.seed.wrapping_add(j as u64);
                let index = sequences.len();
                sequences.push(Sequence {
                    ids: Vec::new(),
                    logprobs: Vec::new(),
                    text: String::new(),
                    finish: None,
                    cancel: cancel.clone(),
                });
                jobs.push(Job::Generate(GenerateJob {
                    request_id: id,
                    index,
                    input_ids: prompt.clone(),
                    params: DecodeParams {
                        seed,
                        ..plan.params
                    },
                    events: tx.clone(),
                    cancel,
                    arrived,
                }));
            }
        }
        shared.submit(jobs).map_err(refused)?;
        let deadline = tokio::time::Instant::from_std(arrived + shared.limits.request_timeout);
        Ok(Session {
            shared: shared.clone(),
            events: rx,
            sequences,
            stop: plan.stop,
            deadline,
        })
    }

    /// True once every sequence has ended.
    pub fn done(&self) -> bool {
        self.sequences.iter().all(|s| s.finish.is_some())
    }

    /// The next token of any sequence; None once all are done.
    pub async fn next(&mut self) -> Option<Result<Update, ApiError>> {
        loop {
            if self.done() {
                return None;
            }
            let event = match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
                Err(_) => return Some(Err(timeout(&self.shared))),
                Ok(None) => {
                    return Some(Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "model",
                        "the model thread stopped before the request finished",
                    )))
                }
                Ok(Some(event)) => event,
            };
            match event {
                Event::Failed { message } => {
                    return Some(Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "model",
                        message,
                    )))
                }
                Event::Token {
                    index,
                    id,
                    logprob,
                    finish,
                } => {
                    if let Some(update) = self.token(index, id, logprob, finish) {
                        return Some(Ok(update));
                    }
                }
            }
        }
    }

    /// Applies one token to its sequence; None when the sequence had already ended.
    fn token(
        &mut self,
        index: usize,
        id: i64,
        logprob: f32,
        worker_finish: Option<FinishReason>,
    ) -> Option<Update> {
        let loaded = self.shared.loaded()?;
        let eos = loaded.eos_id;
        let seq = self.sequences.get_mut(index)?;
        if seq.finish.is_some() {
            return None;
        }
        seq.ids.push(id);
        seq.logprobs.push(logprob);
        let ids: Vec<u32> = seq.ids.iter().map(|&t| t as u32).collect();
        let full = loaded.tokenizer.decode(&ids, true).unwrap_or_default();
        // Text already shown stays; a token that changes earlier text (rare with
        // SentencePiece) adds nothing until the text grows past it again.
        let mut text = if full.starts_with(&seq.text) {
            full
        } else {
            seq.text.clone()
        };
        let mut finish = None;
        if let Some(end) = stop_match(&text, &self.stop, seq.text.len()) {
            text.truncate(end);
            finish = Some(Finish::StopSequence);
            seq.cancel.store(true, Ordering::Relaxed);
        }
        let added = text.get(seq.text.len()..).unwrap_or_default().to_string();
        seq.text = text;
        if finish.is_none() {
            finish = worker_finish.map(|r| match r {
                FinishReason::EosToken => Finish::EosToken,
                FinishReason::Length => Finish::Length,
            });
        }
        seq.finish = finish;
        Some(Update {
            index,
            id,
            logprob,
            special: id == eos,
            text: added,
            finish,
        })
    }
}

/// The end (exclusive) of the earliest stop sequence in `text` that ends after `shown` (text
/// already checked), or None.
fn stop_match(text: &str, stop: &[String], shown: usize) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            // Only matches that reach into the new text: earlier ones were checked before.
            let from = shown.saturating_sub(s.len() - 1);
            let from = (0..=from)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text[from..].find(s.as_str()).map(|at| from + at + s.len())
        })
        .min()
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::QueueFull { limit } => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!(
                    "the queue is full: {limit} sequences are waiting (--max-queue {limit}); \
                     retry later"
                ),
            )
        },
        Refused::Unavailable(message) => ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        },
    }
}

/// 504 for a request over `--request-timeout`.
pub fn timeout(shared: &Shared) -> ApiError {
    let secs = shared.limits.request_timeout.as_secs_f64();
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!("the request took longer than the server's limit of {secs} s (--request-timeout)"),
    )
}

/// Queues a job that runs whole between two steps (see [`Session::start`] for the refusals).
pub fn submit_job(shared: &Shared, job: Job) -> Result<(), ApiError> {
    shared.submit(vec![job]).map_err(refused)
}

/// Sampling settings from the APIs' fields: None (greedy) when nothing asks for sampling.
pub fn sampling(
    do_sample: bool,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Result<Option<Sampling>, ApiError> {
    if let Some(t) = temperature {
        if !(t.is_finite() && t > 0.0) {
            return Err(ApiError::validation(format!(
                "temperature must be a finite number above 0, got {t}"
            )));
        }
    }
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::validation(format!(
                "top_p must be in (0, 1], got {p}"
            )));
        }
    }
    if top_k == Some(0) {
        return Err(ApiError::validation("top_k must be at least 1"));
    }
    // As TGI: a warper (temperature, top-k, top-p) asks for sampling too.
    let warped =
        temperature.is_some_and(|t| t != 1.0) || top_k.is_some() || top_p.is_some_and(|p| p < 1.0);
    Ok((do_sample || warped).then_some(Sampling {
        temperature: temperature.unwrap_or(1.0),
        top_k,
        top_p: top_p.filter(|&p| p < 1.0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matches_only_new_text_and_the_earliest_end() {
        let stop = vec!["ab".to_string(), "c".to_string()];
        assert_eq!(stop_match("xxab", &stop, 3), Some(4));
        assert_eq!(stop_match("xxab", &stop, 4), None);
        assert_eq!(stop_match("abc", &stop, 0), Some(2));
        assert_eq!(stop_match("é ab", &stop, 2), Some(5));
        assert_eq!(stop_match("xx", &[String::new()], 0), None);
    }

    #[test]
    fn warpers_ask_for_sampling() {
        assert_eq!(sampling(false, None, None, None).unwrap(), None);
        assert_eq!(sampling(false, Some(1.0), None, Some(1.0)).unwrap(), None);
        assert!(sampling(false, Some(0.5), None, None).unwrap().is_some());
        assert!(sampling(true, None, None, None).unwrap().is_some());
        assert!(sampling(false, Some(0.0), None, None).is_err());
        assert!(sampling(false, None, Some(0), None).is_err());
        assert!(sampling(false, None, None, Some(1.5)).is_err());
    }
}
