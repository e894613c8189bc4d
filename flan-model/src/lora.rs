//! LoRA adapters on T5's linear layers, in PEFT's format.
//!
//! A LoRA adapter adds `B·A·x · scaling` to a frozen linear layer `W·x`, with `A` `[r, in]` and
//! `B` `[out, r]` (Hu et al. 2021); `scaling` is `lora_alpha / r` (`lora_alpha / √r` with
//! rsLoRA). PEFT is what users have adapters in, so this module reads and writes its files as
//! PEFT defines them (peft 0.21's `LoraConfig` and `get_peft_model_state_dict`):
//!
//! - `adapter_config.json`: `peft_type = "LORA"`, `task_type = "SEQ_2_SEQ_LM"`, `r`,
//!   `lora_alpha`, `lora_dropout`, `target_modules` (a list of module-name suffixes, or a regex
//!   that must match the whole name, or `"all-linear"`), `modules_to_save`, `rank_pattern`,
//!   `alpha_pattern`, `use_rslora`, ... Fields flan does not use are kept and written back.
//! - `adapter_model.safetensors`: `base_model.model.<module>.lora_A.weight` and `.lora_B.weight`
//!   per adapted module, `base_model.model.<parameter>` for each parameter of a module in
//!   `modules_to_save`, and, when `lm_head` is adapted, `base_model.model.lm_head.base_layer.weight`
//!   (PEFT saves the layers it counts as embeddings whenever one is targeted).
//!
//! The computation is PEFT's `Linear.forward`: the input is cast to the adapter's dtype, dropout
//! applies to the adapter's input only (in training), the term is added to the base output and
//! the sum cast back to the base output's dtype. Adapter weights are fp32 over a bf16 or fp16
//! model, as PEFT makes them (`autocast_adapter_dtype`). Features of PEFT's LoRA that change the
//! computation and are not implemented here (DoRA, LoRA biases, `fan_in_fan_out`, layer
//! selection, trainable biases) are refused by name rather than ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint::{read_safetensors, write_safetensors};
use crate::prepacked_linear::PrepackedLinear;
use crate::t5::{Pass, T5ForConditionalGeneration};
use crate::{Error, Result};

/// The adapter's config file in an adapter directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights file in an adapter directory.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's pickled weights file, which flan does not read.
const ADAPTER_PICKLE_FILE: &str = "adapter_model.bin";
/// Prefix of every key in PEFT's weights file (the `PeftModel` wrapping the base model).
const KEY_PREFIX: &str = "base_model.model.";
/// PEFT's name for "every linear layer but the output head".
const ALL_LINEAR: &str = "all-linear";
/// Modules PEFT treats as embeddings and saves whole when one of them is a LoRA target.
const EMBEDDING_LAYERS: [&str; 1] = ["lm_head"];

/// `target_modules` (and `exclude_modules`): module-name suffixes, or one regex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModuleSelector {
    /// Names such as `["q", "v"]`: a module matches when its full name equals one or ends with
    /// `.` and one.
    Names(Vec<String>),
    /// A regex the whole module name must match, or `"all-linear"`.
    Pattern(String),
}

impl ModuleSelector {
    /// Whether `module` is selected (`regex`: the compiled pattern of [`ModuleSelector::Pattern`];
    /// `all-linear` leaves out the output head, as PEFT does).
    fn selects(&self, module: &str, regex: Option<&regex::Regex>) -> bool {
        match self {
            ModuleSelector::Names(names) => names
                .iter()
                .any(|n| module == n || module.ends_with(&format!(".{n}"))),
            ModuleSelector::Pattern(p) if p == ALL_LINEAR => module != "lm_head",
            ModuleSelector::Pattern(_) => regex.is_some_and(|r| r.is_match(module)),
        }
    }
}

