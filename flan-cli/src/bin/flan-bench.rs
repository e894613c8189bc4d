//! `flan-bench`: our side of `cargo xtask bench`. It prepares the shared inputs (tokenizer, token
//! ids of the training examples and prompts, the model's weights in the HF layout) in `--out` so
//! that the Python side (`xtask/bench/hf_bench.py`) runs on exactly the same data and weights, then
//! measures our speed and prints one JSON object per measurement on stdout. xtask pairs these lines
//! with the Python ones and computes the ratios; this binary knows nothing about the other side.
//! The measurements come in parts (`--part`: the pipeline, a shape's training, a shape's decoding
//! in one precision); xtask runs each part here and then on the Python side, so that the two
//! halves of a ratio are minutes apart on a shared host, not the length of the whole run.
//!
//! Line format: `{"side", "group", "case", "unit", "samples": [...], "extra": {...}}`; lines with
//! the same `group` are compared (ours / theirs).

use anyhow::{bail, Context, Result};
use clap::Parser;
use flan_data::pack::{PackedBatch, Packer, TokenizedExample};
use flan_data::pipeline::{next_tokenized, tokenize_examples};
use flan_data::{Mixture, MixtureSpec, Tokenizer};
use flan_model::generate::{generate, GenerationConfig};
use flan_model::step_copies::held_copy_bytes;
use flan_model::{
    FlushDenormals, LoraConfig, LoraInit, ModuleSelector, PackedTensors, T5Config,
    T5ForConditionalGeneration,
};
use flan_train::optim::{Adafactor, AdafactorConfig, NamedParam, Optimizer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// The allocator `flan` uses, set up as `flan` does.
#[path = "../allocator.rs"]
mod allocator;

/// The CoT training sets of `../shared/data/flan-cot`.
const COT_TASKS: [&str; 7] = [
    "aqua",
    "creak",
    "ecqa",
    "gsm8k",
    "qasc",
    "sensemaking",
    "strategyqa",
];

#[derive(Parser, Debug)]
#[command(
    name = "flan-bench",
    about = "Our side of `cargo xtask bench` (JSON lines on stdout)"
)]
struct Args {
    /// Where the shared inputs go (tokenizer, token ids, model weights).
    #[arg(long)]
    out: PathBuf,
    /// The shared data directory (holds `flan-cot/`).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Intra-op threads of libtorch and rayon threads of the data pipeline.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Model shapes, comma separated: tiny, small.
    #[arg(long, default_value = "tiny", value_delimiter = ',')]
    shapes: Vec<String>,
    /// Training examples per timed run (the same ids go to the Python side).
    #[arg(long, default_value_t = 128)]
    train_examples: usize,
    /// Examples per padded batch (ours unpacked and transformers).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Encoder / decoder lengths examples are truncated to (and packed rows are filled to).
    #[arg(long, default_value_t = 256)]
    input_len: usize,
    #[arg(long, default_value_t = 128)]
    target_len: usize,
    /// Examples per timed run of the data pipeline.
    #[arg(long, default_value_t = 4096)]
    pipeline_examples: usize,
    /// Timed runs of the data pipeline (its runs are short; xtask asks for more than `--reps`).
    #[arg(long, default_value_t = 7)]
    pipeline_reps: usize,
    /// Examples streamed through the data pipeline untimed before its timed runs (on top of
    /// `--warmup` runs): word-level token caches (ours per thread, the tokenizers library's own)
    /// fill over the first tens of thousands of examples, and a training run lives in the
    /// filled state.
    #[arg(long, default_value_t = 40_000)]
    pipeline_warmup_examples: usize,
    /// Prompts generated one at a time in the batch-1 case (per timed run).
    #[arg(long, default_value_t = 2)]
    gen_single: usize,
    /// New tokens per generated sequence.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Fresh processes per case measuring the memory of a training step (activation
    /// checkpointing off and on).
    #[arg(long, default_value_t = 2)]
    memory_reps: usize,
    /// Internal: measure one training step of shape SHAPE with activation checkpointing off or
    /// on in this fresh process, from the inputs a full run left in `--out`, and print its
    /// memory (flan-bench runs itself with it: peak RSS only says something in a new process).
    #[arg(long, hide = true, value_name = "SHAPE,off|on")]
    step_memory: Option<String>,
    /// Only write the shared inputs (tokenizer, token ids, each shape's initial weights) and
    /// stop: what `--train-variant` runs need.
    #[arg(long)]
    prepare_only: bool,
    /// Train the shape's initial weights (written by a run of this binary, e.g.
    /// `--prepare-only`) with one variant, full, lora (r = 8 on q and v), checkpointing
    /// (activation checkpointing) or lora-checkpointing (both), in this process, and print its real tokens/s and this
    /// process's peak RSS: one variant per process, so that the peak is the variant's.
    #[arg(long, value_name = "SHAPE,full|lora|checkpointing|lora-checkpointing")]
    train_variant: Option<String>,
    /// Measure one part in this process, from the inputs a `--prepare-only` run left in
    /// `--out`: `pipeline`, `train:SHAPE` (with the fp32 matmul peak its MFU is a fraction of),
    /// `generate:SHAPE:fp32` or `generate:SHAPE:bf16`. xtask runs each part on both sides back
    /// to back, so that a ratio is measured within minutes rather than across the whole run.
    #[arg(long, value_parser = Part::parse)]
    part: Option<Part>,
}

