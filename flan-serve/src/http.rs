//! The routes: TGI's `/generate` and `/generate_stream`, OpenAI's `/v1/completions`, flan's
//! `/score`, and `/health`, `/info`, `/metrics`. Every request gets an id, one log line and a
//! count in the metrics, whatever its outcome.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, Dialect};
use crate::session::{sampling, submit_job, timeout, Finish, Plan, Session, Update};
use crate::state::Shared;
use crate::worker::{DecodeParams, ScoreJob};

/// The router over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/generate", post(generate))
        .route("/generate_stream", post(generate_stream))
        .route("/v1/completions", post(completions))
        .route("/score", post(score))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // Bodies are read (and limited) by `read_json`, which answers in JSON.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

/// One request's log line and metrics, written when it is dropped (so also when a client goes
/// away mid-stream).
struct RequestLog {
    shared: Arc<Shared>,
    id: u64,
    endpoint: &'static str,
    started: Instant,
    status: u16,
    input_tokens: usize,
    generated_tokens: usize,
    finished: bool,
    seed: Option<u64>,
}

impl RequestLog {
    fn new(shared: &Arc<Shared>, endpoint: &'static str) -> Self {
        RequestLog {
            shared: shared.clone(),
            id: shared.request_id(),
            endpoint,
            started: Instant::now(),
            status: 200,
            input_tokens: 0,
            generated_tokens: 0,
            finished: false,
            seed: None,
        }
    }

    /// Records `error`'s status and returns it in `dialect`.
    fn fail(&mut self, error: ApiError, dialect: Dialect) -> Response {
        self.status = error.status.as_u16();
        self.finished = true;
        tracing::warn!(
            request_id = self.id,
            endpoint = self.endpoint,
            status = self.status,
            "flan serve: request {} {} refused: {}",
            self.id,
            self.endpoint,
            error.message
        );
        error.in_dialect(dialect).into_response()
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        // A stream dropped before its end: the client went away.
        let status = if self.finished { self.status } else { 499 };
        self.shared.metrics.request(self.endpoint, status, seconds);
        let latency_ms = (seconds * 1000.0).round() as u64;
        // Fields for JSON logs; the message for people (text logs print it alone).
        tracing::info!(
            request_id = self.id,
            endpoint = self.endpoint,
            status,
            input_tokens = self.input_tokens,
            generated_tokens = self.generated_tokens,
            seed = self.seed,
            latency_ms,
            "flan serve: request {} {} {status} in {latency_ms} ms ({} input tokens, {} generated)",
            self.id,
            self.endpoint,
            self.input_tokens,
            self.generated_tokens,
        );
    }
}

