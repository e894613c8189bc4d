//! `TrainConfig`: everything a run needs, as TOML with `deny_unknown_fields`, plus command-line
//! overrides `key=value` on dotted keys (`schedule.lr=5e-4`, `optimizer.kind=adamw`).
//!
//! Relative paths in a config file are resolved against the file's directory, so a run directory
//! can be moved as a whole; paths given as overrides are taken as typed (relative to the current
//! directory), as is the default `output_dir` (`runs/flan`). Defaults are the Flan-T5 finetuning recipe: Adafactor without momentum or
//! parameter scaling, constant learning rate 1e-3, packing, dropout 0.05.

use std::path::{Path, PathBuf};

use flan_data::Overlong;
use serde::{Deserialize, Serialize};

use flan_model::{DeviceSpec, Dtype};

use crate::optim::OptimizerConfig;
use crate::schedule::ScheduleConfig;
use crate::{Error, Result};

/// The whole configuration of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Where checkpoints, metrics and the final model go.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Seed of the model's initialisation, of dropout and (unless `data.seed`) of the mixture.
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N`, or `auto` (CUDA when available); a string in the file, parsed
    /// when the config is read. Under a launcher, `cuda` and `auto` mean this rank's GPU
    /// (`LOCAL_RANK`, else `SLURM_LOCALID`); see [`TrainConfig::tch_device`].
    #[serde(default = "default_device")]
    pub device: DeviceSpec,
    /// Parameter dtype: `f32` or `bf16` (pure bf16: the optimisers update bf16 parameters in
    /// fp32 and round once, as transformers does); parsed when the config is read, f16 refused
    /// by [`TrainConfig::validate`].
    #[serde(default)]
    pub dtype: Dtype,
    /// Mixed precision: `bf16` runs the forward pass under autocast (bf16 matmuls over fp32
    /// weights; gradients and optimiser state stay fp32), as `torch.autocast` does, on CUDA and
    /// on CPU; `off` (the default) computes in `dtype`. Needs `dtype = "f32"`. No f16: T5
    /// v1.1/Flan overflows it.
    #[serde(default = "default_autocast")]
    pub autocast: String,
    /// Flush fp32 denormals to zero while training (on by default): x86 cores handle them in
    /// microcode, and a T5 step makes enough of them to run at about half speed on CPU. Only
    /// values below 1.2e-38 change. `false` keeps denormals, as transformers computes them, for
    /// comparing training runs with it. x86 CPUs only (elsewhere it does nothing).
    #[serde(default = "yes")]
    pub flush_denormals: bool,
    /// Which model to finetune.
    #[serde(default)]
    pub model: ModelSection,
    /// Train a LoRA adapter instead of the whole model (PEFT's names and defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    /// The training data.
    #[serde(default)]
    pub data: DataSection,
    /// Batch size and gradient accumulation.
    #[serde(default)]
    pub batch: BatchSection,
    /// The optimiser (`kind = "adafactor"` or `"adamw"`).
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Length of the run and the loss.
    #[serde(default)]
    pub train: LoopSection,
    /// Checkpoint interval and rotation.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Evaluation during training.
    #[serde(default)]
    pub eval: EvalSection,
    /// Logging and progress display.
    #[serde(default)]
    pub log: LogSection,
}

/// `[model]`: a pretrained directory to finetune, or a `T5Config` to initialise from scratch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A Hugging Face model directory (`config.json`, safetensors, usually `tokenizer.json`),
    /// or a hub id such as `google/flan-t5-small` (see [`TrainConfig::resolve_pretrained`]).
    pub pretrained: Option<PathBuf>,
    /// A `config.json` to build a randomly initialised model from (seeded by `seed`).
    pub config: Option<PathBuf>,
    /// Another train config whose run this one starts from: a pretraining stage (e.g. span
    /// corruption) that `flan train` runs once and keeps in the run cache under a hash of its
    /// content, then finetunes as it would `pretrained` (see flan-cli's `pretraining_stage`).
    /// Resolved into `pretrained` before training starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PathBuf>,
    /// `tokenizer.json`; defaults to the one in `pretrained`, or with `train_tokenizer` to
    /// `output_dir/tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// Train a Unigram tokenizer on the mixture when the tokenizer file does not exist yet (a
    /// from-scratch run on a new mixture); an existing file is reused as it is.
    pub train_tokenizer: Option<TokenizerTraining>,
    /// Dropout rate during training (Flan: 0.05); overrides the model config's `dropout_rate`.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

/// `[model.train_tokenizer]`: the tokenizer a from-scratch run trains on its own mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerTraining {
    /// Unigram pieces (the 100 T5 sentinels come on top); the model's `vocab_size` must cover
    /// pieces + sentinels.
    pub vocab_size: usize,
    /// Rendered mixture examples added to the raw task texts as the training corpus (so that
    /// template wording is in the vocabulary).
    #[serde(default = "default_tokenizer_rendered")]
    pub rendered: usize,
    /// The mixture spec whose texts train the tokenizer (default: `data.mixture`). A
    /// pretraining stage names the finetuning mixture here, so that the instructions' wording
    /// has pieces of its own in the vocabulary both stages share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture: Option<PathBuf>,
}

/// `[data]`: the mixture and how it becomes batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The `MixtureSpec` TOML file of flan-data.
    pub mixture: Option<PathBuf>,
    /// Encoder length (default: the spec's `input_len`).
    pub input_len: Option<usize>,
    /// Decoder length (default: the spec's `target_len`).
    pub target_len: Option<usize>,
    /// Pack several examples per row (t5x); otherwise one example per row, padded to the
    /// longest of its batch.
    #[serde(default = "yes")]
    pub pack: bool,
    /// Seed of the mixture stream (default: the run's `seed`).
    pub seed: Option<u64>,
    /// An example longer than `input_len` / `target_len`: `truncate` keeps the first tokens and
    /// the EOS and counts the cut (summary.json, the final line), `error` stops the run naming
    /// the example.
    #[serde(default)]
    pub overlong: Overlong,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            mixture: None,
            input_len: None,
            target_len: None,
            pack: true,
            seed: None,
            overlong: Overlong::Truncate,
        }
    }
}

/// What `batch.size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchUnit {
    /// Rows per micro-batch (with packing, packed rows, as t5x counts its batch size).
    Examples,
    /// Token slots per micro-batch: rows = max(1, size / (input_len + target_len)).
    Tokens,
}

