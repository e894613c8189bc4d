//! Open-ended usability, side by side: the human evaluation of Chung et al. (2022, "Scaling
//! Instruction-Finetuned Language Models", Section 6), where raters see one prompt and the
//! responses of two models and say which they prefer; the paper reports how often the
//! instruction-finetuned model's response was preferred.
//!
//! The steps, each a function here (no libtorch; `flan eval compare` wires them to real models):
//!
//! 1. [`read_prompts`]: the prompts (JSONL `{"id"?, "prompt"}` or plain text, one a line).
//! 2. [`generate_outputs`]: one response per prompt from each model through [`EvalModel`]
//!    (greedy, or sampling; with several samples the one of highest log-probability, unnormalised
//!    by length, is kept).
//! 3. [`build_pairs`]: which model is shown on the left of each pair, counterbalanced and
//!    shuffled from an explicit seed ([`left_sides`]), so a rater's preference for one position
//!    cancels out; [`write_outputs`] writes `pairs.jsonl` and the rating page `compare.html`
//!    ([`render_html`]: self-contained, blind, text escaped).
//! 4. [`read_ratings`]: the raters' `{"id", "preferred": "A"|"B"|"tie"}` lines, where A and B
//!    are the models as given (never the screen positions).
//! 5. [`win_rate`]: B's win rate over A (ties count half) with a 95% Wilson score interval
//!    ([`wilson_interval`]), as JSON ([`WinRate`]) and Markdown ([`markdown`]).
//!
//! ```
//! use flan_eval::compare::wilson_interval;
//! // 7 wins, 2 losses, 1 tie: 7.5 of 10.
//! let (lo, hi) = wilson_interval(7.5, 10, 1.959963984540054);
//! assert!(lo < 0.75 && 0.75 < hi && lo > 0.44 && hi < 0.92);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use flan_data::atomic::{commit_all, AtomicFile};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chart::escape;
use crate::error::{read_to_string, Error};
use crate::model::{Decoding, EvalModel, GenerateRequest};
use crate::runner::item_seed;
use crate::Result;

/// The normal quantile of a two-sided 95% interval.
pub const Z_95: f64 = 1.959963984540054;

/// One prompt to compare the models on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparePrompt {
    /// Its id: the file's `id`, else `L<line>`.
    pub id: String,
    /// The text given to both models.
    pub prompt: String,
    /// 1-based line in the prompts file.
    pub line: usize,
}

/// How a prompts file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// One JSON object a line (the first non-blank line starts with `{`).
    Jsonl,
    /// One prompt a line.
    Text,
}

/// The prompts of a file, with what was not a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSet {
    /// The prompts in file order.
    pub prompts: Vec<ComparePrompt>,
    /// Blank (whitespace-only) lines, skipped.
    pub blank_lines: usize,
    /// The format the file was read as.
    pub format: PromptFormat,
}

/// Reads a prompts file: JSONL when its first non-blank line starts with `{` (then every
/// non-blank line must be an object with a non-empty string `prompt` and an optional `id`,
/// a string or an integer; no other field), else plain text with one prompt a line. Blank lines
/// are skipped and counted; ids must be unique; a file without prompts is an error.
pub fn read_prompts(path: &Path) -> Result<PromptSet> {
    parse_prompts(path, &read_to_string(path)?)
}

/// [`read_prompts`] on text already read; `path` names it in errors.
pub fn parse_prompts(path: &Path, text: &str) -> Result<PromptSet> {
    let format = match text.lines().find(|l| !l.trim().is_empty()) {
        Some(first) if first.trim_start().starts_with('{') => PromptFormat::Jsonl,
        Some(_) => PromptFormat::Text,
        None => return Err(Error::parse(path, 0, "no prompts in the file")),
    };
    let mut prompts = Vec::new();
    let mut blank_lines = 0;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            blank_lines += 1;
            continue;
        }
        let (id, prompt) = match format {
            PromptFormat::Text => (None, raw.to_string()),
            PromptFormat::Jsonl => {
                let fields = json_object(path, line, raw)?;
                let mut id = None;
                let mut prompt = None;
                for (key, value) in fields {
                    match key.as_str() {
                        "id" => id = Some(id_value(path, line, &value)?),
                        "prompt" => match value {
                            Value::String(s) if !s.trim().is_empty() => prompt = Some(s),
                            Value::String(_) => {
                                return Err(Error::parse(path, line, "field `prompt` is empty"))
                            }
                            other => {
                                return Err(Error::parse(
                                    path,
                                    line,
                                    format!("field `prompt`: expected a string, found {other}"),
                                ))
                            }
                        },
                        other => {
                            return Err(Error::parse(
                                path,
                                line,
                                format!("unknown field `{other}` (expected `id`, `prompt`)"),
                            ))
                        }
                    }
                }
                let prompt =
                    prompt.ok_or_else(|| Error::parse(path, line, "missing field `prompt`"))?;
                (id, prompt)
            }
        };
        let id = id.unwrap_or_else(|| format!("L{line}"));
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(Error::parse(
                path,
                line,
                format!("field `id`: `{id}` already used on line {first}"),
            ));
        }
        prompts.push(ComparePrompt { id, prompt, line });
    }
    Ok(PromptSet {
        prompts,
        blank_lines,
        format,
    })
}

