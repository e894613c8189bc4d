//! The limits that protect the server, each one a flag of `flan serve` and named in the error a
//! request gets when it is over it.

use std::time::Duration;

/// The server's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Sequences waiting for a batch slot (`--max-queue`); over it requests get 429.
    pub max_queue: usize,
    /// Sequences decoded together (`--max-batch-size`).
    pub max_batch_size: usize,
    /// Input tokens of one prompt, EOS included (`--max-input-tokens`); over it: 422.
    pub max_input_tokens: usize,
    /// Tokens one sequence may generate (`--max-new-tokens`); over it: 422.
    pub max_new_tokens: usize,
    /// Sequences per request: prompts × `n`, or scoring targets (`--max-sequences`); over: 422.
    pub max_sequences: usize,
    /// Request body size in bytes (`--max-body-bytes`); over it: 413.
    pub max_body_bytes: usize,
    /// Time a request may take from arrival to its last token (`--request-timeout`); over: 504.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_queue: 256,
            max_batch_size: 32,
            max_input_tokens: 1024,
            max_new_tokens: 512,
            max_sequences: 16,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(60),
        }
    }
}
