//! Hugging Face checkpoint layout: `model.safetensors` or sharded `model.safetensors.index.json`,
//! loaded by name into the network's variables and saved so that `transformers` loads it back.
//!
//! Loading is strict: every variable of the network must be found (legacy aliases accepted) and
//! every tensor of the files must be used (known-obsolete keys excepted), otherwise the error
//! lists the missing and the unexpected keys; a shape mismatch names the tensor and both shapes.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// File name of an unsharded checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Keys transformers accepts as copies of `shared.weight`.
const SHARED_ALIASES: [&str; 2] = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];
/// Keys of obsolete checkpoints that carry nothing the network uses.
const OBSOLETE: [&str; 1] =
    ["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"];

/// What a load did besides the plain one-to-one copies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The weight files read.
    pub files: Vec<PathBuf>,
    /// Number of network variables filled.
    pub loaded: usize,
    /// `(variable, filled from key)` when a legacy alias or tying was used.
    pub aliased: Vec<(String, String)>,
    /// Keys of the files deliberately not used (obsolete or redundant copies).
    pub ignored: Vec<String>,
    /// `(variable, stored kind)` for each variable whose stored tensor had another dtype and
    /// was converted as it was copied in (an fp32 checkpoint loaded as bf16; a bf16 one loaded
    /// as fp32, or its FFN output projections, which stay fp32).
    pub cast: Vec<(String, Kind)>,
}

/// The safetensors files of a model directory, in index order when sharded.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let parsed: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: index.clone(),
            line: source.line(),
            source,
        })?;
        let files: BTreeSet<&String> = parsed.weight_map.values().collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let hint = if dir.join("pytorch_model.bin").is_file() {
        " (only pytorch_model.bin is there: convert it once with transformers, \
         `T5ForConditionalGeneration.from_pretrained(dir).save_pretrained(dir)`)"
    } else {
        ""
    };
    Err(Error::Io {
        path: single,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {WEIGHTS_FILE} or {INDEX_FILE} in the model directory{hint}"),
        ),
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F16 => Some(Kind::Half),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    match kind {
        Kind::Float => Some(Dtype::F32),
        Kind::Half => Some(Dtype::F16),
        Kind::BFloat16 => Some(Dtype::BF16),
        Kind::Double => Some(Dtype::F64),
        _ => None,
    }
}

fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the map is read-only and lives only while this load runs; a checkpoint being
    // rewritten underneath us is the same hazard transformers and candle accept.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn to_tensor(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Tensor> {
    let kind = kind_of(view.dtype()).ok_or_else(|| Error::Safetensors {
        path: path.to_path_buf(),
        reason: format!(
            "tensor `{name}` has dtype {:?}; only F32, F16, BF16 and F64 weights are supported",
            view.dtype()
        ),
    })?;
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(view.data(), &shape, kind)?)
}

