//! `flan serve` over real HTTP on 127.0.0.1 (ephemeral ports) with the tiny v1_1 fixture:
//! every endpoint, streaming, greedy outputs equal to batch-1 `generate`, concurrency, and the
//! documented status codes for every refusal, the server serving on after each.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flan_data::tokenizer::Tokenizer;
use flan_model::generate::{generate, GenerationConfig, Strategy};
use flan_model::T5ForConditionalGeneration;
use flan_serve::{start, Limits, ModelSpec, RunningServer, ServeConfig};
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flan-model/tests/fixtures/v1_1")
}

fn serve(limits: Limits) -> RunningServer {
    let config = ServeConfig {
        model: ModelSpec {
            model: fixture().display().to_string(),
            adapter: None,
            device: "cpu".parse().unwrap(),
            dtype: "f32".parse().unwrap(),
        },
        addr: "127.0.0.1:0".parse().unwrap(),
        limits,
        seed: 0,
    };
    let server = start(config, std::future::pending()).expect("server starts");
    server.wait_loaded().expect("the fixture loads");
    server
}

fn url(server: &RunningServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// (status, body, retry-after) of a POST of `body`.
fn post_raw(server: &RunningServer, path: &str, body: &str) -> (u16, String, Option<String>) {
    let result = agent()
        .post(&url(server, path))
        .set("content-type", "application/json")
        .send_string(body);
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let status = response.status();
    let retry = response.header("retry-after").map(str::to_string);
    (status, response.into_string().unwrap(), retry)
}

fn post(server: &RunningServer, path: &str, body: Value) -> (u16, Value) {
    let (status, text, _) = post_raw(server, path, &body.to_string());
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
    )
}

