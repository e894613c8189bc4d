//! The mixture: examples-proportional rates with caps inside submixtures, submixture weights on
//! top, and a seeded stream over it that is deterministic, shardable and resumable.
//!
//! Rates are computed as seqio computes nested mixtures: within a submixture a task's rate is
//! min(cap, N); P(task) = w_sub × rate / Σ rates of that submixture, with the weights
//! renormalised over the submixtures that have tasks.
//!
//! The stream is indexed by a global position. Position `p` draws its task, its rendering form
//! and every other choice from a ChaCha8 stream keyed by (seed, p), so a worker that takes every
//! n-th position sees a disjoint slice of the same stream. Within a task, examples are visited in
//! a fresh seeded permutation each epoch and consecutive draws take templates in turn; the only
//! state is how many times each task has been drawn, which the [`MixtureCursor`] stores.
//!
//! Span-corruption tasks ([`SpanCorruptionTask`]) are entries after the collection parts: their
//! examples are the chunks of their documents, drawn the same way, and come as token ids (with
//! the text decoded from them, sentinels shown), so they need [`Mixture::with_tokenizer`].

use crate::collection::{self, CollectionPart, CollectionRow, PartCursor, PartState, TemplateType};
use crate::error::{Error, Result};
use crate::pack::TokenizedExample;
use crate::render::{render, Form, RenderRequest, Rendered, TokenCount, WordCount};
use crate::source::{self, Strictness};
use crate::span_corruption::{load_span_tasks, SpanCorruptionTask};
use crate::spec::{MixtureSpec, SourceFormat, Submixture};
use crate::task::{Task, TaskRegistry};
use crate::template::TemplateLibrary;
use crate::tokenizer::Tokenizer;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// A task's place in the mixture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRate {
    /// Task name.
    pub task: String,
    /// Its submixture.
    pub submixture: String,
    /// Examples read.
    pub examples: usize,
    /// min(cap, examples).
    pub rate: f64,
    /// Probability of drawing this task at any position.
    pub probability: f64,
}

/// Where a stream stands: store it in checkpoints and resume with [`Mixture::resume`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureCursor {
    /// The stream's seed.
    pub seed: u64,
    /// The next global position.
    pub position: u64,
    /// How many times each task (in mixture order) has been drawn before `position`.
    pub task_draws: Vec<u64>,
    /// Fingerprint of the mixture (task names and rates), to refuse a cursor of another mixture.
    pub fingerprint: u64,
    /// Where each streamed collection part stands (file and row), in mixture order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collection: Vec<PartCursor>,
}

/// One example of the mixture stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MixedExample {
    /// Global position in the stream.
    pub position: u64,
    /// Task name (for a collection row: its `task_name`).
    pub task: String,
    /// Index of the task (or collection part) in the mixture.
    #[serde(skip)]
    pub task_index: usize,
    /// The collection's `task_source` (for our own renderings: that of the submixture, see
    /// [`collection::source_of_submixture`]).
    pub task_source: String,
    /// The collection's template type (for our own renderings: that of the form).
    pub template_type: TemplateType,
    /// Model input.
    pub inputs: String,
    /// Target.
    pub targets: String,
    /// Rendering form.
    pub form: Form,
    /// Template index within the form.
    pub template: usize,
    /// Whether answer options were rendered.
    pub with_options: bool,
    /// Number of few-shot exemplars kept.
    pub exemplars: usize,
    /// The example as token ids, when the task makes ids rather than text (span corruption:
    /// `inputs` and `targets` are then these ids decoded, sentinels shown, EOS left out).
    /// [`crate::pipeline::tokenize_example`] uses them as they are.
    #[serde(skip)]
    pub tokens: Option<TokenizedExample>,
}