/// `[batch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// Micro-batch size, in `unit`s.
    #[serde(default = "default_batch_size")]
    pub size: usize,
    /// `examples` or `tokens`.
    #[serde(default = "default_unit")]
    pub unit: BatchUnit,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            size: default_batch_size(),
            unit: default_unit(),
            grad_accum: 1,
        }
    }
}

impl BatchSection {
    /// Rows per micro-batch for the given lengths.
    pub fn rows(&self, input_len: usize, target_len: usize) -> usize {
        match self.unit {
            BatchUnit::Examples => self.size,
            BatchUnit::Tokens => (self.size / (input_len + target_len).max(1)).max(1),
        }
    }
}

/// What to do when the loss or the gradient norm is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Stop with an error naming the step (after nothing was applied to the weights).
    Stop,
    /// Skip the update, count it, go on.
    Skip,
}

/// `[lora]`: a LoRA adapter on the model's linear layers, with PEFT's option names. Only the
/// adapter (and `modules_to_save`) trains; the base weights stay as loaded, and checkpoints and
/// the final model directory are PEFT adapter directories (`adapter_config.json`,
/// `adapter_model.safetensors`, `tokenizer.json`) whose `base_model_name_or_path` is
/// `model.pretrained`. See [`flan_model::lora`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// The rank (PEFT's default, 8).
    #[serde(default = "default_lora_r")]
    pub r: i64,
    /// `scaling = lora_alpha / r` (PEFT's default, 8).
    #[serde(default = "default_lora_alpha")]
    pub lora_alpha: f64,
    /// Dropout on the adapter's input (PEFT's default, 0).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Linear modules to adapt, by name suffix (`q`, `k`, `v`, `o`, `wi`, `wi_0`, `wi_1`, `wo`,
    /// `lm_head`, or longer suffixes such as `EncDecAttention.q`), or `["all-linear"]`; PEFT's
    /// T5 default is `["q", "v"]`.
    #[serde(default = "default_lora_targets")]
    pub target_modules: Vec<String>,
    /// Modules trained and saved whole besides the adapters (e.g. `["lm_head"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules_to_save: Vec<String>,
    /// rsLoRA: `scaling = lora_alpha / √r`.
    #[serde(default)]
    pub use_rslora: bool,
}

fn default_lora_r() -> i64 {
    8
}

fn default_lora_alpha() -> f64 {
    8.0
}

fn default_lora_targets() -> Vec<String> {
    vec!["q".into(), "v".into()]
}

impl LoraSection {
    /// The adapter's PEFT config, naming `base` as its base model.
    pub fn peft_config(&self, base: Option<String>) -> flan_model::LoraConfig {
        let targets = match self.target_modules.as_slice() {
            [all] if all == "all-linear" => flan_model::ModuleSelector::Pattern(all.clone()),
            list => flan_model::ModuleSelector::Names(list.to_vec()),
        };
        let mut config =
            flan_model::LoraConfig::new(self.r, self.lora_alpha, self.lora_dropout, targets);
        config.base_model_name_or_path = base;
        config.use_rslora = self.use_rslora;
        if !self.modules_to_save.is_empty() {
            config.modules_to_save = Some(self.modules_to_save.clone());
        }
        config
    }
}

/// `[train]`: length of the run and the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSection {
    /// Optimizer steps of the whole run (a resumed run continues up to this).
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Clip gradients to this global norm (none by default, as in the Flan recipe).
    pub clip_grad_norm: Option<f64>,
    /// Coefficient of t5x's z-loss, z_loss·log²Z per target token (t5x uses 1e-4; 0 = off).
    #[serde(default)]
    pub z_loss: f64,
    /// Divide the summed token loss by this constant instead of the number of real target tokens
    /// (t5x's `loss_normalizing_factor`).
    pub loss_normalizing_factor: Option<f64>,
    /// `stop` or `skip`.
    #[serde(default = "default_on_nonfinite")]
    pub on_nonfinite: OnNonFinite,
    /// Parameters that do not train: fnmatch-style globs over the Hugging Face parameter names
    /// (`["encoder.*", "shared.weight"]`; `*` matches any run of characters including dots, `?`
    /// one character, the whole name must match). Frozen parameters get no gradient and no
    /// optimiser state. A glob that matches nothing is an error, as is freezing everything; a
    /// tied output head is `shared.weight`. See [`crate::freeze`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<String>,
    /// Activation checkpointing per T5 block (`torch.utils.checkpoint`, transformers'
    /// `gradient_checkpointing_enable()`): the training forward pass keeps only each block's
    /// input and the backward pass recomputes the block, with the same dropout masks. Same
    /// losses and gradients (up to the order of summation), less memory, more time per step
    /// (see docs/operations.md). Off the CPU it needs `model.dropout = 0`. It changes no
    /// result, so a resume may switch it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub activation_checkpointing: bool,
}

impl Default for LoopSection {
    fn default() -> Self {
        LoopSection {
            steps: default_steps(),
            clip_grad_norm: None,
            z_loss: 0.0,
            loss_normalizing_factor: None,
            on_nonfinite: default_on_nonfinite(),
            freeze: Vec::new(),
            activation_checkpointing: false,
        }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Save every this many steps (and always at the last step); 0 = only at the end.
    #[serde(default = "default_checkpoint_every")]
    pub every: u64,
    /// How many step checkpoints to keep (the best one is kept apart).
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
    /// Continue from the latest complete checkpoint in `output_dir` when there is one.
    #[serde(default = "yes")]
    pub auto_resume: bool,
    /// A newest checkpoint whose files do not match their recorded digests (or whose state
    /// cannot be read): `previous` resumes from the previous intact one, saying which file
    /// failed; `stop` refuses to start, as t5x/orbax do.
    #[serde(default)]
    pub on_corrupt: OnCorrupt,
}

/// What an automatic resume does with a damaged newest checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCorrupt {
    /// Report it and resume from the previous intact checkpoint.
    #[default]
    Previous,
    /// Stop with an error naming the file.
    Stop,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            every: default_checkpoint_every(),
            keep_last: default_keep_last(),
            auto_resume: true,
            on_corrupt: OnCorrupt::Previous,
        }
    }
}

/// Whether a larger or a smaller metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricMode {
    /// Higher is better (accuracies).
    Max,
    /// Lower is better (losses).
    Min,
}

