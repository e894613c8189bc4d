//! `flan serve`: the model as an HTTP service (see flan-serve and docs/serve.md).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use flan_serve::{Limits, ModelSpec, ServeConfig};

use crate::exit_code::usage;
use crate::model_io::{PlacementArgs, SourceArgs};
use crate::values;

/// Arguments of `flan serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences that may wait for a batch slot; over it requests get 429 with Retry-After.
    #[arg(long, default_value_t = Limits::default().max_queue, value_parser = values::at_least_one)]
    pub max_queue: usize,
    /// Sequences decoded together in the continuous batch.
    #[arg(long, default_value_t = Limits::default().max_batch_size, value_parser = values::at_least_one)]
    pub max_batch_size: usize,
    /// Input tokens of one prompt (EOS included); longer prompts get 422.
    #[arg(long, default_value_t = Limits::default().max_input_tokens, value_parser = values::at_least_one)]
    pub max_input_tokens: usize,
    /// Tokens one sequence may generate (and tokens of a scoring target); more gets 422.
    #[arg(long, default_value_t = Limits::default().max_new_tokens, value_parser = values::at_least_one)]
    pub max_new_tokens: usize,
    /// Sequences per request (prompts × n, or scoring targets); more gets 422.
    #[arg(long, default_value_t = Limits::default().max_sequences, value_parser = values::at_least_one)]
    pub max_sequences: usize,
    /// Request body size in bytes; larger bodies get 413.
    #[arg(long, default_value_t = Limits::default().max_body_bytes, value_parser = values::at_least_one)]
    pub max_body_bytes: usize,
    /// Seconds a request may take from arrival to its last token; then 504 and its sequences
    /// leave the batch.
    #[arg(long, default_value_t = 60.0, value_parser = values::positive)]
    pub request_timeout: f64,
    /// Seed of the seeds of sampling requests that give none (each request's is logged and,
    /// on /generate with details, returned).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `flan serve` until SIGTERM or SIGINT, then drains the requests in flight.
pub fn run(args: ServeArgs) -> Result<()> {
    let request_timeout = Duration::try_from_secs_f64(args.request_timeout)
        .map_err(|e| usage(format!("--request-timeout {}: {e}", args.request_timeout)))?;
    let config = ServeConfig {
        model: ModelSpec {
            model: args.source.model,
            adapter: args.source.adapter,
            device: args.placement.device,
            dtype: args.placement.dtype,
        },
        addr: SocketAddr::new(args.host, args.port),
        limits: Limits {
            max_queue: args.max_queue,
            max_batch_size: args.max_batch_size,
            max_input_tokens: args.max_input_tokens,
            max_new_tokens: args.max_new_tokens,
            max_sequences: args.max_sequences,
            max_body_bytes: args.max_body_bytes,
            request_timeout,
        },
        seed: args.seed,
    };
    let server = flan_serve::start(config, flan_serve::termination())?;
    if let Err(e) = server.wait_loaded() {
        let _ = server.shutdown();
        return Err(crate::exit_code::model(format!("loading the model: {e}")).into());
    }
    tracing::info!("flan serve: ready on http://{}", server.addr());
    server.join().context("flan serve")
}