fn main() {
    allocator::tune();
    if let Err(err) = run(Args::parse()) {
        eprintln!("flan-bench: error: {err:#}");
        std::process::exit(1);
    }
}

fn emit(
    side: &str,
    group: &str,
    case: &str,
    unit: &str,
    samples: &[f64],
    extra: serde_json::Value,
) {
    let line = json!({
        "side": side, "group": group, "case": case, "unit": unit,
        "samples": samples, "extra": extra,
    });
    println!("{line}");
}

/// Runs `f` `warmup` times untimed, then `reps` times timed; returns the seconds of each timed run.
fn time_runs(warmup: usize, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

fn run(args: Args) -> Result<()> {
    if args.reps == 0 || args.pipeline_reps == 0 || args.threads == 0 || args.batch == 0 {
        bail!("--reps, --pipeline-reps, --threads and --batch must be at least 1");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    tch::set_num_threads(args.threads as i32);
    tch::set_num_interop_threads(1);
    if let Some(spec) = &args.step_memory {
        return step_memory(&args, spec);
    }
    if let Some(spec) = &args.train_variant {
        return train_variant(&args, spec);
    }
    if let Some(part) = &args.part {
        return run_part(&args, part);
    }
    prepare(&args)?;
    if args.prepare_only {
        return Ok(());
    }
    for part in Part::all(&args.shapes) {
        run_part(&args, &part)?;
    }
    Ok(())
}

/// One part of the bench: what one process of each side measures, back to back with the
/// other side's process when xtask runs them (`--part`).
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Template + mix + tokenize + pack.
    Pipeline,
    /// Training the shape's initial weights (packed, unpacked, activation checkpointing), with
    /// the fp32 matmul peak the MFU is a fraction of, measured just before.
    Train(String),
    /// Greedy decoding at batch 1 and 32 with the weights loaded as `Kind::Float` or
    /// `Kind::BFloat16`.
    Generate(String, Kind),
}

impl Part {
    /// `pipeline`, `train:SHAPE`, `generate:SHAPE:fp32` or `generate:SHAPE:bf16`, the spelling
    /// xtask and `hf_bench.py` share.
    fn parse(text: &str) -> std::result::Result<Part, String> {
        let fields: Vec<&str> = text.split(':').collect();
        match fields[..] {
            ["pipeline"] => Ok(Part::Pipeline),
            ["train", shape] if !shape.is_empty() => Ok(Part::Train(shape.to_string())),
            ["generate", shape, "fp32"] if !shape.is_empty() => {
                Ok(Part::Generate(shape.to_string(), Kind::Float))
            }
            ["generate", shape, "bf16"] if !shape.is_empty() => {
                Ok(Part::Generate(shape.to_string(), Kind::BFloat16))
            }
            _ => Err(format!(
                "expected pipeline, train:SHAPE, generate:SHAPE:fp32 or generate:SHAPE:bf16, \
                 got `{text}`"
            )),
        }
    }

    /// Every part of a run over `shapes`, in the order xtask runs them.
    fn all(shapes: &[String]) -> Vec<Part> {
        let mut parts = vec![Part::Pipeline];
        for shape in shapes {
            parts.push(Part::Train(shape.clone()));
            parts.push(Part::Generate(shape.clone(), Kind::Float));
            parts.push(Part::Generate(shape.clone(), Kind::BFloat16));
        }
        parts
    }
}

/// Writes the inputs both sides share into `--out`: the tokenizer, the training examples and
/// prompts as token ids, and each shape's initial weights.
fn prepare(args: &Args) -> Result<()> {
    // rayon's global pool (the tokenizer's) sizes itself from RAYON_NUM_THREADS, set by xtask.
    let mixture = Arc::new(cot_mixture(&args.data)?);
    let tokenizer = Arc::new(tokenizer(&mixture, &args.out)?);
    let mixture = Arc::new(cot_mixture(&args.data)?.with_tokenizer(tokenizer.clone()));

    // The training examples and prompts both sides use, as token ids.
    let examples = mixture.stream(1).next_batch(args.train_examples)?;
    let train = tokenize_examples(&tokenizer, &examples, args.input_len, args.target_len)?;
    write_ids(&args.out.join("train_examples.jsonl"), &train)?;
    let prompts: Vec<Vec<u32>> = train
        .iter()
        .take(32)
        .map(|e| e.inputs[..e.inputs.len().min(64)].to_vec())
        .collect();
    std::fs::write(
        args.out.join("prompts.json"),
        serde_json::to_string(&prompts)?,
    )?;
    for shape in &args.shapes {
        let config = shape_config(shape, tokenizer.vocab_size() as i64)?;
        initial_model(args.out.as_path(), shape, &config)?;
    }
    Ok(())
}

/// Measures one part from the inputs [`prepare`] left in `--out`.
fn run_part(args: &Args, part: &Part) -> Result<()> {
    match part {
        Part::Pipeline => bench_pipeline(args),
        Part::Train(shape) => {
            let peak = matmul_peak(args.warmup, args.reps)?;
            emit(
                "ours",
                "matmul peak",
                &format!("libtorch fp32 matmul 1024^3, before train {shape}"),
                "GFLOP/s",
                &peak.iter().map(|f| f / 1e9).collect::<Vec<_>>(),
                json!({}),
            );
            let train = read_ids(&args.out.join("train_examples.jsonl"))?;
            bench_training(args, shape, &train, median(&peak))
        }
        Part::Generate(shape, kind) => {
            let path = args.out.join("prompts.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {} (run with --prepare-only first)",
                    path.display()
                )
            })?;
            let prompts: Vec<Vec<u32>> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a list of token id lists", path.display()))?;
            bench_generation(args, shape, &prompts, *kind)
        }
    }
}