/// Reads the body (at most `--max-body-bytes`: 413) and parses it as `T` (400 naming the field).
async fn read_json<T: DeserializeOwned>(shared: &Shared, request: Request) -> Result<T, ApiError> {
    let limit = shared.limits.max_body_bytes;
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "validation",
                format!("the request body is over the server's limit of {limit} bytes (--max-body-bytes)"),
            )
        })?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => ApiError::malformed(format!(
                "the body must be a JSON object, got {}",
                match v {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                }
            )),
            Err(e) => ApiError::malformed(format!("the body is not valid JSON: {e}")),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::malformed(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::malformed(format!("the body: {inner}"))
        } else {
            ApiError::malformed(format!("field `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::malformed(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Tokenizes a prompt and checks it against `--max-input-tokens`.
fn tokenize(shared: &Shared, text: &str, what: &str) -> Result<Vec<i64>, ApiError> {
    let loaded = shared.loaded().ok_or_else(loading)?;
    let ids = loaded
        .tokenizer
        .encode(text)
        .map_err(|e| ApiError::validation(format!("{what}: tokenizing failed: {e}")))?;
    let limit = shared.limits.max_input_tokens;
    if ids.len() > limit {
        return Err(ApiError::validation(format!(
            "{what} has {} tokens (EOS included), over the server's limit of {limit} \
             (--max-input-tokens)",
            ids.len()
        )));
    }
    Ok(ids.into_iter().map(i64::from).collect())
}

fn loading() -> ApiError {
    ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the model is still loading",
        )
    }
}

fn check_new_tokens(shared: &Shared, n: usize, field: &str) -> Result<usize, ApiError> {
    let limit = shared.limits.max_new_tokens;
    if n == 0 || n > limit {
        return Err(ApiError::validation(format!(
            "{field} must be between 1 and the server's limit of {limit} (--max-new-tokens), got {n}"
        )));
    }
    Ok(n)
}

fn check_sequences(shared: &Shared, n: usize, what: &str) -> Result<(), ApiError> {
    let limit = shared.limits.max_sequences;
    if n == 0 || n > limit {
        return Err(ApiError::validation(format!(
            "{what}: {n} sequences, the server takes 1 to {limit} per request (--max-sequences)"
        )));
    }
    Ok(())
}

/// The seed of a request that gave none: derived from the server's seed and the request id, so
/// that a run of the server is reproducible and the seed is reported.
fn default_seed(shared: &Shared, request_id: u64) -> u64 {
    // SplitMix64 of the pair.
    let mut z = shared
        .seed()
        .wrapping_add(request_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------- TGI

#[derive(Debug, Deserialize)]
struct GenerateRequest {
    inputs: String,
    #[serde(default)]
    parameters: GenerateParameters,
}

#[derive(Debug, Default, Deserialize)]
struct GenerateParameters {
    /// Fields the server does not implement: refused unless absent or at their no-op value.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
    max_new_tokens: Option<usize>,
    #[serde(default)]
    do_sample: bool,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    num_beams: Option<usize>,
    seed: Option<u64>,
    #[serde(default)]
    details: bool,
    #[serde(default)]
    stop: Vec<String>,
}

/// TGI's default `max_new_tokens`.
const TGI_DEFAULT_NEW_TOKENS: usize = 20;

/// Refuses a field the server does not implement when it asks for something (a client that
/// sends `logprobs: 5` or `repetition_penalty: 1.2` would otherwise get an answer it did not ask
/// for); the values that change nothing, and fields it does not know, pass.
fn refuse_unsupported(
    fields: &serde_json::Map<String, Value>,
    prefix: &str,
    unsupported: &[(&str, Vec<Value>)],
) -> Result<(), ApiError> {
    for (name, harmless) in unsupported {
        if let Some(v) = fields.get(*name) {
            let number_match = |h: &Value| v.as_f64().is_some() && v.as_f64() == h.as_f64();
            if !v.is_null() && !harmless.iter().any(|h| h == v || number_match(h)) {
                return Err(ApiError::validation(format!(
                    "{prefix}{name} = {v} is not supported by flan serve"
                )));
            }
        }
    }
    Ok(())
}

fn tgi_plan(
    shared: &Shared,
    log: &mut RequestLog,
    req: &GenerateRequest,
) -> Result<Plan, ApiError> {
    let p = &req.parameters;
    refuse_unsupported(
        &p.other,
        "parameters.",
        &[
            ("repetition_penalty", vec![json!(1.0)]),
            ("frequency_penalty", vec![json!(0.0)]),
            ("typical_p", vec![json!(1.0)]),
            ("best_of", vec![json!(1)]),
            ("return_full_text", vec![json!(false)]),
            ("truncate", vec![]),
            ("watermark", vec![json!(false)]),
            ("top_n_tokens", vec![json!(0)]),
            ("decoder_input_details", vec![json!(false)]),
            ("grammar", vec![]),
            ("adapter_id", vec![]),
        ],
    )?;
    if p.num_beams.is_some_and(|b| b > 1) {
        return Err(ApiError::validation(
            "parameters.num_beams > 1 is only for /generate: beam search does not stream",
        ));
    }
    let max_new = tgi_max_new_tokens(shared, p)?;
    let sampling = sampling(p.do_sample, p.temperature, p.top_k, p.top_p)?;
    let prompt = tokenize(shared, &req.inputs, "inputs")?;
    log.input_tokens = prompt.len();
    let seed = p.seed.unwrap_or_else(|| default_seed(shared, log.id));
    log.seed = sampling.is_some().then_some(seed);
    Ok(Plan {
        prompts: vec![prompt],
        n: 1,
        params: DecodeParams {
            max_new_tokens: max_new,
            sampling,
            seed,
        },
        stop: p.stop.clone(),
    })
}

/// `parameters.max_new_tokens`, TGI's default when absent (capped by the server's limit), checked.
fn tgi_max_new_tokens(shared: &Shared, p: &GenerateParameters) -> Result<usize, ApiError> {
    check_new_tokens(
        shared,
        p.max_new_tokens
            .unwrap_or(TGI_DEFAULT_NEW_TOKENS.min(shared.limits.max_new_tokens)),
        "parameters.max_new_tokens",
    )
}

fn tgi_token(shared: &Shared, u: &Update) -> Value {
    let text = if u.special {
        shared
            .loaded()
            .and_then(|l| l.tokenizer.decode(&[u.id as u32], false).ok())
            .unwrap_or_default()
    } else {
        u.text.clone()
    };
    json!({"id": u.id, "text": text, "logprob": u.logprob, "special": u.special})
}

async fn generate(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mut log = RequestLog::new(&shared, "/generate");
    let req: GenerateRequest = match read_json(&shared, request).await {
        Ok(r) => r,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    if req.parameters.num_beams.is_some_and(|b| b > 1) {
        return beam_search(&shared, log, &req).await;
    }
    let plan = match tgi_plan(&shared, &mut log, &req) {
        Ok(p) => p,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    let mut session = match Session::start(&shared, log.id, plan, log.started) {
        Ok(s) => s,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    let mut tokens = Vec::new();
    while let Some(update) = session.next().await {
        match update {
            Ok(u) => tokens.push(tgi_token(&shared, &u)),
            Err(e) => return log.fail(e, Dialect::Tgi),
        }
    }
    let seq = &session.sequences[0];
    log.generated_tokens = seq.ids.len();
    log.finished = true;
    let mut body = json!({"generated_text": seq.text});
    if req.parameters.details {
        body["details"] = json!({
            "finish_reason": seq.finish.unwrap_or(Finish::Length).tgi(),
            "generated_tokens": seq.ids.len(),
            "seed": log.seed,
            "prefill": [],
            "tokens": tokens,
        });
    }
    Json(body).into_response()
}

/// `/generate` with `num_beams` > 1: one beam search on the model thread, between two steps.
async fn beam_search(shared: &Arc<Shared>, mut log: RequestLog, req: &GenerateRequest) -> Response {
    let p = &req.parameters;
    let num_beams = p.num_beams.unwrap_or(1);
    let prepared = (|| {
        if sampling(p.do_sample, p.temperature, p.top_k, p.top_p)?.is_some() {
            return Err(ApiError::validation(
                "parameters.num_beams > 1 with sampling: beam search is deterministic",
            ));
        }
        if !p.stop.is_empty() {
            return Err(ApiError::validation(
                "parameters.stop with num_beams > 1 is not supported",
            ));
        }
        check_sequences(shared, num_beams, "parameters.num_beams")?;
        let max_new = tgi_max_new_tokens(shared, p)?;
        Ok((tokenize(shared, &req.inputs, "inputs")?, max_new))
    })();
    let (input_ids, max_new_tokens) = match prepared {
        Ok(p) => p,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    log.input_tokens = input_ids.len();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = crate::worker::BeamJob {
        input_ids,
        num_beams,
        max_new_tokens,
        reply: tx,
    };
    if let Err(e) = submit_job(shared, crate::worker::Job::Beam(job)) {
        return log.fail(e, Dialect::Tgi);
    }
    let deadline = tokio::time::Instant::from_std(log.started + shared.limits.request_timeout);
    let (ids, score) = match tokio::time::timeout_at(deadline, rx).await {
        Err(_) => return log.fail(timeout(shared), Dialect::Tgi),
        Ok(Err(_)) => {
            let e = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "model",
                "the model thread stopped",
            );
            return log.fail(e, Dialect::Tgi);
        }
        Ok(Ok(Err(message))) => {
            return log.fail(
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model", message),
                Dialect::Tgi,
            )
        }
        Ok(Ok(Ok(best))) => best,
    };
    let Some(loaded) = shared.loaded() else {
        return log.fail(loading(), Dialect::Tgi);
    };
    let u32s: Vec<u32> = ids.iter().map(|&t| t as u32).collect();
    let text = loaded.tokenizer.decode(&u32s, true).unwrap_or_default();
    log.generated_tokens = ids.len();
    log.finished = true;
    let mut body = json!({"generated_text": text});
    if p.details {
        let eos = loaded.eos_id;
        let tokens: Vec<Value> = ids
            .iter()
            .map(|&id| {
                let text = loaded
                    .tokenizer
                    .decode(&[id as u32], id != eos)
                    .unwrap_or_default();
                json!({"id": id, "text": text, "logprob": null, "special": id == eos})
            })
            .collect();
        body["details"] = json!({
            "finish_reason": if ids.last() == Some(&eos) { "eos_token" } else { "length" },
            "generated_tokens": ids.len(),
            "seed": null,
            "prefill": [],
            "tokens": tokens,
            "beam_score": score,
        });
    }
    Json(body).into_response()
}

/// An SSE response over `events`; the log is kept alive (and written) with the stream.
fn sse(events: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).into_response()
}

fn data(value: &Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}

async fn generate_stream(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mut log = RequestLog::new(&shared, "/generate_stream");
    let req: GenerateRequest = match read_json(&shared, request).await {
        Ok(r) => r,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    let plan = match tgi_plan(&shared, &mut log, &req) {
        Ok(p) => p,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    let session = match Session::start(&shared, log.id, plan, log.started) {
        Ok(s) => s,
        Err(e) => return log.fail(e, Dialect::Tgi),
    };
    let state = Some((session, log, shared));
    sse(stream::unfold(state, |state| async move {
        let (mut session, mut log, shared) = state?;
        match session.next().await {
            None => None,
            Some(Err(e)) => {
                log.status = e.status.as_u16();
                log.finished = true;
                Some((Ok(data(&e.body())), None))
            }
            Some(Ok(u)) => {
                let mut event = json!({
                    "index": session.sequences[0].ids.len().saturating_sub(1),
                    "token": tgi_token(&shared, &u),
                    "generated_text": null,
                    "details": null,
                });
                if let Some(finish) = u.finish {
                    let seq = &session.sequences[0];
                    log.generated_tokens = seq.ids.len();
                    log.finished = true;
                    event["generated_text"] = json!(seq.text);
                    event["details"] = json!({
                        "finish_reason": finish.tgi(),
                        "generated_tokens": seq.ids.len(),
                        "seed": log.seed,
                    });
                }
                Some((Ok(data(&event)), Some((session, log, shared))))
            }
        }
    }))
}

// ---------------------------------------------------------------- OpenAI

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: OneOrMany,
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    /// Fields the server does not implement: refused unless absent or at their no-op value.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// OpenAI's default `max_tokens`.
const OPENAI_DEFAULT_MAX_TOKENS: usize = 16;

fn openai_plan(
    shared: &Shared,
    log: &mut RequestLog,
    req: CompletionRequest,
) -> Result<Plan, ApiError> {
    refuse_unsupported(
        &req.other,
        "",
        &[
            ("echo", vec![json!(false)]),
            ("logprobs", vec![json!(0)]),
            ("best_of", vec![json!(1)]),
            ("suffix", vec![json!("")]),
            ("presence_penalty", vec![json!(0.0)]),
            ("frequency_penalty", vec![json!(0.0)]),
            ("logit_bias", vec![json!({})]),
        ],
    )?;
    let prompts = req.prompt.into_vec();
    let n = req.n.unwrap_or(1);
    check_sequences(shared, prompts.len() * n, "prompt × n")?;
    let max_new = check_new_tokens(
        shared,
        req.max_tokens
            .unwrap_or(OPENAI_DEFAULT_MAX_TOKENS.min(shared.limits.max_new_tokens)),
        "max_tokens",
    )?;
    // OpenAI: temperature 0 is greedy; the default 1 samples.
    let temperature = req.temperature.unwrap_or(1.0);
    let sampling = if temperature == 0.0 {
        None
    } else {
        sampling(true, Some(temperature), None, req.top_p)?
    };
    let mut tokenized = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let ids = tokenize(shared, p, &format!("prompt[{i}]"))?;
        log.input_tokens += ids.len();
        tokenized.push(ids);
    }
    let seed = req.seed.unwrap_or_else(|| default_seed(shared, log.id));
    log.seed = sampling.is_some().then_some(seed);
    Ok(Plan {
        prompts: tokenized,
        n,
        params: DecodeParams {
            max_new_tokens: max_new,
            sampling,
            seed,
        },
        stop: req.stop.map(OneOrMany::into_vec).unwrap_or_default(),
    })
}

/// The text OpenAI returns: without the matched stop sequence.
fn openai_text(text: &str, finish: Option<Finish>, stop: &[String]) -> String {
    if finish == Some(Finish::StopSequence) {
        if let Some(s) = stop
            .iter()
            .filter(|s| !s.is_empty() && text.ends_with(s.as_str()))
            .max_by_key(|s| s.len())
        {
            return text[..text.len() - s.len()].to_string();
        }
    }
    text.to_string()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn completions(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mut log = RequestLog::new(&shared, "/v1/completions");
    let dialect = Dialect::OpenAi;
    let req: CompletionRequest = match read_json(&shared, request).await {
        Ok(r) => r,
        Err(e) => return log.fail(e, dialect),
    };
    let model = shared
        .loaded()
        .map(|l| l.info.model_id.clone())
        .or(req.model.clone())
        .unwrap_or_default();
    let stream = req.stream;
    let plan = match openai_plan(&shared, &mut log, req) {
        Ok(p) => p,
        Err(e) => return log.fail(e, dialect),
    };
    let stop = plan.stop.clone();
    let mut session = match Session::start(&shared, log.id, plan, log.started) {
        Ok(s) => s,
        Err(e) => return log.fail(e, dialect),
    };
    let id = format!("cmpl-{}", log.id);
    let created = unix_now();
    if !stream {
        while let Some(update) = session.next().await {
            if let Err(e) = update {
                return log.fail(e, dialect);
            }
        }
        let choices: Vec<Value> = session
            .sequences
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "text": openai_text(&s.text, s.finish, &stop),
                    "index": i,
                    "logprobs": null,
                    "finish_reason": s.finish.map(Finish::openai),
                })
            })
            .collect();
        let completion: usize = session.sequences.iter().map(|s| s.ids.len()).sum();
        log.generated_tokens = completion;
        log.finished = true;
        return Json(json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": log.input_tokens,
                "completion_tokens": completion,
                "total_tokens": log.input_tokens + completion,
            },
        }))
        .into_response();
    }
    let chunk = move |index: usize, text: &str, finish: Option<Finish>| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": text, "index": index, "logprobs": null, "finish_reason": finish.map(Finish::openai)}],
        })
    };
    // Held text: what might be the start of a stop sequence is sent only once it is not.
    let held = vec![0usize; session.sequences.len()];
    let state = Some((session, log, chunk, stop, held));
    sse(stream::unfold(state, |state| async move {
        let (mut session, mut log, chunk, stop, mut held) = state?;
        match session.next().await {
            None => {
                log.generated_tokens = session.sequences.iter().map(|s| s.ids.len()).sum();
                log.finished = true;
                Some((Ok(SseEvent::default().data("[DONE]")), None))
            }
            Some(Err(e)) => {
                log.status = e.status.as_u16();
                log.finished = true;
                Some((Ok(data(&e.in_dialect(Dialect::OpenAi).body())), None))
            }
            Some(Ok(u)) => {
                let seq = &session.sequences[u.index];
                let shown = openai_text(&seq.text, seq.finish, &stop);
                // Send what is final: all of it once finished, else up to any possible start of
                // a stop sequence at the end.
                let safe = if seq.finish.is_some() {
                    shown.len()
                } else {
                    shown.len() - pending_stop_prefix(&shown, &stop)
                };
                let from = held[u.index].min(safe);
                let text = shown.get(from..safe).unwrap_or_default().to_string();
                held[u.index] = safe;
                let event = data(&chunk(u.index, &text, u.finish));
                Some((Ok(event), Some((session, log, chunk, stop, held))))
            }
        }
    }))
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop sequence.
fn pending_stop_prefix(text: &str, stop: &[String]) -> usize {
    stop.iter()
        .flat_map(|s| {
            (1..s.len())
                .filter(|&k| s.is_char_boundary(k))
                .map(move |k| &s[..k])
        })
        .filter(|p| text.ends_with(p))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------- score

#[derive(Debug, Deserialize)]
struct ScoreRequest {
    inputs: String,
    targets: OneOrMany,
}

async fn score(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mut log = RequestLog::new(&shared, "/score");
    let dialect = Dialect::Tgi;
    let req: ScoreRequest = match read_json(&shared, request).await {
        Ok(r) => r,
        Err(e) => return log.fail(e, dialect),
    };
    let targets = req.targets.into_vec();
    let prepared = (|| {
        check_sequences(&shared, targets.len(), "targets")?;
        let input = tokenize(&shared, &req.inputs, "inputs")?;
        let limit = shared.limits.max_new_tokens;
        let mut ids = Vec::with_capacity(targets.len());
        for (i, t) in targets.iter().enumerate() {
            let loaded = shared.loaded().ok_or_else(loading)?;
            let t_ids: Vec<i64> = loaded
                .tokenizer
                .encode(t)
                .map_err(|e| ApiError::validation(format!("targets[{i}]: tokenizing failed: {e}")))?
                .into_iter()
                .map(i64::from)
                .collect();
            if t_ids.len() > limit {
                return Err(ApiError::validation(format!(
                    "targets[{i}] has {} tokens (EOS included), over the server's limit of \
                     {limit} (--max-new-tokens)",
                    t_ids.len()
                )));
            }
            ids.push(t_ids);
        }
        Ok((input, ids))
    })();
    let (input, target_ids) = match prepared {
        Ok(p) => p,
        Err(e) => return log.fail(e, dialect),
    };
    log.input_tokens = input.len();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = ScoreJob {
        input_ids: input,
        targets: target_ids,
        reply: tx,
    };
    if let Err(e) = submit_job(&shared, crate::worker::Job::Score(job)) {
        return log.fail(e, dialect);
    }
    let deadline = tokio::time::Instant::from_std(log.started + shared.limits.request_timeout);
    let scores = match tokio::time::timeout_at(deadline, rx).await {
        Err(_) => return log.fail(timeout(&shared), dialect),
        Ok(Err(_)) => {
            let e = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "model",
                "the model thread stopped",
            );
            return log.fail(e, dialect);
        }
        Ok(Ok(Err(message))) => {
            return log.fail(
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model", message),
                dialect,
            )
        }
        Ok(Ok(Ok(scores))) => scores,
    };
    log.finished = true;
    let scores: Vec<Value> = scores
        .iter()
        .zip(&targets)
        .map(|(s, t)| json!({"target": t, "logprob": s.logprob, "num_tokens": s.num_tokens}))
        .collect();
    Json(json!({ "scores": scores })).into_response()
}

