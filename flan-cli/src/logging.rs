//! Where `flan`'s messages go and in which form: `--log-format text` (the default) prints each
//! message as a plain line on stderr, as a person reads it; `--log-format json` prints one JSON
//! object per event, as the log pipelines of ML platforms ingest them:
//!
//! ```json
//! {"timestamp":"2026-12-06T05:12:03.104Z","level":"INFO","target":"flan_train::progress",
//!  "run_id":"4242","rank":0,"message":"step 3 loss 6.1 ...","step":3,"loss":6.1,...}
//! ```
//!
//! The library crates emit `tracing` events with their numbers as fields (a training step has
//! `step`, `loss`, `learning_rate`, `grad_norm`, `tokens_per_second`); this module installs the
//! subscriber that formats them. `run_id` is the same on every rank of one launch (see
//! [`run_id`]). `RUST_LOG` filters events as usual (default `info`).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The form of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain lines for people.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Variables that name one launch, the same on every rank, in the order they are tried:
/// ours, torchrun's, Slurm's job id.
const RUN_ID_VARIABLES: [&str; 3] = ["FLAN_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"];

/// The run id of the log lines: the first of [`RUN_ID_VARIABLES`] that is set, else one made
/// for this process (`<host>-<pid>-<unix seconds>`).
pub fn run_id(lookup: impl Fn(&str) -> Option<String>) -> String {
    RUN_ID_VARIABLES
        .iter()
        .find_map(|name| lookup(name).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| {
            let host = flan_train::lock::host_name();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{host}-{}-{now}", std::process::id())
        })
}

/// Whether the command line asks for `--log-format json` (read before the arguments parse, so
/// that an argument error can be a JSON event too).
pub fn json_requested(args: impl IntoIterator<Item = String>) -> bool {
    let mut previous = String::new();
    for arg in args {
        if arg == "--log-format=json" || (previous == "--log-format" && arg == "json") {
            return true;
        }
        previous = arg;
    }
    false
}

/// Installs the subscriber for `format`; events at INFO and above (or as `RUST_LOG` says) go to
/// stderr. `rank` is this process's rank in its launch (0 alone).
pub fn init(format: LogFormat, rank: usize) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => Lines::Text,
        LogFormat::Json => Lines::Json {
            run_id: run_id(|name| std::env::var(name).ok()),
            rank,
        },
    };
    // Only a second call in one process fails, and the first subscriber then stays.
    drop(builder.event_format(lines).try_init());
}

/// How each event becomes a line.
enum Lines {
    /// The message alone, as `flan` has always printed it.
    Text,
    /// One JSON object: time, level, target, run id, rank, message and the event's fields.
    Json { run_id: String, rank: usize },
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (run_id, rank) = match self {
            Lines::Text => {
                let message = match fields.0.get("message") {
                    Some(Value::String(m)) => m.as_str(),
                    _ => "",
                };
                return writeln!(writer, "{message}");
            }
            Lines::Json { run_id, rank } => (run_id, rank),
        };
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("run_id".into(), run_id.clone().into());
        line.insert("rank".into(), (*rank).into());
        line.extend(fields.0);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields as JSON values; a non-finite number becomes `null` (JSON has none).
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_seen_before_the_arguments_parse() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(json_requested(args(&["flan", "--log-format", "json", "x"])));
        assert!(json_requested(args(&[
            "flan",
            "score",
            "--log-format=json"
        ])));
        assert!(!json_requested(args(&["flan", "--log-format", "text"])));
        assert!(!json_requested(args(&["flan", "json", "--log-format"])));
    }

    #[test]
    fn the_run_id_is_the_launchers_and_else_this_processs() {
        let with = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            run_id(with(&[
                ("SLURM_JOB_ID", "77"),
                ("TORCHELASTIC_RUN_ID", "te")
            ])),
            "te"
        );
        assert_eq!(
            run_id(with(&[("FLAN_RUN_ID", "mine"), ("SLURM_JOB_ID", "77")])),
            "mine"
        );
        assert_eq!(run_id(with(&[("SLURM_JOB_ID", "77")])), "77");
        let own = run_id(with(&[("FLAN_RUN_ID", " ")]));
        let host = flan_train::lock::host_name();
        assert!(
            own.starts_with(&format!("{host}-{}-", std::process::id())),
            "{own}"
        );
    }
}