/// PEFT's `LoraConfig` as `adapter_config.json` holds it: the fields flan reads, and every
/// other field kept as it was (written back on save).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// `"LORA"`.
    pub peft_type: String,
    /// `"SEQ_2_SEQ_LM"` for T5.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model the adapter was trained on: a hub id or a directory.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// The rank.
    pub r: i64,
    /// The scale numerator (`scaling = lora_alpha / r`).
    #[serde(serialize_with = "number::serialize")]
    pub lora_alpha: f64,
    /// Dropout on the adapter's input during training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// The adapted linear modules.
    pub target_modules: ModuleSelector,
    /// Modules left out even when targeted.
    #[serde(default)]
    pub exclude_modules: Option<ModuleSelector>,
    /// Modules trained (and saved) whole besides the adapters.
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// `scaling = lora_alpha / √r` instead of `/ r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Per-module ranks: pattern → r.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, i64>,
    /// Per-module alphas: pattern → lora_alpha.
    #[serde(default, serialize_with = "number::serialize_map")]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Every other field, as it was.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl LoraConfig {
    /// PEFT's defaults for a T5 adapter of rank `r` on `target_modules`, as `LoraConfig(...)`
    /// writes them (the fields PEFT reads back; it fills the rest with its defaults).
    pub fn new(r: i64, lora_alpha: f64, lora_dropout: f64, target_modules: ModuleSelector) -> Self {
        let extra = serde_json::json!({
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_bias": false,
            "revision": null,
            "use_dora": false,
        });
        let extra = match extra {
            serde_json::Value::Object(map) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        LoraConfig {
            peft_type: "LORA".into(),
            task_type: Some("SEQ_2_SEQ_LM".into()),
            base_model_name_or_path: None,
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
            exclude_modules: None,
            modules_to_save: None,
            use_rslora: false,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            extra,
        }
    }

    /// Reads `adapter_config.json` (a path to the file or to its directory) and checks it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join(ADAPTER_CONFIG_FILE);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let config: LoraConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            line: source.line(),
            source,
        })?;
        config.validate().map_err(|reason| Error::InvalidAdapter {
            path: path.clone(),
            reason,
        })?;
        Ok(config)
    }

    /// Writes the config as `adapter_config.json` in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: path.clone(),
            line: 0,
            source,
        })?;
        std::fs::write(&path, text + "\n").map_err(|source| Error::Io { path, source })
    }

    /// What is wrong with the config for flan, naming the field; Ok for what flan applies as
    /// PEFT does.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.peft_type != "LORA" {
            return Err(format!(
                "peft_type is {:?}; flan applies LoRA adapters only (\"LORA\")",
                self.peft_type
            ));
        }
        if let Some(task) = &self.task_type {
            if task != "SEQ_2_SEQ_LM" {
                return Err(format!(
                    "task_type is {task:?}; a T5 adapter is \"SEQ_2_SEQ_LM\""
                ));
            }
        }
        if self.r < 1 || self.rank_pattern.values().any(|&r| r < 1) {
            return Err(format!(
                "r must be at least 1 (r = {}, rank_pattern = {:?})",
                self.r, self.rank_pattern
            ));
        }
        if !self.lora_alpha.is_finite() || self.alpha_pattern.values().any(|a| !a.is_finite()) {
            return Err("lora_alpha (and alpha_pattern's values) must be finite numbers".into());
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            ));
        }
        let unsupported =
            |field: &str, fine: &dyn Fn(&serde_json::Value) -> bool| match self.extra.get(field) {
                Some(v) if !fine(v) => Err(format!(
                    "{field} = {v} is not supported by flan (it changes what the adapter \
                     computes); only PEFT's default is"
                )),
                _ => Ok(()),
            };
        let is_false = |v: &serde_json::Value| v.is_null() || *v == false;
        let is_null = |v: &serde_json::Value| v.is_null();
        unsupported("use_dora", &is_false)?;
        unsupported("lora_bias", &is_false)?;
        unsupported("fan_in_fan_out", &is_false)?;
        unsupported("bias", &|v: &serde_json::Value| v.is_null() || v == "none")?;
        unsupported("layers_to_transform", &is_null)?;
        unsupported("layers_pattern", &|v: &serde_json::Value| {
            v.is_null() || v.as_array().is_some_and(|a| a.is_empty())
        })?;
        unsupported("layer_replication", &is_null)?;
        unsupported("target_parameters", &is_null)?;
        unsupported("trainable_token_indices", &is_null)?;
        unsupported("use_qalora", &is_false)?;
        if let ModuleSelector::Pattern(p) = &self.target_modules {
            if p != ALL_LINEAR {
                full_match(p).map_err(|e| format!("target_modules {p:?}: {e}"))?;
            }
        }
        if let Some(ModuleSelector::Pattern(p)) = &self.exclude_modules {
            full_match(p).map_err(|e| format!("exclude_modules {p:?}: {e}"))?;
        }
        for key in self.rank_pattern.keys().chain(self.alpha_pattern.keys()) {
            pattern_regex(key).map_err(|e| format!("rank/alpha pattern {key:?}: {e}"))?;
        }
        Ok(())
    }

    /// Whether the linear module `name` gets an adapter.
    pub fn targets(&self, name: &str) -> bool {
        let regex = |s: &ModuleSelector| match s {
            ModuleSelector::Pattern(p) if p != ALL_LINEAR => full_match(p).ok(),
            _ => None,
        };
        let excluded = self
            .exclude_modules
            .as_ref()
            .is_some_and(|e| e.selects(name, regex(e).as_ref()));
        !excluded
            && self
                .target_modules
                .selects(name, regex(&self.target_modules).as_ref())
    }

    /// `(r, scaling)` of the adapter on module `name`: `rank_pattern` and `alpha_pattern`
    /// override `r` and `lora_alpha` where a key matches, as PEFT's `get_pattern_key` decides
    /// (the name itself, else the first key matching `(.*\.)?(key)$` from the name's start).
    pub fn rank_and_scaling(&self, name: &str) -> (i64, f64) {
        let r =
            pattern_key(self.rank_pattern.keys(), name).map_or(self.r, |k| self.rank_pattern[k]);
        let alpha = pattern_key(self.alpha_pattern.keys(), name)
            .map_or(self.lora_alpha, |k| self.alpha_pattern[k]);
        let scaling = if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        (r, scaling)
    }

    /// Whether parameter `name` belongs to a module in `modules_to_save` (PEFT: a module whose
    /// full name ends with one of them).
    pub fn saves_parameter(&self, name: &str) -> bool {
        let Some(modules) = &self.modules_to_save else {
            return false;
        };
        let parts: Vec<&str> = name.split('.').collect();
        (1..parts.len()).any(|k| {
            let module = parts[..k].join(".");
            modules.iter().any(|m| module.ends_with(m.as_str()))
        })
    }
}