fn get(server: &RunningServer, path: &str) -> (u16, String) {
    match agent().get(&url(server, path)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// The `data:` payloads of a server-sent event stream.
fn sse(server: &RunningServer, path: &str, body: Value) -> Vec<String> {
    let response = agent()
        .post(&url(server, path))
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert_eq!(response.status(), 200);
    assert!(response
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    BufReader::new(response.into_reader())
        .lines()
        .map(Result::unwrap)
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

struct Reference {
    model: T5ForConditionalGeneration,
    tokenizer: Tokenizer,
}

impl Reference {
    fn load() -> Self {
        let (model, _) = T5ForConditionalGeneration::from_pretrained(
            fixture(),
            tch::Device::Cpu,
            tch::Kind::Float,
        )
        .unwrap();
        let tokenizer = Tokenizer::from_file(fixture().join("tokenizer.json")).unwrap();
        Reference { model, tokenizer }
    }

    fn ids(&self, text: &str) -> Vec<i64> {
        self.tokenizer
            .encode(text)
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect()
    }

    /// Batch-1 `generate` of `text`: what `flan generate` gives.
    fn generate(&self, text: &str, config: &GenerationConfig) -> Vec<i64> {
        let ids = self.ids(text);
        let input = tch::Tensor::from_slice(&ids).view([1, ids.len() as i64]);
        let mask = input.ones_like();
        generate(&self.model, &input, &mask, config).unwrap()[0][0]
            .token_ids
            .clone()
    }

    fn text(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().map(|&t| t as u32).collect();
        self.tokenizer.decode(&ids, true).unwrap()
    }
}

const PROMPTS: [&str; 5] = [
    "Translate to German: the house is small.",
    "Q: What is two plus two? A:",
    "hi",
    "Premise: a man plays a guitar on a stage in front of many people. Hypothesis: a person makes music. Options: yes, no, it is not possible to tell.",
    "abc def",
];

fn token_ids(details: &Value) -> Vec<i64> {
    details["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

/// Every line of the exposition is a comment or `name{labels} value` with a number.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name of {line}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "labels of {line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("label in {line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
            }
        }
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "duplicate {series}"
        );
    }
    out
}

fn metrics(server: &RunningServer) -> BTreeMap<String, f64> {
    let (status, text) = get(server, "/metrics");
    assert_eq!(status, 200);
    parse_prometheus(&text)
}

/// Polls `/metrics` until `ok` holds (at most 30 s).
fn wait_metrics(server: &RunningServer, what: &str, ok: impl Fn(&BTreeMap<String, f64>) -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if ok(&metrics(server)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("metrics never showed {what}: {:?}", metrics(server));
}

#[test]
fn concurrent_greedy_requests_equal_batch_one_generate() {
    let server = serve(Limits::default());
    let reference = Reference::load();
    let max_new = [40usize, 7, 25, 60, 1];
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .zip(max_new)
            .map(|(p, m)| {
                let server = &server;
                s.spawn(move || {
                    post(
                        server,
                        "/generate",
                        json!({"inputs": p, "parameters": {"max_new_tokens": m, "details": true}}),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((prompt, m), (status, body)) in PROMPTS.iter().zip(max_new).zip(&answers) {
        assert_eq!(*status, 200, "{body}");
        let want = reference.generate(prompt, &GenerationConfig::greedy(m));
        assert_eq!(token_ids(&body["details"]), want, "{prompt}");
        assert_eq!(body["generated_text"], json!(reference.text(&want)));
        let reason = if want.last() == Some(&1) {
            "eos_token"
        } else {
            "length"
        };
        assert_eq!(body["details"]["finish_reason"], json!(reason));
        assert_eq!(body["details"]["generated_tokens"], json!(want.len()));
    }
    let m = metrics(&server);
    assert_eq!(
        m["flan_requests_total{endpoint=\"/generate\",status=\"200\"}"],
        PROMPTS.len() as f64
    );
    let generated: usize = max_new
        .iter()
        .zip(PROMPTS)
        .map(|(&n, p)| reference.generate(p, &GenerationConfig::greedy(n)).len())
        .sum();
    assert_eq!(m["flan_generated_tokens_total"], generated as f64);
    assert!(m["flan_batch_size_steps_count"] > 0.0);
    assert_eq!(
        m["flan_time_to_first_token_seconds_count"],
        PROMPTS.len() as f64
    );
    server.shutdown().unwrap();
}

#[test]
fn streams_carry_the_same_tokens_and_seeds_fix_samples() {
    let server = serve(Limits::default());
    let reference = Reference::load();
    let prompt = PROMPTS[0];
    let events = sse(
        &server,
        "/generate_stream",
        json!({"inputs": prompt, "parameters": {"max_new_tokens": 30}}),
    );
    let events: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let want = reference.generate(prompt, &GenerationConfig::greedy(30));
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["token"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, want);
    let last = events.last().unwrap();
    assert_eq!(last["generated_text"], json!(reference.text(&want)));
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| e["generated_text"].is_null()));
    let streamed: String = events
        .iter()
        .filter(|e| !e["token"]["special"].as_bool().unwrap())
        .map(|e| e["token"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, reference.text(&want));

    // A seeded sample is batch-1 `generate`'s sample with that seed, alone or among others.
    let config = GenerationConfig {
        max_new_tokens: 25,
        strategy: Strategy::Sample {
            temperature: 0.9,
            top_k: Some(30),
            top_p: Some(0.95),
            seed: 42,
        },
        num_return_sequences: 1,
        use_cache: true,
    };
    let want = reference.generate(prompt, &config);
    let body = json!({"inputs": prompt, "parameters": {
        "do_sample": true, "temperature": 0.9, "top_k": 30, "top_p": 0.95, "seed": 42,
        "max_new_tokens": 25, "details": true}});
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let noise: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let server = &server;
                s.spawn(move || {
                    post(
                        server,
                        "/generate",
                        json!({"inputs": p, "parameters": {"max_new_tokens": 50}}),
                    )
                })
            })
            .collect();
        let mine: Vec<_> = (0..3)
            .map(|_| {
                let (server, body) = (&server, body.clone());
                s.spawn(move || post(server, "/generate", body))
            })
            .collect();
        for h in noise {
            assert_eq!(h.join().unwrap().0, 200);
        }
        mine.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, got) in results {
        assert_eq!(status, 200);
        assert_eq!(token_ids(&got["details"]), want);
        assert_eq!(got["details"]["seed"], json!(42));
    }
    server.shutdown().unwrap();
}

#[test]
fn openai_completions_plain_and_streamed() {
    let server = serve(Limits::default());
    let reference = Reference::load();
    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"model": "anything", "prompt": [PROMPTS[0], PROMPTS[2]], "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], json!("text_completion"));
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    let mut completion_tokens = 0;
    for (i, prompt) in [PROMPTS[0], PROMPTS[2]].iter().enumerate() {
        let want = reference.generate(prompt, &GenerationConfig::greedy(12));
        completion_tokens += want.len();
        assert_eq!(choices[i]["index"], json!(i));
        assert_eq!(choices[i]["text"], json!(reference.text(&want)));
        let reason = if want.last() == Some(&1) {
            "stop"
        } else {
            "length"
        };
        assert_eq!(choices[i]["finish_reason"], json!(reason));
    }
    let prompt_tokens = reference.ids(PROMPTS[0]).len() + reference.ids(PROMPTS[2]).len();
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
               "total_tokens": prompt_tokens + completion_tokens})
    );

    // n samples with a seed: choice j uses seed + j, the same again in a second request.
    let sampled =
        json!({"prompt": PROMPTS[1], "max_tokens": 10, "n": 3, "seed": 7, "temperature": 0.8});
    let (s1, a) = post(&server, "/v1/completions", sampled.clone());
    let (s2, b) = post(&server, "/v1/completions", sampled);
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a["choices"], b["choices"]);
    for j in 0..3u64 {
        let config = GenerationConfig {
            max_new_tokens: 10,
            strategy: Strategy::Sample {
                temperature: 0.8,
                top_k: None,
                top_p: None,
                seed: 7 + j,
            },
            num_return_sequences: 1,
            use_cache: true,
        };
        let want = reference.generate(PROMPTS[1], &config);
        assert_eq!(
            a["choices"][j as usize]["text"],
            json!(reference.text(&want)),
            "choice {j}"
        );
    }

    // Streamed: chunks whose texts join to the plain answer, then [DONE].
    let plain = reference.text(&reference.generate(PROMPTS[3], &GenerationConfig::greedy(20)));
    let events = sse(
        &server,
        "/v1/completions",
        json!({"prompt": PROMPTS[3], "max_tokens": 20, "temperature": 0, "stream": true}),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, plain);
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());

    // A stop sequence cuts the text before it (OpenAI) and ends the sequence.
    let words: Vec<&str> = plain.split_whitespace().collect();
    if words.len() >= 3 {
        let stop = words[2];
        let cut = &plain[..plain.find(stop).unwrap()];
        let (status, body) = post(
            &server,
            "/v1/completions",
            json!({"prompt": PROMPTS[3], "max_tokens": 20, "temperature": 0, "stop": stop}),
        );
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["text"], json!(cut));
        assert_eq!(body["choices"][0]["finish_reason"], json!("stop"));
        let events = sse(
            &server,
            "/v1/completions",
            json!({"prompt": PROMPTS[3], "max_tokens": 20, "temperature": 0, "stop": [stop], "stream": true}),
        );
        let text: String = events[..events.len() - 1]
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(text, cut);
    } else {
        panic!("the fixture's answer is too short to test stop sequences: {plain:?}");
    }
    server.shutdown().unwrap();
}

