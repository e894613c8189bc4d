//! Fuzz target of the server's request readers (see the `flan-fuzz` crate): mutated valid
//! bodies and arbitrary bytes, POSTed to every endpoint of one server (the tiny fixture model).
//! The promise: every input gets an answer — 200, or a JSON error with its status (400, 413,
//! 422) — and the server stays healthy.

use std::path::PathBuf;
use std::time::Duration;

use flan_fuzz::{documents, fuzz_cases};
use flan_serve::{start, Limits, ModelSpec, RunningServer, ServeConfig};

fn server() -> RunningServer {
    let config = ServeConfig {
        model: ModelSpec {
            model: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../flan-model/tests/fixtures/v1_1")
                .display()
                .to_string(),
            adapter: None,
            device: "cpu".parse().unwrap(),
            dtype: "f32".parse().unwrap(),
        },
        addr: "127.0.0.1:0".parse().unwrap(),
        limits: Limits {
            max_new_tokens: 8,
            max_input_tokens: 256,
            max_body_bytes: 8192,
            request_timeout: Duration::from_secs(30),
            ..Limits::default()
        },
        seed: 0,
    };
    let server = start(config, std::future::pending()).unwrap();
    server.wait_loaded().unwrap();
    server
}

/// Valid bodies of every endpoint, for the mutations to start from.
fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"inputs": "hi there", "parameters": {"max_new_tokens": 4, "do_sample": true, "top_k": 5, "top_p": 0.9, "temperature": 0.7, "seed": 3, "stop": ["e"], "details": true}}"#,
        r#"{"inputs": "héllo ✓", "parameters": {"num_beams": 2, "max_new_tokens": 3}}"#,
        r#"{"model": "m", "prompt": ["a", "b"], "max_tokens": 3, "n": 2, "stop": ["x", "y"], "seed": 1, "temperature": 0.5, "top_p": 0.5, "stream": true}"#,
        r#"{"inputs": "x", "targets": ["yes", "no"]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

const PATHS: [&str; 4] = ["/generate", "/generate_stream", "/v1/completions", "/score"];

#[test]
fn requests() {
    let server = server();
    let base = format!("http://{}", server.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let cases = (flan_fuzz::cases() / 4).max(16);
    fuzz_cases("flan-serve requests", cases, documents(seeds()), |bytes| {
        for path in PATHS {
            let response = match agent.post(&format!("{base}{path}")).send_bytes(&bytes) {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => return Err(format!("{path}: no answer: {e}")),
            };
            let status = response.status();
            let body = response
                .into_string()
                .map_err(|e| format!("{path}: reading the answer: {e}"))?;
            match status {
                200 => {}
                400 | 413 | 422 => {
                    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                        format!("{path}: {status} without a JSON body ({e}): {body}")
                    })?;
                    if v["error"].is_null() {
                        return Err(format!("{path}: {status} without an error: {body}"));
                    }
                }
                other => return Err(format!("{path}: status {other}: {body}")),
            }
        }
        match agent.get(&format!("{base}/health")).call() {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("unhealthy after the input: {other:?}")),
        }
    });
    server.shutdown().unwrap();
}
