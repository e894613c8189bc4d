//! What the HTTP side and the model thread share: readiness, the queue count, the limits, the
//! model's description and the metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use flan_data::tokenizer::Tokenizer;

use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::worker::Job;

/// What `/info` says about the loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// `--model` as given.
    pub model_id: String,
    /// `--adapter` as given, if any.
    pub adapter_id: Option<String>,
    /// Weights and compute dtype (`f32`, `bf16`, `f16`).
    pub dtype: String,
    /// Where the model runs (`cpu`, `cuda:0`).
    pub device: String,
    /// The model's vocabulary size.
    pub vocab_size: i64,
}

/// The model once loaded: the tokenizer (used on the HTTP side) and the description.
pub struct Loaded {
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// What `/info` reports.
    pub info: ModelInfo,
    /// The EOS id (the end of a generated sequence).
    pub eos_id: i64,
}

/// State shared by every request handler and the model thread.
pub struct Shared {
    /// The server's limits.
    pub limits: Limits,
    /// The metrics `/metrics` renders.
    pub metrics: Metrics,
    /// Set once the model thread has loaded the model.
    loaded: OnceLock<Loaded>,
    /// Why loading failed, if it did.
    load_error: OnceLock<String>,
    /// Sequences (and scoring calls) sent to the model thread and not yet admitted.
    queued: AtomicUsize,
    /// The next request id.
    next_id: AtomicU64,
    /// The model thread's job channel; `None` once the server shuts down.
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    /// Set when the server starts draining.
    draining: AtomicBool,
    /// The server's seed: a request without a seed gets one derived from it and its id.
    seed: u64,
}

/// Why a job could not be queued.
#[derive(Debug)]
pub enum Refused {
    /// The queue holds `limit` sequences already.
    QueueFull {
        /// `--max-queue`.
        limit: usize,
    },
    /// The model is not loaded (yet, or it failed), or the server is shutting down.
    Unavailable(String),
}

impl Shared {
    pub(crate) fn new(limits: Limits, seed: u64, jobs: std::sync::mpsc::Sender<Job>) -> Self {
        Shared {
            limits,
            metrics: Metrics::default(),
            loaded: OnceLock::new(),
            load_error: OnceLock::new(),
            queued: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            jobs: Mutex::new(Some(jobs)),
            draining: AtomicBool::new(false),
            seed,
        }
    }

    /// The loaded model's tokenizer and description, once it is loaded.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.get()
    }

    pub(crate) fn set_loaded(&self, loaded: Loaded) {
        let _ = self.loaded.set(loaded);
    }

    pub(crate) fn set_load_error(&self, message: String) {
        let _ = self.load_error.set(message);
    }

    /// Why loading failed, if it did.
    pub fn load_error(&self) -> Option<&str> {
        self.load_error.get().map(String::as_str)
    }

    /// The server's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A fresh request id.
    pub fn request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sequences waiting for the model thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn dequeued(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Queues `jobs` as one unit: all of them or, over `--max-queue`, none.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), Refused> {
        if self.loaded().is_none() {
            return Err(Refused::Unavailable(match self.load_error() {
                Some(e) => format!("the model failed to load: {e}"),
                None => "the model is still loading".into(),
            }));
        }
        let n = jobs.len();
        let limit = self.limits.max_queue;
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= limit).then_some(q + n)
            });
        if reserved.is_err() {
            return Err(Refused::QueueFull { limit });
        }
        let guard = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = guard.as_ref() else {
            self.dequeued(n);
            return Err(Refused::Unavailable("the server is shutting down".into()));
        };
        for (i, job) in jobs.into_iter().enumerate() {
            if sender.send(job).is_err() {
                self.dequeued(n - i);
                return Err(Refused::Unavailable("the model thread has stopped".into()));
            }
        }
        self.metrics.set_queue_depth(self.queued());
        Ok(())
    }

    /// Stops taking jobs: the model thread finishes what it has and stops.
    pub(crate) fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once the server is shutting down (health says so).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