/// `[eval]`: held-out evaluations during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every this many steps; 0 = never.
    #[serde(default)]
    pub every: u64,
    /// Names of the evaluations to run (as the evaluation hook knows them).
    #[serde(default)]
    pub benchmarks: Vec<String>,
    /// At most this many samples per benchmark.
    pub limit: Option<usize>,
    /// Where the benchmark files are: `<benchmark>/` below it as `flan eval run --data` takes
    /// it (`gsm8k/test.jsonl` and `toxicity/test.jsonl` for the single-file benchmarks; none
    /// for the generated synthetic suite).
    pub data_dir: Option<PathBuf>,
    /// Keep a copy of the checkpoint that is best by this metric (`benchmark/metric` as logged).
    pub best_metric: Option<String>,
    /// `max` or `min`.
    #[serde(default = "default_mode")]
    pub best_mode: MetricMode,
    /// The synthetic task suite evaluated before and after training, with a report (flan-cli
    /// runs it; see `[eval.synthetic]`).
    pub synthetic: Option<SyntheticEvalSection>,
}

/// `[eval.synthetic]`: flan-data's synthetic suite (seen templates, held-out templates, held-out
/// families; zero-shot, few-shot, CoT) run on the model before training and on the final model,
/// written to `output_dir/eval/` with a Markdown report and charts. flan-train only reads this
/// section; flan-cli runs it through flan-eval's runner (the suite is one of its benchmarks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticEvalSection {
    /// Seed of the evaluation examples and prompt renderings.
    #[serde(default)]
    pub seed: u64,
    /// Prompts per (family, template set, mode) cell.
    #[serde(default = "default_items_per_cell")]
    pub items_per_cell: usize,
    /// Exemplars in the few-shot modes (0: no few-shot modes).
    #[serde(default = "default_shots")]
    pub shots: usize,
    /// Prompts per generation batch.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
}

impl SyntheticEvalSection {
    /// Which prompts to evaluate (flan-data's plan of the standard evaluation).
    pub fn plan(&self) -> flan_data::synthetic::StandardEval {
        flan_data::synthetic::StandardEval {
            seed: self.seed,
            items_per_cell: self.items_per_cell,
            shots: self.shots,
        }
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            every: 0,
            benchmarks: Vec::new(),
            limit: None,
            data_dir: None,
            best_metric: None,
            best_mode: MetricMode::Max,
            synthetic: None,
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStyle {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// Always plain lines.
    Lines,
    /// Nothing on the terminal (metrics are still written).
    Off,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Write a metrics record every this many steps.
    #[serde(default = "one_u64")]
    pub every: u64,
    /// `auto`, `bar`, `lines` or `off`.
    #[serde(default = "default_progress")]
    pub progress: ProgressStyle,
    /// Also write the metrics as TensorBoard event files in `output_dir/tensorboard/`.
    #[serde(default = "yes")]
    pub tensorboard: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            every: 1,
            progress: ProgressStyle::Auto,
            tensorboard: true,
        }
    }
}

fn default_items_per_cell() -> usize {
    8
}
fn default_shots() -> usize {
    2
}
fn default_eval_batch() -> usize {
    64
}
fn default_tokenizer_rendered() -> usize {
    20_000
}
fn default_output_dir() -> PathBuf {
    PathBuf::from("runs/flan")
}
fn default_device() -> DeviceSpec {
    DeviceSpec::Auto
}
fn default_autocast() -> String {
    "off".into()
}
fn default_dropout() -> f64 {
    0.05
}
fn yes() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn one() -> usize {
    1
}
fn one_u64() -> u64 {
    1
}
fn default_batch_size() -> usize {
    64
}
fn default_unit() -> BatchUnit {
    BatchUnit::Examples
}
fn default_steps() -> u64 {
    1000
}
fn default_on_nonfinite() -> OnNonFinite {
    OnNonFinite::Stop
}
fn default_checkpoint_every() -> u64 {
    1000
}
fn default_keep_last() -> usize {
    3
}
fn default_mode() -> MetricMode {
    MetricMode::Max
}
fn default_progress() -> ProgressStyle {
    ProgressStyle::Auto
}

/// The range a numeric option must lie in, named in the error so the user sees what is valid.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Range {
    /// A finite number > 0.
    Positive,
    /// A finite number >= 0.
    NonNegative,
    /// A finite number < 0.
    Negative,
    /// A number in [0, 1).
    UnitOpen,
}

impl Range {
    fn contains(self, v: f64) -> bool {
        match self {
            Range::Positive => v.is_finite() && v > 0.0,
            Range::NonNegative => v.is_finite() && v >= 0.0,
            Range::Negative => v.is_finite() && v < 0.0,
            Range::UnitOpen => (0.0..1.0).contains(&v),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Positive => "a finite number > 0",
            Range::NonNegative => "a finite number >= 0",
            Range::Negative => "a finite number < 0",
            Range::UnitOpen => "in [0, 1)",
        }
    }
}

/// Checks a numeric option when the config is read, so that a NaN or a negative epsilon is
/// refused with its key and valid range instead of surfacing steps later as a non-finite loss
/// that seems to blame the learning rate.
pub(crate) fn check(key: &str, value: f64, range: Range) -> Result<()> {
    if range.contains(value) {
        Ok(())
    } else {
        Err(Error::Config {
            message: format!("{key} must be {}, got {value}", range.describe()),
        })
    }
}

/// Keys whose values are paths, resolved against the config file's directory.
const PATH_KEYS: [&[&str]; 8] = [
    &["output_dir"],
    &["model", "pretrained"],
    &["model", "pretrain"],
    &["model", "config"],
    &["model", "train_tokenizer", "mixture"],
    &["model", "tokenizer"],
    &["data", "mixture"],
    &["eval", "data_dir"],
];

impl TrainConfig {
    /// Reads a config file and applies `overrides` (`key=value`, dotted keys) in order.
    ///
    /// A file may start from another: `base = "common.toml"` (relative to the file) takes that
    /// file's settings, and this file's tables are merged over them key by key, as t5x's gin
    /// includes layer configs. Each file's relative paths resolve against its own directory.
    pub fn load(file: &Path, overrides: &[String]) -> Result<TrainConfig> {
        let mut chain = Vec::new();
        let (mut table, layered) = read_layers(file, &mut chain)?;
        // Check the file alone first, so that its own mistakes are reported against it (with
        // line and column when serde can point at the text).
        let file_error = |message: String| Error::ConfigFile {
            file: file.to_path_buf(),
            message,
        };
        if default_optimizer_kind(&mut table) || layered {
            deserialize(&table).map_err(file_error)?;
        } else {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            toml::from_str::<TrainConfig>(&text).map_err(|e| file_error(e.to_string()))?;
        }
        Self::from_table(table, overrides)
    }