// ---------------------------------------------------------------- health, info, metrics

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let (status, body) = if shared.draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining"}),
        )
    } else if let Some(e) = shared.load_error() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "failed", "error": e}),
        )
    } else if shared.loaded().is_some() {
        (StatusCode::OK, json!({"status": "ok"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "loading"}),
        )
    };
    (status, Json(body)).into_response()
}

async fn info(State(shared): State<Arc<Shared>>) -> Response {
    let l = &shared.limits;
    let model = shared
        .loaded()
        .map(|m| serde_json::to_value(&m.info).unwrap_or_default());
    Json(json!({
        "model": model,
        "ready": shared.loaded().is_some(),
        "version": env!("CARGO_PKG_VERSION"),
        "limits": {
            "max_queue": l.max_queue,
            "max_batch_size": l.max_batch_size,
            "max_input_tokens": l.max_input_tokens,
            "max_new_tokens": l.max_new_tokens,
            "max_sequences": l.max_sequences,
            "max_body_bytes": l.max_body_bytes,
            "request_timeout_seconds": l.request_timeout.as_secs_f64(),
        },
    }))
    .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.metrics.set_queue_depth(shared.queued());
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(Body::from(shared.metrics.render()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_prefixes_are_held_back() {
        let stop = vec!["END".to_string()];
        assert_eq!(pending_stop_prefix("abc E", &stop), 1);
        assert_eq!(pending_stop_prefix("abc EN", &stop), 2);
        assert_eq!(pending_stop_prefix("abc", &stop), 0);
        assert_eq!(
            openai_text("abcEND", Some(Finish::StopSequence), &stop),
            "abc"
        );
        assert_eq!(openai_text("abcEND", Some(Finish::Length), &stop), "abcEND");
    }
}
