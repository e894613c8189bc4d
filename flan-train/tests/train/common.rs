//! Shared setup of the end-to-end tests: a handful of JSONL examples as a flan-data mixture, a
//! Unigram tokenizer trained on them, and a small sequence-to-sequence model of our own (so the
//! loop is tested on its own; the T5 tests use flan-model's network).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flan_data::{Mixture, Tokenizer};
use flan_train::batch::DeviceBatch;
use flan_train::config::TrainConfig;
use flan_train::model::TrainModel;
use flan_train::optim::{trainable_params, NamedParam};
use flan_train::source::MixtureBatches;
use flan_train::trainer::Trainer;
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Six question/answer pairs, distinct answers.
pub const EXAMPLES: [(&str, &str); 6] = [
    ("What colour is the sky on a clear day?", "blue"),
    ("How many legs does a spider have?", "eight"),
    ("Which planet is called the red planet?", "Mars"),
    ("What is frozen water called?", "ice"),
    ("Which animal says moo?", "a cow"),
    ("What do bees make?", "honey"),
];

/// A run directory with `tiny.jsonl`, `mixture.toml` and `tokenizer.json`.
pub struct TinyData {
    /// Owned when this process created the files (removed on drop).
    _owned: Option<tempfile::TempDir>,
    path: PathBuf,
    pub mixture: Arc<Mixture>,
    pub tokenizer: Arc<Tokenizer>,
}

impl TinyData {
    pub fn new() -> TinyData {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = EXAMPLES
            .iter()
            .map(|(i, t)| serde_json::json!({"inputs": i, "targets": t}).to_string() + "\n")
            .collect();
        std::fs::write(dir.path().join("tiny.jsonl"), rows).unwrap();
        let spec = r#"
            input_len = 64
            target_len = 8
            [submixtures.flan]
            weight = 1.0
            cap = 1000
            few_shot_ratio = 0.0
            options_ratio = 0.0
            [[tasks]]
            format = "jsonl"
            path = "tiny.jsonl"
            submixture = "flan"
        "#;
        std::fs::write(dir.path().join("mixture.toml"), spec).unwrap();
        let mixture = Mixture::from_spec_file(&dir.path().join("mixture.toml")).unwrap();
        // The tokenizer sees what the model will: rendered prompts and targets.
        let sample = Arc::new(mixture).stream(0).next_batch(200).unwrap();
        let corpus: Vec<String> = sample
            .iter()
            .flat_map(|e| [e.inputs.clone(), e.targets.clone()])
            .collect();
        let tokenizer = Tokenizer::train_unigram(corpus.into_iter(), 200, 2).unwrap();
        tokenizer.save(dir.path().join("tokenizer.json")).unwrap();
        let mut data = TinyData::at(dir.path());
        data._owned = Some(dir);
        data
    }