    /// The defaults with `overrides` applied (a run configured only from the command line).
    pub fn from_overrides(overrides: &[String]) -> Result<TrainConfig> {
        Self::from_table(toml::Table::new(), overrides)
    }

    fn from_table(mut table: toml::Table, overrides: &[String]) -> Result<TrainConfig> {
        let mut cfg: TrainConfig =
            deserialize(&table).map_err(|message| Error::Config { message })?;
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
            default_optimizer_kind(&mut table);
            // Deserialise after each override so that an unknown key is blamed on its own `--set`.
            cfg = deserialize(&table).map_err(|message| Error::Override {
                assignment: assignment.clone(),
                message,
            })?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: consistent and positive settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Config { message });
        let sources = [
            self.model.pretrained.is_some(),
            self.model.config.is_some(),
            self.model.pretrain.is_some(),
        ];
        if sources.iter().filter(|&&s| s).count() != 1 {
            return bad("set exactly one of model.pretrained (a model directory to finetune), model.config (a T5 config.json to train from scratch) and model.pretrain (a pretraining stage's train config, run once and cached)".into());
        }
        if self.model.pretrain.is_some()
            && (self.model.tokenizer.is_some() || self.model.train_tokenizer.is_some())
        {
            return bad("model.pretrain uses the pretraining stage's tokenizer: leave model.tokenizer and model.train_tokenizer to that stage's config".into());
        }
        if self.model.pretrained.is_none()
            && self.model.pretrain.is_none()
            && self.model.tokenizer.is_none()
            && self.model.train_tokenizer.is_none()
        {
            return bad("model.tokenizer (or model.train_tokenizer) is required when training from model.config".into());
        }
        if let Some(t) = &self.model.train_tokenizer {
            if t.vocab_size < 4 || t.rendered == 0 {
                return bad(format!(
                    "model.train_tokenizer needs vocab_size >= 4 and rendered >= 1, got {} and {}",
                    t.vocab_size, t.rendered
                ));
            }
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return bad(format!(
                "model.dropout must be in [0, 1), got {}",
                self.model.dropout
            ));
        }
        // The spec's own limit: a sequence keeps its EOS, so it needs room for one more token.
        for (key, len) in [
            ("data.input_len", self.data.input_len),
            ("data.target_len", self.data.target_len),
        ] {
            if let Some(len) = len.filter(|&l| l < 2) {
                return bad(format!("{key} must be >= 2 tokens, got {len}"));
            }
        }
        if self.data.mixture.is_none() {
            return bad("data.mixture (a flan-data MixtureSpec TOML file) is required".into());
        }
        if self.batch.size == 0 || self.batch.grad_accum == 0 {
            return bad(format!(
                "batch.size and batch.grad_accum must be >= 1, got {} and {}",
                self.batch.size, self.batch.grad_accum
            ));
        }
        if self.train.steps == 0 {
            return bad("train.steps must be > 0".into());
        }
        if let Some(f) = self.train.loss_normalizing_factor {
            if !(f.is_finite() && f > 0.0) {
                return bad(format!(
                    "train.loss_normalizing_factor must be a finite number > 0, got {f}"
                ));
            }
        }
        if let Some(c) = self.train.clip_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!(
                    "train.clip_grad_norm must be a finite number > 0, got {c}"
                ));
            }
        }
        if !(self.train.z_loss.is_finite() && self.train.z_loss >= 0.0) {
            return bad(format!(
                "train.z_loss must be a finite number >= 0, got {}",
                self.train.z_loss
            ));
        }
        if let Some(lora) = &self.lora {
            if lora.target_modules.is_empty() || lora.target_modules.iter().any(|t| t.is_empty()) {
                return bad("lora.target_modules must name at least one module, none empty".into());
            }
            if let Err(reason) = lora.peft_config(None).validate() {
                return bad(format!("lora: {reason}"));
            }
        }
        if self.train.freeze.iter().any(|g| g.is_empty()) {
            return bad("train.freeze holds an empty pattern (it would match no parameter)".into());
        }
        if self.checkpoint.keep_last == 0 {
            return bad(
                "checkpoint.keep_last must be >= 1 (a resumable run needs a checkpoint)".into(),
            );
        }
        if self.log.every == 0 {
            return bad("log.every must be >= 1".into());
        }
        if self.eval.limit == Some(0) {
            return bad("eval.limit must be >= 1 samples (leave it out for all)".into());
        }
        if self.eval.every > 0 && self.eval.benchmarks.is_empty() {
            return bad("eval.every is set but eval.benchmarks is empty".into());
        }
        if let Some(s) = &self.eval.synthetic {
            if s.items_per_cell == 0 || s.batch_size == 0 {
                return bad(
                    "eval.synthetic.items_per_cell and eval.synthetic.batch_size must be >= 1"
                        .into(),
                );
            }
        }
        self.kind()?;
        self.autocast_kind()?;
        crate::schedule::Schedule::new(self.schedule.clone(), self.train.steps)?;
        self.optimizer.build()?;
        Ok(())
    }

    /// The parameter dtype; training has no f16 (T5 v1.1 and Flan-T5 overflow it).
    pub fn kind(&self) -> Result<tch::Kind> {
        match self.dtype {
            Dtype::F32 | Dtype::Bf16 => Ok(self.dtype.kind()),
            Dtype::F16 => Err(Error::Config {
                message: "dtype must be `f32` or `bf16`, got `f16` (T5 v1.1 and Flan-T5 overflow \
                          f16; train in bf16)"
                    .into(),
            }),
        }
    }

    /// The lower precision of autocast, or `None` when it is off.
    pub fn autocast_kind(&self) -> Result<Option<tch::Kind>> {
        let kind = match self.autocast.as_str() {
            "off" | "none" | "false" => return Ok(None),
            "bf16" | "bfloat16" => tch::Kind::BFloat16,
            other => {
                return Err(Error::Config {
                    message: format!("autocast must be `off` or `bf16`, got `{other}`"),
                })
            }
        };
        if self.kind()? != tch::Kind::Float {
            return Err(Error::Config {
                message: format!(
                    "autocast = \"{}\" needs dtype = \"f32\" (autocast keeps fp32 weights and \
                     computes in bf16; with dtype = \"{}\" there is nothing left to cast)",
                    self.autocast, self.dtype
                ),
            });
        }
        Ok(Some(kind))
    }

    /// The device of this process: [`DeviceSpec::resolve`] with the launcher's variables of the
    /// process environment and the CUDA devices libtorch sees, so that each rank of a
    /// `torchrun --nproc_per_node=N` or `srun` launch gets its own GPU. Resolved here rather
    /// than when the config is read, because it depends on the machine and the process: the same
    /// config is valid on a laptop and on each rank of a GPU node.
    pub fn tch_device(&self) -> Result<tch::Device> {
        self.device.resolve_from_env().map_err(|e| Error::Config {
            message: e.to_string(),
        })
    }

    /// Turns a hub id in `model.pretrained` into the local directory of its snapshot (from the
    /// Hugging Face cache, or downloaded when the hub is reachable and `HF_HUB_OFFLINE` is not
    /// set); a directory stays as it is.
    pub fn resolve_pretrained(&mut self) -> Result<()> {
        if let Some(model) = &self.model.pretrained {
            if !model.is_dir() {
                let dir = flan_model::hub::resolve_model(&model.to_string_lossy())?;
                self.model.pretrained = Some(dir);
            }
        }
        Ok(())
    }

    /// The tokenizer file of the run: `model.tokenizer`, else the pretrained directory's, else
    /// (with `model.train_tokenizer`) `output_dir/tokenizer.json`.
    pub fn tokenizer_path(&self) -> Result<PathBuf> {
        match (
            &self.model.tokenizer,
            &self.model.pretrained,
            &self.model.train_tokenizer,
        ) {
            (Some(t), _, _) => Ok(t.clone()),
            (None, Some(dir), _) => Ok(dir.join("tokenizer.json")),
            (None, None, Some(_)) => Ok(self.output_dir.join("tokenizer.json")),
            (None, None, None) => Err(Error::Config {
                message: "model.tokenizer is required when training from model.config".into(),
            }),
        }
    }

    /// The config as TOML (what a checkpoint records).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Config {
            message: format!("cannot write the config as TOML: {e}"),
        })
    }
}