/// Fills `variables` (network name -> tensor) from the checkpoint in `dir`. `tied_head` says
/// whether the network uses `shared.weight` as its output head.
pub fn load_variables(dir: &Path, variables: &HashMap<String, Tensor>) -> Result<LoadReport> {
    let files = weight_files(dir)?;
    let mut report = LoadReport {
        files: files.clone(),
        ..LoadReport::default()
    };
    let mut filled: BTreeSet<String> = BTreeSet::new();
    let mut unexpected = Vec::new();
    // Aliases are used only if the canonical key is absent from every file.
    let mut alias_sources: Vec<(PathBuf, String)> = Vec::new();
    // Each stored tensor is read in its own dtype and converted by the copy into the variable,
    // so a conversion never holds more than one tensor in the stored dtype besides the model.
    let copy = |path: &Path,
                var_name: &str,
                key: &str,
                view: &TensorView<'_>,
                cast: &mut Vec<(String, Kind)>|
     -> Result<()> {
        let var = &variables[var_name];
        let src = to_tensor(path, key, view)?;
        if src.size() != var.size() {
            return Err(Error::ShapeMismatch {
                path: path.to_path_buf(),
                name: key.to_string(),
                expected: var.size(),
                found: src.size(),
            });
        }
        tch::no_grad(|| var.shallow_clone().f_copy_(&src))?;
        if src.kind() != var.kind() {
            cast.push((var_name.to_string(), src.kind()));
        }
        Ok(())
    };
    for path in &files {
        let mmap = map_file(path)?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| Error::Safetensors {
            path: path.clone(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        for key in names {
            let view = st.tensor(&key).map_err(|e| Error::Safetensors {
                path: path.clone(),
                reason: format!("tensor `{key}`: {e}"),
            })?;
            if variables.contains_key(&key) {
                copy(path, &key, &key, &view, &mut report.cast)?;
                filled.insert(key);
            } else if SHARED_ALIASES.contains(&key.as_str()) {
                alias_sources.push((path.clone(), key));
            } else if OBSOLETE.contains(&key.as_str())
                || (key == "lm_head.weight" && !variables.contains_key("lm_head.weight"))
            {
                // A tied model's redundant head copy, or a key transformers also drops.
                report.ignored.push(key);
            } else {
                unexpected.push(key);
            }
        }
    }
    for (path, key) in alias_sources {
        if filled.contains("shared.weight") {
            report.ignored.push(key);
            continue;
        }
        let mmap = map_file(&path)?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| Error::Safetensors {
            path: path.clone(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        let view = st.tensor(&key).map_err(|e| Error::Safetensors {
            path: path.clone(),
            reason: format!("tensor `{key}`: {e}"),
        })?;
        copy(&path, "shared.weight", &key, &view, &mut report.cast)?;
        filled.insert("shared.weight".into());
        report.aliased.push(("shared.weight".into(), key));
    }
    // transformers 5.x writes untied heads as `lm_head.weight` but ties a head it cannot find;
    // do the same and say so.
    if variables.contains_key("lm_head.weight")
        && !filled.contains("lm_head.weight")
        && filled.contains("shared.weight")
    {
        let head = &variables["lm_head.weight"];
        let shared = &variables["shared.weight"];
        if head.size() == shared.size() {
            tch::no_grad(|| head.shallow_clone().f_copy_(shared))?;
            filled.insert("lm_head.weight".into());
            report
                .aliased
                .push(("lm_head.weight".into(), "shared.weight".into()));
        }
    }
    let mut missing: Vec<String> = variables
        .keys()
        .filter(|k| !filled.contains(*k))
        .cloned()
        .collect();
    missing.sort();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::KeyMismatch {
            dir: dir.to_path_buf(),
            missing,
            unexpected,
        });
    }
    report.loaded = filled.len();
    Ok(report)
}

/// One tensor's bytes, ready for serialisation.
struct Blob {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn blob(name: &str, tensor: &Tensor) -> Result<Blob> {
    let t = tensor.detach().to_device(tch::Device::Cpu).contiguous();
    let dtype = dtype_of(t.kind()).ok_or_else(|| {
        Error::InvalidInput(format!("cannot save `{name}` of kind {:?}", t.kind()))
    })?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(Blob {
        name: name.to_string(),
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

fn write_file(path: &Path, blobs: &[Blob]) -> Result<()> {
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|b| {
            TensorView::new(b.dtype, b.shape.clone(), &b.data)
                .map(|v| (b.name.clone(), v))
                .map_err(|e| Error::Safetensors {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{}`: {e}", b.name),
                })
        })
        .collect::<Result<_>>()?;
    // transformers refuses safetensors files without `format: pt` metadata.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(metadata), path).map_err(|e| {
        Error::Safetensors {
            path: path.to_path_buf(),
            reason: format!("could not write: {e}"),
        }
    })
}

/// Every tensor of the safetensors file at `path`, by name, in name order (copied out of the
/// file, in their stored dtypes).
pub(crate) fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mmap = map_file(path)?;
    let st = SafeTensors::deserialize(&mmap).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: format!("not a valid safetensors file: {e}"),
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let view = st.tensor(&name).map_err(|e| Error::Safetensors {
                path: path.to_path_buf(),
                reason: format!("tensor `{name}`: {e}"),
            })?;
            let tensor = to_tensor(path, &name, &view)?;
            Ok((name, tensor))
        })
        .collect()
}

/// Writes `tensors` as one safetensors file at `path` (with transformers' `format: pt`).
pub(crate) fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let blobs: Vec<Blob> = tensors
        .iter()
        .map(|(n, t)| blob(n, t))
        .collect::<Result<_>>()?;
    write_file(path, &blobs)
}

/// Writes `variables` into `dir` as `model.safetensors`, or, when their total size exceeds
/// `max_shard_bytes`, as `model-0000i-of-0000n.safetensors` shards plus the index file.
pub fn save_variables(
    dir: &Path,
    variables: &HashMap<String, Tensor>,
    max_shard_bytes: Option<usize>,
) -> Result<Vec<PathBuf>> {
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let blobs: Vec<Blob> = names
        .iter()
        .map(|n| blob(n, &variables[*n]))
        .collect::<Result<_>>()?;
    let total: usize = blobs.iter().map(|b| b.data.len()).sum();
    let limit = max_shard_bytes.unwrap_or(usize::MAX).max(1);
    // Remove stale files of a different layout so the directory stays unambiguous.
    for stale in [dir.join(WEIGHTS_FILE), dir.join(INDEX_FILE)] {
        if stale.is_file() {
            std::fs::remove_file(&stale).map_err(|source| Error::Io {
                path: stale.clone(),
                source,
            })?;
        }
    }
    if total <= limit {
        let path = dir.join(WEIGHTS_FILE);
        write_file(&path, &blobs)?;
        return Ok(vec![path]);
    }
    let mut shards: Vec<Vec<Blob>> = vec![Vec::new()];
    let mut size = 0;
    for b in blobs {
        if size > 0 && size + b.data.len() > limit {
            shards.push(Vec::new());
            size = 0;
        }
        size += b.data.len();
        shards.last_mut().expect("one shard at least").push(b);
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut paths = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
        for b in shard {
            weight_map.insert(b.name.clone(), file.clone());
        }
        let path = dir.join(&file);
        write_file(&path, shard)?;
        paths.push(path);
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    let index_path = dir.join(INDEX_FILE);
    let text = serde_json::to_string_pretty(&index).map_err(|source| Error::Json {
        path: index_path.clone(),
        line: 0,
        source,
    })?;
    std::fs::write(&index_path, text + "\n").map_err(|source| Error::Io {
        path: index_path.clone(),
        source,
    })?;
    paths.push(index_path);
    Ok(paths)
}