    /// The files another process of this test made in `path`.
    pub fn at(path: &Path) -> TinyData {
        let mixture = Arc::new(Mixture::from_spec_file(&path.join("mixture.toml")).unwrap());
        let tokenizer = Arc::new(Tokenizer::from_file(path.join("tokenizer.json")).unwrap());
        TinyData {
            _owned: None,
            path: path.to_path_buf(),
            mixture,
            tokenizer,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A CPU config for this data, output in `out`, with extra overrides.
    pub fn config(&self, out: &Path, extra: &[&str]) -> TrainConfig {
        let p = |name: &str| self.path().join(name).display().to_string();
        let mut o = vec![
            format!("output_dir={}", out.display()),
            "model.config=tiny-model".into(),
            format!("model.tokenizer={}", p("tokenizer.json")),
            format!("data.mixture={}", p("mixture.toml")),
            "data.input_len=64".into(),
            "data.target_len=8".into(),
            "device=cpu".into(),
            "batch.size=4".into(),
            "log.progress=off".into(),
        ];
        if extra.iter().any(|s| s.starts_with("model.pretrained=")) {
            // A pretrained directory brings its own config and tokenizer.
            o.retain(|s| !s.starts_with("model.config=") && !s.starts_with("model.tokenizer="));
        }
        o.extend(extra.iter().map(|s| s.to_string()));
        TrainConfig::from_overrides(&o).unwrap()
    }

    pub fn source(&self, cfg: &TrainConfig) -> MixtureBatches {
        let (il, tl) = (cfg.data.input_len.unwrap(), cfg.data.target_len.unwrap());
        MixtureBatches::new(
            self.mixture.clone(),
            self.tokenizer.clone(),
            cfg.data.seed.unwrap_or(cfg.seed),
            cfg.batch.rows(il, tl),
            (il, tl),
            cfg.data.pack,
        )
        .unwrap()
        .with_overlong(cfg.data.overlong)
    }

    /// A trainer of a freshly initialised [`TinySeq2Seq`] (seeded by the config).
    pub fn trainer(&self, cfg: TrainConfig) -> Trainer<TinySeq2Seq, MixtureBatches> {
        tch::manual_seed(cfg.seed as i64);
        let model = TinySeq2Seq::new(self.tokenizer.vocab_size() as i64, 32, cfg.model.dropout);
        let source = self.source(&cfg);
        Trainer::new(cfg, model, source)
            .unwrap()
            .with_tokenizer_file(self.path().join("tokenizer.json"))
    }
}

/// Decoder step t sees: the previous target token, its position, and the mean embedding of the
/// encoder tokens of its own segment (so packed examples never see each other); one hidden
/// layer with dropout; untied output head.
pub struct TinySeq2Seq {
    vs: nn::VarStore,
    enc: nn::Embedding,
    dec: nn::Embedding,
    pos: nn::Embedding,
    hidden: nn::Linear,
    head: nn::Linear,
    dropout: f64,
}

impl TinySeq2Seq {
    pub fn new(vocab: i64, dim: i64, dropout: f64) -> Self {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let emb = nn::EmbeddingConfig::default();
        let enc = nn::embedding(&root / "enc", vocab, dim, emb);
        let dec = nn::embedding(&root / "dec", vocab, dim, emb);
        let pos = nn::embedding(&root / "pos", 64, dim, emb);
        let hidden = nn::linear(&root / "hidden", 3 * dim, 4 * dim, Default::default());
        let head = nn::linear(&root / "head", 4 * dim, vocab, Default::default());
        TinySeq2Seq {
            vs,
            enc,
            dec,
            pos,
            hidden,
            head,
            dropout,
        }
    }
}

impl TrainModel for TinySeq2Seq {
    fn parameters(&self) -> Vec<NamedParam> {
        trainable_params(&self.vs)
    }

    fn logits(&self, b: &DeviceBatch, train: bool) -> flan_train::Result<Tensor> {
        let enc_seg = &b.tensors.encoder_segment_ids;
        let dec_seg = &b.tensors.decoder_segment_ids;
        // [rows, target_len, input_len]: which encoder tokens belong to each decoder token's segment.
        let same = dec_seg
            .unsqueeze(2)
            .eq_tensor(&enc_seg.unsqueeze(1))
            .logical_and(&enc_seg.ne(0).unsqueeze(1));
        let same = same.to_kind(Kind::Float);
        let pooled = same.matmul(&self.enc.forward(&b.tensors.encoder_input_tokens))
            / same.sum_dim_intlist(-1, true, Kind::Float).clamp_min(1.0);
        let x = Tensor::cat(
            &[
                self.dec.forward(&b.tensors.decoder_input_tokens),
                self.pos.forward(&b.tensors.decoder_positions),
                pooled,
            ],
            -1,
        );
        let h = self.hidden.forward(&x).relu().dropout(self.dropout, train);
        Ok(self.head.forward(&h))
    }

    fn save_pretrained(&self, dir: &Path) -> flan_train::Result<()> {
        std::fs::write(dir.join("config.json"), "{\"model_type\": \"tiny-test\"}\n")
            .map_err(|e| flan_train::Error::io(dir, e))?;
        self.vs.save(dir.join("model.safetensors"))?;
        Ok(())
    }

    fn load_weights(&self, dir: &Path) -> flan_train::Result<()> {
        let loaded: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join("model.safetensors"))?
                .into_iter()
                .collect();
        tch::no_grad(|| {
            for (name, mut var) in self.vs.variables() {
                let src = loaded.get(&name).ok_or_else(|| flan_train::Error::Model {
                    message: format!("missing {name}"),
                })?;
                var.f_copy_(src)?;
            }
            Ok(())
        })
    }

    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// The per-step losses of a metrics file.
pub fn losses(out: &Path) -> Vec<(u64, f64)> {
    flan_train::metrics::read_step_records(&out.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| (r.step, r.loss))
        .collect()
}

/// libtorch's random generator (dropout, initialisation) is global to the process, and the test
/// harness runs tests on parallel threads: tests that train hold this lock so that their runs
/// see only their own seeds.
pub fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes `grad` the gradient of `p` through autograd (d(sum(p·g))/dp = g), replacing any
/// earlier one: how the optimiser parity tests feed a fixture's gradients.
pub fn set_grad(p: &Tensor, grad: &Tensor) {
    let mut old = p.grad();
    if old.defined() {
        let _ = old.zero_();
    }
    (p * grad).sum(Kind::Float).backward();
}