/// A setting whose value in the config a checkpoint recorded differs from the current run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The dotted key (`batch.size`).
    pub key: String,
    /// Its value when the checkpoint was written (TOML; `(unset)` when absent).
    pub recorded: String,
    /// Its value now.
    pub current: String,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} → {}", self.key, self.recorded, self.current)
    }
}

/// Keys a resumed run may change without changing what it computes: where it writes and runs,
/// its length (raising `train.steps` is how a finished run is continued), logging,
/// checkpointing, evaluation, and activation checkpointing (memory traded for time, same
/// results).
const FREE_ON_RESUME: [&str; 7] = [
    "output_dir",
    "device",
    "train.steps",
    "train.activation_checkpointing",
    "log",
    "checkpoint",
    "eval",
];

/// The `train.freeze` globs of the config a checkpoint recorded (none when it has no such key,
/// as in checkpoints written before the key existed).
pub fn recorded_freeze(recorded: &str) -> Result<Vec<String>> {
    let table = toml::from_str::<toml::Table>(recorded).map_err(|e| Error::Config {
        message: format!("the checkpoint's config is not TOML: {e}"),
    })?;
    let Some(value) = table.get("train").and_then(|t| t.get("freeze")) else {
        return Ok(Vec::new());
    };
    value.clone().try_into().map_err(|e| Error::Config {
        message: format!("the checkpoint's train.freeze is not a list of strings: {e}"),
    })
}

/// The settings that differ between `recorded` (the TOML a checkpoint holds) and `current`,
/// other than [`FREE_ON_RESUME`], so that a resume with another batch size, learning rate or
/// seed is said out loud: the run then is neither the one that was started nor a fresh one.
pub fn config_changes(recorded: &str, current: &TrainConfig) -> Result<Vec<ConfigChange>> {
    let parse = |text: &str| {
        toml::from_str::<toml::Table>(text).map_err(|e| Error::Config {
            message: format!("the checkpoint's config is not TOML: {e}"),
        })
    };
    let old = parse(recorded)?;
    let new = parse(&current.to_toml()?)?;
    let mut changes = Vec::new();
    diff_tables("", &old, &new, &mut changes);
    changes.retain(|c| {
        !FREE_ON_RESUME
            .iter()
            .any(|k| c.key == *k || c.key.starts_with(&format!("{k}.")))
    });
    Ok(changes)
}

fn diff_tables(prefix: &str, old: &toml::Table, new: &toml::Table, out: &mut Vec<ConfigChange>) {
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (old.get(key), new.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                diff_tables(&path, a, b, out)
            }
            (a, b) if a != b => {
                let show =
                    |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
                out.push(ConfigChange {
                    key: path,
                    recorded: show(a),
                    current: show(b),
                });
            }
            _ => {}
        }
    }
}

/// An `[optimizer]` section without `kind` means the default optimiser (Adafactor), so that
/// `optimizer.clip_threshold=...` works without naming it. Returns whether `kind` was added.
fn default_optimizer_kind(table: &mut toml::Table) -> bool {
    match table.get_mut("optimizer").and_then(|v| v.as_table_mut()) {
        Some(opt) if !opt.contains_key("kind") => {
            opt.insert("kind".into(), toml::Value::String("adafactor".into()));
            true
        }
        _ => false,
    }
}

fn deserialize(table: &toml::Table) -> std::result::Result<TrainConfig, String> {
    TrainConfig::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| e.to_string().trim_end().to_string())
}

/// Sets `key=value` in `table`; the value is read as TOML (number, bool, array, quoted string)
/// and otherwise taken as a bare string (`device=cpu`, `output_dir=runs/x`).
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let fail = |message: String| Error::Override {
        assignment: assignment.to_string(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| fail("expected key=value".into()))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(fail(format!(
            "`{key}` is not a dotted key like `schedule.lr`"
        )));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut node = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| {
            fail(format!(
                "`{}` is a value, not a section",
                parts[..=i].join(".")
            ))
        })?;
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    // The two model sources are alternatives: naming one on the command line replaces the
    // other (and what only a from-scratch run uses), so `--model DIR` works on top of a config
    // that trains from scratch.
    if let ["model", chosen @ ("pretrained" | "config")] = parts.as_slice() {
        let dropped: &[&str] = if *chosen == "pretrained" {
            &["config", "train_tokenizer"]
        } else {
            &["pretrained"]
        };
        for key in dropped {
            node.remove(*key);
        }
    }
    Ok(())
}