/// A built mixture: tasks, templates and rates.
pub struct Mixture {
    registry: TaskRegistry,
    /// Streamed collection parts; their entries follow the registry's tasks in `rates`.
    parts: Vec<CollectionPart>,
    /// Span-corruption tasks; their entries follow the parts in `rates`.
    span: Vec<SpanCorruptionTask>,
    /// The tokenizer of [`Mixture::with_tokenizer`] (span corruption decodes its ids with it).
    tokenizer: Option<Arc<Tokenizer>>,
    library: TemplateLibrary,
    submixtures: BTreeMap<String, Submixture>,
    rates: Vec<TaskRate>,
    cumulative: Vec<f64>,
    excluded: Vec<String>,
    empty_submixtures: Vec<String>,
    input_len: usize,
    target_len: usize,
    seed: u64,
    counter: Arc<dyn TokenCount + Send>,
    fingerprint: u64,
}

impl std::fmt::Debug for Mixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixture")
            .field("rates", &self.rates)
            .finish_non_exhaustive()
    }
}

/// Reads every task of `spec`, resolving paths against `spec_dir`.
pub fn load_tasks(spec: &MixtureSpec, spec_dir: &Path) -> Result<(TaskRegistry, Vec<String>)> {
    let data_dir = spec_dir.join(&spec.data_dir);
    let mut registry = TaskRegistry::new();
    let mut excluded = Vec::new();
    // The collection is streamed by its parts ([`collection::load_parts`]), never loaded.
    // The collection is streamed by its parts ([`collection::load_parts`]), never loaded;
    // span-corruption tasks are read by [`load_span_tasks`].
    for task_spec in spec.tasks.iter().filter(|t| {
        !matches!(
            t.format,
            SourceFormat::FlanCollection | SourceFormat::SpanCorruption
        )
    }) {
        // A spec built in code has not been through `MixtureSpec::validate`.
        if let Some(problem) = task_spec.source_problem() {
            let name = task_spec.name.as_deref().unwrap_or("unnamed");
            return Err(Error::config(format!("task `{name}`"), problem));
        }
        let strictness = if task_spec.lenient {
            Strictness::Lenient
        } else {
            Strictness::Strict
        };
        let files = source::expand_glob(&data_dir.join(&task_spec.path))?;
        let split: Option<HashSet<String>> = match &task_spec.split {
            Some(p) => Some(
                source::read_niv2_split(&data_dir.join(p))?
                    .into_iter()
                    .collect(),
            ),
            None => None,
        };
        let loaded: Vec<Result<Option<Task>>> = files
            .par_iter()
            .map(|file| {
                let stem = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                let name = match (&task_spec.name, files.len()) {
                    (Some(n), 1) => n.clone(),
                    (Some(n), _) => format!("{n}{stem}"),
                    (None, _) => stem.clone(),
                };
                if split.as_ref().is_some_and(|s| !s.contains(&stem)) || spec.is_excluded(&name) {
                    return Ok(None);
                }
                let mut task = Task {
                    name: name.clone(),
                    submixture: task_spec.submixture.clone().unwrap_or_default(),
                    family: task_spec.family_or_default().to_string(),
                    sources: vec![file.clone()],
                    examples: Vec::new(),
                    definition: None,
                    demonstrations: Vec::new(),
                    skipped: Default::default(),
                    ignored: Default::default(),
                };
                let loaded = match task_spec.format {
                    SourceFormat::CotTsv => source::read_cot_tsv(file, &name, strictness)?,
                    SourceFormat::Jsonl => source::read_jsonl(file, &name, strictness)?,
                    SourceFormat::Gsm8k => source::read_gsm8k_jsonl(file, &name, true, strictness)?,
                    SourceFormat::FlanCollection | SourceFormat::SpanCorruption => {
                        return Err(Error::config(
                            name,
                            "a flan_collection or span_corruption task is not loaded as a task",
                        ))
                    }
                    SourceFormat::Niv2 => {
                        let t = source::read_niv2_task(file, strictness)?;
                        task.definition = Some(t.definition);
                        task.demonstrations = t
                            .positive
                            .iter()
                            .enumerate()
                            .map(|(i, d)| crate::Example {
                                task: name.clone(),
                                inputs: d.input.clone(),
                                targets: d.output.clone(),
                                options: None,
                                rationale: Some(d.explanation.clone()).filter(|s| !s.is_empty()),
                                provenance: crate::Provenance {
                                    file: file.clone(),
                                    line: i + 1,
                                },
                            })
                            .collect();
                        let mut l = t.loaded;
                        for ex in &mut l.examples {
                            ex.task = name.clone();
                        }
                        l
                    }
                };
                task.examples = loaded.examples;
                task.skipped = loaded.skipped;
                task.ignored = loaded.ignored;
                Ok(Some(task))
            })
            .collect();
        for (file, task) in files.iter().zip(loaded) {
            match task? {
                Some(t) => registry.add(t)?,
                None => excluded.push(
                    file.file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_string(),
                ),
            }
        }
    }
    if let Some(synthetic) = &spec.synthetic {
        crate::synthetic::add_tasks(synthetic, spec, &mut registry, &mut excluded)?;
    }
    Ok((registry, excluded))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Mixture {
    /// Reads a spec file and builds the mixture (with the built-in templates plus the spec's).
    pub fn from_spec_file(path: &Path) -> Result<Mixture> {
        let spec = MixtureSpec::from_file(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_spec(&spec, dir)
    }

    /// Builds the mixture of `spec`, resolving paths against `spec_dir`.
    pub fn from_spec(spec: &MixtureSpec, spec_dir: &Path) -> Result<Mixture> {
        let mut library = TemplateLibrary::builtin()?;
        if spec.synthetic.is_some() {
            crate::synthetic::extend_library(&mut library)?;
        }
        for t in &spec.templates {
            library.extend_from_file(&spec_dir.join(t))?;
        }
        let (registry, mut excluded) = load_tasks(spec, spec_dir)?;
        let parts = collection::load_parts(spec, spec_dir)?;
        for part in &parts {
            excluded.extend(part.excluded.iter().cloned());
        }
        let (span, span_excluded) = load_span_tasks(spec, spec_dir)?;
        excluded.extend(span_excluded);
        Self::build(registry, parts, span, library, spec, excluded)
    }

    /// Builds a mixture over tasks already in a registry.
    pub fn new(
        registry: TaskRegistry,
        library: TemplateLibrary,
        spec: &MixtureSpec,
        excluded: Vec<String>,
    ) -> Result<Mixture> {
        Self::with_parts(registry, Vec::new(), library, spec, excluded)
    }

    /// Builds a mixture over tasks in a registry and streamed collection parts.
    pub fn with_parts(
        registry: TaskRegistry,
        parts: Vec<CollectionPart>,
        library: TemplateLibrary,
        spec: &MixtureSpec,
        excluded: Vec<String>,
    ) -> Result<Mixture> {
        Self::build(registry, parts, Vec::new(), library, spec, excluded)
    }

    fn build(
        registry: TaskRegistry,
        parts: Vec<CollectionPart>,
        span: Vec<SpanCorruptionTask>,
        library: TemplateLibrary,
        spec: &MixtureSpec,
        excluded: Vec<String>,
    ) -> Result<Mixture> {
        if registry.is_empty() && parts.is_empty() && span.is_empty() {
            return Err(Error::config(
                "mixture",
                "no tasks (all excluded, or none listed)",
            ));
        }
        registry.check_renderable(&library)?;
        let mut names: HashSet<&str> = registry.tasks().iter().map(|t| t.name.as_str()).collect();
        for t in &span {
            if !names.insert(&t.name) {
                return Err(Error::config(
                    format!("task `{}`", t.name),
                    "defined twice; task names must be unique",
                ));
            }
        }
        let used: std::collections::BTreeSet<&str> = registry
            .tasks()
            .iter()
            .map(|t| t.submixture.as_str())
            .chain(parts.iter().map(|p| p.submixture.as_str()))
            .chain(span.iter().map(|t| t.submixture.as_str()))
            .collect();
        if used
            .iter()
            .map(|s| spec.submixtures[*s].weight)
            .sum::<f64>()
            <= 0.0
        {
            return Err(Error::config(
                "mixture",
                "the submixtures that have tasks all have weight 0",
            ));
        }
        let mut mixture = Mixture {
            registry,
            parts,
            span,
            tokenizer: None,
            library,
            submixtures: spec.submixtures.clone(),
            rates: Vec::new(),
            cumulative: Vec::new(),
            excluded,
            empty_submixtures: Vec::new(),
            input_len: spec.input_len,
            target_len: spec.target_len,
            seed: spec.seed,
            counter: Arc::new(WordCount),
            fingerprint: 0,
        };
        mixture.set_rates();
        Ok(mixture)
    }

    /// Rates, probabilities and the fingerprint, from the entries' example counts (which change
    /// for span-corruption tasks when they are tokenized). [`Mixture::build`] checked that the
    /// submixtures with tasks have weight.
    fn set_rates(&mut self) {
        let submixtures = &self.submixtures;
        // Every entry of the mixture: (name, submixture, examples, rate).
        let cap = |sub: &str| submixtures[sub].cap as f64;
        let entries: Vec<(&str, &str, usize, f64)> = self
            .registry
            .tasks()
            .iter()
            .map(|t| {
                let n = t.examples.len();
                (
                    t.name.as_str(),
                    t.submixture.as_str(),
                    n,
                    (n as f64).min(cap(&t.submixture)),
                )
            })
            .chain(self.parts.iter().map(|p| {
                (
                    p.name.as_str(),
                    p.submixture.as_str(),
                    p.rows as usize,
                    p.rate,
                )
            }))
            .chain(self.span.iter().map(|t| {
                let n = t.examples();
                (
                    t.name.as_str(),
                    t.submixture.as_str(),
                    n,
                    (n as f64).min(cap(&t.submixture)),
                )
            }))
            .collect();
        let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
        for &(_, sub, _, rate) in &entries {
            *sums.entry(sub).or_default() += rate;
        }
        let total_weight: f64 = sums.keys().map(|s| submixtures[*s].weight).sum();
        let empty_submixtures = submixtures
            .keys()
            .filter(|k| !sums.contains_key(k.as_str()))
            .cloned()
            .collect();
        let mut rates = Vec::with_capacity(entries.len());
        let mut cumulative = Vec::with_capacity(entries.len());
        let mut acc = 0.0;
        // Without collection parts the fingerprint is what it always was (old cursors resume).
        let mut fingerprint = splitmix(self.registry.len() as u64);
        for &(name, submixture, examples, rate) in &entries {
            let sub = &submixtures[submixture];
            let probability = if sums[submixture] > 0.0 {
                sub.weight / total_weight * rate / sums[submixture]
            } else {
                0.0
            };
            acc += probability;
            cumulative.push(acc);
            for b in name.bytes() {
                fingerprint = splitmix(fingerprint ^ u64::from(b));
            }
            fingerprint = splitmix(fingerprint ^ probability.to_bits());
            rates.push(TaskRate {
                task: name.to_string(),
                submixture: submixture.to_string(),
                examples,
                rate,
                probability,
            });
        }
        if let Some(last) = cumulative.last_mut() {
            *last = f64::INFINITY; // rounding must never send a draw past the last task
        }
        self.rates = rates;
        self.cumulative = cumulative;
        self.empty_submixtures = empty_submixtures;
        self.fingerprint = fingerprint;
    }

    /// Counts few-shot budgets in tokens of `tokenizer` (default: whitespace words), and
    /// tokenizes the documents of span-corruption tasks into their chunks, whose number is then
    /// their example count (rates and fingerprint are recomputed). A span-corruption task that
    /// cannot be tokenized (a vocabulary without sentinels) keeps the error: streams and
    /// [`Mixture::check`] return it, naming the task.
    pub fn with_tokenizer(mut self, tokenizer: Arc<Tokenizer>) -> Self {
        if !self.span.is_empty() {
            for task in &mut self.span {
                task.tokenize(&tokenizer);
            }
            self.set_rates();
        }
        self.tokenizer = Some(Arc::clone(&tokenizer));
        self.counter = tokenizer;
        self
    }

    /// Whether every task can be streamed: span-corruption tasks need a tokenizer
    /// ([`Mixture::with_tokenizer`]) with sentinels; the error names the task.
    pub fn check(&self) -> Result<()> {
        self.span.iter().try_for_each(SpanCorruptionTask::check)
    }

    /// The tasks.
    pub fn registry(&self) -> &TaskRegistry {
        &self.registry
    }
    /// The streamed collection parts (entries `registry().len()..` of [`Mixture::rates`]).
    pub fn parts(&self) -> &[CollectionPart] {
        &self.parts
    }
    /// The span-corruption tasks (entries `registry().len() + parts().len()..` of
    /// [`Mixture::rates`]).
    pub fn span_tasks(&self) -> &[SpanCorruptionTask] {
        &self.span
    }
    /// The span-corruption task at `index` of [`Mixture::rates`], if that entry is one.
    pub fn span_task(&self, index: usize) -> Option<&SpanCorruptionTask> {
        index
            .checked_sub(self.registry.len() + self.parts.len())
            .and_then(|i| self.span.get(i))
    }
    /// Records skipped in lenient mode by the entry at `index` of [`Mixture::rates`].
    pub fn skipped(&self, index: usize) -> usize {
        let n = self.registry.len();
        if index < n {
            self.registry.tasks()[index].skipped.count
        } else if let Some(p) = self.parts.get(index - n) {
            p.skipped.count
        } else {
            self.span_task(index).map_or(0, |t| t.skipped.count)
        }
    }
    /// The template library.
    pub fn library(&self) -> &TemplateLibrary {
        &self.library
    }
    /// Per-task rates and probabilities, in mixture order.
    pub fn rates(&self) -> &[TaskRate] {
        &self.rates
    }
    /// Submixture settings.
    pub fn submixtures(&self) -> &BTreeMap<String, Submixture> {
        &self.submixtures
    }
    /// Tasks held out by the spec.
    pub fn excluded(&self) -> &[String] {
        &self.excluded
    }
    /// Submixtures of the spec that have no task (their weight is spread over the others).
    pub fn empty_submixtures(&self) -> &[String] {
        &self.empty_submixtures
    }
    /// Input token budget.
    pub fn input_len(&self) -> usize {
        self.input_len
    }
    /// Target token budget.
    pub fn target_len(&self) -> usize {
        self.target_len
    }
    /// The spec's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Fingerprint of tasks and rates.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The task index a uniform draw `u` in [0, 1) selects.
    fn task_for(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }

    /// A stream from position 0 with `seed`.
    pub fn stream(self: &Arc<Self>, seed: u64) -> MixtureStream {
        let cursor = MixtureCursor {
            seed,
            position: 0,
            task_draws: vec![0; self.rates.len()],
            fingerprint: self.fingerprint,
            collection: self
                .parts
                .iter()
                .map(|p| PartState::new(p).cursor(p))
                .collect(),
        };
        let parts = self.parts.iter().map(PartState::new).collect();
        MixtureStream::new(Arc::clone(self), cursor, parts)
    }

    /// A stream that continues exactly where `cursor` was taken.
    pub fn resume(self: &Arc<Self>, cursor: MixtureCursor) -> Result<MixtureStream> {
        self.check()?;
        if cursor.fingerprint != self.fingerprint || cursor.task_draws.len() != self.rates.len() {
            return Err(Error::config(
                "mixture cursor",
                "was taken on a different mixture (tasks or rates changed); refusing to resume",
            ));
        }
        if cursor.collection.len() != self.parts.len() {
            return Err(Error::config(
                "mixture cursor",
                "was taken on a mixture with other collection parts; refusing to resume",
            ));
        }
        let parts = self
            .parts
            .iter()
            .zip(&cursor.collection)
            .map(|(p, c)| PartState::from_cursor(p, c))
            .collect::<Result<_>>()?;
        Ok(MixtureStream::new(Arc::clone(self), cursor, parts))
    }
}

/// A planned draw: everything but the rendering, which can then run in parallel.
struct Draw {
    position: u64,
    task: usize,
    request: RenderRequest,
    rng: ChaCha8Rng,
    /// The row of a collection part (used as given, not rendered).
    row: Option<CollectionRow>,
    /// For a span-corruption task: the chunk and the task's draw number (which seeds the mask).
    chunk: Option<(usize, u64)>,
}

/// The mixture as an endless iterator of [`MixedExample`]s.
pub struct MixtureStream {
    mixture: Arc<Mixture>,
    seed: u64,
    key: [u8; 32],
    position: u64,
    task_draws: Vec<u64>,
    /// Per task: (epoch, permutation of example indices) of the current epoch.
    permutations: Vec<Option<(u64, Vec<u32>)>>,
    shard_index: u64,
    shard_count: u64,
    /// Per collection part: where its files are read.
    parts: Vec<PartState>,
}

impl MixtureStream {
    fn new(mixture: Arc<Mixture>, cursor: MixtureCursor, parts: Vec<PartState>) -> Self {
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&splitmix(cursor.seed ^ splitmix(i as u64)).to_le_bytes());
        }
        let n = mixture.rates.len();
        MixtureStream {
            mixture,
            seed: cursor.seed,
            key,
            position: cursor.position,
            task_draws: cursor.task_draws,
            permutations: vec![None; n],
            shard_index: 0,
            shard_count: 1,
            parts,
        }
    }

    /// Restricts the stream to worker `index` of `count`: positions p with p % count == index.
    pub fn shard(mut self, index: u64, count: u64) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::config(
                "shard",
                format!("need index < count, got {index} of {count}"),
            ));
        }
        self.shard_index = index;
        self.shard_count = count;
        Ok(self)
    }

    /// Where the stream stands now.
    pub fn cursor(&self) -> MixtureCursor {
        MixtureCursor {
            seed: self.seed,
            position: self.position,
            task_draws: self.task_draws.clone(),
            fingerprint: self.mixture.fingerprint,
            collection: self
                .parts
                .iter()
                .zip(&self.mixture.parts)
                .map(|(state, part)| state.cursor(part))
                .collect(),
        }
    }

    /// Moves on to `position` (if it is ahead) without drawing examples, counting the task
    /// draws of every position passed, whichever shard it belongs to, as the stream itself counts
    /// them. The cursor then is where an unsharded stream stands just before `position`, so a
    /// reader of one shard can record where each of its examples starts (a sharded stream skips
    /// other shards' positions but its draws still count them).
    ///
    /// A collection part's rows are not read here: the draws are counted in its cursor
    /// (`pending`) and passed over when the stream next reads the part.
    pub fn advance_to(&mut self, position: u64) {
        while self.position < position {
            self.pass_position();
        }
    }

    /// Counts the draw at the current position without reading or rendering it; returns its
    /// task and position.
    fn pass_position(&mut self) -> (usize, u64) {
        let position = self.position;
        let mut rng = self.rng_at(position);
        let task = self.mixture.task_for(rng.gen::<f64>());
        self.task_draws[task] += 1;
        self.position += 1;
        if let Some(state) = task
            .checked_sub(self.mixture.registry.len())
            .and_then(|p| self.parts.get_mut(p))
        {
            state.pass();
        }
        (task, position)
    }

    /// The mixture this stream draws from.
    pub fn mixture(&self) -> &Arc<Mixture> {
        &self.mixture
    }

    fn rng_at(&self, position: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.key);
        rng.set_stream(position);
        rng
    }

    /// The example of entry `task` (of `n`, in a fresh permutation per epoch keyed by `salt`)
    /// at its `draw`-th draw.
    fn example_index(&mut self, task: usize, n: usize, salt: u64, draw: u64) -> usize {
        let n = n as u64;
        let epoch = draw / n;
        let slot = &mut self.permutations[task];
        if slot.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut perm: Vec<u32> = (0..n as u32).collect();
            let mut rng =
                ChaCha8Rng::seed_from_u64(splitmix(self.seed ^ salt ^ splitmix(epoch << 20)));
            perm.shuffle(&mut rng);
            *slot = Some((epoch, perm));
        }
        match slot {
            Some((_, perm)) => perm[(draw % n) as usize] as usize,
            None => 0,
        }
    }

    /// Advances by one position; returns the draw if it belongs to this shard.
    fn step(&mut self) -> Result<Option<Draw>> {
        if self.position % self.shard_count != self.shard_index {
            self.pass_position();
            return Ok(None);
        }
        let position = self.position;
        self.position += 1;
        let mut rng = self.rng_at(position);
        let task = self.mixture.task_for(rng.gen::<f64>());
        let draw = self.task_draws[task];
        self.task_draws[task] += 1;
        let n_tasks = self.mixture.registry.len();
        if let Some(span) = self.mixture.span_task(task) {
            span.check()?;
            // The task's name, not its place in the mixture, keys its order and masks.
            let salt = splitmix(crate::hash::fnv1a(&span.name));
            let chunk = self.example_index(task, span.examples(), salt, draw);
            let request = RenderRequest::as_given(chunk, self.mixture.input_len);
            return Ok(Some(Draw {
                position,
                task,
                request,
                rng,
                row: None,
                chunk: Some((chunk, draw)),
            }));
        }
        if task >= n_tasks {
            let part = &self.mixture.parts[task - n_tasks];
            let row = part.next_row(&mut self.parts[task - n_tasks], self.seed)?;
            let request = RenderRequest::as_given(0, self.mixture.input_len);
            return Ok(Some(Draw {
                position,
                task,
                request,
                rng,
                row: Some(row),
                chunk: None,
            }));
        }
        let n = self.mixture.registry.tasks()[task].examples.len();
        let example = self.example_index(task, n, splitmix(task as u64), draw);
        let mixture = &self.mixture;
        let t = &mixture.registry.tasks()[task];
        let sub = &mixture.submixtures[&t.submixture];
        let has_inversions = mixture
            .library
            .families
            .get(&t.family)
            .is_some_and(|f| !f.inversions.is_empty());
        let form = if has_inversions && rng.gen_bool(sub.inversion_ratio) {
            Form::Inversion
        } else if rng.gen_bool(sub.few_shot_ratio) {
            Form::FewShot
        } else {
            Form::ZeroShot
        };
        let with_options = rng.gen_bool(sub.options_ratio);
        let request = RenderRequest {
            example,
            form,
            template: draw as usize,
            with_options,
            input_budget: mixture.input_len,
        };
        Ok(Some(Draw {
            position,
            task,
            request,
            rng,
            row: None,
            chunk: None,
        }))
    }

    fn next_draw(&mut self) -> Result<Draw> {
        loop {
            if let Some(d) = self.step()? {
                return Ok(d);
            }
        }
    }

    fn render_draw(mixture: &Mixture, seed: u64, mut d: Draw) -> Result<MixedExample> {
        if let (Some((chunk, draw)), Some(span)) = (d.chunk, mixture.span_task(d.task)) {
            let tokens = span.example(chunk, seed, draw)?;
            // Chunks exist only once `with_tokenizer` has set the tokenizer.
            let tokenizer = mixture.tokenizer.as_ref().ok_or_else(|| {
                Error::config(
                    format!("task `{}`", span.name),
                    "the mixture has no tokenizer",
                )
            })?;
            // Without the EOS, as the text of other tasks (tokenizing appends it).
            let decode = |ids: &[u32]| tokenizer.decode(&ids[..ids.len().saturating_sub(1)], false);
            return Ok(MixedExample {
                position: d.position,
                task: span.name.clone(),
                task_index: d.task,
                task_source: collection::source_of_submixture(&span.submixture).to_string(),
                template_type: TemplateType::ZsNoopt,
                inputs: decode(&tokens.inputs)?,
                targets: decode(&tokens.targets)?,
                form: Form::ZeroShot,
                template: 0,
                with_options: false,
                exemplars: 0,
                tokens: Some(tokens),
            });
        }
        if let Some(row) = d.row {
            let t = row.template_type;
            return Ok(MixedExample {
                position: d.position,
                task: row.task_name,
                task_index: d.task,
                inputs: row.inputs,
                targets: row.targets,
                form: if matches!(t, TemplateType::FsOpt | TemplateType::FsNoopt) {
                    Form::FewShot
                } else {
                    Form::ZeroShot
                },
                template: 0,
                with_options: matches!(t, TemplateType::ZsOpt | TemplateType::FsOpt),
                exemplars: 0,
                task_source: row.task_source,
                template_type: t,
                tokens: None,
            });
        }
        let task = &mixture.registry.tasks()[d.task];
        let family = mixture.library.family(&task.family)?;
        let Rendered {
            inputs,
            targets,
            form,
            template,
            with_options,
            exemplars,
            ..
        } = render(
            &mixture.library,
            family,
            task,
            &d.request,
            mixture.counter.as_ref(),
            &mut d.rng,
        )?;
        Ok(MixedExample {
            position: d.position,
            task: task.name.clone(),
            task_index: d.task,
            inputs,
            targets,
            form,
            template,
            with_options,
            exemplars: exemplars.len(),
            task_source: collection::source_of_submixture(&task.submixture).to_string(),
            template_type: TemplateType::of_rendering(form, with_options),
            tokens: None,
        })
    }

    /// The next `n` examples of this shard, rendered in parallel (same result as `n` calls of
    /// `next`).
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<MixedExample>> {
        self.next_batch_with(n, Ok)
    }

    /// The next `n` examples of this shard, each rendered and handed to `then` in one parallel
    /// task (same examples as [`MixtureStream::next_batch`], in order). Tokenizing there rather
    /// than in a second pass finds the text, and the words the few-shot budget just counted,
    /// still in the CPU's caches.
    pub fn next_batch_with<T: Send>(
        &mut self,
        n: usize,
        then: impl Fn(MixedExample) -> Result<T> + Sync + Send,
    ) -> Result<Vec<T>> {
        let draws: Vec<Draw> = (0..n).map(|_| self.next_draw()).collect::<Result<_>>()?;
        let (mixture, seed) = (&self.mixture, self.seed);
        draws
            .into_par_iter()
            .map(|d| then(Self::render_draw(mixture, seed, d)?))
            .collect()
    }

    /// The next `n` examples of this shard that are text, rendered in parallel: draws of
    /// span-corruption tasks are passed over (their text is their documents', and they need a
    /// tokenizer, which this serves to train). Empty when no text task can be drawn.
    pub fn next_text_batch(&mut self, n: usize) -> Result<Vec<MixedExample>> {
        let mixture = Arc::clone(&self.mixture);
        let has_text = (0..mixture.rates.len())
            .any(|i| mixture.rates[i].probability > 0.0 && mixture.span_task(i).is_none());
        let mut draws = Vec::with_capacity(n);
        // Bounded: a text task with probability p is drawn every 1/p positions on average.
        let mut budget = (n as u64).saturating_mul(1 << 20);
        while has_text && draws.len() < n && budget > 0 {
            budget -= 1;
            let own = self.position % self.shard_count == self.shard_index;
            let task = mixture.task_for(self.rng_at(self.position).gen::<f64>());
            if !own || mixture.span_task(task).is_some() {
                self.pass_position();
            } else if let Some(d) = self.step()? {
                draws.push(d);
            }
        }
        let seed = self.seed;
        draws
            .into_par_iter()
            .map(|d| Self::render_draw(&mixture, seed, d))
            .collect()
    }

    /// The next task index of this shard only (no rendering, no collection row read): for
    /// rate statistics.
    pub fn next_task(&mut self) -> usize {
        loop {
            let own = self.position % self.shard_count == self.shard_index;
            let (task, _) = self.pass_position();
            if own {
                return task;
            }
        }
    }
}

impl Iterator for MixtureStream {
    type Item = Result<MixedExample>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.next_draw()
                .and_then(|d| Self::render_draw(&self.mixture, self.seed, d)),
        )
    }
}