/// PEFT's `get_pattern_key`: `name` itself if it is a key, else the first key `k` for which
/// `(.*\.)?(k)$` matches `name` from its start.
fn pattern_key<'a>(
    keys: impl Iterator<Item = &'a String> + Clone,
    name: &str,
) -> Option<&'a String> {
    keys.clone().find(|k| k.as_str() == name).or_else(|| {
        keys.into_iter()
            .find(|k| pattern_regex(k).is_ok_and(|r| r.is_match(name)))
    })
}

/// Numbers written as Python wrote them: PEFT configs hold `lora_alpha = 16` (an int) as often
/// as `16.0`, and a whole-valued float is written back as an int, as most were given.
mod number {
    use serde::Serializer;
    use std::collections::BTreeMap;

    fn whole(x: f64) -> Option<i64> {
        (x.fract() == 0.0 && x.abs() < 9e15).then_some(x as i64)
    }

    pub(super) fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        match whole(*x) {
            Some(i) => s.serialize_i64(i),
            None => s.serialize_f64(*x),
        }
    }

    pub(super) fn serialize_map<S: Serializer>(
        map: &BTreeMap<String, f64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            match whole(*v) {
                Some(i) => out.serialize_entry(k, &i)?,
                None => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

/// `pattern` anchored at both ends, as Python's `re.fullmatch`.
fn full_match(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// PEFT's rank/alpha pattern match: `re.match(rf"(.*\.)?({key})$", name)`.
fn pattern_regex(key: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!(r"^(.*\.)?({key})$"))
}

/// One linear layer's adapter: `A` `[r, in]`, `B` `[out, r]` and the term's scale.
#[derive(Debug)]
pub(crate) struct LoraLinear {
    pub(crate) a: Tensor,
    pub(crate) b: Tensor,
    pub(crate) scaling: f64,
    pub(crate) dropout: f64,
}

impl LoraLinear {
    /// `base + B·A·dropout(x) · scaling`, as PEFT's `Linear.forward` computes it: `x` cast to
    /// the adapter's dtype first, the sum cast back to `base`'s.
    pub(crate) fn add_to(&self, base: Tensor, x: &Tensor, pass: Pass) -> Tensor {
        let x = if x.kind() != self.a.kind() {
            x.to_kind(self.a.kind())
        } else {
            x.shallow_clone()
        };
        let x = if pass == Pass::Train && self.dropout > 0.0 {
            crate::dropout::dropout(&x, self.dropout)
        } else {
            x
        };
        let term = x
            .linear::<&Tensor>(&self.a, None)
            .linear::<&Tensor>(&self.b, None)
            * self.scaling;
        let kind = base.kind();
        let sum = base + term;
        if sum.kind() != kind {
            sum.to_kind(kind)
        } else {
            sum
        }
    }

    /// `B·A · scaling`, the update merging adds to the weight (`[out, in]`, adapter dtype).
    fn delta_weight(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scaling
    }
}

/// How a fresh adapter's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraInit {
    /// PEFT's default: `A` Kaiming-uniform (a = √5, so U(±1/√in)), `B` zero, drawn from
    /// libtorch's default generator (seed it with `tch::manual_seed`); the adapted model starts
    /// equal to the base.
    Peft,
    /// Both zero, for weights about to be loaded.
    Zeros,
}

/// An adapter in memory: its config and the base parameters it trains whole.
#[derive(Debug, Clone)]
pub(crate) struct AdapterState {
    pub(crate) config: LoraConfig,
    /// Parameters of `modules_to_save`, by checkpoint key.
    pub(crate) saved_parameters: Vec<String>,
}

/// What [`T5ForConditionalGeneration::add_lora`] or [`T5ForConditionalGeneration::load_adapter`]
/// did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterReport {
    /// The adapted linear modules, in network order.
    pub modules: Vec<String>,
    /// Base parameters trained and saved whole (`modules_to_save`).
    pub saved_parameters: Vec<String>,
    /// Base weights the adapter file replaced (`<module>.base_layer.weight`,
    /// `modules_to_save`).
    pub replaced: Vec<String>,
    /// Parameters the adapter adds.
    pub adapter_parameters: i64,
}