fn json_object(path: &Path, line: usize, raw: &str) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::parse(
            path,
            line,
            format!("expected a JSON object, found {other}"),
        )),
        Err(e) => Err(Error::parse(path, line, format!("not JSON: {e}"))),
    }
}

/// An `id` field: a non-empty string or an integer (as its decimal text).
fn id_value(path: &Path, line: usize, value: &Value) -> Result<String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(Error::parse(
            path,
            line,
            format!("field `id`: expected a non-empty string or an integer, found {other}"),
        )),
    }
}

/// How each model answers the prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Greedy or sampling; with sampling, `num_return_sequences` candidates of which the most
    /// likely is kept.
    pub decoding: Decoding,
    /// Seed of the sampling (each prompt's seed derives from it and the prompt's position).
    pub seed: u64,
    /// Prompts per model call (at least 1).
    pub batch_size: usize,
}

/// One model's responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// One response per prompt, in order.
    pub outputs: Vec<String>,
    /// Prompts longer than the model's input budget (the model cuts them, EOS kept).
    pub truncated: usize,
}

/// Generates one response per prompt. With one candidate per prompt that candidate is the
/// response; with several (sampling), each is scored by the model and the one of highest
/// summed log-probability (no length normalisation; the first on a tie) is kept — the
/// paper's "five samples, ranked by log-probability".
pub fn generate_outputs(
    model: &mut dyn EvalModel,
    prompts: &[ComparePrompt],
    opts: &GenerateOptions,
) -> Result<Generated> {
    if opts.batch_size == 0 || opts.decoding.num_return_sequences == 0 {
        return Err(Error::Config(
            "batch size and candidates per prompt must be at least 1".into(),
        ));
    }
    let mut truncated = 0;
    for p in prompts {
        if model.count_tokens(&p.prompt)? > model.max_input_tokens() {
            truncated += 1;
        }
    }
    let mut outputs = Vec::with_capacity(prompts.len());
    for (chunk_index, chunk) in prompts.chunks(opts.batch_size).enumerate() {
        let requests: Vec<GenerateRequest> = chunk
            .iter()
            .enumerate()
            .map(|(j, p)| GenerateRequest {
                prompt: p.prompt.clone(),
                seed: item_seed(opts.seed, "compare", chunk_index * opts.batch_size + j),
            })
            .collect();
        let candidates = model.generate(&requests, &opts.decoding)?;
        if candidates.len() != requests.len() {
            return Err(Error::Model(format!(
                "{} prompts gave {} outputs",
                requests.len(),
                candidates.len()
            )));
        }
        for (request, cands) in requests.iter().zip(candidates) {
            let k = opts.decoding.num_return_sequences;
            if cands.len() != k {
                return Err(Error::Model(format!(
                    "expected {k} outputs per prompt, got {}",
                    cands.len()
                )));
            }
            if k == 1 {
                outputs.extend(cands);
                continue;
            }
            let inputs = vec![request.prompt.clone(); k];
            let scores = model.score(&inputs, &cands)?;
            if scores.len() != k {
                return Err(Error::Model(format!(
                    "scored {} of {k} candidates",
                    scores.len()
                )));
            }
            let mut best = 0;
            for (i, s) in scores.iter().enumerate() {
                if *s > scores[best] {
                    best = i;
                }
            }
            outputs.push(cands.into_iter().nth(best).unwrap_or_default());
        }
    }
    Ok(Generated { outputs, truncated })
}

/// One of the two models, as given on the command line (first A, then B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The first model.
    A,
    /// The second model.
    B,
}

/// A rater's verdict on one pair, in terms of the models (not of the screen positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preference {
    /// Model A's response is better.
    A,
    /// Model B's response is better.
    B,
    /// Neither is better.
    #[serde(rename = "tie")]
    Tie,
}

/// One prompt with both responses, as written to `pairs.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// The prompt's id.
    pub id: String,
    /// The prompt.
    pub prompt: String,
    /// Model A's name (its directory or hub id).
    pub model_a: String,
    /// Model B's name.
    pub model_b: String,
    /// Model A's response.
    pub output_a: String,
    /// Model B's response.
    pub output_b: String,
    /// The model whose response the page shows on the left ("Response 1").
    pub left: Side,
    /// The seed [`left_sides`] drew the positions with.
    pub order_seed: u64,
}

