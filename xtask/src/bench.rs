//! `cargo xtask bench [--quick] [--threads N] [--out DIR] [--shapes S] [--reps N] [--isa ISA]`: our
//! speed next to Hugging Face `transformers` / `tokenizers` on the same machine, libtorch, shapes, data
//! and weights, in one run.
//!
//! 0. reads the CPU (`/proc/cpuinfo`: model, vendor, cores, ISA flags), refuses an `--isa` the CPU
//!    lacks, and asks torch in the sides' environment which kernels it picks
//!    (`xtask/bench/torch_probe.py`: ATen's CPU capability, oneDNN's ISA, MKL/oneDNN versions);
//! 1. builds `flan-bench` (flan-cli) in release and has it prepare the shared inputs in the
//!    output directory (tokenizer, token ids, the models saved in the HF layout);
//! 2. runs the bench in parts ([`parts`]: the data pipeline, then per shape its training, its
//!    fp32 decoding and its bf16 decoding), each part first in `flan-bench --part` and then in
//!    `xtask/bench/hf_bench.py --part` (the xtask venv) on the same inputs; a training part
//!    runs transformers once more with denormals flushed (our training flushes them by default;
//!    the table pairs ours with both). The two halves of a ratio are so minutes apart, not the
//!    length of the run: on a shared host a load that came and went between the halves moved
//!    the small shape's ratios by up to a fifth when ours all ran first. The pipeline and each
//!    decoding part run in several such rounds (`--rounds`), each line tagged with its round;
//!    training, half an hour a round at the small shape, runs once;
//! 3. pairs the JSON lines of both sides by group and round and writes `results.json` and
//!    `results.md` (median and spread over all rounds' timed runs, the ratio ours/theirs as the
//!    median of the rounds' ratios, the speed goal of the group) under `target/bench/` by default,
//!    with the `machine` record of step 0 (results.md: a heading and a "Measured on" block).
//!
//! `--isa avx2|avx512` runs every process of both sides (and the probe) with libtorch's kernels
//! capped to that ISA ([`crate::isa`]: `ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA`,
//! `MKL_ENABLE_INSTRUCTIONS`, the caps of CI's AVX2 pass), so one machine shows how the ratios
//! hold on the kernels of a lower CPU. Such a run writes to `target/bench/isa-<ISA>/` by default,
//! next to the native run rather than over it, and records the cap in the machine record and the
//! heading; the probe must report the capped ATen capability or the run stops.
//!
//! Absolute figures on a shared CPU are noise; the ratios, measured side by side with the same
//! thread count, are what this is for. Never part of tests or CI.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::isa::{self, Isa};
use crate::{libtorch, process};

mod machine;

use machine::{CpuInfo, Machine, TorchKernels};

/// Python packages the bench script imports besides torch.
const PACKAGES: [&str; 5] = ["transformers", "tokenizers", "safetensors", "numpy", "peft"];

/// What a run measures; `--quick` keeps it to a few minutes.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    quick: bool,
    /// The ISA libtorch's kernels are capped to on both sides.
    isa: Isa,
    train_variants: bool,
    threads: usize,
    out: PathBuf,
    shapes: String,
    warmup: usize,
    reps: usize,
    train_examples: usize,
    pipeline_examples: usize,
    /// Timed runs of the pipeline whatever `--reps` says: a run takes our side about 0.1 s, so
    /// one sample (`--reps 1`, as small-shape runs take) was one scheduling hiccup away from
    /// missing the goal, and seven cost transformers' side seconds.
    pipeline_reps: usize,
    /// Examples streamed through both pipelines untimed first (caches fill as in a long run).
    pipeline_warmup_examples: usize,
    gen_single: usize,
    /// Rounds of each part but training ([`rounds_of`]), our side then the other in each; a
    /// ratio is the median of the rounds' ratios. On a shared host whose speed moved by a third
    /// within minutes, one round put the small shape's fp32 batch-32 ratio anywhere from 1.40
    /// to 2.03; a pair of halves seconds apart shares the host's state, and the median of
    /// several such pairs is what a single pair only sometimes is.
    rounds: usize,
}

/// `cargo xtask bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The tiny shape only, fewer runs: a few minutes.
    #[arg(long)]
    quick: bool,
    /// Threads on both sides (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Output directory (default target/bench/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Shapes to run: tiny, small or tiny,small.
    #[arg(long, value_parser = ["tiny", "small", "tiny,small", "small,tiny"])]
    shapes: Option<String>,
    /// Timed runs per case.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    reps: Option<u64>,
    /// Rounds of the data pipeline and of each decoding part, ours then theirs in each
    /// (default 3 with --quick, else 5); training runs once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,
    /// Only the training variants, each in a process of its own so that its peak RSS is its
    /// own: full finetuning, LoRA r=8 on q,v, and each with activation checkpointing (ours),
    /// full and the same LoRA through peft (transformers).
    #[arg(long)]
    train_variants: bool,
    /// Cap libtorch's CPU kernels on both sides to this ISA (ATEN_CPU_CAPABILITY,
    /// ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS); a capped run writes to
    /// target/bench/isa-<ISA>/ unless --out says otherwise.
    #[arg(long, value_enum, default_value_t = Isa::Native)]
    isa: Isa,
}

