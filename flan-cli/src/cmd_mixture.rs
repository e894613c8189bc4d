//! `flan mixture`: build a task mixture from a spec and inspect it before training on it —
//! statistics (`--stats`), formatted samples (`--sample N`) or JSONL shards (`--export DIR`).

use anyhow::{Context, Result};
use clap::Args;
use flan_data::pipeline::{
    export_shards, mixture_stats, to_jsonl, train_tokenizer_on_mixture, MixtureStats,
};
use flan_data::{Mixture, MixtureSpec, Tokenizer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::exit_code::usage;
use crate::values;

/// Arguments of `flan mixture`.
#[derive(Args, Debug)]
pub struct MixtureArgs {
    /// The mixture spec (TOML), e.g. flan-data/specs/shared-data.toml.
    #[arg(long)]
    spec: PathBuf,
    /// Print per-task and per-submixture counts, rates, template shares and packing efficiency.
    #[arg(long)]
    stats: bool,
    /// Print N formatted examples (at least 1) as JSONL {"task", "inputs", "targets"}.
    #[arg(long, value_name = "N", value_parser = values::at_least_one)]
    sample: Option<usize>,
    /// Write the mixture as JSONL shards into DIR.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Examples to export (at least 1).
    #[arg(long, default_value_t = 100_000, value_parser = values::at_least_one_u64)]
    count: u64,
    /// Number of export shards, from 1 to --count (shard k holds stream positions p with
    /// p % shards == k).
    #[arg(long, default_value_t = 1, value_parser = values::at_least_one_u64)]
    shards: u64,
    /// Seed of the stream (default: the spec's).
    #[arg(long)]
    seed: Option<u64>,
    /// A tokenizer.json: few-shot budgets count its tokens, and --stats reports packing.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Extra template file(s) applied over the built-in and the spec's templates.
    #[arg(long)]
    templates: Vec<PathBuf>,
    /// Task draws for the rate statistics (at least 1).
    #[arg(long, default_value_t = 100_000, value_parser = values::at_least_one_u64)]
    stats_draws: u64,
    /// Examples rendered (and packed) for template shares and packing efficiency (at least 1).
    #[arg(long, default_value_t = 5_000, value_parser = values::at_least_one)]
    stats_rendered: usize,
    /// Rows per packed batch for the packing statistics (at least 1).
    #[arg(long, default_value_t = 32, value_parser = values::at_least_one)]
    batch_size: usize,
    /// Train a Unigram tokenizer on the mixture's text and save it (tokenizer.json and the
    /// transformers config files) into DIR.
    #[arg(long, value_name = "DIR")]
    train_tokenizer: Option<PathBuf>,
    /// Piece vocabulary of --train-tokenizer, at least 4 (100 sentinels are added on top).
    #[arg(long, default_value_t = 8000, value_parser = values::vocab_size)]
    vocab_size: usize,
    /// Print --stats as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Checked settings: the built mixture and what to do with it.
struct MixtureSettings {
    mixture: Arc<Mixture>,
    tokenizer: Option<Tokenizer>,
    seed: u64,
}

impl MixtureSettings {
    fn from_args(args: &MixtureArgs) -> Result<Self> {
        if !args.stats
            && args.sample.is_none()
            && args.export.is_none()
            && args.train_tokenizer.is_none()
        {
            return Err(usage(
                "nothing to do: give --stats, --sample N, --export DIR or --train-tokenizer DIR",
            )
            .into());
        }
        if args.export.is_some() && args.shards > args.count {
            return Err(usage(format!(
                "--shards {} is more than --count {}: shards would be empty; use 1 to {}",
                args.shards, args.count, args.count
            ))
            .into());
        }
        let mut spec = MixtureSpec::from_file(&args.spec)?;
        let cwd = std::env::current_dir().context("reading the current directory")?;
        // CLI template paths are relative to where the command runs, not to the spec.
        spec.templates
            .extend(args.templates.iter().map(|t| cwd.join(t)));
        let spec_dir = args.spec.parent().unwrap_or(Path::new("."));
        let tokenizer = match &args.tokenizer {
            Some(path) => Some(Tokenizer::from_file(path)?),
            None => None,
        };
        let mut mixture = Mixture::from_spec(&spec, spec_dir)
            .with_context(|| format!("building the mixture of {}", args.spec.display()))?;
        if let Some(tok) = &tokenizer {
            mixture = mixture.with_tokenizer(Arc::new(tok.clone()));
        }
        Ok(MixtureSettings {
            mixture: Arc::new(mixture),
            tokenizer,
            seed: args.seed.unwrap_or(spec.seed),
        })
    }
}

/// Runs `flan mixture`.
pub fn run(args: MixtureArgs) -> Result<()> {
    let settings = MixtureSettings::from_args(&args)?;
    if let Some(dir) = &args.train_tokenizer {
        let tok = train_tokenizer_on_mixture(
            &settings.mixture,
            settings.seed,
            args.stats_rendered,
            args.vocab_size,
        )?;
        tok.save_pretrained(dir)?;
        tracing::info!(
            "trained a {}-id Unigram tokenizer into {}",
            tok.vocab_size(),
            dir.display()
        );
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.stats {
        let stats = mixture_stats(
            &settings.mixture,
            settings.seed,
            args.stats_draws,
            args.stats_rendered,
            settings.tokenizer.as_ref(),
            args.batch_size,
        )?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
        } else {
            print_stats(&mut out, &settings.mixture, &stats)?;
        }
    }
    if let Some(n) = args.sample {
        let examples = settings.mixture.stream(settings.seed).next_batch(n)?;
        for e in &examples {
            writeln!(out, "{}", to_jsonl(e)?)?;
        }
    }
    if let Some(dir) = &args.export {
        let paths = export_shards(
            &settings.mixture,
            settings.seed,
            dir,
            args.count,
            args.shards,
        )?;
        for p in paths {
            tracing::info!("wrote {}", p.display());
        }
    }
    out.flush()?;
    Ok(())
}

fn print_stats(out: &mut impl Write, mixture: &Mixture, stats: &MixtureStats) -> Result<()> {
    writeln!(
        out,
        "# Mixture: {} tasks, seed {}, {} draws",
        stats.tasks.len(),
        stats.seed,
        stats.sample
    )?;
    if !stats.excluded.is_empty() {
        writeln!(
            out,
            "left out (not in the split, or held out): {} task(s): {}",
            stats.excluded.len(),
            stats.excluded.join(", ")
        )?;
    }
    if !stats.empty_submixtures.is_empty() {
        writeln!(
            out,
            "submixtures without tasks (their weight is spread over the others): {}",
            stats.empty_submixtures.join(", ")
        )?;
    }
    writeln!(
        out,
        "\n## Submixtures\n{:<10} {:>7} {:>8} {:>10} {:>10}",
        "name", "weight", "cap", "computed", "sampled"
    )?;
    for (name, (computed, sampled)) in &stats.submixtures {
        let sub = &mixture.submixtures()[name];
        writeln!(
            out,
            "{name:<10} {:>7.3} {:>8} {:>9.2}% {:>9.2}%",
            sub.weight,
            sub.cap,
            computed * 100.0,
            sampled * 100.0
        )?;
    }
    writeln!(
        out,
        "\n## Tasks\n{:<52} {:<8} {:>8} {:>7} {:>8} {:>9} {:>9}",
        "task", "submix", "examples", "skipped", "rate", "computed", "sampled"
    )?;
    for t in &stats.tasks {
        writeln!(
            out,
            "{:<52} {:<8} {:>8} {:>7} {:>8} {:>8.3}% {:>8.3}%",
            t.task,
            t.submixture,
            t.examples,
            t.skipped,
            t.rate,
            t.probability * 100.0,
            t.sampled_share * 100.0
        )?;
    }
    for t in stats.tasks.iter().filter(|t| !t.ignored_fields.is_empty()) {
        let fields: Vec<String> = t
            .ignored_fields
            .iter()
            .map(|(name, n)| format!("{name} ({n} records)"))
            .collect();
        writeln!(
            out,
            "{}: ignored fields (not used by its format): {}",
            t.task,
            fields.join(", ")
        )?;
    }
    writeln!(
        out,
        "\n## Template shares over {} rendered examples",
        stats.rendered
    )?;
    for (form, share) in &stats.template_shares {
        writeln!(out, "{form:<24} {:>6.2}%", share * 100.0)?;
    }
    writeln!(
        out,
        "mean exemplars per few-shot example: {:.2}",
        stats.mean_exemplars
    )?;
    let per_template: Vec<String> = stats
        .template_index_shares
        .iter()
        .map(|(k, v)| format!("{k} {:.1}%", v * 100.0))
        .collect();
    writeln!(out, "per template: {}", per_template.join(", "))?;
    match (&stats.packing, stats.packing_efficiency) {
        (Some(p), Some(eff)) => {
            writeln!(
            out,
            "\n## Packing (rows of {} input + {} target tokens)\n{} examples in {} batches, {} truncated; efficiency {:.1}% non-pad tokens",
            mixture.input_len(),
            mixture.target_len(),
            p.examples,
            p.batches,
            p.truncation.truncated,
            eff * 100.0
            )?;
            for line in p.truncation.describe() {
                writeln!(out, "{line}")?;
            }
        }
        _ => writeln!(
            out,
            "\npacking efficiency: give --tokenizer tokenizer.json to measure it"
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MixtureArgs,
    }

    #[test]
    fn export_writes_disjoint_shards_of_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..30)
            .map(|i| format!("{{\"inputs\": \"{i} plus 1?\", \"targets\": \"{}\", \"rationale\": \"{i} and one more.\"}}\n", i + 1))
            .collect();
        std::fs::write(dir.path().join("add.jsonl"), rows).unwrap();
        let spec = dir.path().join("spec.toml");
        std::fs::write(
            &spec,
            "[[tasks]]\nformat = \"jsonl\"\npath = \"add.jsonl\"\nsubmixture = \"cot\"\nfamily = \"cot\"\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let cli = Cli::parse_from([
            "flan-mixture",
            "--spec",
            spec.to_str().unwrap(),
            "--export",
            out.to_str().unwrap(),
            "--count",
            "25",
            "--shards",
            "2",
            "--seed",
            "3",
        ]);
        run(cli.args).unwrap();
        let mut lines = 0;
        for k in 0..2 {
            let text = std::fs::read_to_string(out.join(format!("mixture-{k:05}-of-00002.jsonl")))
                .unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["task"], "add");
                assert!(!v["inputs"].as_str().unwrap().is_empty());
                lines += 1;
            }
        }
        assert_eq!(lines, 25);
        let nothing = Cli::parse_from(["flan-mixture", "--spec", spec.to_str().unwrap()]);
        assert!(run(nothing.args)
            .unwrap_err()
            .to_string()
            .contains("nothing to do"));
    }
}