/// (4) Data pipeline: template + mix + tokenize + pack, examples/s.
fn bench_pipeline(args: &Args) -> Result<()> {
    let tokenizer = Arc::new(Tokenizer::from_file(args.out.join("tokenizer.json"))?);
    let mixture = Arc::new(cot_mixture(&args.data)?.with_tokenizer(tokenizer.clone()));
    let mut stream = mixture.stream(0);
    let (n, il, tl) = (args.pipeline_examples, args.input_len, args.target_len);
    let mut packed_rows = 0usize;
    let warmup_runs = args.warmup + args.pipeline_warmup_examples.div_ceil(n.max(1));
    let secs = time_runs(warmup_runs, args.pipeline_reps, || {
        let tokenized = next_tokenized(&mut stream, &tokenizer, n, il, tl)?;
        let mut packer = Packer::new(32, il, tl)?;
        packed_rows = 0;
        for t in &tokenized {
            packed_rows += packer.push(t).map_or(0, |b| b.batch_size);
        }
        packed_rows += packer.finish().map_or(0, |b| b.batch_size);
        Ok(())
    })?;
    let rates: Vec<f64> = secs.iter().map(|s| n as f64 / s).collect();
    emit(
        "ours",
        "data pipeline",
        "flan-data template+mix+tokenize+pack",
        "examples/s",
        &rates,
        json!({"examples": n, "packed_rows": packed_rows, "threads": args.threads,
               "warmup_examples": warmup_runs * n}),
    );
    Ok(())
}

fn cot_mixture(data: &Path) -> Result<Mixture> {
    let tasks: String = COT_TASKS
        .iter()
        .map(|n| {
            format!(
                "[[tasks]]\nname = \"cot_{n}\"\nformat = \"cot_tsv\"\npath = \"flan-cot/{n}_train.tsv\"\nsubmixture = \"cot\"\n"
            )
        })
        .collect();
    let spec = MixtureSpec::from_toml(&tasks, "bench")?;
    Mixture::from_spec(&spec, data)
        .with_context(|| format!("reading the Flan CoT sets under {}", data.display()))
}

/// An 8k Unigram tokenizer trained on the mixture, cached in `out` (the Python side loads it too).
fn tokenizer(mixture: &Arc<Mixture>, out: &Path) -> Result<Tokenizer> {
    let path = out.join("tokenizer.json");
    if path.exists() {
        return Ok(Tokenizer::from_file(&path)?);
    }
    let tok = flan_data::pipeline::train_tokenizer_on_mixture(mixture, 0, 20_000, 8000)?;
    tok.save(&path)?;
    Ok(tok)
}