/// The key that names the config a file starts from.
const BASE_KEY: &str = "base";

/// How many `base` files deep a config may go.
const MAX_LAYERS: usize = 8;

/// `file`'s table with its paths resolved, merged over its `base` chain; whether it had a base.
/// `chain` holds the files being read, to refuse a cycle.
fn read_layers(file: &Path, chain: &mut Vec<PathBuf>) -> Result<(toml::Table, bool)> {
    let config_error = |message: String| Error::ConfigFile {
        file: file.to_path_buf(),
        message,
    };
    let canonical = file.canonicalize().map_err(|e| Error::io(file, e))?;
    if chain.contains(&canonical) {
        return Err(config_error(format!(
            "`{BASE_KEY}` makes a cycle: {}",
            chain
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" -> ")
        )));
    }
    if chain.len() == MAX_LAYERS {
        return Err(config_error(format!(
            "more than {MAX_LAYERS} `{BASE_KEY}` files deep"
        )));
    }
    // A device (`/dev/zero`) or a FIFO would be read without end.
    if !std::fs::metadata(file)
        .map_err(|e| Error::io(file, e))?
        .is_file()
    {
        return Err(config_error("not a regular file".into()));
    }
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| config_error(e.to_string()))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    resolve_paths(&mut table, dir);
    let Some(base) = table.remove(BASE_KEY) else {
        return Ok((table, false));
    };
    let toml::Value::String(base) = base else {
        return Err(config_error(format!(
            "`{BASE_KEY}` must be a file name (a string), got {base}"
        )));
    };
    let base = dir.join(base);
    chain.push(canonical);
    let (mut merged, _) = read_layers(&base, chain).map_err(|e| Error::ConfigBase {
        file: file.to_path_buf(),
        base,
        source: Box::new(e),
    })?;
    chain.pop();
    merge_over(&mut merged, table);
    Ok((merged, true))
}

/// Sets every key of `top` in `under`, merging tables key by key and replacing other values.
fn merge_over(under: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (under.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => {
                merge_over(inner, value)
            }
            (_, value) => {
                under.insert(key, value);
            }
        }
    }
}

fn resolve_paths(table: &mut toml::Table, base: &Path) {
    for key in PATH_KEYS {
        if let Some(toml::Value::String(s)) = value_at(table, key) {
            let p = Path::new(s.as_str());
            // `model.pretrained = "google/flan-t5-small"` names a hub model unless a directory
            // of that name sits beside the config (transformers' from_pretrained rule).
            let hub_id = key == ["model", "pretrained"]
                && flan_model::hub::is_hub_id(s)
                && !base.join(p).is_dir();
            if p.is_relative() && !hub_id {
                *s = base.join(p).to_string_lossy().into_owned();
            }
        }
    }
}

