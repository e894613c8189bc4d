//! `points.json`: what the replication's runs measured, one record per experiment, series, x
//! value and seed; the one file the report is made from.
//!
//! ```json
//! {
//!   "version": 1,
//!   "machine": "AMD EPYC 7B13, 2 cores",
//!   "seconds": 5123.4,
//!   "command": "cargo xtask replicate --quick",
//!   "points": [
//!     {"experiment": "task_scaling", "series": "held_out_family", "x": 0, "seed": 1,
//!      "accuracy": 0.25, "items": 4, "chance": 0.2,
//!      "correct": [true, false, false, false], "item_set": "synthetic-eval-7:6f1c0e2a9b3d4c51"},
//!     {"experiment": "task_scaling", "series": "held_out_family", "x": 55, "x_label": "all",
//!      "seed": 1, "accuracy": 0.5, "items": 4, "chance": 0.2}
//!   ]
//! }
//! ```
//!
//! Fields of a point: `experiment` (an [`Experiment`] name); `series` (one of the experiment's
//! [`Experiment::series`], any non-empty name for `normalized_average`); `x` (a number or a
//! condition name, as [`Experiment::x_kind`] says); `x_label` (optional, how the report names
//! that x, e.g. `all` or `tiny`); `seed` (the run's seed); `accuracy` (a fraction in [0, 1]);
//! `items` (more than 0); `chance` (the items' mean [`crate::chance`] baseline, a fraction);
//! `correct` (optional: each item's correctness, in the order of the evaluation, `items` long
//! and agreeing with `accuracy`); `item_set` (optional: names the evaluated items and their
//! order, e.g. a hash of their keys; points with the same `item_set` are compared item by item,
//! so it must change whenever the items do); `seconds` (optional: how long the point took).
//! At the top: `version` ([`POINTS_VERSION`]), and optionally `machine`, `seconds` (of the
//! whole replication), `command` and `note`, which the report's header shows.
//!
//! Reading is strict: unknown fields are refused (a misspelt `corect` would otherwise drop
//! the item outcomes without a word), and every error names the file, the field
//! (`points[3].accuracy`) and what was expected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use flan_data::atomic::AtomicFile;
use flan_data::hash::fnv1a;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Experiment, XKind};
use crate::chance::item_chances;
use crate::runner::SampleRecord;
use crate::{Error, Result};

/// The version of points.json this build reads and writes.
pub const POINTS_VERSION: u32 = 1;

/// Problems listed in full before the rest are counted.
const SHOWN_PROBLEMS: usize = 20;

/// Everything the replication measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Points {
    /// [`POINTS_VERSION`].
    pub version: u32,
    /// The machine the runs ran on, as the runs describe it (CPU, cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Seconds the whole replication took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The command that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Anything the reader must know first (shown at the top of the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The measurements, in any order.
    pub points: Vec<Point>,
}

/// One measurement: one experiment's series at one x value, trained and evaluated with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// The experiment.
    pub experiment: Experiment,
    /// The line of the experiment's figure it belongs to.
    pub series: String,
    /// Where on the x axis (see [`Experiment::x_kind`]).
    pub x: X,
    /// How the report names this x (`all`, `tiny`); the number is shown beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_label: Option<String>,
    /// The seed of the run (training, and sampling where there is any).
    pub seed: u64,
    /// Accuracy, a fraction in [0, 1].
    pub accuracy: f64,
    /// Items evaluated.
    pub items: usize,
    /// The mean chance baseline of those items, a fraction in [0, 1] ([`crate::chance`]).
    pub chance: f64,
    /// Each item's correctness, in evaluation order (for the pooled and paired bootstraps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<Vec<bool>>,
    /// Names the evaluated items and their order; equal names are compared item by item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_set: Option<String>,
    /// Seconds this point took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// An x value: a number (families, parameters, samples) or a named condition.
#[derive(Debug, Clone, PartialEq)]
pub enum X {
    /// A count or size.
    Number(f64),
    /// One of the experiment's two conditions.
    Condition(String),
}

/// A number as the report and the keys write it: whole numbers without a fraction.
pub(crate) fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl fmt::Display for X {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X::Number(v) => f.write_str(&number_text(*v)),
            X::Condition(c) => f.write_str(c),
        }
    }
}