fn write_ids(path: &Path, examples: &[TokenizedExample]) -> Result<()> {
    let text: String = examples
        .iter()
        .map(|e| format!("{}\n", json!({"inputs": e.inputs, "targets": e.targets})))
        .collect();
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// T5 v1.1 (gated-gelu, untied head) shapes of the speed goals (see docs/performance.md).
fn shape_config(shape: &str, tokenizer_vocab: i64) -> Result<T5Config> {
    let (vocab, d_model, d_kv, d_ff, layers) = match shape {
        "tiny" => (8192, 256, 32, 640, 4),
        "small" => (32128, 512, 64, 1024, 8),
        other => bail!("unknown shape `{other}` (expected tiny or small)"),
    };
    Ok(T5Config::new_small(
        vocab.max(tokenizer_vocab),
        d_model,
        d_kv,
        d_ff,
        layers,
        layers,
        d_model / d_kv,
        "gated-gelu",
        false,
    ))
}

/// Matmul FLOPs per real token of a forward pass (weights only; attention scores are left out):
/// `(encoder, decoder)`. The decoder includes the cross-attention's query/output projections and
/// the head; the cross-attention keys/values are per encoder token, so they count there.
fn flops_per_token(c: &T5Config) -> (f64, f64) {
    let (d, inner, ff) = (
        c.d_model as f64,
        (c.num_heads * c.d_kv) as f64,
        c.d_ff as f64,
    );
    let attn = 4.0 * d * inner;
    let ffn = 3.0 * d * ff;
    let enc = c.num_layers as f64 * (attn + ffn) + c.num_decoder_layers() as f64 * 2.0 * d * inner;
    let dec =
        c.num_decoder_layers() as f64 * (attn + 2.0 * d * inner + ffn) + d * c.vocab_size as f64;
    (2.0 * enc, 2.0 * dec)
}

/// (1) Training the shape's initial weights from `OUT/model-SHAPE`; the MFU lines are
/// fractions of `peak` (FLOP/s).
fn bench_training(args: &Args, shape: &str, train: &[TokenizedExample], peak: f64) -> Result<()> {
    let dir = args.out.join(format!("model-{shape}"));
    let (model, _) = T5ForConditionalGeneration::from_pretrained(&dir, Device::Cpu, Kind::Float)
        .with_context(|| format!("{} (run with --prepare-only first)", dir.display()))?;
    let config = model.config().clone();
    let params: Vec<NamedParam> = model
        .named_parameters()
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();

    let real_in: usize = train.iter().map(|e| e.inputs.len()).sum();
    let real_tgt: usize = train.iter().map(|e| e.targets.len()).sum();
    let real = (real_in + real_tgt) as f64;
    let (fe, fd) = flops_per_token(&config);
    let train_flops = 3.0 * (fe * real_in as f64 + fd * real_tgt as f64);
    let group = format!("train {shape}");

    // Training flushes denormals, as `flan train` does by default (see flan_model::denormals);
    // generation below keeps exact numerics. The packed line is also paired with transformers
    // flushing them too (`hf_bench.py --flush-denormals-train-only`).
    let flush = if cfg!(target_arch = "x86_64") {
        Some(FlushDenormals::enter()?)
    } else {
        None
    };

    // (1a) Packed: rows of input_len / target_len, as many as the examples fill.
    let (packed, stats) = packed_batches(args, train)?;
    let secs = timed_packed_training(args, &model, &packed, &params)?;
    let rates: Vec<f64> = secs.iter().map(|s| real / s).collect();
    let mfu: Vec<f64> = secs.iter().map(|s| train_flops / s / peak).collect();
    emit(
        "ours",
        &group,
        "ours packed",
        "real tokens/s",
        &rates,
        json!({"batches": packed.len(), "pack_efficiency": stats.efficiency(), "mfu_median": median(&mfu)}),
    );
    emit(
        "ours",
        &format!("{group}, both flush denormals"),
        "ours packed (same run)",
        "real tokens/s",
        &rates,
        json!({}),
    );
    emit(
        "ours",
        &format!("mfu {shape}"),
        "ours packed",
        "fraction of matmul peak",
        &mfu,
        json!({}),
    );

    // (1c) Activation checkpointing, off and on in alternating runs of the packed case: the
    // time of a pass over the batches here, the memory of one step in fresh processes.
    let mut opt = Adafactor::new(AdafactorConfig::default())?;
    let mut times = [Vec::new(), Vec::new()];
    for rep in 0..args.warmup + args.reps {
        for (on, out) in [false, true].into_iter().zip(times.iter_mut()) {
            model.set_activation_checkpointing(on)?;
            let t = Instant::now();
            for b in &packed {
                packed_step(&model, b, &params, &mut opt)?;
            }
            if rep >= args.warmup {
                out.push(t.elapsed().as_secs_f64());
            }
        }
    }
    model.set_activation_checkpointing(false)?;
    let group = format!("{group}, activation checkpointing");
    for (case, secs) in ["plain", "checkpointed"].iter().zip(&times) {
        emit(
            "ours",
            &group,
            &format!("ours packed, {case}"),
            "real tokens/s",
            &secs.iter().map(|s| real / s).collect::<Vec<_>>(),
            json!({"seconds_median": median(secs)}),
        );
    }
    let group = format!("activation memory {shape}");
    for (mode, case) in [("off", "plain"), ("on", "checkpointed")] {
        let mut mb = Vec::new();
        let mut extra = json!({});
        for _ in 0..args.memory_reps {
            let m = measure_step_memory(args, shape, mode)?;
            mb.push(m.growth_mb());
            extra = json!({"rows": m.rows, "input_len": args.input_len, "target_len": args.target_len,
                           "gradients_mb": m.gradients_mb, "step_seconds": m.seconds});
        }
        emit(
            "ours",
            &group,
            &format!("ours packed step, {case}"),
            "MB peak RSS growth",
            &mb,
            extra,
        );
    }
    let group = format!("train {shape}");

    // (1b) Unpacked: the batches transformers' side trains on, each padded to its longest
    // example. "ours unpacked" takes them as `flan train` takes a batch without packing (one
    // example per row, the blocks on the tokens alone, the head on the targets alone);
    // "ours unpacked, padded pass" through `forward_with_labels`, transformers' computation,
    // padding slots included (labels -100 on padding).
    let unpacked: Vec<&[TokenizedExample]> = train.chunks(args.batch).collect();
    let as_trained = unpacked
        .iter()
        .map(|chunk| {
            let (li, lt) = longest(chunk);
            flan_train::batch::packed_tensors(&PackedBatch::unpacked(chunk, li, lt), Device::Cpu)
        })
        .collect::<flan_train::Result<Vec<_>>>()?;
    let padded: Vec<(Tensor, Tensor, Tensor)> =
        unpacked.iter().map(|chunk| padded_batch(chunk)).collect();
    let mut opt = Adafactor::new(AdafactorConfig::default())?;
    let as_trained_secs = time_runs(args.warmup, args.reps, || {
        for batch in &as_trained {
            packed_step(&model, batch, &params, &mut opt)?;
        }
        Ok(())
    })?;
    let mut opt = Adafactor::new(AdafactorConfig::default())?;
    let padded_secs = time_runs(args.warmup, args.reps, || {
        for (ids, mask, labels) in &padded {
            let (_, loss) = model.forward_with_labels(ids, mask, labels, true);
            step(&params, &loss, &mut opt)?;
        }
        Ok(())
    })?;
    for (case, secs) in [
        ("ours unpacked", &as_trained_secs),
        ("ours unpacked, padded pass", &padded_secs),
    ] {
        let rates: Vec<f64> = secs.iter().map(|s| real / s).collect();
        let mfu: Vec<f64> = secs.iter().map(|s| train_flops / s / peak).collect();
        emit(
            "ours",
            &group,
            case,
            "real tokens/s",
            &rates,
            json!({"batches": unpacked.len(), "mfu_median": median(&mfu)}),
        );
        emit(
            "ours",
            &format!("mfu {shape}"),
            case,
            "fraction of matmul peak",
            &mfu,
            json!({}),
        );
    }

    drop(flush);
    Ok(())
}

/// (2) Greedy decoding of `args.new_tokens` tokens with the KV cache from the weights in
/// `OUT/model-SHAPE` loaded as `kind`: `--gen-single` prompts one at a time, then all of `prompts` as one padded
/// batch. The weights are the saved initial ones (training changes its own copy, and the
/// Python side trains differently), so both sides decode the same network and must agree on
/// the tokens: in fp32, and with bf16 weights (how Flan-T5 is usually run; bf16 throughout on
/// both sides).
fn bench_generation(args: &Args, shape: &str, prompts: &[Vec<u32>], kind: Kind) -> Result<()> {
    let precision = if kind == Kind::BFloat16 { " bf16" } else { "" };
    let dir = args.out.join(format!("model-{shape}"));
    let (model, _) = T5ForConditionalGeneration::from_pretrained(&dir, Device::Cpu, kind)
        .with_context(|| format!("{} (run with --prepare-only first)", dir.display()))?;
    let cfg = GenerationConfig::greedy(args.new_tokens);
    let singles = &prompts[..args.gen_single.min(prompts.len())];
    let mut produced = 0usize;
    let mut checksum = 0i64;
    let secs = time_runs(args.warmup, args.reps, || {
        produced = 0;
        checksum = 0;
        for p in singles {
            let (ids, mask, _) = padded_batch(&[TokenizedExample {
                inputs: p.clone(),
                targets: vec![1],
            }]);
            let out = tch::no_grad(|| generate(&model, &ids, &mask, &cfg))?;
            produced += out[0][0].token_ids.len();
            checksum += ids_checksum(&out[0][0].token_ids);
        }
        Ok(())
    })?;
    emit(
        "ours",
        &format!("generate {shape}{precision} batch 1"),
        "ours greedy",
        "new tokens/s",
        &secs.iter().map(|s| produced as f64 / s).collect::<Vec<_>>(),
        json!({"new_tokens": produced, "checksum": checksum,
               "step_kernels": kernels_json(&model)}),
    );
    let batch: Vec<TokenizedExample> = prompts
        .iter()
        .map(|p| TokenizedExample {
            inputs: p.clone(),
            targets: vec![1],
        })
        .collect();
    let (ids, mask, _) = padded_batch(&batch);
    let secs = time_runs(args.warmup, args.reps, || {
        let out = tch::no_grad(|| generate(&model, &ids, &mask, &cfg))?;
        produced = out.iter().map(|o| o[0].token_ids.len()).sum();
        checksum = out.iter().map(|o| ids_checksum(&o[0].token_ids)).sum();
        Ok(())
    })?;
    emit(
        "ours",
        &format!("generate {shape}{precision} batch {}", batch.len()),
        "ours greedy",
        "new tokens/s",
        &secs.iter().map(|s| produced as f64 / s).collect::<Vec<_>>(),
        json!({"new_tokens": produced, "checksum": checksum,
               "step_kernels": kernels_json(&model)}),
    );
    Ok(())
}

/// Which kernels the decoding steps' products use (see flan_model::prepacked_linear).
fn kernels_json(model: &T5ForConditionalGeneration) -> serde_json::Value {
    let stats = model.prepacked_decoding_stats();
    json!({"planned": stats.checked, "packed": stats.in_use, "chunked": stats.chunked,
           "trying": stats.trying, "stacked": stats.stacked, "fma": stats.fma,
           "four_lanes": stats.four_lanes, "bf16_dots": stats.bf16_dots,
           "short_of_memory": stats.short_of_memory,
           "copies_mb": held_copy_bytes() as f64 / 1e6})
}

/// A position-weighted sum of ids: equal on both sides when greedy decoding picked the same tokens.
fn ids_checksum(ids: &[i64]) -> i64 {
    ids.iter()
        .enumerate()
        .map(|(i, &t)| (i as i64 + 1) * t)
        .sum()
}

/// The longest inputs and targets of `examples` (at least 1): what a batch pads to.
fn longest(examples: &[TokenizedExample]) -> (usize, usize) {
    let li = examples.iter().map(|e| e.inputs.len()).max().unwrap_or(1);
    let lt = examples.iter().map(|e| e.targets.len()).max().unwrap_or(1);
    (li.max(1), lt.max(1))
}

/// `(input_ids, attention_mask, labels)` padded to the longest example; labels -100 on padding.
fn padded_batch(examples: &[TokenizedExample]) -> (Tensor, Tensor, Tensor) {
    let (li, lt) = longest(examples);
    let b = PackedBatch::unpacked(examples, li, lt);
    let shape = |l: usize| [b.batch_size as i64, l as i64];
    let ids = Tensor::from_slice(&b.encoder_input_tokens).view(shape(li));
    let mask = Tensor::from_slice(&b.encoder_segment_ids).view(shape(li));
    let labels: Vec<i64> = b
        .decoder_target_tokens
        .iter()
        .zip(&b.decoder_segment_ids)
        .map(|(&t, &s)| if s == 0 { -100 } else { t })
        .collect();
    let labels = Tensor::from_slice(&labels).view(shape(lt));
    (ids, mask, labels)
}

/// The shape's initial weights (seeded), saved to `OUT/model-SHAPE` for the Python side and
/// for `--train-variant` runs.
/// Writes the shape's initial weights to `OUT/model-SHAPE` in the HF layout (seed 0).
fn initial_model(out: &Path, shape: &str, config: &T5Config) -> Result<()> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = T5ForConditionalGeneration::new(&vs.root(), config)?;
    // Random weights: never pick pad (0) or EOS (1), so that every sequence runs the full
    // `new_tokens` steps on both sides (their logits become exactly 0, below the maximum).
    tch::no_grad(|| {
        for (name, w) in model.named_parameters() {
            if name == "lm_head.weight" {
                let _ = w.narrow(0, 0, 2).zero_();
            }
        }
    });
    model.save_pretrained(out.join(format!("model-{shape}")))?;
    Ok(())
}