/// Which model is shown on the left of each of `n` pairs: half A and half B (the odd one out
/// drawn too), shuffled by a ChaCha20 stream of `seed`. Counterbalancing makes a rater's
/// liking for one position add as much to A as to B.
pub fn left_sides(n: usize, seed: u64) -> Vec<Side> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // A stream of its own, so the positions are independent of the sampling seeds.
    rng.set_stream(flan_data::hash::fnv1a("compare-left-sides"));
    let mut sides: Vec<Side> = (0..n)
        .map(|i| if i % 2 == 0 { Side::A } else { Side::B })
        .collect();
    sides.shuffle(&mut rng);
    sides
}

/// The pairs of `prompts` with the two models' responses, positions from [`left_sides`].
pub fn build_pairs(
    prompts: &[ComparePrompt],
    model_a: &str,
    model_b: &str,
    outputs_a: &[String],
    outputs_b: &[String],
    seed: u64,
) -> Result<Vec<Pair>> {
    if outputs_a.len() != prompts.len() || outputs_b.len() != prompts.len() {
        return Err(Error::Model(format!(
            "{} prompts but {} and {} responses",
            prompts.len(),
            outputs_a.len(),
            outputs_b.len()
        )));
    }
    Ok(prompts
        .iter()
        .zip(left_sides(prompts.len(), seed))
        .enumerate()
        .map(|(i, (p, left))| Pair {
            id: p.id.clone(),
            prompt: p.prompt.clone(),
            model_a: model_a.to_string(),
            model_b: model_b.to_string(),
            output_a: outputs_a[i].clone(),
            output_b: outputs_b[i].clone(),
            left,
            order_seed: seed,
        })
        .collect())
}

/// Where [`write_outputs`] put its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparePaths {
    /// The rating page.
    pub html: PathBuf,
    /// The pairs, one JSON a line.
    pub pairs: PathBuf,
}

/// Writes `dir/pairs.jsonl` and `dir/compare.html` (creating `dir`); both appear together or
/// neither changes.
pub fn write_outputs(dir: &Path, pairs: &[Pair]) -> Result<ComparePaths> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths = ComparePaths {
        html: dir.join("compare.html"),
        pairs: dir.join("pairs.jsonl"),
    };
    let mut jsonl = AtomicFile::create(&paths.pairs)?;
    for p in pairs {
        let mut line = serde_json::to_vec(p)?;
        line.push(b'\n');
        jsonl.write_bytes(&line)?;
    }
    let mut html = AtomicFile::create(&paths.html)?;
    html.write_bytes(render_html(pairs).as_bytes())?;
    commit_all(vec![jsonl, html])?;
    Ok(paths)
}

