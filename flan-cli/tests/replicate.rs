//! `flan replicate` end to end with a budget of seconds: the checked-in pretraining stage and
//! finetune config (configs/finetune-default/pretrain.toml, configs/replicate/finetune.toml) on
//! two toy sizes, a few steps each, one evaluation item per cell. Every figure, table and
//! verdict must come out of real runs, and a second replication must reuse every run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The six experiments, as points.json and the figures name them.
const EXPERIMENTS: [&str; 6] = [
    "task_scaling",
    "model_scaling",
    "cot_mixture",
    "zero_shot_cot",
    "self_consistency",
    "normalized_average",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test's plan and configs in `dir`: sizes `a` (1 layer) and `b` (2 layers) of a 32-wide
/// T5, their stages and the finetune config starting from the checked-in ones.
fn write_plan(dir: &Path) -> PathBuf {
    let tiny = repo().join("configs/finetune-default/t5-tiny.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny).unwrap()).unwrap();
    let budget = "[batch]\nsize = 4\n[schedule]\nkind = \"linear\"\nlr = 1e-3\nwarmup_steps = 1\n\
                  [log]\nprogress = \"off\"\n";
    for (name, layers) in [("a", 1), ("b", 2)] {
        for (key, value) in [
            ("d_model", 32),
            ("d_ff", 64),
            ("num_heads", 2),
            ("d_kv", 16),
            ("num_layers", layers),
            ("num_decoder_layers", layers),
        ] {
            config[key] = value.into();
        }
        std::fs::write(dir.join(format!("t5-{name}.json")), config.to_string()).unwrap();
        let stage = format!(
            "base = {base:?}\n[model]\nconfig = \"t5-{name}.json\"\n\
             train_tokenizer = {{ vocab_size = 2000, rendered = 2000, mixture = {mixture:?} }}\n\
             [train]\nsteps = 4\n[checkpoint]\nevery = 2\n{budget}",
            base = repo().join("configs/finetune-default/pretrain.toml"),
            mixture = repo().join("flan-data/specs/synthetic-mixture.toml"),
        );
        std::fs::write(dir.join(format!("stage-{name}.toml")), stage).unwrap();
    }
    let finetune = format!(
        "base = {:?}\n[eval.synthetic]\nshots = 1\n{budget}",
        repo().join("configs/replicate/finetune.toml")
    );
    std::fs::write(dir.join("finetune.toml"), finetune).unwrap();
    let plan = "finetune = \"finetune.toml\"\nseeds = [0]\nsteps = 4\nfamilies = [2]\n\
                items_per_cell = 1\ndefault_size = \"b\"\n\
                self_consistency = { k = [1, 3], temperature = 0.7 }\n\
                [[sizes]]\nname = \"a\"\npretrain = \"stage-a.toml\"\n\
                [[sizes]]\nname = \"b\"\npretrain = \"stage-b.toml\"\n";
    let file = dir.join("plan.toml");
    std::fs::write(&file, plan).unwrap();
    file
}

fn replicate(plan: &Path, cache: &Path, output: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flan"))
        .arg("replicate")
        .arg("--plan")
        .arg(plan)
        .arg("--output")
        .arg(output)
        .env("FLAN_RUN_CACHE", cache)
        .output()
        .expect("flan runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "flan replicate failed:\n{stderr}");
    stderr
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_replication_runs_every_experiment_from_real_runs_and_resumes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path());
    let cache = dir.path().join("cache");
    let first = dir.path().join("first");
    let stderr = replicate(&plan, &cache, &first);

    // Two pretraining stages and four finetuning runs (all families, 2 families, no CoT data,
    // size a), each a real `flan train` with its model and evaluations.
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let stages = entries
        .iter()
        .filter(|n| n.starts_with("pretrain-"))
        .count();
    let runs: Vec<&String> = entries
        .iter()
        .filter(|n| n.starts_with("replicate-"))
        .collect();
    assert_eq!((stages, runs.len()), (2, 4), "{entries:?}");
    for run in &runs {
        let run = cache.join(run);
        for file in [
            "model/config.json",
            "eval/before.json",
            "eval/after.json",
            "mixture.toml",
        ] {
            assert!(
                run.join(file).is_file(),
                "{} missing",
                run.join(file).display()
            );
        }
    }
    // The run without CoT data trained no CoT task; the 2-family run named its families.
    let specs: Vec<String> = runs
        .iter()
        .map(|r| std::fs::read_to_string(cache.join(r).join("mixture.toml")).unwrap())
        .collect();
    assert_eq!(
        specs.iter().filter(|s| s.contains("cot = false")).count(),
        1,
        "{specs:#?}"
    );
    let families: Vec<usize> = specs
        .iter()
        .map(|s| {
            let spec: toml::Table = toml::from_str(s).unwrap();
            spec["synthetic"]["families"].as_array().unwrap().len()
        })
        .collect();
    // Three runs keep the base spec's `["*"]`; one names its two families.
    assert_eq!(
        families.iter().filter(|&&n| n == 2).count(),
        1,
        "{families:?}"
    );

    // Points of every experiment, from the runs' own records.
    let points = json(&first.join("points.json"));
    let points = points["points"].as_array().unwrap();
    for experiment in EXPERIMENTS {
        let of: Vec<&serde_json::Value> = points
            .iter()
            .filter(|p| p["experiment"] == experiment)
            .collect();
        assert!(!of.is_empty(), "no {experiment} points");
        for p in of {
            let correct = p["correct"].as_array().unwrap();
            assert_eq!(correct.len() as u64, p["items"].as_u64().unwrap());
        }
    }
    // Task scaling at 0, 2 and all 55 families; the two sizes by their parameter counts.
    let xs = |experiment: &str, series: &str| -> Vec<f64> {
        let mut xs: Vec<f64> = points
            .iter()
            .filter(|p| p["experiment"] == experiment && p["series"] == series)
            .map(|p| p["x"].as_f64().unwrap())
            .collect();
        xs.sort_by(f64::total_cmp);
        xs
    };
    let all = flan_data::synthetic::trained_families().count() as f64;
    assert_eq!(xs("task_scaling", "held_out_family"), [0.0, 2.0, all]);
    let sizes = xs("model_scaling", "finetuned");
    assert_eq!(sizes.len(), 2);
    assert!(sizes[0] < sizes[1], "{sizes:?}");
    assert_eq!(xs("self_consistency", "self_consistency"), [1.0, 3.0]);

    // The report: every experiment's figure, table and verdict.
    let report = std::fs::read_to_string(first.join("report.md")).unwrap();
    assert!(!report.contains("not run"), "{report}");
    for experiment in EXPERIMENTS {
        let svg = std::fs::read_to_string(first.join("figures").join(format!("{experiment}.svg")))
            .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("NaN"));
        assert!(report.contains(&format!("figures/{experiment}.svg")));
    }
    assert_eq!(report.matches("**Here:**").count(), 6, "{report}");
    assert!(json(&first.join("results.json")).is_object());
    assert!(stderr.contains("report:"), "{stderr}");

    // Again: every run from the cache, the same points.
    let second = dir.path().join("second");
    let again = replicate(&plan, &cache, &second);
    assert_eq!(again.matches("(cached)").count(), 4, "{again}");
    let strip = |v: serde_json::Value| v["points"].clone();
    assert_eq!(
        strip(json(&first.join("points.json"))),
        strip(json(&second.join("points.json")))
    );
}