/// `--train-variant SHAPE,VARIANT`: trains the shape's initial weights from `OUT/model-SHAPE`
/// over the packed batches of the examples a run wrote, `--warmup` untimed and `--reps` timed
/// passes with Adafactor, as `flan train` steps (denormals flushed), and prints the real
/// tokens/s and this process's peak RSS. `lora` is PEFT's default T5 adapter at r = 8 (q and v,
/// alpha 8), the base frozen; `checkpointing` is full training with activation checkpointing,
/// `lora-checkpointing` the LoRA run with it.
fn train_variant(args: &Args, spec: &str) -> Result<()> {
    let Some((shape, variant)) = spec.split_once(',') else {
        bail!("--train-variant takes SHAPE,full|lora|checkpointing, got `{spec}`");
    };
    let dir = args.out.join(format!("model-{shape}"));
    let (model, _) = T5ForConditionalGeneration::from_pretrained(&dir, Device::Cpu, Kind::Float)
        .with_context(|| format!("{} (run flan-bench --prepare-only first)", dir.display()))?;
    let all: Vec<NamedParam> = model
        .named_parameters()
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let (params, case) = match variant {
        "full" => (all, "ours full"),
        "checkpointing" => {
            model.set_activation_checkpointing(true)?;
            (all, "ours full, activation checkpointing")
        }
        "lora" | "lora-checkpointing" => {
            for (_, p) in &all {
                let _ = p.shallow_clone().set_requires_grad(false);
            }
            let targets = ModuleSelector::Names(vec!["q".into(), "v".into()]);
            tch::manual_seed(0);
            model.add_lora(&LoraConfig::new(8, 8.0, 0.0, targets), LoraInit::Peft)?;
            if variant == "lora" {
                (model.adapter_parameters(), "ours lora r=8 q,v")
            } else {
                model.set_activation_checkpointing(true)?;
                (
                    model.adapter_parameters(),
                    "ours lora r=8 q,v, activation checkpointing",
                )
            }
        }
        other => bail!(
            "--train-variant: expected full, lora, checkpointing or lora-checkpointing, got `{other}`"
        ),
    };
    let train = read_ids(&args.out.join("train_examples.jsonl"))?;
    let real: usize = train.iter().map(|e| e.inputs.len() + e.targets.len()).sum();
    let (packed, _) = packed_batches(args, &train)?;
    let loaded = proc_status_kb("VmRSS")?;
    let _flush = if cfg!(target_arch = "x86_64") {
        Some(FlushDenormals::enter()?)
    } else {
        None
    };
    let secs = timed_packed_training(args, &model, &packed, &params)?;
    let peak = proc_status_kb("VmHWM")?;
    let trainable: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    let group = match variant {
        "lora" => format!("train lora {shape}"),
        "full" => format!("train full {shape}, one process"),
        other => format!("train {other} {shape}"),
    };
    emit(
        "ours",
        &group,
        case,
        "real tokens/s",
        &secs.iter().map(|s| real as f64 / s).collect::<Vec<_>>(),
        json!({"batches": packed.len(), "trainable_parameters": trainable}),
    );
    emit(
        "ours",
        &format!("peak memory {variant} {shape}"),
        case,
        "MB peak RSS",
        &[peak / 1024.0],
        json!({"rss_after_load_mb": loaded / 1024.0}),
    );
    Ok(())
}