/// `num_beams` > 1 on /generate is batch-1 beam search, as `flan generate --num-beams`.
#[test]
fn beam_search_equals_generate() {
    let server = serve(Limits::default());
    let reference = Reference::load();
    for (prompt, beams) in [(PROMPTS[0], 3), (PROMPTS[1], 2)] {
        let config = GenerationConfig {
            max_new_tokens: 24,
            strategy: Strategy::Beam {
                num_beams: beams,
                length_penalty: 1.0,
                early_stopping: flan_model::generate::EarlyStopping::False,
            },
            num_return_sequences: 1,
            use_cache: true,
        };
        let want = reference.generate(prompt, &config);
        let (status, body) = post(
            &server,
            "/generate",
            json!({"inputs": prompt, "parameters": {"num_beams": beams, "max_new_tokens": 24, "details": true}}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(token_ids(&body["details"]), want);
        assert_eq!(body["generated_text"], json!(reference.text(&want)));
    }
    server.shutdown().unwrap();
}

#[test]
fn score_health_info_and_metrics() {
    let server = serve(Limits::default());
    let reference = Reference::load();
    let targets = ["yes", "no", "it is not possible to tell"];
    let (status, body) = post(
        &server,
        "/score",
        json!({"inputs": PROMPTS[3], "targets": targets}),
    );
    assert_eq!(status, 200, "{body}");
    let inputs = vec![reference.ids(PROMPTS[3]); 3];
    let target_ids: Vec<Vec<i64>> = targets.iter().map(|t| reference.ids(t)).collect();
    let want = flan_model::score::score_batch(&reference.model, &inputs, &target_ids).unwrap();
    for (i, w) in want.iter().enumerate() {
        let got = &body["scores"][i];
        assert_eq!(got["target"], json!(targets[i]));
        assert_eq!(got["num_tokens"], json!(w.num_tokens));
        let lp = got["logprob"].as_f64().unwrap();
        assert!(
            (lp - w.logprob).abs() <= 1e-6 * w.logprob.abs().max(1.0),
            "{lp} vs {}",
            w.logprob
        );
    }

    let (status, health) = get(&server, "/health");
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, info) = get(&server, "/info");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["model"]["dtype"], json!("f32"));
    assert_eq!(info["model"]["device"], json!("cpu"));
    assert_eq!(info["model"]["vocab_size"], json!(82));
    assert_eq!(
        info["limits"]["max_new_tokens"],
        json!(Limits::default().max_new_tokens)
    );

    let (status, text) = get(&server, "/metrics");
    assert_eq!(status, 200);
    for family in [
        "flan_requests_total counter",
        "flan_queue_depth gauge",
        "flan_batch_size gauge",
        "flan_generated_tokens_total counter",
        "flan_time_to_first_token_seconds histogram",
        "flan_request_duration_seconds histogram",
        "flan_batch_size_steps histogram",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "{family}");
    }
    let m = parse_prometheus(&text);
    assert_eq!(
        m["flan_requests_total{endpoint=\"/score\",status=\"200\"}"],
        1.0
    );
    assert_eq!(
        m["flan_request_duration_seconds_count{endpoint=\"/score\"}"],
        1.0
    );
    assert_eq!(m["flan_queue_depth"], 0.0);
    let (status, _) = get(&server, "/nope");
    assert_eq!(status, 404);
    server.shutdown().unwrap();
}