impl Serialize for X {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            X::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => s.serialize_i64(*v as i64),
            X::Number(v) => s.serialize_f64(*v),
            X::Condition(c) => s.serialize_str(c),
        }
    }
}

impl<'de> Deserialize<'de> for X {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<X, D::Error> {
        struct XVisitor;
        impl Visitor<'_> for XVisitor {
            type Value = X;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a number (families, parameters or samples) or a condition name such as \
                     \"with_cot_data\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<X, E> {
                Ok(X::Number(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<X, E> {
                Ok(X::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<X, E> {
                Ok(X::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<X, E> {
                Ok(X::Condition(v.to_string()))
            }
        }
        d.deserialize_any(XVisitor)
    }
}

impl X {
    /// Where the value sorts within `experiment`: the number, or the condition's index (the
    /// baseline first). `None` for a value of the wrong kind or an unknown condition.
    pub fn order(&self, experiment: Experiment) -> Option<f64> {
        match (self, experiment.x_kind()) {
            (X::Condition(c), XKind::Condition(names)) => {
                names.iter().position(|n| n == c).map(|i| i as f64)
            }
            (X::Number(v), XKind::Families | XKind::Parameters | XKind::Samples) => Some(*v),
            _ => None,
        }
    }
}

/// What identifies a point: two points with the same key are the same measurement.
pub(crate) type PointKey = (Experiment, String, String, u64);

impl Point {
    /// The point's identity: experiment, series, x, seed.
    pub(crate) fn key(&self) -> PointKey {
        (
            self.experiment,
            self.series.clone(),
            self.x.to_string(),
            self.seed,
        )
    }

    /// The point as an error message names it.
    fn describe(&self) -> String {
        format!(
            "{}, {}, x = {}, seed {}",
            self.experiment, self.series, self.x, self.seed
        )
    }

    /// The point of one evaluation's records: accuracy, items, each item's correctness, the
    /// items' mean chance baseline ([`item_chances`], as every report of this crate computes
    /// it), and an `item_set` that names the items (a hash of each record's task, index,
    /// prompt form, exposure and gold answers, in order), so that two evaluations of the same
    /// items are compared item by item.
    ///
    /// Errors: no records.
    pub fn from_samples(
        experiment: Experiment,
        series: &str,
        x: X,
        seed: u64,
        samples: &[SampleRecord],
    ) -> Result<Point> {
        if samples.is_empty() {
            return Err(Error::InvalidPoints(format!(
                "{experiment}, {series}, x = {x}, seed {seed}: no evaluated items"
            )));
        }
        let correct: Vec<bool> = samples.iter().map(|s| s.correct).collect();
        let right = correct.iter().filter(|&&c| c).count();
        let chances = item_chances(samples);
        let identity: String = samples
            .iter()
            .map(|s| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    s.task,
                    s.index,
                    s.mode.label(s.n_shot),
                    s.exposure.map_or("-", |e| e.name()),
                    s.targets.join("\u{1f}")
                )
            })
            .collect();
        Ok(Point {
            experiment,
            series: series.to_string(),
            x,
            x_label: None,
            seed,
            accuracy: right as f64 / samples.len() as f64,
            items: samples.len(),
            chance: chances.iter().sum::<f64>() / chances.len() as f64,
            correct: Some(correct),
            item_set: Some(format!("{}-items:{:016x}", samples.len(), fnv1a(&identity))),
            seconds: None,
        })
    }
}

impl Default for Points {
    fn default() -> Self {
        Points::new()
    }
}

impl Points {
    /// No points yet, at the current version.
    pub fn new() -> Points {
        Points {
            version: POINTS_VERSION,
            machine: None,
            seconds: None,
            command: None,
            note: None,
            points: Vec::new(),
        }
    }

    /// Reads and validates a points.json. Errors name the file and the field, and say what was
    /// expected, as in
    ///
    /// ```text
    /// points.json:12: field `points[3].accuracy`: invalid type: string "high", expected f64
    /// ```
    ///
    /// or list every rule a well-formed file breaks ([`Points::validate`]).
    pub fn read(path: &Path) -> Result<Points> {
        let text = crate::error::read_to_string(path)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::parse(path, e.line(), without_position(&e)))?;
        match value.get("version") {
            None => {
                return Err(Error::parse(
                    path,
                    0,
                    format!("field `version` is missing (expected {POINTS_VERSION})"),
                ))
            }
            Some(v) if v.as_u64() != Some(u64::from(POINTS_VERSION)) => {
                return Err(Error::parse(
                    path,
                    0,
                    format!(
                        "field `version`: {v} is not a version this build reads (expected \
                         {POINTS_VERSION})"
                    ),
                ))
            }
            Some(_) => {}
        }
        let mut de = serde_json::Deserializer::from_str(&text);
        let points: Points = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            Error::parse(
                path,
                inner.line(),
                format!("field `{field}`: {}", without_position(&inner)),
            )
        })?;
        points
            .check()
            .map_err(|problems| Error::parse(path, 0, problems))?;
        Ok(points)
    }