/// The examples packed t5x-style into rows of `--input-len` / `--target-len`, 8 rows a batch.
fn packed_batches(
    args: &Args,
    train: &[TokenizedExample],
) -> Result<(Vec<PackedTensors>, flan_data::pack::PackStats)> {
    let (packed, stats) = flan_data::pack::pack_all(train, 8, args.input_len, args.target_len)?;
    let packed = packed
        .iter()
        .map(|b| flan_train::batch::packed_tensors(b, Device::Cpu))
        .collect::<flan_train::Result<_>>()?;
    Ok((packed, stats))
}

/// `--warmup` untimed and `--reps` timed passes of Adafactor steps over `packed`, training
/// `params`; the seconds of each timed pass.
fn timed_packed_training(
    args: &Args,
    model: &T5ForConditionalGeneration,
    packed: &[PackedTensors],
    params: &[NamedParam],
) -> Result<Vec<f64>> {
    let mut opt = Adafactor::new(AdafactorConfig::default())?;
    time_runs(args.warmup, args.reps, || {
        for b in packed {
            packed_step(model, b, params, &mut opt)?;
        }
        Ok(())
    })
}

/// One step over a packed batch as `flan train` takes it: the head and the loss on target
/// positions only, backpropagated through `TargetLogits::backward` (which recomputes the blocks
/// when activation checkpointing is on).
fn packed_step(
    model: &T5ForConditionalGeneration,
    batch: &PackedTensors,
    params: &[NamedParam],
    opt: &mut Adafactor,
) -> Result<()> {
    zero_grads(params);
    let out = model.forward_packed_targets(batch, true);
    let loss = out.mean_loss();
    out.backward(&loss)?;
    opt.step(params, 1e-3)?;
    Ok(())
}