#[test]
fn health_is_503_until_the_model_is_loaded() {
    let config = ServeConfig {
        model: ModelSpec {
            model: tempfile::tempdir()
                .unwrap()
                .path()
                .join("missing")
                .display()
                .to_string(),
            adapter: None,
            device: "cpu".parse().unwrap(),
            dtype: "f32".parse().unwrap(),
        },
        addr: "127.0.0.1:0".parse().unwrap(),
        limits: Limits::default(),
        seed: 0,
    };
    let server = start(config, std::future::pending()).unwrap();
    assert!(server.wait_loaded().is_err());
    let (status, body) = get(&server, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("failed"));
    let (status, body) = post(&server, "/generate", json!({"inputs": "x"}));
    assert_eq!(status, 503, "{body}");
    server.shutdown().unwrap();
}

/// Every refusal has its status and a message naming the limit or the field; after each the
/// server still answers a normal request correctly.
#[test]
fn refusals_get_their_status_and_the_server_goes_on() {
    let limits = Limits {
        max_input_tokens: 60,
        max_new_tokens: 64,
        max_body_bytes: 2000,
        max_sequences: 4,
        ..Limits::default()
    };
    let server = serve(limits);
    let reference = Reference::load();
    assert!(reference.ids(PROMPTS[3]).len() > 60);
    let want = reference.generate(PROMPTS[2], &GenerationConfig::greedy(10));
    let still_serving = || {
        let (status, body) = post(
            &server,
            "/generate",
            json!({"inputs": PROMPTS[2], "parameters": {"max_new_tokens": 10, "details": true}}),
        );
        assert_eq!(status, 200);
        assert_eq!(token_ids(&body["details"]), want);
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/generate", "{\"inputs\": ".into(), 400, "not valid JSON"),
        ("/generate", "[1, 2]".into(), 400, "body"),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"max_new_tokens": "ten"}}).to_string(),
            400,
            "parameters.max_new_tokens",
        ),
        (
            "/generate",
            json!({"parameters": {}}).to_string(),
            400,
            "inputs",
        ),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"max_new_tokens": 65}}).to_string(),
            422,
            "--max-new-tokens",
        ),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"max_new_tokens": 0}}).to_string(),
            422,
            "--max-new-tokens",
        ),
        (
            "/generate",
            json!({"inputs": PROMPTS[3]}).to_string(),
            422,
            "--max-input-tokens",
        ),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"temperature": -1.0}}).to_string(),
            422,
            "temperature",
        ),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"top_p": 2.0}}).to_string(),
            422,
            "top_p",
        ),
        (
            "/generate_stream",
            json!({"inputs": "x", "parameters": {"num_beams": 4}}).to_string(),
            422,
            "num_beams",
        ),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"num_beams": 5}}).to_string(),
            422,
            "--max-sequences",
        ),
        (
            "/generate",
            json!({"inputs": "x".repeat(3000)}).to_string(),
            413,
            "--max-body-bytes",
        ),
        (
            "/generate_stream",
            json!({"inputs": PROMPTS[3]}).to_string(),
            422,
            "--max-input-tokens",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "n": 5, "temperature": 1}).to_string(),
            422,
            "--max-sequences",
        ),
        (
            "/v1/completions",
            json!({"prompt": 3}).to_string(),
            400,
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "max_tokens": 100}).to_string(),
            422,
            "--max-new-tokens",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 5}).to_string(),
            422,
            "logprobs = 5 is not supported",
        ),
        (
            "/generate",
            json!({"inputs": "x", "parameters": {"repetition_penalty": 1.3}}).to_string(),
            422,
            "parameters.repetition_penalty",
        ),
        ("/score", json!({"inputs": "x"}).to_string(), 400, "targets"),
        (
            "/score",
            json!({"inputs": "x", "targets": ["a", "b", "c", "d", "e"]}).to_string(),
            422,
            "--max-sequences",
        ),
        ("/score", "\u{0}\u{ff}garbage".into(), 400, "not valid JSON"),
    ];
    for (path, body, status, needle) in cases {
        let (got, text, _) = post_raw(&server, path, &body);
        assert_eq!(got, status, "{path} {body}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON error body: {text}"));
        let message = if path.starts_with("/v1/") {
            v["error"]["message"].as_str().unwrap().to_string()
        } else {
            v["error"].as_str().unwrap().to_string()
        };
        assert!(message.contains(needle), "{path} {body}: {message}");
        still_serving();
    }
    // No-op values of unsupported fields, and unknown fields, pass.
    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "hi", "max_tokens": 3, "temperature": 0, "n": 2, "echo": false,
               "logprobs": null, "presence_penalty": 0, "user": "someone"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["text"], body["choices"][1]["text"],
        "n greedy copies"
    );
    let m = metrics(&server);
    assert_eq!(
        m["flan_requests_total{endpoint=\"/generate\",status=\"422\"}"],
        7.0
    );
    assert_eq!(
        m["flan_requests_total{endpoint=\"/generate\",status=\"413\"}"],
        1.0
    );
    server.shutdown().unwrap();
}

