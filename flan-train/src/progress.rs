//! What a person watching sees: a progress bar with loss and tokens/s on a terminal, plain lines
//! otherwise (logs of batch jobs), and a final summary. Lines are `tracing` events carrying the
//! step's numbers as fields, so `flan --log-format json` gives one JSON object per step.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle as BarStyle};

use crate::config::ProgressStyle;
use crate::metrics::StepRecord;

/// The progress display of a run.
pub enum Progress {
    /// An indicatif bar on stderr.
    Bar(ProgressBar),
    /// One line per logged step on stderr.
    Lines,
    /// Nothing.
    Off,
}

impl Progress {
    /// The display for `style`, over steps `done..total`.
    pub fn new(style: ProgressStyle, done: u64, total: u64) -> Progress {
        let bar = match style {
            ProgressStyle::Off => return Progress::Off,
            ProgressStyle::Lines => false,
            ProgressStyle::Bar => true,
            ProgressStyle::Auto => std::io::stderr().is_terminal(),
        };
        if !bar {
            return Progress::Lines;
        }
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style =
            BarStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                .unwrap_or_else(|_| BarStyle::default_bar());
        pb.set_style(style);
        pb.set_position(done);
        Progress::Bar(pb)
    }

    /// Shows a step.
    pub fn step(&self, r: &StepRecord) {
        let msg = format!(
            "loss {:.4} lr {:.2e} gnorm {:.3} {:.0} tok/s{}",
            r.loss,
            r.learning_rate,
            r.grad_norm,
            r.tokens_per_second,
            if r.skipped { " (update skipped)" } else { "" }
        );
        match self {
            Progress::Bar(pb) => {
                pb.set_position(r.step);
                pb.set_message(msg);
            }
            Progress::Lines => tracing::info!(
                step = r.step,
                loss = r.loss,
                learning_rate = r.learning_rate,
                grad_norm = r.grad_norm,
                tokens_per_second = r.tokens_per_second,
                examples_seen = r.examples_seen,
                skipped = r.skipped,
                "step {} {msg}",
                r.step
            ),
            Progress::Off => {}
        }
    }

    /// Prints a note (checkpoint written, evaluation scores) without breaking the bar.
    pub fn note(&self, step: u64, text: &str) {
        match self {
            Progress::Bar(pb) => pb.println(text),
            Progress::Lines => tracing::info!(step, "{text}"),
            Progress::Off => {}
        }
    }

    /// Ends the display.
    pub fn finish(&self) {
        if let Progress::Bar(pb) = self {
            pb.finish();
        }
    }
}