fn zero_grads(params: &[NamedParam]) {
    for (_, p) in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// What [`step_memory`] measured in a fresh process.
#[derive(Debug, serde::Deserialize)]
struct StepMemory {
    rows: i64,
    rss_before_kb: f64,
    peak_rss_kb: f64,
    gradients_mb: f64,
    seconds: f64,
}

impl StepMemory {
    /// How far the peak RSS rose above the RSS before the step: the step's activations (and
    /// whatever the allocator could not reuse). The gradients were allocated before.
    fn growth_mb(&self) -> f64 {
        (self.peak_rss_kb - self.rss_before_kb) / 1024.0
    }
}

/// Runs this binary again with `--step-memory SHAPE,MODE` and reads what it measured.
fn measure_step_memory(args: &Args, shape: &str, mode: &str) -> Result<StepMemory> {
    let exe = std::env::current_exe().context("cannot find flan-bench's own executable")?;
    let out = std::process::Command::new(exe)
        .arg("--out")
        .arg(&args.out)
        .args(["--threads", &args.threads.to_string()])
        .args(["--input-len", &args.input_len.to_string()])
        .args(["--target-len", &args.target_len.to_string()])
        .args(["--step-memory", &format!("{shape},{mode}")])
        .output()
        .context("cannot run flan-bench --step-memory")?;
    if !out.status.success() {
        bail!(
            "flan-bench --step-memory {shape},{mode} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("flan-bench --step-memory printed `{line}`"))
}

/// `--step-memory SHAPE,off|on`: in this fresh process, builds the shape's model, warms up
/// on a one-row batch of 16 + 8 tokens (so that the gradients and libtorch's one-time state
/// exist), then takes one training step (forward and backward, no optimizer) on the first
/// packed batch of the examples a full run wrote, and prints the RSS before it and the peak
/// RSS after it as one JSON line. glibc's heap is never trimmed here (see `allocator`), so the
/// peak stays the step's high-water mark.
fn step_memory(args: &Args, spec: &str) -> Result<()> {
    let Some((shape, mode)) = spec.split_once(',') else {
        bail!("--step-memory takes SHAPE,off|on, got `{spec}`");
    };
    let on = match mode {
        "on" => true,
        "off" => false,
        other => bail!("--step-memory: expected off or on after the comma, got `{other}`"),
    };
    let tokenizer = Tokenizer::from_file(args.out.join("tokenizer.json"))?;
    let config = shape_config(shape, tokenizer.vocab_size() as i64)?;
    let train = read_ids(&args.out.join("train_examples.jsonl"))?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = T5ForConditionalGeneration::new(&vs.root(), &config)?;
    model.set_activation_checkpointing(on)?;
    let (packed, _) = flan_data::pack::pack_all(&train, 8, args.input_len, args.target_len)?;
    let first = packed.first().context("no training examples to pack")?;
    let batch = flan_train::batch::packed_tensors(first, Device::Cpu)?;
    let short: Vec<TokenizedExample> = train
        .iter()
        .take(1)
        .map(|e| TokenizedExample {
            inputs: e.inputs.iter().copied().take(15).chain([1]).collect(),
            targets: e.targets.iter().copied().take(7).chain([1]).collect(),
        })
        .collect();
    let (warm, _) = flan_data::pack::pack_all(&short, 1, 16, 8)?;
    let warm = flan_train::batch::packed_tensors(&warm[0], Device::Cpu)?;
    let _flush = if cfg!(target_arch = "x86_64") {
        Some(FlushDenormals::enter()?)
    } else {
        None
    };
    let fwd_bwd = |b: &PackedTensors| -> Result<()> {
        let out = model.forward_packed_targets(b, true);
        let loss = out.mean_loss();
        out.backward(&loss)?;
        Ok(())
    };
    fwd_bwd(&warm)?;
    let gradients: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64 * 4)
        .sum();
    let before = proc_status_kb("VmRSS")?;
    let t = Instant::now();
    fwd_bwd(&batch)?;
    let seconds = t.elapsed().as_secs_f64();
    let peak = proc_status_kb("VmHWM")?;
    println!(
        "{}",
        json!({"rows": batch.encoder_input_tokens.size()[0], "rss_before_kb": before,
               "peak_rss_kb": peak, "gradients_mb": gradients as f64 / 1048576.0,
               "seconds": seconds})
    );
    Ok(())
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(field: &str) -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status (peak memory is measured on Linux)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// The examples `write_ids` wrote.
fn read_ids(path: &Path) -> Result<Vec<TokenizedExample>> {
    #[derive(serde::Deserialize)]
    struct Ids {
        inputs: Vec<u32>,
        targets: Vec<u32>,
    }
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (run flan-bench --prepare-only first)",
            path.display()
        )
    })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let ids: Ids = serde_json::from_str(line)
                .with_context(|| format!("{}:{}", path.display(), i + 1))?;
            Ok(TokenizedExample {
                inputs: ids.inputs,
                targets: ids.targets,
            })
        })
        .collect()
}