fn value_at<'t>(table: &'t mut toml::Table, key: &[&str]) -> Option<&'t mut toml::Value> {
    match key {
        [] => None,
        [last] => table.get_mut(*last),
        [first, rest @ ..] => value_at(table.get_mut(*first)?.as_table_mut()?, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [model]
        config = "config.json"
        tokenizer = "tokenizer.json"
        [data]
        mixture = "mixture.toml"
    "#;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("train.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_are_the_flan_recipe_and_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig::load(&write(dir.path(), MINIMAL), &[]).unwrap();
        assert_eq!(cfg.optimizer, OptimizerConfig::default());
        assert_eq!(cfg.schedule.lr, 1e-3);
        assert!(cfg.data.pack);
        assert_eq!(cfg.model.dropout, 0.05);
        assert_eq!(cfg.data.mixture, Some(dir.path().join("mixture.toml")));
        // The default output directory is relative to where `flan train` runs.
        assert_eq!(cfg.output_dir, PathBuf::from("runs/flan"));
    }

    #[test]
    fn naming_a_pretrained_model_replaces_the_from_scratch_model() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
            [model]
            config = "config.json"
            train_tokenizer = { vocab_size = 500 }
            [data]
            mixture = "mixture.toml"
        "#;
        let file = write(dir.path(), text);
        let scratch = TrainConfig::load(&file, &["output_dir=out".into()]).unwrap();
        assert_eq!(
            scratch.model.train_tokenizer.as_ref().unwrap().rendered,
            20_000
        );
        assert_eq!(
            scratch.tokenizer_path().unwrap(),
            PathBuf::from("out/tokenizer.json")
        );
        let tuned = TrainConfig::load(&file, &["model.pretrained=/models/t5".into()]).unwrap();
        assert_eq!(tuned.model.pretrained, Some(PathBuf::from("/models/t5")));
        assert_eq!(tuned.model.config, None);
        assert_eq!(tuned.model.train_tokenizer, None);
        assert_eq!(
            tuned.tokenizer_path().unwrap(),
            PathBuf::from("/models/t5/tokenizer.json")
        );
        let named = TrainConfig::load(&file, &["model.tokenizer=t.json".into()]).unwrap();
        assert_eq!(named.tokenizer_path().unwrap(), PathBuf::from("t.json"));
    }

    #[test]
    fn a_config_layers_over_its_base_with_paths_from_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(
            shared.join("common.toml"),
            "seed = 4\n[model]\nconfig = \"t5.json\"\ntokenizer = \"tok.json\"\n\
             [data]\nmixture = \"mix.toml\"\n[train]\nsteps = 9\n[batch]\nsize = 3\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("run.toml"),
            "base = \"shared/common.toml\"\n[train]\nsteps = 20\n",
        )
        .unwrap();
        let cfg = TrainConfig::load(&dir.path().join("run.toml"), &[]).unwrap();
        assert_eq!((cfg.seed, cfg.train.steps, cfg.batch.size), (4, 20, 3));
        assert_eq!(cfg.model.config, Some(shared.join("t5.json")));

        std::fs::write(shared.join("common.toml"), "base = \"../run.toml\"\n").unwrap();
        let load = || {
            let err = TrainConfig::load(&dir.path().join("run.toml"), &[]).unwrap_err();
            flan_data::error::chain(&err)
        };
        let err = load();
        assert!(
            err.contains("cycle") && err.contains("common.toml"),
            "{err}"
        );
        std::fs::write(dir.path().join("run.toml"), "base = 3\n").unwrap();
        let err = load();
        assert!(err.contains("must be a file name"), "{err}");
        std::fs::write(dir.path().join("run.toml"), "base = \"/dev/zero\"\n").unwrap();
        let err = load();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn overrides_set_nested_values_and_switch_the_optimizer() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = [
            "schedule.lr=5e-4",
            "optimizer.kind=adamw",
            "optimizer.weight_decay=0.1",
            "device=cpu",
            "train.steps=7",
        ]
        .map(String::from);
        let cfg = TrainConfig::load(&write(dir.path(), MINIMAL), &overrides).unwrap();
        assert_eq!(cfg.schedule.lr, 5e-4);
        assert_eq!(cfg.device, DeviceSpec::Cpu);
        assert_eq!(cfg.train.steps, 7);
        match cfg.optimizer {
            OptimizerConfig::AdamW(a) => assert_eq!(a.weight_decay, 0.1),
            other => panic!("expected AdamW, got {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            &format!("{MINIMAL}\n[schedule]\nlearning_rate = 1e-3\n"),
        );
        let err = TrainConfig::load(&file, &[]).unwrap_err().to_string();
        assert!(
            err.contains("learning_rate") && err.contains("train.toml"),
            "{err}"
        );

        let file = write(dir.path(), MINIMAL);
        let err = TrainConfig::load(&file, &["train.stepz=3".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--set train.stepz=3") && err.contains("stepz"),
            "{err}"
        );
        // Without `kind`, optimizer keys are Adafactor's: a wrong one is named as such.
        let err = TrainConfig::load(&file, &["optimizer.beta_one=0.9".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `beta_one`"), "{err}");
        let cfg = TrainConfig::load(&file, &["optimizer.clip_threshold=0.5".into()]).unwrap();
        assert!(matches!(cfg.optimizer, OptimizerConfig::Adafactor(a) if a.clip_threshold == 0.5));
        let err = TrainConfig::load(&file, &["seed".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key=value"), "{err}");
        let err = TrainConfig::load(&file, &["seed=abc".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--set seed=abc"), "{err}");
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Both model sources in one file (the command line replaces one with the other).
        let both = write(dir.path(), &format!("{MINIMAL}\n"));
        let both_text = std::fs::read_to_string(&both)
            .unwrap()
            .replace("[model]", "[model]\npretrained = \"x\"");
        std::fs::write(&both, both_text).unwrap();
        let err = TrainConfig::load(&both, &[]).unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
        let file = write(dir.path(), MINIMAL);
        for (set, needle) in [
            ("train.steps=0", "train.steps"),
            ("dtype=f16", "dtype"),
            ("autocast=f16", "autocast"),
            ("device=tpu", "device"),
            ("schedule.kind=cosine", "warmup"),
        ] {
            let mut o = vec![set.to_string()];
            if set.starts_with("schedule") {
                o = vec![
                    "train.steps=10".into(),
                    "schedule.warmup_steps=10".into(),
                    set.into(),
                ];
            }
            let err = TrainConfig::load(&file, &o).unwrap_err().to_string();
            assert!(err.contains(needle), "{set}: {err}");
        }
        let err = TrainConfig::load(&file, &["dtype=bf16".into(), "autocast=bf16".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs dtype = \"f32\""), "{err}");
        let cfg = TrainConfig::load(&file, &["autocast=bf16".into()]).unwrap();
        assert_eq!(cfg.autocast_kind().unwrap(), Some(tch::Kind::BFloat16));
        assert!(cfg.flush_denormals, "on by default");
        let exact = TrainConfig::load(&file, &["flush_denormals=false".into()]).unwrap();
        assert!(!exact.flush_denormals);
    }

    #[test]
    fn every_numeric_option_is_checked_when_read_and_names_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), MINIMAL);
        // (overrides, the key named, the range named); each would otherwise fail steps later.
        let adamw = "optimizer.kind=adamw";
        let cases: &[(&[&str], &str, &str)] = &[
            (&[adamw, "optimizer.eps=-1"], "optimizer.eps", "> 0"),
            (&[adamw, "optimizer.eps=0"], "optimizer.eps", "> 0"),
            (
                &[adamw, "optimizer.weight_decay=nan"],
                "optimizer.weight_decay",
                ">= 0",
            ),
            (&[adamw, "optimizer.beta1=1.0"], "optimizer.beta1", "[0, 1)"),
            (&[adamw, "optimizer.beta2=nan"], "optimizer.beta2", "[0, 1)"),
            (
                &["optimizer.weight_decay=nan"],
                "optimizer.weight_decay",
                ">= 0",
            ),
            (
                &["optimizer.weight_decay=-0.1"],
                "optimizer.weight_decay",
                ">= 0",
            ),
            (&["optimizer.eps1=-1e-30"], "optimizer.eps1", "> 0"),
            (&["optimizer.eps2=inf"], "optimizer.eps2", ">= 0"),
            (&["optimizer.decay_rate=0.8"], "optimizer.decay_rate", "< 0"),
            (
                &["optimizer.clip_threshold=nan"],
                "optimizer.clip_threshold",
                "> 0",
            ),
            (&["optimizer.beta1=-0.5"], "optimizer.beta1", "[0, 1)"),
            (&["schedule.lr=nan"], "schedule.lr", ">= 0"),
            (&["schedule.final_lr=-1e-5"], "schedule.final_lr", ">= 0"),
            (&["model.dropout=1.0"], "model.dropout", "[0, 1)"),
            (&["model.dropout=nan"], "model.dropout", "[0, 1)"),
            (&["data.input_len=1"], "data.input_len", ">= 2"),
            (&["data.target_len=0"], "data.target_len", ">= 2"),
            (&["batch.size=0"], "batch.size", ">= 1"),
            (&["batch.grad_accum=0"], "batch.grad_accum", ">= 1"),
            (&["train.steps=0"], "train.steps", "> 0"),
            (&["train.clip_grad_norm=-1"], "train.clip_grad_norm", "> 0"),
            (&["train.z_loss=nan"], "train.z_loss", ">= 0"),
            (
                &["train.loss_normalizing_factor=0"],
                "train.loss_normalizing_factor",
                "> 0",
            ),
            (&["checkpoint.keep_last=0"], "checkpoint.keep_last", ">= 1"),
            (&["log.every=0"], "log.every", ">= 1"),
            (&["eval.limit=0"], "eval.limit", ">= 1"),
            (
                &["eval.synthetic.batch_size=0"],
                "eval.synthetic.batch_size",
                ">= 1",
            ),
            (
                &["model.train_tokenizer.vocab_size=2"],
                "vocab_size",
                ">= 4",
            ),
        ];
        for (set, key, range) in cases {
            let overrides: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            let err = TrainConfig::load(&file, &overrides).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{set:?}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(key) && msg.contains(range), "{set:?}: {msg}");
        }
        // The defaults, and values at the edges of the ranges, pass.
        for set in [
            &[adamw, "optimizer.weight_decay=0", "optimizer.beta1=0"][..],
            &["optimizer.decay_rate=-0.5", "optimizer.eps2=0"],
            &["schedule.lr=0", "model.dropout=0", "data.input_len=2"],
        ] {
            let overrides: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            TrainConfig::load(&file, &overrides).unwrap_or_else(|e| panic!("{set:?}: {e}"));
        }
    }

    #[test]
    fn a_resume_names_the_settings_that_changed_since_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), MINIMAL);
        let recorded = TrainConfig::load(&file, &["seed=7".into()])
            .unwrap()
            .to_toml()
            .unwrap();
        let same = TrainConfig::load(
            &file,
            &[
                "seed=7".into(),
                "train.steps=5000".into(),
                "device=cpu".into(),
                "log.every=10".into(),
                "checkpoint.every=50".into(),
                "train.activation_checkpointing=true".into(),
            ],
        )
        .unwrap();
        assert_eq!(config_changes(&recorded, &same).unwrap(), vec![]);
        let changed = TrainConfig::load(
            &file,
            &[
                "seed=8".into(),
                "batch.size=32".into(),
                "schedule.lr=5e-4".into(),
                "train.clip_grad_norm=1.0".into(),
            ],
        )
        .unwrap();
        let described: Vec<String> = config_changes(&recorded, &changed)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            described,
            [
                "batch.size 64 → 32",
                "schedule.lr 0.001 → 0.0005",
                "seed 7 → 8",
                "train.clip_grad_norm (unset) → 1.0",
            ]
        );
        assert!(config_changes("not = [toml", &changed).is_err());
    }

    #[test]
    fn the_device_is_parsed_when_the_config_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), MINIMAL);
        assert_eq!(
            TrainConfig::load(&file, &[]).unwrap().device,
            DeviceSpec::Auto
        );
        // Parsed, not resolved: a config for GPU ranks loads on a machine without one.
        let cfg = TrainConfig::load(&file, &["device=cuda:1".into()]).unwrap();
        assert_eq!(cfg.device, DeviceSpec::Cuda(Some(1)));
        assert!(
            cfg.to_toml().unwrap().contains("device = \"cuda:1\""),
            "a string in the file"
        );
        let cpu = TrainConfig::load(&file, &["device=cpu".into()]).unwrap();
        assert_eq!(cpu.tch_device().unwrap(), tch::Device::Cpu);
        // (`write` replaces the same train.toml.)
        let in_file = write(dir.path(), &format!("device = \"cuda\"\n{MINIMAL}"));
        assert_eq!(
            TrainConfig::load(&in_file, &[]).unwrap().device,
            DeviceSpec::Cuda(None)
        );
        let bad = write(dir.path(), &format!("device = \"gpu\"\n{MINIMAL}"));
        let err = TrainConfig::load(&bad, &[]).unwrap_err().to_string();
        assert!(
            err.contains("train.toml") && err.contains("`gpu`") && err.contains("cuda:N"),
            "{err}"
        );
    }

    #[test]
    fn freeze_globs_are_read_recorded_and_left_out_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), MINIMAL);
        let plain = TrainConfig::load(&file, &[]).unwrap();
        assert!(plain.train.freeze.is_empty());
        // Unset, the key is not written: checkpoints from before it compare equal.
        let plain_toml = plain.to_toml().unwrap();
        assert!(!plain_toml.contains("freeze"), "{plain_toml}");
        assert_eq!(recorded_freeze(&plain_toml).unwrap(), Vec::<String>::new());
        let set = [r#"train.freeze=["encoder.*", "shared.weight"]"#.to_string()];
        let frozen = TrainConfig::load(&file, &set).unwrap();
        assert_eq!(frozen.train.freeze, ["encoder.*", "shared.weight"]);
        let text = frozen.to_toml().unwrap();
        assert_eq!(recorded_freeze(&text).unwrap(), frozen.train.freeze);
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), frozen);
        let in_file = write(
            dir.path(),
            &format!("{MINIMAL}\n[train]\nfreeze = [\"decoder.block.?.*\"]\n"),
        );
        let cfg = TrainConfig::load(&in_file, &[]).unwrap();
        assert_eq!(cfg.train.freeze, ["decoder.block.?.*"]);
        let file = write(dir.path(), MINIMAL);
        for bad in [
            r#"train.freeze=["a", ""]"#,
            "train.freeze=[1]",
            "train.freezes=[]",
        ] {
            let err = TrainConfig::load(&file, &[bad.to_string()]).unwrap_err();
            assert!(
                matches!(err, Error::Config { .. } | Error::Override { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("freeze"), "{bad}: {err}");
        }
    }

    #[test]
    fn activation_checkpointing_is_read_and_left_out_when_off() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), MINIMAL);
        let plain = TrainConfig::load(&file, &[]).unwrap();
        assert!(!plain.train.activation_checkpointing);
        // Off, the key is not written: checkpoints from before it compare equal.
        let plain_toml = plain.to_toml().unwrap();
        assert!(!plain_toml.contains("activation"), "{plain_toml}");
        let in_file = write(
            dir.path(),
            &format!("{MINIMAL}\n[train]\nactivation_checkpointing = true\n"),
        );
        let on = TrainConfig::load(&in_file, &[]).unwrap();
        assert!(on.train.activation_checkpointing);
        assert_eq!(
            toml::from_str::<TrainConfig>(&on.to_toml().unwrap()).unwrap(),
            on
        );
        let file = write(dir.path(), MINIMAL);
        for bad in [
            "train.activation_checkpointing=1",
            r#"train.activation_checkpointing="yes""#,
            "train.activation_checkpoint=true",
        ] {
            let err = TrainConfig::load(&file, &[bad.to_string()]).unwrap_err();
            assert!(
                matches!(err, Error::Config { .. } | Error::Override { .. }),
                "{bad}: {err:?}"
            );
            assert!(
                err.to_string().contains("activation_checkpoint"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_config_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig::load(
            &write(dir.path(), MINIMAL),
            &["train.clip_grad_norm=1.0".into()],
        )
        .unwrap();
        let again: TrainConfig = toml::from_str(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(cfg, again);
    }
}
