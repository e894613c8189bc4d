//! `flan`: the command-line front of the workspace. Parses arguments and hands checked settings to
//! the library crates; it holds no logic of its own.

mod allocator;
mod cmd_eval;
mod cmd_generate;
mod cmd_merge;
mod cmd_mixture;
mod cmd_score;
mod cmd_serve;
mod cmd_train;
mod exit_code;
mod logging;
mod model_io;
mod pretraining_stage;
mod replicate;
mod train_report;
mod values;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "flan",
    version,
    about = "Instruction finetuning of T5 models, the Flan recipe"
)]
struct Cli {
    /// Form of the messages on stderr: `text` lines for people, or `json`, one object per
    /// event with timestamp, level, run_id, rank and the event's fields (step, loss, ...).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Finetune a T5 model on a task mixture.
    Train(cmd_train::TrainArgs),
    /// Build a task mixture from a spec: statistics, samples, JSONL export, tokenizer training.
    Mixture(cmd_mixture::MixtureArgs),
    /// Evaluate on MMLU, BBH, TyDiQA, MGSM, GSM8K; re-score saved predictions.
    Eval(cmd_eval::EvalArgs),
    /// Generate continuations (greedy, beam search or sampling) for JSONL inputs.
    Generate(cmd_generate::GenerateArgs),
    /// Log-likelihood of JSONL targets given inputs.
    Score(cmd_score::ScoreArgs),
    /// Serve the model over HTTP: TGI's /generate, OpenAI's /v1/completions, /score, metrics.
    Serve(cmd_serve::ServeArgs),
    /// Merge a LoRA adapter into its base model and save a plain Hugging Face checkpoint.
    Merge(cmd_merge::MergeArgs),
    /// The paper's experiments at micro scale: finetuning runs over family counts, model sizes,
    /// CoT data and seeds, then report.md with figures and a verdict per claim.
    Replicate(replicate::ReplicateArgs),
}

fn main() {
    allocator::tune();
    // A libtorch failure inside a model call is reported as an error (exit 1), not as a panic
    // with a backtrace; other panics are printed as before.
    flan_contain::install_quiet_hook();
    // A rank variable that does not parse is reported by the command that needs it.
    let rank = flan_train::distributed::rank_from_env().unwrap_or(0);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A log pipeline that asked for JSON gets the usage error as an event too.
        Err(err) if err.use_stderr() && logging::json_requested(std::env::args()) => {
            logging::init(logging::LogFormat::Json, rank);
            let code = err.exit_code();
            tracing::error!(exit_code = code, "{}", err.to_string().trim_end());
            std::process::exit(code);
        }
        Err(err) => err.exit(),
    };
    logging::init(cli.log_format, rank);
    if let Err(err) = run(cli) {
        let code = exit_code::classify(&err).code();
        tracing::error!(exit_code = code, "flan: error: {err:#}");
        std::process::exit(code);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(args) => cmd_eval::run(args),
        Command::Generate(args) => cmd_generate::run(args),
        Command::Score(args) => cmd_score::run(args),
        Command::Merge(args) => cmd_merge::run(args),
        Command::Serve(args) => cmd_serve::run(args),
        Command::Mixture(args) => cmd_mixture::run(args),
        Command::Train(args) => cmd_train::run(args, cli.log_format),
        Command::Replicate(args) => replicate::run(args),
    }
}
