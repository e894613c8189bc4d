//! Writes the replication report (report.md, results.json, figures/*.svg) from a points.json, so
//! that it can be looked at before the runs that fill points.json exist.
//!
//! ```text
//! cargo run -p flan-eval --example replication_report -- POINTS.json OUT_DIR
//! cargo run -p flan-eval --example replication_report -- --demo OUT_DIR
//! ```
//!
//! `--demo` first writes OUT_DIR/points.json with constructed points for all six experiments
//! (three seeds, seeded pseudo-random item outcomes around made-up accuracies) and says so in
//! the report's note: they show what the report looks like, and are not measurements.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flan_eval::replication::{write_replication_report, Experiment, Point, Points, Settings, X};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const USAGE: &str =
    "usage: replication_report POINTS.json OUT_DIR\n       replication_report --demo OUT_DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (points_path, out) = match args.as_slice() {
        [flag, out] if flag == "--demo" => {
            let out = PathBuf::from(out);
            let path = out.join("points.json");
            if let Err(e) = std::fs::create_dir_all(&out)
                .map_err(|e| e.to_string())
                .and_then(|()| demo_points().write(&path).map_err(|e| chain(&e)))
            {
                eprintln!("error: writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            (path, out)
        }
        [points, out] if !points.starts_with('-') => (PathBuf::from(points), PathBuf::from(out)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match report(&points_path, &out) {
        Ok(markdown) => {
            println!("{}", markdown.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(points: &Path, out: &Path) -> Result<PathBuf, String> {
    let points = Points::read(points).map_err(|e| chain(&e))?;
    let files =
        write_replication_report(out, &points, &Settings::default()).map_err(|e| chain(&e))?;
    Ok(files.markdown)
}

/// An error with its causes, as binaries print them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A point of `items` items, each right with probability `p`, drawn from `rng`.
fn constructed(
    experiment: Experiment,
    series: &str,
    x: X,
    seed: u64,
    p: f64,
    chance: f64,
    rng: &mut ChaCha8Rng,
) -> Point {
    let items = 120;
    let correct: Vec<bool> = (0..items)
        .map(|_| rng.gen_bool(p.clamp(0.0, 1.0)))
        .collect();
    let right = correct.iter().filter(|&&c| c).count();
    Point {
        experiment,
        series: series.into(),
        x,
        x_label: None,
        seed,
        accuracy: right as f64 / items as f64,
        items,
        chance,
        correct: Some(correct),
        item_set: Some(format!("demo-{experiment}-{series}")),
        seconds: None,
    }
}

fn demo_points() -> Points {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut list = Vec::new();
    let c = |s: &str| X::Condition(s.into());
    for seed in 1..=3u64 {
        let jitter = 0.02 * (seed as f64 - 2.0);
        for (n, p) in [
            (0.0, 0.12),
            (1.0, 0.14),
            (2.0, 0.18),
            (4.0, 0.2),
            (8.0, 0.26),
            (16.0, 0.3),
            (55.0, 0.33),
        ] {
            for (series, shift) in [("held_out_family", 0.0), ("held_out_templates", 0.25)] {
                let mut point = constructed(
                    Experiment::TaskScaling,
                    series,
                    X::Number(n),
                    seed,
                    p + shift + jitter,
                    0.15,
                    &mut rng,
                );
                if n == 55.0 {
                    point.x_label = Some("all".into());
                }
                list.push(point);
            }
        }
        for (name, size, base, tuned) in [
            ("tiny", 1.2e6, 0.08, 0.2),
            ("small", 4.6e6, 0.1, 0.27),
            ("base", 1.8e7, 0.12, 0.35),
        ] {
            for (series, p) in [("finetuned", tuned), ("not_finetuned", base)] {
                let mut point = constructed(
                    Experiment::ModelScaling,
                    series,
                    X::Number(size),
                    seed,
                    p + jitter,
                    0.15,
                    &mut rng,
                );
                point.x_label = Some(name.into());
                list.push(point);
            }
        }
        for (condition, direct, cot) in [
            ("without_cot_data", 0.3, 0.18),
            ("with_cot_data", 0.31, 0.36),
        ] {
            list.push(constructed(
                Experiment::CotMixture,
                "direct",
                c(condition),
                seed,
                direct + jitter,
                0.1,
                &mut rng,
            ));
            list.push(constructed(
                Experiment::CotMixture,
                "cot",
                c(condition),
                seed,
                cot + jitter,
                0.1,
                &mut rng,
            ));
        }
        for (condition, trigger, plain) in [
            ("before_finetuning", 0.05, 0.1),
            ("after_finetuning", 0.28, 0.25),
        ] {
            list.push(constructed(
                Experiment::ZeroShotCot,
                "zero_shot_cot",
                c(condition),
                seed,
                trigger + jitter,
                0.1,
                &mut rng,
            ));
            list.push(constructed(
                Experiment::ZeroShotCot,
                "zero_shot_direct",
                c(condition),
                seed,
                plain + jitter,
                0.1,
                &mut rng,
            ));
        }
        list.push(constructed(
            Experiment::SelfConsistency,
            "greedy",
            X::Number(1.0),
            seed,
            0.3 + jitter,
            0.1,
            &mut rng,
        ));
        for (k, p) in [
            (1.0, 0.26),
            (2.0, 0.27),
            (4.0, 0.31),
            (8.0, 0.34),
            (16.0, 0.35),
        ] {
            list.push(constructed(
                Experiment::SelfConsistency,
                "self_consistency",
                X::Number(k),
                seed,
                p + jitter,
                0.1,
                &mut rng,
            ));
        }
        for (setting, chance, base, tuned) in [
            ("seen_templates/direct", 0.2, 0.22, 0.7),
            ("held_out_templates/direct", 0.2, 0.22, 0.45),
            ("held_out_family/direct", 0.15, 0.15, 0.3),
            ("held_out_family/cot", 0.15, 0.1, 0.25),
        ] {
            list.push(constructed(
                Experiment::NormalizedAverage,
                setting,
                c("not_finetuned"),
                seed,
                base + jitter,
                chance,
                &mut rng,
            ));
            list.push(constructed(
                Experiment::NormalizedAverage,
                setting,
                c("finetuned"),
                seed,
                tuned + jitter,
                chance,
                &mut rng,
            ));
        }
    }
    Points {
        note: Some(
            "constructed demo data (flan-eval's replication_report example): these points show \
             what the report looks like and are not measurements."
                .into(),
        ),
        machine: Some("none (constructed)".into()),
        points: list,
        ..Points::new()
    }
}
