//! `flan eval compare` end to end: the tiny fixture model answers three prompts (with HTML's
//! special characters in them) as both A and B, the rating page is rendered by a real headless
//! Chromium (Debian's, installed by `cargo xtask setup`), the screenshot is decoded and the
//! dumped DOM must show every pair; choices ticked on the page come back through its script as
//! ratings in terms of the models, and `--ratings` scores them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on one browser run; a page this small renders in about a second.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn flan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flan"))
        .args(args)
        .output()
        .expect("flan runs")
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Runs `cmd` to completion or kills it after `timeout`; stdout and stderr are collected.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> (std::process::ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap().unwrap_or_default();
    let stderr = err_reader.join().unwrap().unwrap_or_default();
    (status, stdout, stderr)
}

/// Headless Chromium on `page` with `extra` arguments (a screenshot or --dump-dom).
fn chromium(page: &Path, profile: &Path, extra: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the rating page is tested in Debian's chromium; run `cargo xtask \
         setup` (it installs it with apt-get)"
    );
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()));
    let (status, stdout, stderr) = run_bounded(&mut cmd, BROWSER_TIMEOUT);
    assert!(status.success(), "{cmd:?} failed ({status}): {stderr}");
    stdout
}

/// A decoded 8-bit RGB or RGBA PNG: width, height, and one byte vector per pixel row.
struct Png {
    width: usize,
    height: usize,
    channels: usize,
    rows: Vec<Vec<u8>>,
}

/// Decodes a non-interlaced 8-bit RGB/RGBA PNG: chunks, zlib (miniz_oxide), row filters.
fn decode_png(bytes: &[u8]) -> Png {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG signature");
    let mut pos = 8;
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut idat = Vec::new();
    let mut saw_end = false;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
                assert_eq!(data[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => saw_end = true,
            _ => {}
        }
        pos += 12 + len;
    }
    assert!(saw_end && width > 0 && height > 0, "truncated PNG");
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("PNG data inflates");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "PNG data size");
    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(height);
    for y in 0..height {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, data) = (line[0], &line[1..]);
        let prev = if y > 0 {
            rows[y - 1].clone()
        } else {
            vec![0; stride]
        };
        let mut row = vec![0u8; stride];
        for x in 0..stride {
            let a = if x >= channels { row[x - channels] } else { 0 };
            let b = prev[x];
            let c = if x >= channels { prev[x - channels] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("row filter {other}"),
            };
            row[x] = data[x].wrapping_add(predictor);
        }
        rows.push(row);
    }
    Png {
        width,
        height,
        channels,
        rows,
    }
}

/// Text as Chromium's DOM serialiser writes a text node.
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
        .replace("\r\n", "\n")
}

