//! The server's Prometheus metrics, kept by hand (a few counters, gauges and histograms) and
//! rendered in the text exposition format (version 0.0.4) for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Upper bounds of the batch size histogram's buckets.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by (endpoint, HTTP status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Sequences waiting for a batch slot.
    queue_depth: AtomicU64,
    /// Sequences in the running batch.
    batch_size: AtomicU64,
    batch_sizes: Mutex<Histogram>,
    generated_tokens: AtomicU64,
    input_tokens: AtomicU64,
    /// Sequences that left the batch early: their client went away, timed out or hit a stop.
    cancelled: AtomicU64,
    time_to_first_token: Mutex<Histogram>,
    /// Request latency by endpoint.
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            queue_depth: AtomicU64::new(0),
            batch_size: AtomicU64::new(0),
            batch_sizes: Mutex::new(Histogram::new(&BATCH_BUCKETS)),
            generated_tokens: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            time_to_first_token: Mutex::new(Histogram::new(&LATENCY_BUCKETS)),
            latency: Mutex::default(),
        }
    }
}

/// A poisoned metrics lock only means a panic elsewhere; the numbers are still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Counts one answered request and its latency.
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        *lock(&self.requests)
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(endpoint.to_string())
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(seconds);
    }

    /// Sets the number of sequences waiting.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n as u64, Ordering::Relaxed);
    }

    /// Records one decoding step over `rows` sequences.
    pub fn step(&self, rows: usize) {
        self.batch_size.store(rows as u64, Ordering::Relaxed);
        if rows > 0 {
            lock(&self.batch_sizes).observe(rows as f64);
        }
    }

    /// Sets the running batch's size (when it empties between steps).
    pub fn set_batch_size(&self, rows: usize) {
        self.batch_size.store(rows as u64, Ordering::Relaxed);
    }

    /// Counts `n` generated tokens.
    pub fn generated(&self, n: usize) {
        self.generated_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` input tokens admitted.
    pub fn input(&self, n: usize) {
        self.input_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a sequence that left the batch before it finished.
    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of sequences cancelled so far.
    pub fn cancelled_count(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Records a sequence's time from arrival to its first token.
    pub fn first_token(&self, seconds: f64) {
        lock(&self.time_to_first_token).observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP flan_requests_total HTTP requests answered, by endpoint and status."
        );
        let _ = writeln!(out, "# TYPE flan_requests_total counter");
        for ((endpoint, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "flan_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let gauges = [
            (
                "flan_queue_depth",
                "Sequences waiting for a batch slot.",
                &self.queue_depth,
            ),
            (
                "flan_batch_size",
                "Sequences in the running decode batch.",
                &self.batch_size,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let counters = [
            (
                "flan_generated_tokens_total",
                "Tokens generated.",
                &self.generated_tokens,
            ),
            (
                "flan_input_tokens_total",
                "Input tokens of admitted sequences.",
                &self.input_tokens,
            ),
            (
                "flan_cancelled_sequences_total",
                "Sequences that left the batch early (client gone, timeout, stop sequence).",
                &self.cancelled,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP flan_batch_size_steps Batch size of each decoding step."
        );
        let _ = writeln!(out, "# TYPE flan_batch_size_steps histogram");
        lock(&self.batch_sizes).render(&mut out, "flan_batch_size_steps", "");
        let _ = writeln!(
            out,
            "# HELP flan_time_to_first_token_seconds From a sequence's arrival to its first token."
        );
        let _ = writeln!(out, "# TYPE flan_time_to_first_token_seconds histogram");
        lock(&self.time_to_first_token).render(&mut out, "flan_time_to_first_token_seconds", "");
        let _ = writeln!(
            out,
            "# HELP flan_request_duration_seconds Request latency by endpoint."
        );
        let _ = writeln!(out, "# TYPE flan_request_duration_seconds histogram");
        for (endpoint, h) in lock(&self.latency).iter() {
            h.render(
                &mut out,
                "flan_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&BATCH_BUCKETS);
        for v in [1.0, 3.0, 3.0, 300.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"4\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"256\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_sum 307\n"));
        assert!(out.contains("x_count 4\n"));
    }
}