/// A prompt whose greedy output runs to 400 tokens without EOS (checked), to hold a batch slot.
fn long_prompt(reference: &Reference) -> &'static str {
    for p in PROMPTS {
        let out = reference.generate(p, &GenerationConfig::greedy(400));
        if !out.contains(&1) {
            return p;
        }
    }
    panic!("every fixture prompt reaches EOS within 400 tokens");
}

#[test]
fn a_full_queue_gets_429_with_retry_after() {
    let limits = Limits {
        max_queue: 2,
        max_batch_size: 1,
        max_new_tokens: 400,
        ..Limits::default()
    };
    let server = serve(limits);
    let reference = Reference::load();
    // More sequences in one request than the queue holds: refused whole, whatever is running.
    let (status, text, retry) = post_raw(
        &server,
        "/v1/completions",
        &json!({"prompt": ["a", "b", "c"], "temperature": 0}).to_string(),
    );
    assert_eq!(status, 429, "{text}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(text.contains("--max-queue 2"));
    // One long stream holds the only batch slot; two requests wait; the next is refused.
    let long = long_prompt(&reference);
    let stream = agent()
        .post(&url(&server, "/generate_stream"))
        .send_string(&json!({"inputs": long, "parameters": {"max_new_tokens": 400}}).to_string())
        .unwrap();
    let mut reader = BufReader::new(stream.into_reader());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: "), "{first}");
    std::thread::scope(|s| {
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let server = &server;
                s.spawn(move || {
                    post(
                        server,
                        "/generate",
                        json!({"inputs": "hi", "parameters": {"max_new_tokens": 3}}),
                    )
                })
            })
            .collect();
        wait_metrics(&server, "two waiting", |m| m["flan_queue_depth"] == 2.0);
        let (status, text, retry) =
            post_raw(&server, "/generate", &json!({"inputs": "hi"}).to_string());
        assert_eq!(status, 429, "{text}");
        assert_eq!(retry.as_deref(), Some("1"));
        // The client of the long stream goes away: its slot is freed and the waiting ones run.
        drop(reader);
        for h in waiting {
            assert_eq!(h.join().unwrap().0, 200);
        }
    });
    wait_metrics(&server, "the stream cancelled", |m| {
        m["flan_cancelled_sequences_total"] >= 1.0
    });
    let m = metrics(&server);
    assert!(
        m["flan_generated_tokens_total"] < 400.0 + 6.0,
        "the cancelled stream stopped early"
    );
    assert_eq!(
        m["flan_requests_total{endpoint=\"/generate\",status=\"429\"}"],
        1.0
    );
    let (status, _) = post(
        &server,
        "/generate",
        json!({"inputs": "hi", "parameters": {"max_new_tokens": 3}}),
    );
    assert_eq!(status, 200);
    server.shutdown().unwrap();
}

