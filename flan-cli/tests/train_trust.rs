//! A `flan train` run the platform can trust, end to end through the binary on flan-model's tiny
//! fixture model: one run per output directory (exit status 7 naming the holder, also on every
//! rank of a data-parallel launch), SIGTERM saves and exits with 75 and the resumed run is bit
//! for bit the uninterrupted one, a second signal exits at once, damaged checkpoints are reported
//! and passed over, a finished run's summary survives a no-op rerun, a resume with changed
//! settings says so, numeric options out of range are usage errors (2), and the saved model has
//! a model card.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

fn flan_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flan"));
    cmd.args(args);
    for var in [
        "RANK",
        "WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "LOCAL_RANK",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn flan(args: &[&str]) -> Output {
    flan_cmd(args).output().expect("flan runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A run directory: a small JSONL mixture and a config finetuning the fixture model for `steps`
/// steps into `out/`, checkpointing every `every` steps (0: only at the end).
fn write_run(dir: &Path, steps: u64, every: u64) -> PathBuf {
    let rows: String = (0..40)
        .map(|i| serde_json::json!({"inputs": format!("add {i} and {}", i % 7), "targets": format!("{}", i + i % 7)}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("sums.jsonl"), rows).unwrap();
    std::fs::write(
        dir.join("mixture.toml"),
        "input_len = 32\ntarget_len = 8\n[submixtures.flan]\nweight = 1.0\ncap = 100\nfew_shot_ratio = 0.0\n\
         [[tasks]]\nformat = \"jsonl\"\npath = \"sums.jsonl\"\nsubmixture = \"flan\"\n",
    )
    .unwrap();
    let config = format!(
        "output_dir = \"out\"\nseed = 3\ndevice = \"cpu\"\n\
         [model]\npretrained = {:?}\ndropout = 0.1\n\
         [data]\nmixture = \"mixture.toml\"\n\
         [batch]\nsize = 2\n\
         [train]\nsteps = {steps}\n\
         [checkpoint]\nevery = {every}\nkeep_last = 3\n\
         [log]\nprogress = \"lines\"\n",
        fixture_model().display().to_string()
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn losses(metrics: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "train")
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect()
}

fn logged_steps(metrics: &Path) -> usize {
    std::fs::read_to_string(metrics).map_or(0, |m| m.lines().count())
}

/// Waits until `metrics` has `n` lines (the process is training, past its setup).
fn wait_for_steps(child: &mut Child, metrics: &Path, n: usize) {
    let started = Instant::now();
    while logged_steps(metrics) < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("flan train ended ({status}) before logging {n} steps");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no training after 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn host_name() -> String {
    flan_train::lock::host_name()
}

#[test]
fn a_locked_output_directory_refuses_a_second_run_until_the_first_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 100_000, 0);
    let config = config.to_str().unwrap();
    let out = dir.path().join("out");
    let mut first = flan_cmd(&["train", "--config", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_steps(&mut first, &out.join("metrics.jsonl"), 1);

    let second = flan(&["train", "--config", config, "--set", "train.steps=2"]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(7), "{err}");
    assert!(
        err.contains("in use by another run")
            && err.contains(&format!("pid {}", first.id()))
            && err.contains(&format!("host {}", host_name())),
        "{err}"
    );
    assert!(first.try_wait().unwrap().is_none(), "the first run goes on");

    // kill -9: the kernel drops the lock with the process.
    first.kill().unwrap();
    first.wait().unwrap();
    let second = flan(&["train", "--config", config, "--set", "train.steps=2"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let holder: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(flan_train::lock::LOCK_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(holder["host"], host_name());
}

#[test]
fn every_rank_fails_when_rank_0_cannot_lock() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 2, 0);
    let held = flan_train::lock::OutputLock::acquire(&dir.path().join("out")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let ranks: Vec<Child> = (0..2)
        .map(|rank| {
            flan_cmd(&["train", "--config", config.to_str().unwrap()])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("FLAN_DIST_TIMEOUT_SECS", "60")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(7), "rank {rank}: {err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "rank {rank}: {err}"
        );
    }
    drop(held);
}

#[test]
fn sigterm_saves_the_step_exits_75_and_the_resumed_run_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 200;
    let config = write_run(dir.path(), steps, 0);
    let config = config.to_str().unwrap();
    let straight_dir = format!("output_dir={}", dir.path().join("straight").display());
    let straight = flan(&["train", "--config", config, "--set", &straight_dir]);
    assert!(straight.status.success(), "{}", stderr(&straight));

    let after = rand_chacha::ChaCha8Rng::seed_from_u64(143).gen_range(3..20usize);
    let out = dir.path().join("out");
    let mut run = flan_cmd(&["train", "--config", config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_steps(&mut run, &out.join("metrics.jsonl"), after);
    signal(&run, libc::SIGTERM);
    let output = run.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(75), "{err}");
    let stopped = logged_steps(&out.join("metrics.jsonl")) as u64;
    assert!(stopped >= after as u64 && stopped < steps, "{stopped}");
    let checkpoint = format!("step-{stopped:08}");
    assert!(
        err.contains(&format!("stopped by SIGTERM after step {stopped}"))
            && err.contains(&checkpoint),
        "{err}"
    );
    assert!(out
        .join("checkpoints")
        .join(&checkpoint)
        .join("trainer_state.json")
        .is_file());

    let resumed = flan(&["train", "--config", config]);
    let err = stderr(&resumed);
    assert!(resumed.status.success(), "{err}");
    assert!(
        err.contains("resuming from") && err.contains(&checkpoint),
        "{err}"
    );
    let (a, b) = (
        losses(&dir.path().join("straight/metrics.jsonl")),
        losses(&out.join("metrics.jsonl")),
    );
    assert_eq!(a.len() as u64, steps);
    assert_eq!(b.len() as u64, steps);
    for ((s, la), (_, lb)) in a.iter().zip(&b) {
        assert_eq!(
            la.to_bits(),
            lb.to_bits(),
            "step {s} (stopped at {stopped})"
        );
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 100_000, 0);
    let mut run = flan_cmd(&["train", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_steps(&mut run, &dir.path().join("out/metrics.jsonl"), 2);
    // Two different signals, so that neither can merge into the other while pending. The
    // process has several threads, so either may be taken first: the status is the second
    // one's, 128 + its number, as a shell reports death by it (not 75: nothing was saved).
    signal(&run, libc::SIGINT);
    signal(&run, libc::SIGTERM);
    let status = run.wait().unwrap();
    assert!(
        matches!(status.code(), Some(130 | 143)),
        "{status}: a second signal must exit at once with 130 or 143"
    );
}

#[test]
fn damaged_checkpoints_are_reported_and_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 6, 2);
    let config = config.to_str().unwrap();
    let run = flan(&["train", "--config", config]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ckpts = dir.path().join("out/checkpoints");

    // An unreadable state file in the newest, flipped bytes in the one before.
    std::fs::write(
        ckpts.join("step-00000006/trainer_state.json"),
        "{\"step\": 6,",
    )
    .unwrap();
    let weights = ckpts.join("step-00000004/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 4096..] {
        *b = !*b;
    }
    std::fs::write(&weights, bytes).unwrap();

    let stop = flan(&[
        "train",
        "--config",
        config,
        "--set",
        "train.steps=8",
        "--set",
        "checkpoint.on_corrupt=stop",
    ]);
    let err = stderr(&stop);
    assert_eq!(stop.status.code(), Some(4), "{err}");
    assert!(
        err.contains("step-00000006") && err.contains("trainer_state.json"),
        "{err}"
    );

    let resumed = flan(&["train", "--config", config, "--set", "train.steps=8"]);
    let err = stderr(&resumed);
    assert!(resumed.status.success(), "{err}");
    assert!(
        err.contains("not resuming from")
            && err.contains("step-00000006")
            && err.contains("trainer_state.json"),
        "{err}"
    );
    assert!(
        err.contains("step-00000004: model.safetensors does not match its checksum"),
        "{err}"
    );
    assert!(
        err.contains("falling back to the previous intact checkpoint")
            && err.contains("resuming from")
            && err.contains("step-00000002"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(
        (summary["resumed_from"].as_u64(), summary["steps"].as_u64()),
        (Some(2), Some(8))
    );
}

#[test]
fn a_finished_run_keeps_its_summary_warns_on_changed_settings_and_has_a_model_card() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 4, 2);
    let config = config.to_str().unwrap();
    let out = dir.path().join("out");
    let first = flan(&["train", "--config", config]);
    assert!(first.status.success(), "{}", stderr(&first));
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let figures: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(figures["final_loss"].as_f64().unwrap().is_finite());

    // Nothing left to train: the finished run's figures stay, in the file and on stdout.
    let again = flan(&["train", "--config", config]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(out.join("summary.json")).unwrap(),
        summary
    );
    let printed: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(printed["final_loss"], figures["final_loss"]);
    assert!(!stderr(&again).contains("NaN"), "{}", stderr(&again));

    // The model card: the hub's YAML header, then the sections.
    let card = std::fs::read_to_string(out.join("model/README.md")).unwrap();
    let rest = card.strip_prefix("---\n").expect("a YAML header");
    let (header, body) = rest.split_once("\n---\n").expect("a closed YAML header");
    let yaml = yaml_rust2::YamlLoader::load_from_str(header).unwrap();
    let meta = &yaml[0];
    assert_eq!(meta["library_name"].as_str(), Some("transformers"));
    assert_eq!(meta["pipeline_tag"].as_str(), Some("text2text-generation"));
    let tags: Vec<&str> = meta["tags"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"t5") && tags.contains(&"flan"), "{tags:?}");
    assert!(
        meta["base_model"].is_badvalue(),
        "a local directory is no hub id"
    );
    for section in [
        "## Base model",
        "## Training data",
        "## Training\n",
        "## Evaluation",
        "## Configuration",
    ] {
        assert!(body.contains(section), "{section} missing:\n{card}");
    }
    assert!(
        body.contains(&fixture_model().display().to_string()),
        "{card}"
    );
    assert!(
        body.contains("sums.jsonl") && body.contains("| flan | 1 | 100 |"),
        "{card}"
    );
    let examples = figures["examples_seen"].as_u64().unwrap();
    assert!(body.contains(&format!("| 4 | {examples} |")), "{card}");
    let toml_block = body
        .split_once("```toml\n")
        .and_then(|(_, t)| t.split_once("```"))
        .unwrap()
        .0;
    let recorded: toml::Table = toml::from_str(toml_block).unwrap();
    assert_eq!(recorded["train"]["steps"].as_integer(), Some(4));

    // Resuming with another batch size and learning rate is said out loud.
    let changed = flan(&[
        "train",
        "--config",
        config,
        "--set",
        "train.steps=6",
        "--set",
        "batch.size=3",
        "--lr",
        "5e-4",
    ]);
    let err = stderr(&changed);
    assert!(changed.status.success(), "{err}");
    assert!(
        err.contains("warning: resuming")
            && err.contains("batch.size 2 → 3")
            && err.contains("schedule.lr 0.001 → 0.0005"),
        "{err}"
    );
}

#[test]
fn numeric_options_out_of_range_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 2, 0);
    let config = config.to_str().unwrap();
    for (sets, needle) in [
        (
            &["optimizer.kind=adamw", "optimizer.eps=-1"][..],
            "optimizer.eps must be a finite number > 0, got -1",
        ),
        (
            &["optimizer.weight_decay=nan"][..],
            "optimizer.weight_decay must be a finite number >= 0, got NaN",
        ),
    ] {
        let mut args = vec!["train", "--config", config];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = flan(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {err}");
        assert!(err.contains(needle), "{sets:?}: {err}");
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_run_id_rank_and_the_steps_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_run(dir.path(), 3, 0);
    // `auto` progress would draw a bar on a terminal; json asks for events whatever the style.
    let run = flan_cmd(&[
        "--log-format",
        "json",
        "train",
        "--config",
        config.to_str().unwrap(),
        "--set",
        "log.progress=\"auto\"",
    ])
    .env("FLAN_RUN_ID", "job-42")
    .output()
    .unwrap();
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    for event in &events {
        assert_eq!(event["run_id"], "job-42", "{event}");
        assert_eq!(event["rank"], 0, "{event}");
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{event}"
        );
        assert!(event["message"].is_string(), "{event}");
    }
    let logged: Vec<(u64, f64)> = events
        .iter()
        .filter(|e| e.get("loss").is_some())
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect();
    assert_eq!(logged, losses(&dir.path().join("out/metrics.jsonl")));
    assert_eq!(logged.len(), 3);

    // The error that ends a run is an event too, with the exit status.
    let bad = flan_cmd(&["--log-format", "json", "train", "--config", "missing.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = stderr(&bad);
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{err}");
    assert_eq!(last["exit_code"].as_i64(), bad.status.code().map(i64::from));
    assert!(
        last["message"].as_str().unwrap().contains("missing.toml"),
        "{err}"
    );

    // So is an argument error.
    let usage = flan_cmd(&["--log-format", "json", "train", "--no-such-flag"])
        .output()
        .unwrap();
    let err = stderr(&usage);
    assert_eq!(usage.status.code(), Some(2), "{err}");
    let event: serde_json::Value = serde_json::from_str(err.trim_end()).unwrap();
    assert_eq!(event["exit_code"], 2, "{err}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{err}"
    );
}