fn step(params: &[NamedParam], loss: &Tensor, opt: &mut Adafactor) -> Result<()> {
    for (_, p) in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    loss.backward();
    opt.step(params, 1e-3)?;
    Ok(())
}

/// FLOP/s of fp32 1024x1024 matmuls, one value per timed run.
fn matmul_peak(warmup: usize, reps: usize) -> Result<Vec<f64>> {
    let n = 1024i64;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let c = Tensor::zeros([n, n], (Kind::Float, Device::Cpu));
    let inner = 10;
    let secs = time_runs(warmup, reps, || {
        for _ in 0..inner {
            let _ = a.mm_out(&c, &b);
        }
        Ok(())
    })?;
    Ok(secs
        .iter()
        .map(|s| inner as f64 * 2.0 * (n * n * n) as f64 / s)
        .collect())
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_a_run_parses_back_from_its_spelling() {
        let shapes = ["tiny".to_string(), "small".to_string()];
        let spelled = [
            "pipeline",
            "train:tiny",
            "generate:tiny:fp32",
            "generate:tiny:bf16",
            "train:small",
            "generate:small:fp32",
            "generate:small:bf16",
        ];
        let parsed: Vec<Part> = spelled.iter().map(|p| Part::parse(p).unwrap()).collect();
        assert_eq!(parsed, Part::all(&shapes));
        for bad in [
            "",
            "train",
            "train:",
            "generate:tiny",
            "generate:tiny:fp16",
            "pipeline:x",
        ] {
            assert!(Part::parse(bad).is_err(), "{bad}");
        }
    }
}