/// A client that sends a (non-streaming) request and hangs up frees its batch slot.
#[test]
fn a_client_that_disconnects_frees_its_slot() {
    use std::io::Write;
    let limits = Limits {
        max_new_tokens: 400,
        ..Limits::default()
    };
    let server = serve(limits);
    let reference = Reference::load();
    let body = json!({"inputs": long_prompt(&reference), "parameters": {"max_new_tokens": 400}})
        .to_string();
    let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
    write!(
        tcp,
        "POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    wait_metrics(&server, "the request in the batch", |m| {
        m["flan_batch_size"] == 1.0
    });
    drop(tcp);
    wait_metrics(&server, "the sequence cancelled", |m| {
        m["flan_cancelled_sequences_total"] == 1.0 && m["flan_batch_size"] == 0.0
    });
    let m = metrics(&server);
    assert!(m["flan_generated_tokens_total"] < 400.0);
    assert_eq!(
        m["flan_requests_total{endpoint=\"/generate\",status=\"499\"}"],
        1.0
    );
    server.shutdown().unwrap();
}

#[test]
fn a_request_over_its_time_gets_504_and_frees_its_slot() {
    let limits = Limits {
        request_timeout: Duration::from_millis(1),
        max_new_tokens: 400,
        ..Limits::default()
    };
    let server = serve(limits);
    let reference = Reference::load();
    let long = long_prompt(&reference);
    let (status, body) = post(
        &server,
        "/generate",
        json!({"inputs": long, "parameters": {"max_new_tokens": 400}}),
    );
    assert_eq!(status, 504, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("--request-timeout"));
    wait_metrics(&server, "an empty batch", |m| m["flan_batch_size"] == 0.0);
    let m = metrics(&server);
    assert!(
        m["flan_generated_tokens_total"] < 400.0,
        "the sequence stopped with its request"
    );
    let (status, _) = get(&server, "/health");
    assert_eq!(status, 200);
    server.shutdown().unwrap();
}

