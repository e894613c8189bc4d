//! A bounded load generator for `flan serve` (loopback only), next to offline batched generation.
//!
//! ```sh
//! cargo run --release -p flan-serve --example load -- MODEL_DIR [CLIENTS] [REQUESTS] [MAX_NEW] [SECONDS]
//! ```
//!
//! Starts the server in-process on 127.0.0.1 (an ephemeral port), then for each number of
//! concurrent clients (default `1,8,32,64`) sends greedy `/generate` requests (REQUESTS per
//! client count, default 128, each at most MAX_NEW new tokens, default 64; a level stops after
//! SECONDS, default 120) and reports new tokens/s, p50/p99 latency and p50/p99 time to first token
//! (from `/generate_stream`). Then offline: `generate` on the same prompts in padded batches of
//! the same sizes. Numbers are printed, never asserted.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flan_data::tokenizer::Tokenizer;
use flan_model::generate::{generate, GenerationConfig};
use flan_model::T5ForConditionalGeneration;
use flan_serve::{start, Limits, ModelSpec, ServeConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: [&str; 16] = [
    "the",
    "house",
    "is",
    "small",
    "translate",
    "to",
    "German",
    "question",
    "answer",
    "why",
    "river",
    "blue",
    "count",
    "three",
    "apples",
    "story",
];

/// Seeded prompts of 4 to 60 words.
fn prompts(n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    (0..n)
        .map(|_| {
            let len = rng.gen_range(4..60);
            (0..len)
                .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_dir = args
        .first()
        .ok_or("usage: load MODEL_DIR [CLIENTS] [REQUESTS] [MAX_NEW] [SECONDS]")?;
    let clients: Vec<usize> = args
        .get(1)
        .map_or("1,8,32,64", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let requests: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let max_new: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let seconds: u64 = args.get(4).map_or(Ok(120), |s| s.parse())?;
    let max_clients = clients.iter().copied().max().unwrap_or(1);
    let server = start(
        ServeConfig {
            model: ModelSpec {
                model: model_dir.clone(),
                adapter: None,
                device: "cpu".parse()?,
                dtype: "f32".parse()?,
            },
            addr: "127.0.0.1:0".parse()?,
            limits: Limits {
                max_batch_size: max_clients,
                max_queue: 4 * max_clients,
                max_new_tokens: max_new,
                ..Limits::default()
            },
            seed: 0,
        },
        std::future::pending(),
    )?;
    server.wait_loaded()?;
    let url = format!("http://{}", server.addr());
    let prompts = prompts(requests);
    println!("model {model_dir}, {requests} requests per level, max_new_tokens {max_new}");
    println!("clients  tokens/s  p50 latency  p99 latency  p50 TTFT  p99 TTFT  (server)");
    for &c in &clients {
        let next = AtomicUsize::new(0);
        let latencies = Mutex::new(Vec::new());
        let ttfts = Mutex::new(Vec::new());
        let tokens = AtomicUsize::new(0);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        std::thread::scope(|s| {
            for _ in 0..c {
                s.spawn(|| {
                    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(seconds + 60)).build();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= prompts.len() || Instant::now() > deadline {
                            return;
                        }
                        let body = serde_json::json!({"inputs": prompts[i], "parameters": {"max_new_tokens": max_new}});
                        let t0 = Instant::now();
                        let Ok(response) = agent.post(&format!("{url}/generate_stream")).send_string(&body.to_string()) else {
                            continue;
                        };
                        let mut first = None;
                        let mut n = 0;
                        for line in BufReader::new(response.into_reader()).lines().map_while(Result::ok) {
                            if line.starts_with("data: ") {
                                first.get_or_insert_with(|| t0.elapsed().as_secs_f64());
                                n += 1;
                            }
                        }
                        tokens.fetch_add(n, Ordering::Relaxed);
                        latencies.lock().unwrap().push(t0.elapsed().as_secs_f64());
                        if let Some(f) = first {
                            ttfts.lock().unwrap().push(f);
                        }
                    }
                });
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let mut l = latencies.into_inner().unwrap();
        let mut t = ttfts.into_inner().unwrap();
        println!(
            "{c:7}  {:8.1}  {:9.3} s  {:9.3} s  {:6.3} s  {:6.3} s  ({} requests)",
            tokens.load(Ordering::Relaxed) as f64 / elapsed,
            percentile(&mut l, 0.5),
            percentile(&mut l, 0.99),
            percentile(&mut t, 0.5),
            percentile(&mut t, 0.99),
            l.len()
        );
    }
    server.shutdown()?;

    // Offline: the same prompts through `generate` in padded batches of each size.
    let (model, _) =
        T5ForConditionalGeneration::from_pretrained(model_dir, tch::Device::Cpu, tch::Kind::Float)?;
    let tokenizer = Tokenizer::from_file(std::path::Path::new(model_dir).join("tokenizer.json"))?;
    let encoded: Vec<Vec<i64>> = prompts
        .iter()
        .map(|p| {
            tokenizer
                .encode(p)
                .map(|ids| ids.into_iter().map(i64::from).collect())
        })
        .collect::<Result<_, _>>()?;
    println!("batch  tokens/s  (offline generate)");
    for &c in &clients {
        let started = Instant::now();
        let mut n = 0;
        for chunk in encoded.chunks(c) {
            let (ids, mask) = flan_model::padding::inputs_and_mask(chunk, 0);
            let out = generate(&model, &ids, &mask, &GenerationConfig::greedy(max_new))?;
            n += out.iter().map(|r| r[0].token_ids.len()).sum::<usize>();
            if started.elapsed() > Duration::from_secs(seconds) {
                break;
            }
        }
        println!("{c:5}  {:8.1}", n as f64 / started.elapsed().as_secs_f64());
    }
    Ok(())
}