fn settings(args: BenchArgs) -> Settings {
    let BenchArgs {
        quick,
        threads,
        out,
        shapes,
        reps,
        rounds,
        train_variants,
        isa,
    } = args;
    let threads = threads.map(|n| n as usize);
    let reps = reps.map(|n| n as usize);
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let out = out.unwrap_or_else(|| default_out(&process::workspace_root(), isa));
    let preset = if quick {
        Settings {
            quick,
            isa,
            train_variants,
            threads,
            out,
            shapes: "tiny".into(),
            warmup: 1,
            reps: 3,
            train_examples: 48,
            // Timed runs of 2048 examples took our side 15-30 ms, short enough for the host's
            // noise to move the pipeline's ratio between 8.9 and 11 from one run to the next
            // (spreads up to 42%). 8192, as the full bench takes, costs transformers' side a
            // few seconds more.
            pipeline_examples: 8192,
            pipeline_reps: 7,
            pipeline_warmup_examples: 40_000,
            // One 64-token generation is about 70 ms on our side: a timed run that short
            // took scheduler noise of up to 28% (spread over three runs). Four, as the full
            // bench has, cost transformers' side a few seconds more.
            gen_single: 4,
            rounds: 3,
        }
    } else {
        Settings {
            quick,
            isa,
            train_variants,
            threads,
            out,
            shapes: "tiny,small".into(),
            warmup: 2,
            reps: 7,
            train_examples: 256,
            pipeline_examples: 8192,
            pipeline_reps: 7,
            pipeline_warmup_examples: 40_000,
            gen_single: 4,
            rounds: 5,
        }
    };
    // A subset of the full bench, e.g. the small shape alone with fewer runs (the whole of it
    // takes over an hour on two cores).
    Settings {
        shapes: shapes.unwrap_or(preset.shapes),
        reps: reps.unwrap_or(preset.reps),
        rounds: rounds.map_or(preset.rounds, |n| n as usize),
        ..preset
    }
}

/// `target/bench/` for native kernels, `target/bench/isa-<ISA>/` for a capped run, so that a
/// capped run does not overwrite the native one.
fn default_out(root: &std::path::Path, isa: Isa) -> PathBuf {
    let bench = root.join("target").join("bench");
    match isa {
        Isa::Native => bench,
        isa => bench.join(format!("isa-{}", isa.name())),
    }
}