fn undo_dom_text(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

const PROMPTS: &str = concat!(
    r#"{"id": "fish&chips", "prompt": "Fish & chips: <script>alert(\"pwned\")</script> 'single' \"double\""}"#,
    "\n",
    r#"{"prompt": "Write a haiku about <b>bold</b> rivers."}"#,
    "\n\n",
    r#"{"id": 3, "prompt": "Explain why the sky is blue & the sea is too."}"#,
    "\n",
);

#[test]
fn compare_renders_in_headless_chromium_and_ratings_map_back_to_models() {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare_cli");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let prompts = work.join("prompts.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let out_dir = work.join("out");
    let model = repo_path("flan-model/tests/fixtures/v1_1");
    let model = model.to_str().unwrap();
    let out = flan(&[
        "eval",
        "compare",
        "--model",
        model,
        "--model",
        model,
        "--prompts",
        prompts.to_str().unwrap(),
        "--output",
        out_dir.to_str().unwrap(),
        "--max-new-tokens",
        "8",
        "--seed",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["pairs"], 3);
    assert_eq!(summary["prompt_format"], "jsonl");
    assert_eq!(summary["blank_lines"], 1);
    assert_eq!(summary["order_seed"], 3);

    // pairs.jsonl: every prompt, both outputs, the recorded side and the model names.
    let pairs: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("pairs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = pairs.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["fish&chips", "L2", "3"]);
    assert!(pairs[0]["prompt"]
        .as_str()
        .unwrap()
        .contains("<script>alert(\"pwned\")"));
    for p in &pairs {
        assert_eq!(p["model_a"], model);
        assert_eq!(p["model_b"], model);
        assert!(p["left"] == "A" || p["left"] == "B", "{p}");
        // The same model greedy twice: the same response.
        assert_eq!(p["output_a"], p["output_b"]);
    }
    let lefts: Vec<&str> = pairs.iter().map(|p| p["left"].as_str().unwrap()).collect();
    assert!(
        lefts.contains(&"A") && lefts.contains(&"B"),
        "counterbalanced: {lefts:?}"
    );

    let page = out_dir.join("compare.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script>alert"),
        "a prompt's markup reached the page"
    );

    // The screenshot: a PNG of the window's size that is not one flat colour.
    let shot = work.join("compare.png");
    chromium(
        &page,
        &work.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,2000".to_string(),
        ],
    );
    println!("screenshot of the rating page: {}", shot.display());
    let png = decode_png(&std::fs::read(&shot).expect("the screenshot was written"));
    assert_eq!((png.width, png.height), (1200, 2000));
    let first = png.rows[0][..png.channels].to_vec();
    let distinct_rows = png
        .rows
        .iter()
        .filter(|row| row.chunks(png.channels).any(|px| px != first.as_slice()))
        .count();
    assert!(
        distinct_rows > 20,
        "screenshot is nearly blank ({distinct_rows} rows differ)"
    );

    // The DOM after the script ran: every pair's id and both outputs, no rating yet.
    let dom = chromium(
        &page,
        &work.join("profile-dom"),
        &["--dump-dom".to_string()],
    );
    assert!(
        dom.contains("0 of 3 rated"),
        "the page's script did not run:\n{dom}"
    );
    assert_eq!(dom.matches("<section class=\"pair\"").count(), 3);
    for p in &pairs {
        let id = p["id"].as_str().unwrap();
        assert!(
            dom.contains(&format!("<span class=\"pair-id\">{}</span>", dom_text(id))),
            "pair {id} missing"
        );
        assert!(
            dom.contains(&dom_text(p["prompt"].as_str().unwrap())),
            "prompt of {id}"
        );
        for side in ["output_a", "output_b"] {
            let text = dom_text(p[side].as_str().unwrap());
            assert!(
                dom.contains(&format!("<div class=\"text output\">{text}</div>")),
                "{side} of {id} missing: {text:?}"
            );
        }
    }
    assert!(!dom.contains("<script>alert"));

    // A rater's choices: pair 1 left, pair 2 right, pair 3 tie, ticked in a copy of the page.
    let choices = ["left", "right", "tie"];
    let mut ticked = html.clone();
    for (i, choice) in choices.iter().enumerate() {
        let radio = format!("name=\"choice-{i}\" value=\"{choice}\"");
        assert_eq!(ticked.matches(&radio).count(), 1, "{radio}");
        ticked = ticked.replace(&radio, &format!("{radio} checked"));
    }
    let ticked_page = out_dir.join("ticked.html");
    std::fs::write(&ticked_page, ticked).unwrap();
    let dom = chromium(
        &ticked_page,
        &work.join("profile-ticked"),
        &["--dump-dom".to_string()],
    );
    assert!(dom.contains("3 of 3 rated"), "{dom}");
    let start = dom.find("<div class=\"text\" id=\"jsonl\">").unwrap();
    let rest = &dom[start + "<div class=\"text\" id=\"jsonl\">".len()..];
    let jsonl = undo_dom_text(&rest[..rest.find("</div>").unwrap()]);
    let expected: Vec<String> = pairs
        .iter()
        .zip(choices)
        .map(|(p, choice)| {
            let left = p["left"].as_str().unwrap();
            let right = if left == "A" { "B" } else { "A" };
            let preferred = match choice {
                "left" => left,
                "right" => right,
                _ => "tie",
            };
            serde_json::json!({"id": p["id"], "preferred": preferred}).to_string()
        })
        .collect();
    let got: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<serde_json::Value> = expected
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        got, want,
        "the page's ratings do not map positions back to models"
    );

    // Those ratings, scored: B wins the pairs where B was chosen, the tie counts half.
    let ratings = work.join("ratings.jsonl");
    std::fs::write(&ratings, format!("{jsonl}\n")).unwrap();
    let out = flan(&[
        "eval",
        "compare",
        "--ratings",
        ratings.to_str().unwrap(),
        "--pairs",
        out_dir.join("pairs.jsonl").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wins_b = want.iter().filter(|r| r["preferred"] == "B").count();
    let wins_a = want.iter().filter(|r| r["preferred"] == "A").count();
    assert_eq!(w["wins_b"], wins_b);
    assert_eq!(w["wins_a"], wins_a);
    assert_eq!(w["ties"], 1);
    assert_eq!(w["left_preferred"], 1);
    let rate = (wins_b as f64 + 0.5) / 3.0;
    assert!(
        (w["win_rate_b"].as_f64().unwrap() - rate).abs() < 1e-12,
        "{w}"
    );
    let (lo, hi) = (
        w["ci95_low"].as_f64().unwrap(),
        w["ci95_high"].as_f64().unwrap(),
    );
    assert!(0.0 <= lo && lo <= rate && rate <= hi && hi <= 1.0, "{w}");
    assert_eq!(w["interval"], "wilson");
}

#[test]
fn compare_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo_path("flan-model/tests/fixtures/v1_1");
    let model = model.to_str().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"ok\"}\n{\"prompt\": 5}\n").unwrap();
    let out_dir = dir.path().join("out");
    let out = flan(&[
        "eval",
        "compare",
        "--model",
        model,
        "--model",
        model,
        "--prompts",
        prompts.to_str().unwrap(),
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.jsonl:2: field `prompt`"), "{err}");
    assert!(!out_dir.exists(), "nothing is written on bad input");

    // One model only: a usage error.
    let out = flan(&[
        "eval",
        "compare",
        "--model",
        model,
        "--prompts",
        "x",
        "--output",
        "y",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model twice"));

    // Ratings against pairs written by hand: an unknown id, then a duplicate.
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        r#"{"id":"q1","prompt":"p","model_a":"a","model_b":"b","output_a":"x","output_b":"y","left":"B","order_seed":0}"#,
    )
    .unwrap();
    let ratings = dir.path().join("r.jsonl");
    for (text, expected) in [
        (
            "{\"id\": \"q1\", \"preferred\": \"B\"}\n{\"id\": \"q7\", \"preferred\": \"A\"}\n",
            "r.jsonl:2: field `id`: no pair has id `q7`",
        ),
        (
            "{\"id\": \"q1\", \"preferred\": \"B\"}\n{\"id\": \"q1\", \"preferred\": \"A\"}\n",
            "r.jsonl:2: field `id`: pair `q1` was already rated on line 1",
        ),
        (
            "{\"id\": \"q1\", \"preferred\": \"right\"}\n",
            "r.jsonl:1: field `preferred`: expected",
        ),
    ] {
        std::fs::write(&ratings, text).unwrap();
        let out = flan(&[
            "eval",
            "compare",
            "--ratings",
            ratings.to_str().unwrap(),
            "--pairs",
            pairs.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
    // A good rating: both the JSON and the Markdown table.
    std::fs::write(&ratings, "{\"id\": \"q1\", \"preferred\": \"B\"}\n").unwrap();
    let out = flan(&[
        "eval",
        "compare",
        "--ratings",
        ratings.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut docs = serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>();
    let w = docs.next().unwrap().unwrap();
    assert_eq!(w["win_rate_b"], 1.0);
    assert_eq!(w["left_preferred"], 1);
    assert!(text.contains("| 1 of 1 | 1 | 0 | 0 | 100.0% |"), "{text}");
}

/// `--dtype bf16` reaches both models: each response is what `flan generate --dtype bf16` gives
/// for the same prompt (one prompt per call on both sides, on this machine: no bf16 numbers are
/// pinned).
#[test]
fn compare_in_bf16_generates_as_flan_generate_does() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let model = repo_path("flan-model/tests/fixtures/v1_1");
    let model = model.to_str().unwrap();
    let out_dir = dir.path().join("out");
    let common = [
        "--max-new-tokens",
        "6",
        "--batch-size",
        "1",
        "--dtype",
        "bf16",
    ];
    let mut args = vec!["eval", "compare", "--model", model, "--model", model];
    args.extend(["--prompts", prompts.to_str().unwrap()]);
    args.extend(["--output", out_dir.to_str().unwrap()]);
    args.extend(common);
    let out = flan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pairs: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("pairs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let input = dir.path().join("inputs.jsonl");
    let text: String = pairs
        .iter()
        .map(|p| format!("{}\n", serde_json::json!({ "inputs": p["prompt"] })))
        .collect();
    std::fs::write(&input, text).unwrap();
    let generated = dir.path().join("generated.jsonl");
    let mut args = vec!["generate", "--model", model];
    args.extend(["--input", input.to_str().unwrap()]);
    args.extend(["--output", generated.to_str().unwrap()]);
    args.extend(common);
    let out = flan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: Vec<serde_json::Value> = std::fs::read_to_string(&generated)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(generated.len(), pairs.len());
    for (g, p) in generated.iter().zip(&pairs) {
        assert_eq!(g["text"], p["output_a"], "prompt {}", p["prompt"]);
        assert_eq!(g["text"], p["output_b"], "prompt {}", p["prompt"]);
    }
}