    /// Writes the points (validated first) to `path`, replacing it whole or not at all.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.validate()?;
        let mut file = AtomicFile::create(path)?;
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        file.write_bytes(text.as_bytes())?;
        file.commit()?;
        Ok(())
    }

    /// Whether a measurement of this experiment, series, x and seed is already recorded (a run
    /// that resumes skips it).
    pub fn contains(&self, experiment: Experiment, series: &str, x: &X, seed: u64) -> bool {
        let key = (experiment, series.to_string(), x.to_string(), seed);
        self.points.iter().any(|p| p.key() == key)
    }

    /// Adds a measurement; refused when the same experiment, series, x and seed is recorded.
    pub fn insert(&mut self, point: Point) -> Result<()> {
        if self.points.iter().any(|p| p.key() == point.key()) {
            return Err(Error::InvalidPoints(format!(
                "{} is already recorded",
                point.describe()
            )));
        }
        self.points.push(point);
        Ok(())
    }

    /// The seeds of all points, ascending.
    pub fn seeds(&self) -> BTreeSet<u64> {
        self.points.iter().map(|p| p.seed).collect()
    }

    /// Checks every rule of the format: the version; each point's series, x, accuracy (a
    /// fraction), items (at least one), chance (a fraction, below 1 for the normalised
    /// average, which divides by 1 − chance), per-item outcomes (as many as items, agreeing
    /// with the accuracy), labels and seconds; no experiment, series, x and seed twice; one
    /// item count per `item_set`; one label per x; and every normalised-average setting at
    /// both conditions. (A cell has at least one seed by construction: it exists only through
    /// its points.) The error lists every problem, each naming the point and field.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(Error::InvalidPoints)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let count = problems.len();
        let mut text = problems
            .into_iter()
            .take(SHOWN_PROBLEMS)
            .collect::<Vec<_>>()
            .join("; ");
        if count > SHOWN_PROBLEMS {
            text.push_str(&format!("; and {} more", count - SHOWN_PROBLEMS));
        }
        Err(text)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.version != POINTS_VERSION {
            problems.push(format!(
                "field `version`: {} is not a version this build reads (expected {POINTS_VERSION})",
                self.version
            ));
        }
        if let Some(s) = self.seconds {
            if !(s.is_finite() && s >= 0.0) {
                problems.push(format!(
                    "field `seconds`: expected a number of seconds, 0 or more, found {s}"
                ));
            }
        }
        let mut first_at: HashMap<PointKey, usize> = HashMap::new();
        let mut items_of_set: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut label_of_x: HashMap<(Experiment, String), (usize, Option<&str>)> = HashMap::new();
        for (i, p) in self.points.iter().enumerate() {
            let field = |name: &str| format!("field `points[{i}].{name}` ({})", p.describe());
            point_problems(p, &field, &mut problems);
            if let Some(j) = first_at.insert(p.key(), i) {
                problems.push(format!(
                    "points[{i}] repeats points[{j}]: {} is recorded twice",
                    p.describe()
                ));
            }
            if let Some(set) = p.item_set.as_deref() {
                if let Some(&(j, items)) = items_of_set.get(set) {
                    if items != p.items {
                        problems.push(format!(
                            "{}: item set {set:?} has {} items here but {items} in points[{j}]; \
                             an item set must name the same items wherever it is used",
                            field("items"),
                            p.items
                        ));
                    }
                } else {
                    items_of_set.insert(set, (i, p.items));
                }
            }
            let x = (p.experiment, p.x.to_string());
            match label_of_x.get(&x) {
                Some(&(j, label)) if label != p.x_label.as_deref() => problems.push(format!(
                    "{}: {:?} differs from points[{j}]'s {:?} for the same x",
                    field("x_label"),
                    p.x_label.as_deref().unwrap_or("(none)"),
                    label.unwrap_or("(none)")
                )),
                Some(_) => {}
                None => {
                    label_of_x.insert(x, (i, p.x_label.as_deref()));
                }
            }
        }
        // The normalised average compares the same settings before and after.
        let mut settings: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for p in &self.points {
            if let (Experiment::NormalizedAverage, X::Condition(c)) = (p.experiment, &p.x) {
                settings.entry(p.series.as_str()).or_default().insert(c);
            }
        }
        if let XKind::Condition(conditions) = Experiment::NormalizedAverage.x_kind() {
            for (setting, at) in settings {
                for c in conditions {
                    if !at.contains(c) {
                        problems.push(format!(
                            "normalized_average: setting {setting:?} has points at {} but none \
                             at {c}; the average compares the same settings at both",
                            at.iter().copied().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// A serde_json error's message without its " at line L column C" (the error says the line).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) if e.line() > 0 => text[..at].to_string(),
        _ => text,
    }
}

fn is_fraction(v: f64) -> bool {
    (0.0..=1.0).contains(&v)
}

fn is_whole(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15
}

/// The problems of one point on its own.
fn point_problems(p: &Point, field: &dyn Fn(&str) -> String, problems: &mut Vec<String>) {
    let e = p.experiment;
    match e.series() {
        Some(names) if !names.contains(&p.series.as_str()) => problems.push(format!(
            "{}: {:?} is not a series of {e}; expected one of {}",
            field("series"),
            p.series,
            names.join(", ")
        )),
        _ if p.series.trim().is_empty() => problems.push(format!(
            "{}: expected a setting name, found an empty one",
            field("series")
        )),
        _ => {}
    }
    let x_problem = match (e.x_kind(), &p.x) {
        (XKind::Families, X::Number(v)) if is_whole(*v) && *v >= 0.0 => None,
        (XKind::Families, x) => Some(format!(
            "expected a whole number of finetuning families, 0 or more, found {x}"
        )),
        (XKind::Parameters, X::Number(v)) if v.is_finite() && *v > 0.0 => None,
        (XKind::Parameters, x) => Some(format!(
            "expected a number of parameters, more than 0, found {x}"
        )),
        (XKind::Samples, X::Number(v)) if is_whole(*v) && *v >= 1.0 => None,
        (XKind::Samples, x) => Some(format!(
            "expected a whole number of samples, 1 or more, found {x}"
        )),
        (XKind::Condition(names), X::Condition(c)) if names.contains(&c.as_str()) => None,
        (XKind::Condition(names), x) => {
            Some(format!("expected {} or {}, found {x}", names[0], names[1]))
        }
    };
    if let Some(why) = x_problem {
        problems.push(format!("{}: {why}", field("x")));
    }
    if e == Experiment::SelfConsistency && p.series == "greedy" && p.x != X::Number(1.0) {
        problems.push(format!(
            "{}: greedy decoding is one output, so its x must be 1, found {}",
            field("x"),
            p.x
        ));
    }
    if p.x_label.as_deref().is_some_and(|l| l.trim().is_empty()) {
        problems.push(format!(
            "{}: expected a name, found an empty one",
            field("x_label")
        ));
    }
    if !is_fraction(p.accuracy) {
        problems.push(format!(
            "{}: expected a fraction in [0, 1], found {}",
            field("accuracy"),
            p.accuracy
        ));
    }
    if p.items == 0 {
        problems.push(format!(
            "{}: expected at least 1 evaluated item, found 0",
            field("items")
        ));
    }
    if !is_fraction(p.chance) {
        problems.push(format!(
            "{}: expected a fraction in [0, 1], found {}",
            field("chance"),
            p.chance
        ));
    } else if e == Experiment::NormalizedAverage && p.chance >= 1.0 {
        problems.push(format!(
            "{}: a chance baseline of 1 leaves nothing to normalise against (the normalised \
             score divides by 1 − chance)",
            field("chance")
        ));
    }
    if let Some(correct) = &p.correct {
        let right = correct.iter().filter(|&&c| c).count();
        if correct.len() != p.items {
            problems.push(format!(
                "{}: expected one outcome per item ({}), found {}",
                field("correct"),
                p.items,
                correct.len()
            ));
        } else if p.items > 0 && (right as f64 / p.items as f64 - p.accuracy).abs() > 1e-9 {
            problems.push(format!(
                "{}: {right} of {} right is {}, but accuracy is {}",
                field("correct"),
                p.items,
                right as f64 / p.items as f64,
                p.accuracy
            ));
        }
    }
    if p.item_set.as_deref().is_some_and(|s| s.trim().is_empty()) {
        problems.push(format!(
            "{}: expected a name of the items, found an empty one",
            field("item_set")
        ));
    }
    if let Some(s) = p.seconds {
        if !(s.is_finite() && s >= 0.0) {
            problems.push(format!(
                "{}: expected a number of seconds, 0 or more, found {s}",
                field("seconds")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Exposure;

    pub(crate) fn point(experiment: Experiment, series: &str, x: X, seed: u64) -> Point {
        Point {
            experiment,
            series: series.into(),
            x,
            x_label: None,
            seed,
            accuracy: 0.5,
            items: 4,
            chance: 0.25,
            correct: Some(vec![true, false, true, false]),
            item_set: None,
            seconds: None,
        }
    }

    fn with(points: Vec<Point>) -> Points {
        Points {
            points,
            ..Points::new()
        }
    }

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let path = dir.join("points.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_valid_file_round_trips_and_whole_numbers_stay_whole() {
        let mut points = Points::new();
        points.machine = Some("2 cores".into());
        points
            .insert(point(
                Experiment::TaskScaling,
                "held_out_family",
                X::Number(4.0),
                1,
            ))
            .unwrap();
        let mut p = point(
            Experiment::CotMixture,
            "cot",
            X::Condition("with_cot_data".into()),
            1,
        );
        p.correct = None;
        points.insert(p).unwrap();
        let mut size = point(Experiment::ModelScaling, "finetuned", X::Number(1.5e6), 2);
        size.x_label = Some("tiny".into());
        points.insert(size).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("points.json");
        points.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"x\": 4,"), "{text}");
        assert!(text.contains("\"x\": 1500000,"), "{text}");
        assert!(text.contains("\"x\": \"with_cot_data\""), "{text}");
        assert!(!text.contains("item_set"), "absent options are left out");
        assert_eq!(Points::read(&path).unwrap(), points);
        assert!(points.contains(
            Experiment::TaskScaling,
            "held_out_family",
            &X::Number(4.0),
            1
        ));
        assert!(!points.contains(
            Experiment::TaskScaling,
            "held_out_family",
            &X::Number(4.0),
            2
        ));
        assert_eq!(points.seeds().into_iter().collect::<Vec<_>>(), vec![1, 2]);
        let again = point(
            Experiment::TaskScaling,
            "held_out_family",
            X::Number(4.0),
            1,
        );
        let err = points.insert(again).unwrap_err().to_string();
        assert!(
            err.contains("task_scaling, held_out_family, x = 4, seed 1 is already recorded"),
            "{err}"
        );
    }

    #[test]
    fn read_errors_name_the_file_the_field_and_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"version\": 1, \"points\": [", "points.json:1: EOF while parsing"),
            ("{\"points\": []}", "field `version` is missing (expected 1)"),
            (
                "{\"version\": 2, \"points\": []}",
                "field `version`: 2 is not a version this build reads (expected 1)",
            ),
            (
                "{\"version\": 1,\n\"points\": [{\"experiment\": \"task_scaling\", \"series\": \"held_out_family\",\n\"x\": 0, \"seed\": 1, \"accuracy\": \"high\", \"items\": 3, \"chance\": 0.1}]}",
                "points.json:3: field `points[0].accuracy`: invalid type: string \"high\", expected f64",
            ),
            (
                "{\"version\": 1, \"points\": [{\"experiment\": \"scaling\", \"series\": \"x\", \"x\": 0, \"seed\": 1, \"accuracy\": 0.1, \"items\": 3, \"chance\": 0.1}]}",
                "field `points[0].experiment`: unknown variant `scaling`, expected one of `task_scaling`",
            ),
            (
                "{\"version\": 1, \"points\": [{\"experiment\": \"task_scaling\", \"series\": \"held_out_family\", \"x\": [1], \"seed\": 1, \"accuracy\": 0.1, \"items\": 3, \"chance\": 0.1}]}",
                "field `points[0].x`: invalid type: sequence, expected a number (families, parameters or samples) or a condition name",
            ),
            (
                "{\"version\": 1, \"points\": [{\"experiment\": \"task_scaling\", \"series\": \"held_out_family\", \"x\": 1, \"seed\": 1, \"accuracy\": 0.1, \"items\": 3, \"chance\": 0.1, \"corect\": []}]}",
                "field `points[0].corect`: unknown field `corect`",
            ),
            (
                "{\"version\": 1, \"points\": [{\"experiment\": \"task_scaling\", \"series\": \"held_out_family\", \"x\": 1, \"seed\": 1, \"accuracy\": 1.5, \"items\": 3, \"chance\": 0.1}]}",
                "points.json:0: field `points[0].accuracy` (task_scaling, held_out_family, x = 1, seed 1): expected a fraction in [0, 1], found 1.5",
            ),
        ];
        for (text, expected) in cases {
            let path = write(dir.path(), text);
            let err = Points::read(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
            assert!(err.contains("points.json"), "{err}");
            assert!(!err.contains(" at line "), "{err}");
        }
        let err = Points::read(&dir.path().join("absent.json")).unwrap_err();
        assert!(err.to_string().contains("absent.json"), "{err}");
    }

    #[test]
    fn validation_lists_every_broken_rule() {
        let cond = |c: &str| X::Condition(c.into());
        let mut bad_series = point(Experiment::ModelScaling, "tuned", X::Number(1e6), 1);
        bad_series.items = 0;
        bad_series.correct = Some(Vec::new());
        let mut bad_x = point(
            Experiment::SelfConsistency,
            "self_consistency",
            X::Number(0.5),
            1,
        );
        bad_x.chance = -0.1;
        let greedy = point(Experiment::SelfConsistency, "greedy", X::Number(4.0), 1);
        let families = point(Experiment::TaskScaling, "held_out_family", cond("all"), 1);
        let mut disagree = point(
            Experiment::TaskScaling,
            "held_out_family",
            X::Number(2.0),
            1,
        );
        disagree.accuracy = 0.75;
        let twice = point(
            Experiment::TaskScaling,
            "held_out_family",
            X::Number(2.0),
            1,
        );
        let mut set_a = point(
            Experiment::ZeroShotCot,
            "zero_shot_cot",
            cond("after_finetuning"),
            1,
        );
        set_a.item_set = Some("eval-1".into());
        let mut set_b = point(
            Experiment::ZeroShotCot,
            "zero_shot_cot",
            cond("before_finetuning"),
            1,
        );
        set_b.item_set = Some("eval-1".into());
        set_b.items = 5;
        set_b.correct = None;
        let mut label_a = point(Experiment::ModelScaling, "finetuned", X::Number(2e6), 1);
        label_a.x_label = Some("tiny".into());
        let mut label_b = point(Experiment::ModelScaling, "not_finetuned", X::Number(2e6), 1);
        label_b.x_label = Some("small".into());
        let mut only_after = point(
            Experiment::NormalizedAverage,
            "held_out_family/direct",
            cond("finetuned"),
            1,
        );
        only_after.chance = 1.0;
        let wrong_condition = point(Experiment::CotMixture, "cot", cond("finetuned"), 1);
        let points = with(vec![
            bad_series,
            bad_x,
            greedy,
            families,
            disagree,
            twice,
            set_a,
            set_b,
            label_a,
            label_b,
            only_after,
            wrong_condition,
        ]);
        let err = points.validate().unwrap_err().to_string();
        for expected in [
            "field `points[0].series` (model_scaling, tuned, x = 1000000, seed 1): \"tuned\" is not a series of model_scaling; expected one of finetuned, not_finetuned",
            "field `points[0].items` (model_scaling, tuned, x = 1000000, seed 1): expected at least 1 evaluated item, found 0",
            "field `points[1].x` (self_consistency, self_consistency, x = 0.5, seed 1): expected a whole number of samples, 1 or more, found 0.5",
            "field `points[1].chance` (self_consistency, self_consistency, x = 0.5, seed 1): expected a fraction in [0, 1], found -0.1",
            "greedy decoding is one output, so its x must be 1, found 4",
            "field `points[3].x` (task_scaling, held_out_family, x = all, seed 1): expected a whole number of finetuning families, 0 or more, found all",
            "field `points[4].correct` (task_scaling, held_out_family, x = 2, seed 1): 2 of 4 right is 0.5, but accuracy is 0.75",
            "points[5] repeats points[4]: task_scaling, held_out_family, x = 2, seed 1 is recorded twice",
            "item set \"eval-1\" has 5 items here but 4 in points[6]",
            "field `points[9].x_label` (model_scaling, not_finetuned, x = 2000000, seed 1): \"small\" differs from points[8]'s \"tiny\" for the same x",
            "a chance baseline of 1 leaves nothing to normalise against",
            "normalized_average: setting \"held_out_family/direct\" has points at finetuned but none at not_finetuned",
            "field `points[11].x` (cot_mixture, cot, x = finetuned, seed 1): expected without_cot_data or with_cot_data, found finetuned",
        ] {
            assert!(err.contains(expected), "{err}\n  expected: {expected}");
        }
        assert!(err.starts_with("invalid replication points: "), "{err}");
        // An empty file of points is valid: every experiment is "not run".
        Points::new().validate().unwrap();
        let nan = Points {
            seconds: Some(f64::NAN),
            ..Points::new()
        };
        assert!(nan.validate().is_err());
    }

    #[test]
    fn many_problems_are_counted_after_the_first_twenty() {
        let points = with(
            (0..30)
                .map(|i| {
                    let mut p = point(
                        Experiment::TaskScaling,
                        "held_out_family",
                        X::Number(1.0),
                        i,
                    );
                    p.accuracy = 2.0;
                    p.correct = None;
                    p
                })
                .collect(),
        );
        let err = points.validate().unwrap_err().to_string();
        assert_eq!(err.matches("expected a fraction").count(), SHOWN_PROBLEMS);
        assert!(err.ends_with("; and 10 more"), "{err}");
    }

    #[test]
    fn a_point_from_records_takes_their_outcomes_chance_and_identity() {
        let record = |index: usize, correct: bool, options: usize| SampleRecord {
            exposure: Some(Exposure::HeldOutFamily),
            ..SampleRecord::for_test("parity", index, "(A)", options, correct)
        };
        let samples = vec![record(0, true, 2), record(1, false, 4), record(2, true, 2)];
        let p = Point::from_samples(
            Experiment::ZeroShotCot,
            "zero_shot_cot",
            X::Condition("after_finetuning".into()),
            3,
            &samples,
        )
        .unwrap();
        assert_eq!(p.items, 3);
        assert!((p.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((p.chance - (0.5 + 0.25 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(p.correct.as_deref(), Some(&[true, false, true][..]));
        // The same items answered differently have the same item set; other items do not.
        let mut wrong = samples.clone();
        wrong.iter_mut().for_each(|s| s.correct = false);
        let q = Point::from_samples(
            Experiment::ZeroShotCot,
            "zero_shot_cot",
            X::Condition("before_finetuning".into()),
            3,
            &wrong,
        )
        .unwrap();
        assert_eq!(q.item_set, p.item_set);
        assert!(p.item_set.as_deref().unwrap().starts_with("3-items:"));
        let other = Point::from_samples(
            Experiment::ZeroShotCot,
            "zero_shot_cot",
            X::Condition("before_finetuning".into()),
            3,
            &samples[..2],
        )
        .unwrap();
        assert_ne!(other.item_set, p.item_set);
        with(vec![p, q]).validate().unwrap();
        assert!(Point::from_samples(
            Experiment::ZeroShotCot,
            "zero_shot_cot",
            X::Condition("before_finetuning".into()),
            3,
            &[]
        )
        .is_err());
    }
}