/// The environment every process of the bench runs in, the probe's included: libtorch's, the
/// thread counts both sides share, and the kernel caps.
struct SideEnv {
    libtorch: libtorch::Libtorch,
    threads: String,
    caps: Vec<(&'static str, String)>,
}

impl SideEnv {
    fn apply(&self, cmd: &mut Command) {
        self.libtorch.apply(cmd);
        cmd.env("RAYON_NUM_THREADS", &self.threads)
            .env("OMP_NUM_THREADS", &self.threads)
            .env("TOKENIZERS_PARALLELISM", "true");
        for (key, value) in &self.caps {
            cmd.env(key, value);
        }
    }
}

/// The arguments both sides take, in the same spelling.
fn common_args(s: &Settings) -> Vec<String> {
    let data = process::workspace_root()
        .join("..")
        .join("shared")
        .join("data");
    [
        ("--data", data.display().to_string()),
        ("--threads", s.threads.to_string()),
        ("--warmup", s.warmup.to_string()),
        ("--reps", s.reps.to_string()),
        ("--shapes", s.shapes.to_string()),
        ("--pipeline-examples", s.pipeline_examples.to_string()),
        ("--pipeline-reps", s.pipeline_reps.to_string()),
        (
            "--pipeline-warmup-examples",
            s.pipeline_warmup_examples.to_string(),
        ),
        ("--gen-single", s.gen_single.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect()
}

pub fn run(args: BenchArgs) -> Result<()> {
    let settings = settings(args);
    // Before anything is built: a cap the CPU cannot honour would fall back silently.
    let cpu = match (CpuInfo::read(), settings.isa) {
        (Ok(cpu), isa) => {
            isa.check_supported(&cpu.model, &cpu.flags)?;
            cpu
        }
        (Err(e), Isa::Native) => {
            eprintln!("bench: {e:#}; the machine record names only the architecture");
            CpuInfo::parse("")
        }
        (Err(e), isa) => {
            return Err(e.context(format!(
                "cannot check that this CPU has {} for --isa {}",
                isa.required_flags().join(" "),
                isa.name()
            )))
        }
    };
    let caps = isa::effective_caps(settings.isa, |k| std::env::var(k).ok());
    if settings.isa == Isa::Native && !caps.is_empty() {
        eprintln!(
            "bench: kernel caps set in your environment apply to both sides and are recorded: {}",
            caps.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let libtorch = libtorch::setup(libtorch::Verbosity::Quiet)?;
    let python = libtorch::venv_python()?;
    let root = process::workspace_root();
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("cannot create {}", settings.out.display()))?;

    libtorch::pip_install(&PACKAGES)?;
    let env = SideEnv {
        libtorch,
        threads: settings.threads.to_string(),
        caps,
    };
    let machine = probe_machine(&settings, cpu, &python, &env)?;
    eprintln!(
        "bench: torch {} picks ATen {} and oneDNN {} here",
        machine.torch.version,
        machine.torch.cpu_capability,
        if machine.torch.onednn_isa.is_empty() {
            "(not reported)"
        } else {
            &machine.torch.onednn_isa
        }
    );

    let flan_bench = process::build_release_bin(&env.libtorch, "flan-bench")?;
    if settings.train_variants {
        let lines = train_variants(&settings, &flan_bench, &python, &env)?;
        return write_report(&settings, &lines, &machine, &[]);
    }
    prepare_inputs(&settings, &flan_bench, &env)?;

    let hf_bench = root.join("xtask").join("bench").join("hf_bench.py");
    let mut lines = Vec::new();
    let mut timings = Vec::new();
    for part in parts(&settings.shapes) {
        let mut ours = Command::new(&flan_bench);
        ours.arg("--out")
            .arg(&settings.out)
            .args(common_args(&settings))
            .args(["--part", &part])
            .current_dir(&root);
        let mut theirs = Command::new(&python);
        theirs
            .arg(&hf_bench)
            .arg(&settings.out)
            .args(common_args(&settings))
            .args(["--part", &part])
            .current_dir(&root);
        let mut sides = vec![("ours", ours), ("transformers", theirs)];
        // transformers' training once more, flushing denormals as our side does (a process of
        // its own: the flag must be set before libtorch starts its threads, which inherit it).
        if part.starts_with("train:") {
            let mut flushed = Command::new(&python);
            flushed
                .arg(&hf_bench)
                .arg(&settings.out)
                .args(common_args(&settings))
                .args(["--part", &part, "--flush-denormals-train-only"])
                .current_dir(&root);
            sides.push(("transformers, denormals flushed", flushed));
        }
        for round in 0..rounds_of(&part, settings.rounds) {
            let mut timing = json!({"part": part, "round": round, "started": utc_now()});
            for (side, cmd) in &mut sides {
                let t = std::time::Instant::now();
                for mut line in capture_lines(cmd, &env)? {
                    line["round"] = json!(round);
                    lines.push(line);
                }
                timing[*side] = json!(t.elapsed().as_secs_f64().round());
            }
            eprintln!("bench: {timing}");
            timings.push(timing);
        }
    }
    write_report(&settings, &lines, &machine, &timings)
}

/// Has flan-bench write the inputs both sides read into the output directory (tokenizer, token
/// ids, each shape's initial weights).
fn prepare_inputs(settings: &Settings, flan_bench: &std::path::Path, env: &SideEnv) -> Result<()> {
    let mut prepare = Command::new(flan_bench);
    prepare
        .arg("--out")
        .arg(&settings.out)
        .args(["--train-examples", &settings.train_examples.to_string()])
        .args(common_args(settings))
        .arg("--prepare-only")
        .current_dir(process::workspace_root());
    capture_lines(&mut prepare, env)?;
    Ok(())
}

/// The parts of a run over `shapes` (comma separated), in the order they run; each is measured
/// by a process of each side back to back (`--part` of flan-bench and hf_bench.py), so that the
/// two halves of a ratio are minutes apart on a shared host rather than the whole run apart.
fn parts(shapes: &str) -> Vec<String> {
    let mut parts = vec!["pipeline".to_string()];
    for shape in shapes.split(',') {
        parts.extend([
            format!("train:{shape}"),
            format!("generate:{shape}:fp32"),
            format!("generate:{shape}:bf16"),
        ]);
    }
    parts
}

/// How many rounds `part` runs: training once (a round of the small shape's takes half an
/// hour), every other part `rounds` times.
fn rounds_of(part: &str, rounds: usize) -> usize {
    if part.starts_with("train:") {
        1
    } else {
        rounds
    }
}

/// Runs `torch_probe.py` in the sides' environment and puts its answer beside the CPU's; a cap
/// that torch did not take (its capability is not the capped one) stops the bench.
fn probe_machine(
    settings: &Settings,
    cpu: CpuInfo,
    python: &std::path::Path,
    env: &SideEnv,
) -> Result<Machine> {
    let root = process::workspace_root();
    let mut probe = Command::new(python);
    probe
        .arg(root.join("xtask").join("bench").join("torch_probe.py"))
        .current_dir(&root);
    let lines = capture_lines(&mut probe, env)?;
    let [answer] = &lines[..] else {
        bail!(
            "torch_probe.py printed {} JSON lines, expected one",
            lines.len()
        );
    };
    let torch = TorchKernels::from_json(answer)?;
    if let Some(expected) = settings.isa.expected_capability() {
        if torch.cpu_capability != expected {
            bail!(
                "under {} torch reports the CPU capability {}, not {expected}: this libtorch \
                 did not take the cap, so a bench would not measure --isa {}",
                settings.isa.caps_display(),
                torch.cpu_capability,
                settings.isa.name()
            );
        }
    }
    Ok(Machine {
        cpu,
        available_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: settings.threads,
        isa: settings.isa,
        caps: env.caps.clone(),
        same_libtorch: same_dir(&env.libtorch.dir, std::path::Path::new(&torch.dir)),
        torch,
    })
}

/// Whether two paths name one directory (through symlinks where both exist).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The training variants, each in a fresh process (see [`BenchArgs::train_variants`]).
fn train_variants(
    settings: &Settings,
    flan_bench: &std::path::Path,
    python: &std::path::Path,
    env: &SideEnv,
) -> Result<Vec<Value>> {
    let root = process::workspace_root();
    prepare_inputs(settings, flan_bench, env)?;
    let mut lines = Vec::new();
    for shape in settings.shapes.split(',') {
        for variant in ["full", "lora", "checkpointing", "lora-checkpointing"] {
            let mut ours = Command::new(flan_bench);
            ours.arg("--out")
                .arg(&settings.out)
                .args(common_args(settings))
                .args(["--train-variant", &format!("{shape},{variant}")])
                .current_dir(&root);
            lines.extend(capture_lines(&mut ours, env)?);
        }
        for variant in ["full", "lora"] {
            let mut theirs = Command::new(python);
            theirs
                .arg(root.join("xtask").join("bench").join("hf_bench.py"))
                .arg(&settings.out)
                .args(common_args(settings))
                .args(["--shapes", shape, "--train-variant", variant])
                .current_dir(&root);
            lines.extend(capture_lines(&mut theirs, env)?);
        }
    }
    Ok(lines)
}

/// Writes results.json and results.md under the output directory and prints the Markdown;
/// `timings` (when each part started and how many seconds each side's process took) go into
/// results.json as `parts`.
fn write_report(
    settings: &Settings,
    lines: &[Value],
    machine: &Machine,
    timings: &[Value],
) -> Result<()> {
    let report = Report::new(settings, lines, machine, timings, utc_now())?;
    let json_path = settings.out.join("results.json");
    let md_path = settings.out.join("results.md");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report.json)? + "\n",
    )
    .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&md_path, &report.markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    print!("{}", report.markdown);
    eprintln!(
        "bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

/// Runs `cmd` in the environment both sides share; stderr passes through, stdout is parsed as
/// JSON lines (anything else on stdout is an error: it would mean a side printed by accident).
fn capture_lines(cmd: &mut Command, env: &SideEnv) -> Result<Vec<Value>> {
    env.apply(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("$ {}", process::display(cmd));
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", process::display(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", process::display(cmd), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "stdout line {} of `{}` is not a JSON measurement: {l}",
                    i + 1,
                    process::display(cmd)
                )
            })
        })
        .collect()
}