/// Reads `pairs.jsonl` as [`write_outputs`] wrote it; errors name the line and field, and a
/// repeated id is an error.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = read_to_string(path)?;
    let mut pairs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let pair: Pair = serde_json::from_str(raw)
            .map_err(|e| Error::parse(path, line, format!("not a pair record: {e}")))?;
        if let Some(first) = seen.insert(pair.id.clone(), line) {
            return Err(Error::parse(
                path,
                line,
                format!("field `id`: `{}` already used on line {first}", pair.id),
            ));
        }
        pairs.push(pair);
    }
    if pairs.is_empty() {
        return Err(Error::parse(path, 0, "no pairs in the file"));
    }
    Ok(pairs)
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #1b1b1b; background: #fafafa; }
h1 { font-size: 1.5em; }
.pair { background: #fff; border: 1px solid #ccc; border-radius: 6px; margin: 1.5em 0; padding: 1em; }
.pair h2 { font-size: 1.05em; margin: 0 0 .5em; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .95em; }
.prompt { background: #eef3fb; border-left: 4px solid #3a6fc4; padding: .6em; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; margin: 1em 0; }
.side { border: 1px solid #ddd; border-radius: 4px; padding: .6em; background: #fdfdf6; }
.side h3 { font-size: .95em; margin: 0 0 .4em; color: #555; }
.side .text:empty::before { content: "(empty response)"; color: #999; font-style: italic; }
fieldset { border: none; padding: 0; display: flex; gap: 1.5em; flex-wrap: wrap; }
.bar { position: sticky; bottom: 0; background: #fafafa; border-top: 1px solid #ccc; padding: .6em 0; display: flex; gap: 1em; align-items: center; }
#jsonl { max-height: 8em; overflow: auto; background: #f0f0f0; padding: .4em; }
#jsonl:empty { display: none; }
"#;

/// The page's script: maps each choice (left, right, tie) back to the models through the pair's
/// recorded `data-left`, shows the ratings JSONL as it grows and downloads it as a file.
const SCRIPT: &str = r#"
(function () {
  var pairs = document.querySelectorAll('section.pair');
  var preview = document.getElementById('jsonl');
  var progress = document.getElementById('progress');
  function collect() {
    var lines = [];
    for (var i = 0; i < pairs.length; i++) {
      var pair = pairs[i];
      var choice = pair.querySelector('input[type=radio]:checked');
      if (!choice) continue;
      var left = pair.getAttribute('data-left');
      var right = left === 'A' ? 'B' : 'A';
      var preferred = choice.value === 'tie' ? 'tie' : (choice.value === 'left' ? left : right);
      lines.push(JSON.stringify({id: pair.getAttribute('data-id'), preferred: preferred}));
    }
    return lines;
  }
  function update() {
    var lines = collect();
    preview.textContent = lines.join('\n');
    progress.textContent = lines.length + ' of ' + pairs.length + ' rated';
  }
  document.addEventListener('change', update);
  document.getElementById('download').addEventListener('click', function () {
    var text = collect().map(function (l) { return l + '\n'; }).join('');
    var link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([text], {type: 'application/x-ndjson'}));
    link.download = 'ratings.jsonl';
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  update();
})();
"#;

/// The rating page: self-contained HTML and CSS (no external resources, no server), every
/// text escaped. It is blind: models are not named, each pair shows "Response 1" (left) and
/// "Response 2" (right) as [`Pair::left`] says. Each pair's radio buttons are named
/// `choice-<index>` with values `left`, `tie`, `right`; a short inline script turns the choices
/// into the ratings JSONL ([`read_ratings`]' format) and downloads it.
pub fn render_html(pairs: &[Pair]) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<title>Which response is better?</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n<h1>Which response is better?</h1>\n");
    h.push_str(&format!(
        "<p>{} prompts, each with two responses from two systems, in random order. For \
         each, choose the response you prefer (helpful, correct, following the instruction), \
         or a tie. Then download your ratings and send the file back.</p>\n",
        pairs.len()
    ));
    h.push_str(
        "<noscript><p><strong>Scripts are off: choices cannot be saved from this \
         page.</strong></p></noscript>\n",
    );
    for (i, p) in pairs.iter().enumerate() {
        let (left, right) = match p.left {
            Side::A => (&p.output_a, &p.output_b),
            Side::B => (&p.output_b, &p.output_a),
        };
        let side = match p.left {
            Side::A => "A",
            Side::B => "B",
        };
        h.push_str(&format!(
            "<section class=\"pair\" id=\"pair-{i}\" data-id=\"{}\" data-left=\"{side}\">\n",
            escape(&p.id)
        ));
        h.push_str(&format!(
            "<h2>{} of {} · <span class=\"pair-id\">{}</span></h2>\n",
            i + 1,
            pairs.len(),
            escape(&p.id)
        ));
        h.push_str(&format!(
            "<div class=\"text prompt\">{}</div>\n",
            escape(&p.prompt)
        ));
        h.push_str("<div class=\"sides\">\n");
        for (n, text) in [(1, left), (2, right)] {
            h.push_str(&format!(
                "<div class=\"side\"><h3>Response {n}</h3><div class=\"text output\">{}</div></div>\n",
                escape(text)
            ));
        }
        h.push_str("</div>\n<fieldset>\n");
        for (value, label) in [
            ("left", "Response 1 is better"),
            ("tie", "Tie"),
            ("right", "Response 2 is better"),
        ] {
            h.push_str(&format!(
                "<label><input type=\"radio\" name=\"choice-{i}\" value=\"{value}\"> {label}</label>\n"
            ));
        }
        h.push_str("</fieldset>\n</section>\n");
    }
    h.push_str(
        "<div class=\"bar\"><button id=\"download\" type=\"button\">Download ratings \
         (JSONL)</button><span id=\"progress\"></span></div>\n",
    );
    h.push_str("<div class=\"text\" id=\"jsonl\"></div>\n<script>");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body>\n</html>\n");
    h
}

/// One rating, read from a ratings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    /// The pair's id.
    pub id: String,
    /// The preferred model.
    pub preferred: Preference,
    /// 1-based line in the ratings file.
    pub line: usize,
}

/// Reads a ratings file: one JSON object a line with `id` (a string or an integer, naming a
/// pair) and `preferred` (`"A"`, `"B"` or `"tie"`: the models as given, not the positions); no
/// other field. Unknown ids, a second rating of one pair, bad values and unknown fields are
/// errors naming the line; blank lines carry nothing and are passed over.
pub fn read_ratings(path: &Path, pairs: &[Pair]) -> Result<Vec<Rating>> {
    parse_ratings(path, &read_to_string(path)?, pairs)
}

/// [`read_ratings`] on text already read; `path` names it in errors.
pub fn parse_ratings(path: &Path, text: &str, pairs: &[Pair]) -> Result<Vec<Rating>> {
    let known: BTreeMap<&str, ()> = pairs.iter().map(|p| (p.id.as_str(), ())).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ratings = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut id = None;
        let mut preferred = None;
        for (key, value) in json_object(path, line, raw)? {
            match key.as_str() {
                "id" => id = Some(id_value(path, line, &value)?),
                "preferred" => {
                    preferred = Some(match value.as_str() {
                        Some("A") => Preference::A,
                        Some("B") => Preference::B,
                        Some("tie") => Preference::Tie,
                        _ => {
                            return Err(Error::parse(
                                path,
                                line,
                                format!(
                            "field `preferred`: expected \"A\", \"B\" or \"tie\", found {value}"
                        ),
                            ))
                        }
                    })
                }
                other => {
                    return Err(Error::parse(
                        path,
                        line,
                        format!("unknown field `{other}` (expected `id`, `preferred`)"),
                    ))
                }
            }
        }
        let id = id.ok_or_else(|| Error::parse(path, line, "missing field `id`"))?;
        let preferred =
            preferred.ok_or_else(|| Error::parse(path, line, "missing field `preferred`"))?;
        if !known.contains_key(id.as_str()) {
            return Err(Error::parse(
                path,
                line,
                format!("field `id`: no pair has id `{id}`"),
            ));
        }
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(Error::parse(
                path,
                line,
                format!("field `id`: pair `{id}` was already rated on line {first}"),
            ));
        }
        ratings.push(Rating {
            id,
            preferred,
            line,
        });
    }
    Ok(ratings)
}

/// The Wilson score interval of a proportion `successes / n` at normal quantile `z` (Wilson
/// 1927): the `p` with `|p̂ - p| <= z * sqrt(p (1 - p) / n)`. Unlike the Wald interval it stays
/// inside [0, 1] and keeps its coverage for small `n` and proportions near 0 or 1 (Brown, Cai
/// and DasGupta 2001), which is where rating studies of a few hundred pairs live. `successes`
/// may be fractional (a tie counts half). `n = 0` gives the uninformative `(0, 1)`.
pub fn wilson_interval(successes: f64, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = (successes / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// B's win rate over A from a set of ratings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WinRate {
    /// Model A (the first model).
    pub model_a: String,
    /// Model B (the second model).
    pub model_b: String,
    /// Pairs in the pairs file.
    pub pairs: usize,
    /// Pairs rated.
    pub rated: usize,
    /// Pairs without a rating (not counted in the rates).
    pub unrated: usize,
    /// Ratings preferring B.
    pub wins_b: usize,
    /// Ratings preferring A.
    pub wins_a: usize,
    /// Ties.
    pub ties: usize,
    /// `(wins_b + ties / 2) / rated`.
    pub win_rate_b: f64,
    /// 95% Wilson score interval of `win_rate_b`, lower end.
    pub ci95_low: f64,
    /// Upper end of that interval.
    pub ci95_high: f64,
    /// `ties / rated`.
    pub tie_rate: f64,
    /// `wins_b / (wins_a + wins_b)`: the rate among decisive ratings (`null` without any).
    pub win_rate_b_decisive: Option<f64>,
    /// Decisive ratings that chose the response shown on the left (a check of position
    /// bias: about half when raters ignore position).
    pub left_preferred: usize,
    /// How the interval was computed.
    pub interval: &'static str,
}

/// B's win rate over A (ties count half) with its 95% Wilson interval. At least one rating is
/// needed.
pub fn win_rate(pairs: &[Pair], ratings: &[Rating]) -> Result<WinRate> {
    if ratings.is_empty() {
        return Err(Error::Config("no ratings: nothing to compute".into()));
    }
    let left: HashMap<&str, Side> = pairs.iter().map(|p| (p.id.as_str(), p.left)).collect();
    let (mut wins_a, mut wins_b, mut ties, mut left_preferred) = (0, 0, 0, 0);
    for r in ratings {
        let shown_left = left
            .get(r.id.as_str())
            .copied()
            .ok_or_else(|| Error::Config(format!("rating of `{}` has no pair", r.id)))?;
        match r.preferred {
            Preference::A => wins_a += 1,
            Preference::B => wins_b += 1,
            Preference::Tie => ties += 1,
        }
        let chose_left = matches!(
            (r.preferred, shown_left),
            (Preference::A, Side::A) | (Preference::B, Side::B)
        );
        left_preferred += usize::from(chose_left);
    }
    let rated = ratings.len();
    let score = wins_b as f64 + ties as f64 / 2.0;
    let (lo, hi) = wilson_interval(score, rated, Z_95);
    let decisive = wins_a + wins_b;
    let first = pairs.first();
    Ok(WinRate {
        model_a: first.map(|p| p.model_a.clone()).unwrap_or_default(),
        model_b: first.map(|p| p.model_b.clone()).unwrap_or_default(),
        pairs: pairs.len(),
        rated,
        unrated: pairs.len().saturating_sub(rated),
        wins_b,
        wins_a,
        ties,
        win_rate_b: score / rated as f64,
        ci95_low: lo,
        ci95_high: hi,
        tie_rate: ties as f64 / rated as f64,
        win_rate_b_decisive: (decisive > 0).then(|| wins_b as f64 / decisive as f64),
        left_preferred,
        interval: "wilson",
    })
}

/// A Markdown table of a [`WinRate`].
pub fn markdown(w: &WinRate) -> String {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let mut s = String::new();
    s.push_str(&format!(
        "Side-by-side: B = `{}` vs A = `{}`\n\n",
        w.model_b, w.model_a
    ));
    s.push_str("| rated | B wins | A wins | ties | B win rate (ties ½) | 95% CI (Wilson) | tie rate | B win rate (decisive) |\n");
    s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    s.push_str(&format!(
        "| {} of {} | {} | {} | {} | {} | {} – {} | {} | {} |\n",
        w.rated,
        w.pairs,
        w.wins_b,
        w.wins_a,
        w.ties,
        pct(w.win_rate_b),
        pct(w.ci95_low),
        pct(w.ci95_high),
        pct(w.tie_rate),
        w.win_rate_b_decisive.map(pct).unwrap_or_else(|| "–".into()),
    ));
    if w.unrated > 0 {
        s.push_str(&format!(
            "\n{} pairs were not rated and are not counted.\n",
            w.unrated
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::ScriptedModel;
    use proptest::prelude::*;

    fn p(path: &str) -> PathBuf {
        PathBuf::from(path)
    }

    fn pairs(n: usize, seed: u64) -> Vec<Pair> {
        let prompts: Vec<ComparePrompt> = (0..n)
            .map(|i| ComparePrompt {
                id: format!("q{i}"),
                prompt: format!("prompt {i}"),
                line: i + 1,
            })
            .collect();
        let a: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
        let b: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        build_pairs(&prompts, "small", "large", &a, &b, seed).unwrap()
    }

    /// The Wilson bounds as the roots of (1 + z²/n) p² - (2 p̂ + z²/n) p + p̂² = 0, i.e. of
    /// (p̂ - p)² = z² p (1 - p) / n: a derivation independent of the closed form.
    fn wilson_by_roots(phat: f64, n: f64, z: f64) -> (f64, f64) {
        let a = 1.0 + z * z / n;
        let b = -(2.0 * phat + z * z / n);
        let c = phat * phat;
        let d = (b * b - 4.0 * a * c).sqrt();
        ((-b - d) / (2.0 * a), (-b + d) / (2.0 * a))
    }

    #[test]
    fn seven_wins_two_losses_one_tie() {
        let pairs = pairs(10, 3);
        let prefs = [
            Preference::B,
            Preference::B,
            Preference::B,
            Preference::B,
            Preference::B,
            Preference::B,
            Preference::B,
            Preference::A,
            Preference::A,
            Preference::Tie,
        ];
        let ratings: Vec<Rating> = pairs
            .iter()
            .zip(prefs)
            .enumerate()
            .map(|(i, (p, preferred))| Rating {
                id: p.id.clone(),
                preferred,
                line: i + 1,
            })
            .collect();
        let w = win_rate(&pairs, &ratings).unwrap();
        assert_eq!(
            (w.wins_b, w.wins_a, w.ties, w.rated, w.unrated),
            (7, 2, 1, 10, 0)
        );
        assert!((w.win_rate_b - 0.75).abs() < 1e-12);
        assert!((w.tie_rate - 0.1).abs() < 1e-12);
        assert!((w.win_rate_b_decisive.unwrap() - 7.0 / 9.0).abs() < 1e-12);
        let (lo, hi) = wilson_by_roots(0.75, 10.0, Z_95);
        assert!((w.ci95_low - lo).abs() < 1e-12, "{} vs {lo}", w.ci95_low);
        assert!((w.ci95_high - hi).abs() < 1e-12, "{} vs {hi}", w.ci95_high);
        // And the values by hand (z = 1.96 to 4 places): [0.4422, 0.9190].
        assert!(
            (lo - 0.44218).abs() < 1e-4 && (hi - 0.91905).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(w.model_a, "small");
        assert_eq!(w.model_b, "large");
        // Left-preference: count the decisive ratings whose model was on the left.
        let expected_left = pairs
            .iter()
            .zip(prefs)
            .filter(|(p, r)| {
                matches!(
                    (r, p.left),
                    (Preference::A, Side::A) | (Preference::B, Side::B)
                )
            })
            .count();
        assert_eq!(w.left_preferred, expected_left);
        let md = markdown(&w);
        assert!(
            md.contains("| 10 of 10 | 7 | 2 | 1 | 75.0% | 44.2% – 91.9% | 10.0% | 77.8% |"),
            "{md}"
        );
    }

    #[test]
    fn wilson_at_the_edges() {
        // All wins: the upper bound is 1, the lower n / (n + z²).
        let (lo, hi) = wilson_interval(20.0, 20, Z_95);
        assert!((hi - 1.0).abs() < 1e-12);
        assert!((lo - 20.0 / (20.0 + Z_95 * Z_95)).abs() < 1e-12);
        let (lo, hi) = wilson_interval(0.0, 20, Z_95);
        assert!(lo.abs() < 1e-12);
        assert!((hi - Z_95 * Z_95 / (20.0 + Z_95 * Z_95)).abs() < 1e-12);
        assert_eq!(wilson_interval(0.0, 0, Z_95), (0.0, 1.0));
    }

    proptest! {
        #[test]
        fn wilson_contains_the_estimate_and_stays_in_unit_interval(
            wins in 0usize..300, losses in 0usize..300, ties in 0usize..300,
        ) {
            let n = wins + losses + ties;
            prop_assume!(n > 0);
            let score = wins as f64 + ties as f64 / 2.0;
            let phat = score / n as f64;
            let (lo, hi) = wilson_interval(score, n, Z_95);
            prop_assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
            prop_assert!(lo <= phat + 1e-12 && phat <= hi + 1e-12, "{lo} {phat} {hi}");
            let (rlo, rhi) = wilson_by_roots(phat, n as f64, Z_95);
            prop_assert!((lo - rlo.max(0.0)).abs() < 1e-9 && (hi - rhi.min(1.0)).abs() < 1e-9);
        }

        #[test]
        fn left_sides_are_balanced_and_seeded(n in 0usize..60, seed in any::<u64>()) {
            let sides = left_sides(n, seed);
            prop_assert_eq!(sides.len(), n);
            let a = sides.iter().filter(|s| **s == Side::A).count();
            prop_assert_eq!(a, n.div_ceil(2));
            prop_assert_eq!(&sides, &left_sides(n, seed));
        }
    }

    #[test]
    fn left_sides_depend_on_the_seed() {
        let orders: std::collections::BTreeSet<Vec<Side>> =
            (0..8).map(|seed| left_sides(20, seed)).collect();
        assert!(orders.len() > 1, "all seeds gave one order");
    }

    #[test]
    fn prompts_as_jsonl_and_as_text() {
        let set = parse_prompts(
            &p("p.jsonl"),
            "{\"id\": \"x\", \"prompt\": \"Write a <poem>\"}\n\n{\"prompt\": \"second\"}\n{\"id\": 7, \"prompt\": \"third\"}\n",
        )
        .unwrap();
        assert_eq!(set.format, PromptFormat::Jsonl);
        assert_eq!(set.blank_lines, 1);
        let ids: Vec<&str> = set.prompts.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["x", "L3", "7"]);
        assert_eq!(set.prompts[0].prompt, "Write a <poem>");
        let set = parse_prompts(&p("p.txt"), "first prompt\n  \nsecond \"quoted\"\n").unwrap();
        assert_eq!(set.format, PromptFormat::Text);
        assert_eq!(set.blank_lines, 1);
        assert_eq!(set.prompts.len(), 2);
        assert_eq!(set.prompts[1].id, "L3");
        assert_eq!(set.prompts[1].prompt, "second \"quoted\"");
    }

    #[test]
    fn bad_prompts_are_named_by_file_line_and_field() {
        let err = |text: &str| parse_prompts(&p("p.jsonl"), text).unwrap_err().to_string();
        assert_eq!(err(""), "p.jsonl:0: no prompts in the file");
        assert!(err("{\"prompt\": \"a\"}\nnot json\n").starts_with("p.jsonl:2: not JSON"));
        assert!(err("{\"prompt\": \"a\"}\n[1]\n").starts_with("p.jsonl:2: expected a JSON object"));
        assert!(err("{\"id\": \"a\"}\n").starts_with("p.jsonl:1: missing field `prompt`"));
        assert!(err("{\"prompt\": \" \"}\n").starts_with("p.jsonl:1: field `prompt` is empty"));
        assert!(
            err("{\"prompt\": 3}\n").starts_with("p.jsonl:1: field `prompt`: expected a string")
        );
        assert!(err("{\"prompt\": \"a\", \"id\": 1.5}\n").starts_with("p.jsonl:1: field `id`"));
        assert!(err("{\"prompt\": \"a\", \"topic\": \"x\"}\n")
            .starts_with("p.jsonl:1: unknown field `topic`"));
        assert_eq!(
            err("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n"),
            "p.jsonl:2: field `id`: `a` already used on line 1"
        );
    }

    #[test]
    fn ratings_are_checked_against_the_pairs() {
        let pairs = pairs(3, 0);
        let path = p("r.jsonl");
        let ok = parse_ratings(
            &path,
            "{\"id\": \"q0\", \"preferred\": \"A\"}\n\n{\"id\": \"q2\", \"preferred\": \"tie\"}\n",
            &pairs,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].preferred, Preference::Tie);
        assert_eq!(ok[1].line, 3);
        let w = win_rate(&pairs, &ok).unwrap();
        assert_eq!((w.rated, w.unrated), (2, 1));
        assert!((w.win_rate_b - 0.25).abs() < 1e-12);
        let err = |text: &str| parse_ratings(&path, text, &pairs).unwrap_err().to_string();
        assert_eq!(
            err("{\"id\": \"q9\", \"preferred\": \"A\"}"),
            "r.jsonl:1: field `id`: no pair has id `q9`"
        );
        assert_eq!(
            err("{\"id\": \"q1\", \"preferred\": \"A\"}\n{\"id\": \"q1\", \"preferred\": \"B\"}"),
            "r.jsonl:2: field `id`: pair `q1` was already rated on line 1"
        );
        assert!(err("{\"id\": \"q1\", \"preferred\": \"left\"}")
            .starts_with("r.jsonl:1: field `preferred`: expected"));
        assert!(err("{\"id\": \"q1\", \"preferred\": \"a\"}").contains("found \"a\""));
        assert_eq!(
            err("{\"id\": \"q1\"}"),
            "r.jsonl:1: missing field `preferred`"
        );
        assert!(err("{\"id\": \"q1\", \"preferred\": \"A\", \"x\": 1}")
            .starts_with("r.jsonl:1: unknown field `x`"));
        assert!(err("oops").starts_with("r.jsonl:1: not JSON"));
        assert!(win_rate(&pairs, &[]).is_err());
    }

    #[test]
    fn page_escapes_text_and_places_responses_by_the_recorded_side() {
        let mut ps = pairs(2, 5);
        ps[0].id = "a&b".into();
        ps[0].prompt = "<script>alert('x')</script> & \"quotes\"".into();
        ps[0].output_a = "A says <b>".into();
        ps[0].output_b = "B says &".into();
        ps[0].left = Side::B;
        ps[1].left = Side::A;
        let html = render_html(&ps);
        assert!(!html.contains("<script>alert"));
        assert!(html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert!(html.contains("data-id=\"a&amp;b\" data-left=\"B\""));
        assert!(html.contains("data-id=\"q1\" data-left=\"A\""));
        // Response 1 of the first pair is B's.
        let first = html.find("B says &amp;").unwrap();
        let second = html.find("A says &lt;b&gt;").unwrap();
        assert!(first < second);
        let b1 = html.find(">b1<").unwrap();
        let a1 = html.find(">a1<").unwrap();
        assert!(a1 < b1);
        // No model names, no external resources.
        assert!(!html.contains("small") && !html.contains("large"));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
        assert_eq!(html.matches("<script>").count(), 1);
    }

    #[test]
    fn pairs_round_trip_through_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let ps = pairs(5, 11);
        let paths = write_outputs(&dir.path().join("out"), &ps).unwrap();
        assert_eq!(read_pairs(&paths.pairs).unwrap(), ps);
        assert!(std::fs::read_to_string(&paths.html)
            .unwrap()
            .starts_with("<!DOCTYPE html>"));
        std::fs::write(&paths.pairs, "{\"id\": 1}\n").unwrap();
        let err = read_pairs(&paths.pairs).unwrap_err().to_string();
        assert!(err.contains("pairs.jsonl:1: not a pair record"), "{err}");
    }

    #[test]
    fn generation_keeps_the_most_likely_candidate_and_counts_long_prompts() {
        let prompts = vec![
            ComparePrompt {
                id: "1".into(),
                prompt: "one two three four five".into(),
                line: 1,
            },
            ComparePrompt {
                id: "2".into(),
                prompt: "short".into(),
                line: 2,
            },
        ];
        // Greedy: the scripted answer is the response.
        let mut model =
            ScriptedModel::new(|p: &str, _, _| format!("re: {p}")).with_max_input_tokens(3);
        let opts = GenerateOptions {
            decoding: Decoding::greedy(16),
            seed: 0,
            batch_size: 1,
        };
        let g = generate_outputs(&mut model, &prompts, &opts).unwrap();
        assert_eq!(g.outputs, ["re: one two three four five", "re: short"]);
        assert_eq!(g.truncated, 1);
        assert_eq!(model.calls, 2);
        // Sampling 3 candidates: the scripted scorer compares each with the responder's
        // answer for (seed 0, sample 0), "best answer" here: log-probability 0 for the third
        // candidate, -2 and -3 for the others, so the third is kept.
        let mut model = ScriptedModel::new(|_: &str, seed, k| match (seed, k) {
            (0, 0) | (_, 2) => "best answer".to_string(),
            (_, 0) => "a b c".to_string(),
            _ => "a b".to_string(),
        });
        let mut decoding = Decoding::greedy(16);
        decoding.do_sample = true;
        decoding.num_return_sequences = 3;
        let opts = GenerateOptions {
            decoding,
            seed: 1,
            batch_size: 2,
        };
        let g = generate_outputs(&mut model, &prompts, &opts).unwrap();
        assert_eq!(g.outputs, ["best answer", "best answer"]);
        // One generate call for the batch of two, one score call per prompt.
        assert_eq!(model.calls, 3);
    }
}