impl T5ForConditionalGeneration {
    /// Attaches a LoRA adapter to every linear module `config` targets (replacing any adapter
    /// there was). Fails, changing nothing, when the config is invalid or targets no module.
    pub fn add_lora(&self, config: &LoraConfig, init: LoraInit) -> Result<AdapterReport> {
        config.validate().map_err(|reason| Error::InvalidAdapter {
            path: PathBuf::from("<lora config>"),
            reason,
        })?;
        let linears: Vec<&PrepackedLinear> = self
            .linear_modules()
            .filter(|l| config.targets(&l.name))
            .collect();
        if linears.is_empty() {
            let names: Vec<String> = self.linear_modules().map(|l| l.name.clone()).collect();
            return Err(Error::InvalidAdapter {
                path: PathBuf::from("<lora config>"),
                reason: format!(
                    "target_modules {:?} matches none of the model's linear modules ({} ...)",
                    config.target_modules,
                    names[..names.len().min(8)].join(", ")
                ),
            });
        }
        let saved_parameters: Vec<String> = self
            .named_parameters()
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| config.saves_parameter(n))
            .collect();
        if config
            .modules_to_save
            .as_ref()
            .is_some_and(|m| !m.is_empty())
            && saved_parameters.is_empty()
        {
            return Err(Error::InvalidAdapter {
                path: PathBuf::from("<lora config>"),
                reason: format!(
                    "modules_to_save {:?} matches no module of the model",
                    config.modules_to_save
                ),
            });
        }
        // fp32 adapters over half-precision weights, as PEFT's autocast_adapter_dtype.
        let kind = match self.kind() {
            Kind::Double => Kind::Double,
            _ => Kind::Float,
        };
        let mut report = AdapterReport {
            saved_parameters: saved_parameters.clone(),
            ..AdapterReport::default()
        };
        for linear in linears {
            let (r, scaling) = config.rank_and_scaling(&linear.name);
            let size = linear.weight.size();
            let (out, inp) = (size[0], size[1]);
            let device = linear.weight.device();
            let a = match init {
                LoraInit::Peft => {
                    let bound = 1.0 / (inp as f64).sqrt();
                    Tensor::empty([r, inp], (kind, device)).uniform_(-bound, bound)
                }
                LoraInit::Zeros => Tensor::zeros([r, inp], (kind, device)),
            };
            let b = Tensor::zeros([out, r], (kind, device));
            report.adapter_parameters += r * (inp + out);
            report.modules.push(linear.name.clone());
            *linear.lora.borrow_mut() = Some(LoraLinear {
                a: a.set_requires_grad(true),
                b: b.set_requires_grad(true),
                scaling,
                dropout: config.lora_dropout,
            });
        }
        for linear in self.linear_modules() {
            if !config.targets(&linear.name) {
                linear.lora.borrow_mut().take();
            }
        }
        *self.adapter.borrow_mut() = Some(AdapterState {
            config: config.clone(),
            saved_parameters,
        });
        Ok(report)
    }

    /// The adapter's config, if one is attached.
    pub fn lora_config(&self) -> Option<LoraConfig> {
        self.adapter.borrow().as_ref().map(|a| a.config.clone())
    }

    /// What an adapter trains, by its key in PEFT's file without the `base_model.model.` prefix:
    /// `<module>.lora_A.weight` and `<module>.lora_B.weight` of every adapted module, then the
    /// parameters of `modules_to_save`. Empty without an adapter. (Shallow clones: training
    /// them trains the adapter.)
    pub fn adapter_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for linear in self.linear_modules() {
            if let Some(lora) = linear.lora.borrow().as_ref() {
                out.push((
                    format!("{}.lora_A.weight", linear.name),
                    lora.a.shallow_clone(),
                ));
                out.push((
                    format!("{}.lora_B.weight", linear.name),
                    lora.b.shallow_clone(),
                ));
            }
        }
        if let Some(state) = self.adapter.borrow().as_ref() {
            for (name, tensor) in self.named_parameters() {
                if state.saved_parameters.contains(name) {
                    out.push((name.clone(), tensor.shallow_clone()));
                }
            }
        }
        out
    }

    /// Writes the adapter as PEFT does: `adapter_config.json` (with `base_model_name_or_path`
    /// when given) and `adapter_model.safetensors` with PEFT's key names.
    pub fn save_adapter(&self, dir: &Path, base_model_name_or_path: Option<&str>) -> Result<()> {
        let Some(state) = self.adapter.borrow().clone() else {
            return Err(Error::InvalidInput(
                "the model has no LoRA adapter to save".into(),
            ));
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut config = state.config.clone();
        if let Some(base) = base_model_name_or_path {
            config.base_model_name_or_path = Some(base.to_string());
        }
        let mut tensors: Vec<(String, Tensor)> = self
            .adapter_parameters()
            .into_iter()
            .map(|(n, t)| (format!("{KEY_PREFIX}{n}"), t))
            .collect();
        for linear in self.linear_modules() {
            if EMBEDDING_LAYERS.contains(&linear.name.as_str()) && linear.lora.borrow().is_some() {
                tensors.push((
                    format!("{KEY_PREFIX}{}.base_layer.weight", linear.name),
                    linear.weight.shallow_clone(),
                ));
            }
        }
        write_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), &tensors)?;
        config.save(dir)
    }

    /// Reads a PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`)
    /// and attaches it (see [`Self::load_adapter_weights`]). On error the model is left without
    /// an adapter.
    pub fn load_adapter(&self, dir: &Path) -> Result<AdapterReport> {
        let config = LoraConfig::from_file(dir.join(ADAPTER_CONFIG_FILE))?;
        let attached = self.add_lora(&config, LoraInit::Zeros)?;
        match self.load_adapter_weights(dir) {
            Ok(report) => Ok(AdapterReport {
                modules: attached.modules,
                saved_parameters: attached.saved_parameters,
                adapter_parameters: attached.adapter_parameters,
                replaced: report.replaced,
            }),
            Err(e) => {
                self.remove_adapter();
                Err(e)
            }
        }
    }

    /// Copies `dir`'s `adapter_model.safetensors` into the attached adapter's tensors (in
    /// place: an optimiser holding them sees the loaded values; how a run resumes). Strict, as
    /// model loading: every adapter tensor must be in the file and every tensor of the file
    /// must be used, otherwise the error lists both; shapes must match. Base weights the file
    /// carries (`modules_to_save`, a saved `lm_head.base_layer.weight`) replace the model's, as
    /// PEFT does; the report lists them.
    pub fn load_adapter_weights(&self, dir: &Path) -> Result<AdapterReport> {
        if self.adapter.borrow().is_none() {
            return Err(Error::InvalidInput(
                "the model has no LoRA adapter to load weights into".into(),
            ));
        }
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        if !weights.is_file() && dir.join(ADAPTER_PICKLE_FILE).is_file() {
            return Err(Error::InvalidAdapter {
                path: dir.join(ADAPTER_PICKLE_FILE),
                reason: format!(
                    "only the pickled {ADAPTER_PICKLE_FILE} is there; flan reads \
                     {ADAPTER_WEIGHTS_FILE} (convert once with peft: \
                     PeftModel.from_pretrained(base, dir).save_pretrained(dir, \
                     safe_serialization=True))"
                ),
            });
        }
        let stored = read_safetensors(&weights)?;
        let mut targets: HashMap<String, Tensor> = self
            .adapter_parameters()
            .into_iter()
            .map(|(n, t)| (format!("{KEY_PREFIX}{n}"), t))
            .collect();
        let mut base_layers: HashMap<String, Tensor> = HashMap::new();
        for linear in self.linear_modules() {
            if linear.lora.borrow().is_some() {
                base_layers.insert(
                    format!("{KEY_PREFIX}{}.base_layer.weight", linear.name),
                    linear.weight.shallow_clone(),
                );
            }
        }
        let needed: BTreeSet<String> = targets.keys().cloned().collect();
        let mut report = AdapterReport::default();
        let mut unexpected = Vec::new();
        let mut filled = BTreeSet::new();
        for (key, tensor) in stored {
            let Some(var) = targets.remove(&key).or_else(|| base_layers.remove(&key)) else {
                unexpected.push(key);
                continue;
            };
            if var.size() != tensor.size() {
                return Err(Error::ShapeMismatch {
                    path: weights.clone(),
                    name: key,
                    expected: var.size(),
                    found: tensor.size(),
                });
            }
            tch::no_grad(|| var.shallow_clone().f_copy_(&tensor))?;
            let name = key.trim_start_matches(KEY_PREFIX).to_string();
            if !(name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")) {
                report.replaced.push(name);
            }
            filled.insert(key);
        }
        let missing: Vec<String> = needed.difference(&filled).cloned().collect();
        unexpected.sort();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(Error::AdapterMismatch {
                dir: dir.to_path_buf(),
                missing,
                unexpected,
            });
        }
        report.replaced.sort();
        Ok(report)
    }

    /// Detaches the adapter (the base weights stay as they are).
    pub fn remove_adapter(&self) {
        for linear in self.linear_modules() {
            linear.lora.borrow_mut().take();
        }
        self.adapter.borrow_mut().take();
    }

    /// Folds the adapter into the weights (`W += B·A · scaling`, computed in the adapter's
    /// dtype and added into the weight's, as PEFT's `merge_and_unload`) and detaches it: the
    /// model is then a plain T5 whose [`Self::save_pretrained`] writes a normal checkpoint.
    /// Refused, changing nothing, for an adapted head tied to the input embedding (T5 v1.0):
    /// merging would change the embedding too.
    pub fn merge_adapter(&self) -> Result<Vec<String>> {
        if self.adapter.borrow().is_none() {
            return Err(Error::InvalidInput(
                "the model has no LoRA adapter to merge".into(),
            ));
        }
        let tied_head = self.config().tied_head();
        let mut merged = Vec::new();
        for linear in self.linear_modules() {
            if linear.name == "lm_head" && tied_head && linear.lora.borrow().is_some() {
                return Err(Error::InvalidInput(
                    "the adapter targets lm_head, which this model ties to the input embedding \
                     (shared.weight): merging would change the embedding as well; keep the \
                     adapter separate"
                        .into(),
                ));
            }
        }
        tch::no_grad(|| -> Result<()> {
            for linear in self.linear_modules() {
                if let Some(lora) = linear.lora.borrow_mut().take() {
                    let delta = lora.delta_weight().f_to_kind(linear.weight.kind())?;
                    let _ = linear.weight.shallow_clone().f_add_(&delta)?;
                    merged.push(linear.name.clone());
                }
            }
            Ok(())
        })?;
        self.adapter.borrow_mut().take();
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> ModuleSelector {
        ModuleSelector::Names(list.iter().map(|s| s.to_string()).collect())
    }

    const Q: &str = "encoder.block.0.layer.0.SelfAttention.q";
    const WO: &str = "decoder.block.1.layer.2.DenseReluDense.wo";

    #[test]
    fn names_match_whole_trailing_components_as_peft_does() {
        let c = LoraConfig::new(4, 8.0, 0.0, names(&["q", "DenseReluDense.wo"]));
        assert!(c.targets(Q) && c.targets(WO));
        assert!(!c.targets("encoder.block.0.layer.0.SelfAttention.k"));
        // A suffix of a component is not a match (peft checks `.` + name).
        let c = LoraConfig::new(4, 8.0, 0.0, names(&["o"]));
        assert!(!c.targets(WO));
        let c = LoraConfig::new(4, 8.0, 0.0, names(&["lm_head"]));
        assert!(c.targets("lm_head"));
    }

    #[test]
    fn a_pattern_must_match_the_whole_name_and_all_linear_leaves_the_head_out() {
        let c = LoraConfig::new(4, 8.0, 0.0, ModuleSelector::Pattern(r".*\.q".into()));
        assert!(c.targets(Q) && !c.targets(WO));
        let c = LoraConfig::new(4, 8.0, 0.0, ModuleSelector::Pattern("SelfAttention".into()));
        assert!(!c.targets(Q), "re.fullmatch, not re.search");
        let mut c = LoraConfig::new(4, 8.0, 0.0, ModuleSelector::Pattern("all-linear".into()));
        assert!(c.targets(Q) && c.targets(WO) && !c.targets("lm_head"));
        c.exclude_modules = Some(names(&["wo"]));
        assert!(c.targets(Q) && !c.targets(WO));
    }

    #[test]
    fn rank_and_alpha_patterns_override_by_peft_rules() {
        let mut c = LoraConfig::new(8, 16.0, 0.0, names(&["q", "wo"]));
        c.rank_pattern.insert("wo".into(), 2);
        c.alpha_pattern.insert(r"encoder\.block\.0.*q".into(), 4.0);
        assert_eq!(c.rank_and_scaling(WO), (2, 8.0));
        assert_eq!(c.rank_and_scaling(Q), (8, 0.5));
        assert_eq!(
            c.rank_and_scaling("decoder.block.0.layer.0.SelfAttention.q"),
            (8, 2.0)
        );
        c.use_rslora = true;
        assert_eq!(
            c.rank_and_scaling("decoder.block.0.layer.0.SelfAttention.q"),
            (8, 16.0 / 8f64.sqrt())
        );
    }

    #[test]
    fn modules_to_save_select_whole_modules_by_suffix() {
        let mut c = LoraConfig::new(4, 8.0, 0.0, names(&["q"]));
        assert!(!c.saves_parameter("lm_head.weight"));
        c.modules_to_save = Some(vec!["lm_head".into(), "relative_attention_bias".into()]);
        assert!(c.saves_parameter("lm_head.weight"));
        assert!(c.saves_parameter(
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        ));
        assert!(!c.saves_parameter("shared.weight"));
    }

    #[test]
    fn configs_that_change_the_computation_are_refused_by_field() {
        let base = LoraConfig::new(4, 8.0, 0.0, names(&["q"]));
        assert_eq!(base.validate(), Ok(()));
        for (field, value) in [
            ("use_dora", serde_json::json!(true)),
            ("bias", serde_json::json!("all")),
            ("layers_to_transform", serde_json::json!([0])),
            ("fan_in_fan_out", serde_json::json!(true)),
        ] {
            let mut c = base.clone();
            c.extra.insert(field.into(), value);
            let err = c.validate().unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
        let mut c = base.clone();
        c.peft_type = "IA3".into();
        assert!(c.validate().unwrap_err().contains("peft_type"));
        let mut c = base;
        c.target_modules = ModuleSelector::Pattern("(unclosed".into());
        assert!(c.validate().unwrap_err().contains("target_modules"));
    }
}