/// Median, min and max of a line's samples.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// (max - min) / median, the spread printed next to each median.
    fn spread(&self) -> f64 {
        (self.max - self.min) / self.median
    }
}

/// The speed goal of a group (see docs/performance.md), as a ratio ours/theirs (or a fraction for MFU).
/// Batch 1 of the small shape in fp32 reads 166 MB of weights per token on both sides, which
/// bounds the ratio below 3× on a memory-bound CPU; bf16 halves those bytes.
fn goal(group: &str) -> Option<f64> {
    match group {
        g if g.starts_with("train ") => Some(1.5),
        "generate small batch 1" => Some(2.0),
        g if g.starts_with("generate ") && g.ends_with(" batch 1") => Some(3.0),
        g if g.starts_with("generate ") => Some(1.5),
        "mfu small" => Some(0.5),
        "data pipeline" => Some(10.0),
        _ => None,
    }
}

struct Report {
    json: Value,
    markdown: String,
}

fn field<'a>(line: &'a Value, key: &str) -> Result<&'a str> {
    line.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("measurement without a string `{key}`: {line}"))
}

impl Report {
    fn new(
        settings: &Settings,
        lines: &[Value],
        machine: &Machine,
        timings: &[Value],
        date: String,
    ) -> Result<Report> {
        let mut groups: Vec<&str> = Vec::new();
        for line in lines {
            let g = field(line, "group")?;
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let mut rows = Vec::new();
        let mut md = format!(
            "{}\n\
             Measured {date}, {} threads on both sides, {} warm-up + {} timed runs (the data \
             pipeline {}){}{}.\n\
             Spread = (max - min) / median over the timed runs; the machine was shared, so \
             absolute figures are noisy.{}\n\n\
             {}\n\
             | benchmark | case | unit | median | spread | ours / theirs | goal |\n\
             |---|---|---|---:|---:|---:|---:|\n",
            machine.heading(),
            settings.threads,
            settings.warmup,
            settings.reps,
            settings.pipeline_reps,
            if settings.quick { ", --quick" } else { "" },
            match settings.isa {
                Isa::Native => String::new(),
                isa => format!(", --isa {}", isa.name()),
            },
            if timings.is_empty() {
                String::new()
            } else {
                format!(
                    " Each part (the pipeline, a shape's training, a shape's decoding in one \
                     precision) ran on our side and then on the other, back to back{}. `parts` in \
                     results.json says when each round started and how long each side took.",
                    match settings.rounds {
                        1 => String::new(),
                        rounds => format!(
                            ", the pipeline and each decoding part in {rounds} such rounds: a \
                             ratio is the median of the rounds' ratios (their range in brackets), \
                             a median and spread those of the timed runs of all rounds"
                        ),
                    }
                )
            },
            machine.markdown(),
        );
        for group in groups {
            let members: Vec<&Value> = lines
                .iter()
                .filter(|l| l.get("group").and_then(Value::as_str) == Some(group))
                .collect();
            // The other side's line of each round: the first of the group's lines in that
            // round that is not ours.
            let mut theirs: BTreeMap<u64, &Value> = BTreeMap::new();
            for line in &members {
                if field(line, "side")? != "ours" {
                    theirs.entry(round_of(line)).or_insert(line);
                }
            }
            let theirs_checksums: Vec<&Value> = theirs
                .values()
                .filter_map(|l| l.pointer("/extra/checksum"))
                .collect();
            // Each side's case once, in the order of first appearance, with its rounds' lines.
            let mut cases: Vec<(&str, &str, Vec<&Value>)> = Vec::new();
            for line in &members {
                let (side, case) = (field(line, "side")?, field(line, "case")?);
                match cases.iter_mut().find(|(s, c, _)| (*s, *c) == (side, case)) {
                    Some((_, _, rounds)) => rounds.push(line),
                    None => cases.push((side, case, vec![line])),
                }
            }
            for (side, case, rounds) in cases {
                let finite = |line: &Value| -> Result<(Vec<f64>, Summary)> {
                    let s = samples(line)
                        .with_context(|| format!("measurement without samples: {line}"))?;
                    let summary = Summary::of(&s)
                        .with_context(|| format!("measurement without finite samples: {line}"))?;
                    Ok((s, summary))
                };
                let mut pooled = Vec::new();
                let mut round_ratios = Vec::new();
                for line in &rounds {
                    let (s, summary) = finite(line)?;
                    pooled.extend(s);
                    let other = theirs.get(&round_of(line)).filter(|_| side == "ours");
                    if let Some(other) = other {
                        round_ratios.push(summary.median / finite(other)?.1.median);
                    }
                }
                let summary = Summary::of(&pooled).context("pooled samples are finite")?;
                let ratio = Summary::of(&round_ratios);
                let goal = goal(group).filter(|_| side == "ours");
                // MFU is a fraction of the peak, not a ratio to the other side.
                let versus = ratio.map(|r| r.median).or(if group.starts_with("mfu ") {
                    Some(summary.median)
                } else {
                    None
                });
                let ours_checksums: Vec<&Value> = rounds
                    .iter()
                    .filter_map(|l| l.pointer("/extra/checksum"))
                    .collect();
                // Every round's tokens, ours and theirs, are the same.
                let same_tokens = match (ours_checksums.first(), theirs_checksums.is_empty()) {
                    (Some(first), false) if side == "ours" => Some(
                        ours_checksums
                            .iter()
                            .chain(&theirs_checksums)
                            .all(|c| c == first),
                    ),
                    _ => None,
                };
                let versus_cell = match (versus, ratio) {
                    (Some(v), Some(r)) if round_ratios.len() > 1 => {
                        format!("{v:.2} ({:.2}–{:.2})", r.min, r.max)
                    }
                    (Some(v), _) => format!("{v:.2}"),
                    (None, _) => String::new(),
                };
                md.push_str(&format!(
                    "| {group} | {case}{} | {} | {} | {:.0}% | {versus_cell} | {} |\n",
                    match same_tokens {
                        Some(true) => " (same tokens)",
                        Some(false) => " (DIFFERENT tokens)",
                        None => "",
                    },
                    field(rounds[0], "unit")?,
                    fmt_value(summary.median),
                    100.0 * summary.spread(),
                    goal.map_or(String::new(), |g| match versus {
                        Some(v) if v >= g => format!("≥{g} met"),
                        _ => format!("≥{g}"),
                    }),
                ));
                rows.push(json!({
                    "group": group, "side": side, "case": case, "unit": field(rounds[0], "unit")?,
                    "median": summary.median, "min": summary.min, "max": summary.max,
                    "ratio_ours_over_theirs": ratio.map(|r| r.median),
                    "round_ratios": round_ratios, "goal": goal,
                    "same_generated_tokens": same_tokens,
                    "samples": pooled, "rounds": rounds.len(),
                    "samples_by_round": rounds.iter().map(|l| l.get("samples")).collect::<Vec<_>>(),
                    "extra": rounds[0].get("extra"),
                }));
            }
        }
        let json = json!({
            "date": date, "machine": machine.to_json(), "threads": settings.threads,
            "warmup": settings.warmup, "reps": settings.reps,
            "pipeline_reps": settings.pipeline_reps, "rounds": settings.rounds,
            "quick": settings.quick,
            "parts": timings, "results": rows,
        });
        Ok(Report { json, markdown: md })
    }
}

/// The round a line was measured in (0 for a line without one: a part run once).
fn round_of(line: &Value) -> u64 {
    line.get("round").and_then(Value::as_u64).unwrap_or(0)
}

fn samples(line: &Value) -> Option<Vec<f64>> {
    line.get("samples")?
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect()
}

/// Three significant digits, without scientific notation for the sizes we print.
fn fmt_value(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_median_min_max_of_finite_samples() {
        let s = Summary::of(&[3.0, 1.0, f64::NAN, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert!((s.spread() - 3.6).abs() < 1e-12);
        assert_eq!(Summary::of(&[f64::NAN]), None);
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }

    fn parse_args(args: &[String]) -> Result<Settings> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli =
            Cli::try_parse_from(std::iter::once("bench".to_string()).chain(args.iter().cloned()))?;
        Ok(settings(cli.bench))
    }

    #[test]
    fn args_parse_and_reject() {
        let s = parse_args(&["--quick".into(), "--threads".into(), "3".into()]).unwrap();
        assert!(s.quick);
        assert_eq!((s.threads, s.shapes.as_str()), (3, "tiny"));
        assert_eq!(parse_args(&[]).unwrap().shapes, "tiny,small");
        let args: Vec<String> = ["--shapes", "small", "--reps", "2"]
            .map(String::from)
            .into();
        let s = parse_args(&args).unwrap();
        assert_eq!(
            (s.shapes.as_str(), s.reps, s.train_examples, s.pipeline_reps),
            ("small", 2, 256, 7)
        );
        assert_eq!(
            (s.rounds, parse_args(&["--quick".into()]).unwrap().rounds),
            (5, 3)
        );
        assert_eq!(
            parse_args(&["--rounds".into(), "1".into()]).unwrap().rounds,
            1
        );
        for bad in [
            ["--shapes", "huge"],
            ["--shapes", ""],
            ["--reps", "0"],
            ["--reps", "x"],
            ["--rounds", "0"],
        ] {
            assert!(parse_args(&bad.map(String::from)).is_err(), "{bad:?}");
        }
        assert!(parse_args(&["--threads".into(), "0".into()]).is_err());
        assert!(parse_args(&["--fast".into()]).is_err());
    }

    #[test]
    fn report_pairs_sides_by_group_and_compares_tokens() {
        let settings = parse_args(&["--quick".into(), "--threads".into(), "2".into()]).unwrap();
        let lines: Vec<Value> = [
            r#"{"side":"ours","group":"train tiny","case":"ours packed","unit":"real tokens/s","samples":[300,320,310],"extra":{}}"#,
            r#"{"side":"ours","group":"generate tiny batch 1","case":"ours greedy","unit":"new tokens/s","samples":[90],"extra":{"checksum":7}}"#,
            r#"{"side":"transformers","group":"train tiny","case":"transformers padded","unit":"real tokens/s","samples":[100,200,150],"extra":{}}"#,
            r#"{"side":"transformers","group":"generate tiny batch 1","case":"hf","unit":"new tokens/s","samples":[30],"extra":{"checksum":8}}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let native = machine::tests::machine(
            Isa::Native,
            vec![],
            &machine::tests::probe_answer("AVX512", ""),
        );
        let r = Report::new(
            &settings,
            &lines,
            &native,
            &[],
            "2026-01-01 00:00 UTC".into(),
        )
        .unwrap();
        let rows = r.json["results"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["ratio_ours_over_theirs"], json!(310.0 / 150.0));
        assert_eq!(rows[0]["goal"], json!(1.5));
        assert_eq!(rows[1]["side"], json!("transformers"));
        assert_eq!(rows[1]["ratio_ours_over_theirs"], Value::Null);
        assert_eq!(rows[2]["same_generated_tokens"], json!(false));
        assert!(r
            .markdown
            .contains("| train tiny | ours packed | real tokens/s | 310 | 6% | 2.07 | ≥1.5 met |"));
        assert!(r.markdown.contains("(DIFFERENT tokens)"));
        assert!(!r.markdown.contains("back to back"));
        assert_eq!(r.json["parts"], json!([]));
        let timings = [
            json!({"part": "train:tiny", "started": "2026-01-01 00:00 UTC",
                              "ours": 12.0, "transformers": 30.0}),
        ];
        let timed = Report::new(&settings, &lines, &native, &timings, "d".into()).unwrap();
        assert!(timed
            .markdown
            .contains("ran on our side and then on the other, back to back"));
        assert_eq!(timed.json["parts"][0]["transformers"], json!(30.0));
        let bad: Vec<Value> = vec![json!({"side": "ours", "samples": [1.0]})];
        assert!(Report::new(&settings, &bad, &native, &[], "d".into()).is_err());
        assert!(r
            .markdown
            .starts_with("### `cargo xtask bench`: native kernels\n\nMeasured 2026-01-01"));
        assert_eq!(r.json["machine"]["isa"], "native");
        assert_eq!(r.json["machine"]["cpu"], "AMD EPYC");
    }

    #[test]
    fn a_ratio_over_rounds_is_the_median_of_the_rounds_ratios() {
        let settings = parse_args(&["--quick".into(), "--threads".into(), "2".into()]).unwrap();
        let line = |side: &str, round: u64, samples: &[f64], checksum: i64| {
            json!({"side": side, "group": "generate small batch 32",
                   "case": if side == "ours" { "ours greedy" } else { "hf" },
                   "unit": "new tokens/s", "samples": samples, "round": round,
                   "extra": {"checksum": checksum}})
        };
        // Round ratios 2.0, 1.5 (the host slowed ours) and 3.0 (it slowed theirs); pooled,
        // our median is 500 and theirs 300.
        let lines = vec![
            line("ours", 0, &[600.0, 620.0], 7),
            line("transformers", 0, &[300.0, 310.0], 7),
            line("ours", 1, &[450.0, 500.0], 7),
            line("transformers", 1, &[300.0, 333.3], 7),
            line("ours", 2, &[300.0, 310.0], 7),
            line("transformers", 2, &[100.0, 105.0], 7),
        ];
        let native = machine::tests::machine(
            Isa::Native,
            vec![],
            &machine::tests::probe_answer("AVX2", ""),
        );
        let timings = [json!({"part": "generate:small:fp32", "round": 0, "started": "d"})];
        let r = Report::new(&settings, &lines, &native, &timings, "d".into()).unwrap();
        let rows = r.json["results"].as_array().unwrap();
        assert_eq!(
            rows.len(),
            2,
            "one row per side and case, whatever the rounds"
        );
        let ratios: Vec<f64> = serde_json::from_value(rows[0]["round_ratios"].clone()).unwrap();
        let expected = [610.0 / 305.0, 475.0 / 316.65, 305.0 / 102.5];
        assert_eq!(ratios.len(), 3);
        for (got, want) in ratios.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{ratios:?}");
        }
        assert_eq!(rows[0]["ratio_ours_over_theirs"], json!(expected[0]));
        assert_eq!(
            (rows[0]["median"].as_f64(), rows[0]["rounds"].as_u64()),
            (Some(475.0), Some(3))
        );
        assert_eq!(rows[0]["samples"].as_array().unwrap().len(), 6);
        assert_eq!(rows[0]["same_generated_tokens"], json!(true));
        assert_eq!(rows[1]["round_ratios"], json!([]));
        assert!(
            r.markdown.contains("| ours greedy (same tokens) | new tokens/s | 475 | 67% | 2.00 (1.50–2.98) | ≥1.5 met |"),
            "{}",
            r.markdown
        );
        assert!(r
            .markdown
            .contains("in 3 such rounds: a ratio is the median of the rounds' ratios"));
        // One round's tokens differing from the others' is a difference.
        let mut odd = lines.clone();
        odd[5]["extra"]["checksum"] = json!(8);
        let r = Report::new(&settings, &odd, &native, &timings, "d".into()).unwrap();
        assert_eq!(r.json["results"][0]["same_generated_tokens"], json!(false));
        // A round without the other side's line has no ratio of its own.
        let r = Report::new(&settings, &lines[..5], &native, &timings, "d".into()).unwrap();
        assert_eq!(
            r.json["results"][0]["round_ratios"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn parts_are_the_pipeline_then_each_shapes_training_and_decoding() {
        assert_eq!(
            parts("small")
                .iter()
                .map(|p| rounds_of(p, 5))
                .collect::<Vec<_>>(),
            [5, 1, 5, 5]
        );
        assert_eq!(
            parts("tiny,small"),
            [
                "pipeline",
                "train:tiny",
                "generate:tiny:fp32",
                "generate:tiny:bf16",
                "train:small",
                "generate:small:fp32",
                "generate:small:bf16"
            ]
        );
        assert_eq!(parts("small").len(), 4);
    }

    #[test]
    fn isa_is_parsed_and_a_capped_run_goes_elsewhere_by_default() {
        let root = process::workspace_root();
        let native = parse_args(&["--quick".into()]).unwrap();
        assert_eq!(native.isa, Isa::Native);
        assert_eq!(native.out, root.join("target").join("bench"));
        for (name, isa) in [
            ("avx2", Isa::Avx2),
            ("avx512", Isa::Avx512),
            ("native", Isa::Native),
        ] {
            let s = parse_args(&["--isa".into(), name.into()]).unwrap();
            assert_eq!(s.isa, isa);
            assert_eq!(s.isa.name(), name);
        }
        let s = parse_args(&["--isa".into(), "avx2".into()]).unwrap();
        assert_eq!(s.out, root.join("target").join("bench").join("isa-avx2"));
        assert_ne!(s.out, native.out);
        let args: Vec<String> = ["--isa", "avx2", "--out", "/tmp/x"]
            .map(String::from)
            .into();
        assert_eq!(parse_args(&args).unwrap().out, PathBuf::from("/tmp/x"));
        for bad in ["AVX2", "sse", "amx", ""] {
            assert!(parse_args(&["--isa".into(), bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_capped_report_names_its_cap_in_heading_line_and_record() {
        let args: Vec<String> = ["--quick", "--isa", "avx2", "--reps", "1"]
            .map(String::from)
            .into();
        let settings = parse_args(&args).unwrap();
        let lines: Vec<Value> = vec![
            json!({"side": "ours", "group": "train tiny", "case": "ours packed",
                   "unit": "real tokens/s", "samples": [200.0], "extra": {}}),
            json!({"side": "transformers", "group": "train tiny", "case": "transformers padded",
                   "unit": "real tokens/s", "samples": [100.0], "extra": {}}),
        ];
        let caps = isa::effective_caps(Isa::Avx2, |_| None);
        let m = machine::tests::machine(
            Isa::Avx2,
            caps,
            &machine::tests::probe_answer("AVX2", "Intel AVX2"),
        );
        let r = Report::new(&settings, &lines, &m, &[], "2026-01-01 00:00 UTC".into()).unwrap();
        let md = &r.markdown;
        assert!(
            md.starts_with(
                "### `cargo xtask bench --isa avx2`: kernels capped to AVX2 (ATEN_CPU_CAPABILITY=avx2 \
                 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)\n\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("1 warm-up + 1 timed runs (the data pipeline 7), --quick, --isa avx2.\n"),
            "{md}"
        );
        // The block sits between the lines and the table.
        let block = md.find("Measured on:\n").unwrap();
        let table = md.find("| benchmark |").unwrap();
        assert!(
            md.find("Spread =").unwrap() < block && block < table,
            "{md}"
        );
        assert!(
            md[block..table].contains("ATen CPU capability AVX2"),
            "{md}"
        );
        assert!(md
            .contains("| train tiny | ours packed | real tokens/s | 200 | 0% | 2.00 | ≥1.5 met |"));
        assert_eq!(r.json["machine"]["isa"], "avx2");
        assert_eq!(
            r.json["machine"]["kernel_caps"]["ATEN_CPU_CAPABILITY"],
            "avx2"
        );
    }
}