/// Shutdown drains: a stream in flight runs to its end, then the server stops.
#[test]
fn shutdown_finishes_requests_in_flight() {
    let server = serve(Limits::default());
    let reference = Reference::load();
    let want = reference.generate(PROMPTS[0], &GenerationConfig::greedy(40));
    let stream = agent()
        .post(&url(&server, "/generate_stream"))
        .send_string(
            &json!({"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 40}}).to_string(),
        )
        .unwrap();
    let addr = server.addr();
    let stopper = std::thread::spawn(move || server.shutdown());
    let mut body = String::new();
    stream.into_reader().read_to_string(&mut body).unwrap();
    let ids: Vec<i64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["token"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, want);
    stopper.join().unwrap().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed"
    );
}

/// What the official `openai` client parsed from `flan serve` (xtask/fixtures/openai_client.py,
/// streaming and not) is what the server gives today.
#[test]
fn the_official_openai_clients_transcript_still_holds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai_client.json");
    let transcript: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let server = serve(Limits {
        max_new_tokens: 64,
        ..Limits::default()
    });
    let cases = transcript["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let (status, body) = post(&server, "/v1/completions", case["request"].clone());
        assert_eq!(status, 200, "{}: {body}", case["name"]);
        let got: Vec<Value> = body["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!({"text": c["text"], "index": c["index"], "finish_reason": c["finish_reason"]}))
            .collect();
        assert_eq!(json!(got), case["choices"], "{}", case["name"]);
        assert_eq!(
            body["usage"]["prompt_tokens"],
            case["usage"]["prompt_tokens"]
        );
        assert_eq!(
            body["usage"]["completion_tokens"],
            case["usage"]["completion_tokens"]
        );
    }
    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"model": "m", "prompt": "hi", "max_tokens": 1000}),
    );
    assert_eq!(json!(status), transcript["refused"]["status"]);
    assert_eq!(body["error"]["message"], transcript["refused"]["message"]);
    server.shutdown().unwrap();
}

/// Seeded random bodies — mutated valid requests, truncations, wrong types, odd Unicode — on
/// every POST endpoint: each gets an answer with a JSON error or a 200, and the server answers
/// a normal request correctly afterwards.
#[test]
fn no_body_crashes_the_server() {
    use rand::{Rng, SeedableRng};
    let server = serve(Limits {
        max_new_tokens: 16,
        max_input_tokens: 200,
        max_body_bytes: 4096,
        request_timeout: Duration::from_secs(20),
        ..Limits::default()
    });
    let valid = [
        (
            "/generate",
            json!({"inputs": "hi", "parameters": {"max_new_tokens": 4, "stop": ["a"], "details": true}}),
        ),
        (
            "/generate_stream",
            json!({"inputs": "héllo ✓", "parameters": {"max_new_tokens": 3, "do_sample": true}}),
        ),
        (
            "/v1/completions",
            json!({"prompt": ["a", "b"], "max_tokens": 3, "n": 2, "stop": "x", "stream": true}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "q", "max_tokens": 2, "temperature": 0}),
        ),
        ("/score", json!({"inputs": "x", "targets": ["yes", "no"]})),
    ];
    let odd = [
        json!(null),
        json!(-1),
        json!(1e300),
        json!("\u{0}\u{fffd}é✓"),
        json!([]),
        json!({}),
        json!(true),
        json!(u64::MAX),
        json!(0.5),
        json!("a".repeat(300)),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for round in 0..150 {
        let (path, body) = &valid[round % valid.len()];
        let mut body = body.clone();
        let text = match rng.gen_range(0..4) {
            0 => {
                // Replace a random top-level or parameters field with an odd value.
                let value = odd[rng.gen_range(0..odd.len())].clone();
                let obj = body.as_object_mut().unwrap();
                let keys: Vec<String> = obj.keys().cloned().collect();
                let key = &keys[rng.gen_range(0..keys.len())];
                if let Some(params) = obj.get_mut(key).and_then(Value::as_object_mut) {
                    let inner: Vec<String> = params.keys().cloned().collect();
                    let k = &inner[rng.gen_range(0..inner.len())];
                    params.insert(k.clone(), value);
                } else {
                    obj.insert(key.clone(), value);
                }
                body.to_string()
            }
            1 => {
                let t = body.to_string();
                let cut = rng.gen_range(0..t.len());
                t[..cut].to_string()
            }
            2 => (0..rng.gen_range(0..64))
                .map(|_| rng.gen::<u8>() as char)
                .collect(),
            _ => body.to_string(),
        };
        let (status, answer, _) = post_raw(&server, path, &text);
        assert!(
            [200, 400, 413, 422].contains(&status),
            "{path} {text:?}: {status} {answer}"
        );
        if status != 200 {
            let v: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer}"));
            assert!(!v["error"].is_null(), "{answer}");
        }
    }
    let (status, body) = post(
        &server,
        "/generate",
        json!({"inputs": "hi", "parameters": {"max_new_tokens": 5}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(&server, "/health");
    assert_eq!(status, 200);
    server.shutdown().unwrap();
}
