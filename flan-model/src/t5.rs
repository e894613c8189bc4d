//! The T5 encoder-decoder (v1.0 relu and v1.1 / Flan-T5 gated), layer structs named after the
//! Hugging Face modules so that `nn::Path` names are the checkpoint keys.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use tch::{nn, Kind, Tensor};

use crate::checkpoint::{load_variables, save_variables, LoadReport};
use crate::config::{Activation, FeedForwardKind, T5Config};
use crate::kv_cache::{KvCache, LayerCache};
use crate::layer_norm::rms_norm;
use crate::lora::AdapterState;
use crate::position_bias::{additive_mask, bucket_grid, mask_value, relative_position_bucket};
use crate::prepacked_linear::{PrepackedLinear, PrepackedStats};
use crate::stacked_linears::StackedLinears;
use crate::{Error, Result};

mod activation_checkpointing;
mod token_grid;

use activation_checkpointing::Recompute;
use token_grid::{off_grid, on_grid, TokenGrid};

/// Records every variable the network creates under its checkpoint name (relative to the model's
/// root path), so that loading, saving and optimisers address parameters by Hugging Face key.
#[derive(Debug)]
struct Params {
    root_len: usize,
    /// `Some(kind)` for weights about to be overwritten by a checkpoint: they are made as zeros
    /// directly in the dtype each takes under the model dtype `kind` ([`param_kind`]), so that
    /// loading a bf16 model never holds an fp32 copy of it.
    zero_init: Option<Kind>,
    list: RefCell<Vec<(String, Tensor)>>,
}

/// The dtype of parameter `name` in a model of dtype `kind`. As in transformers
/// (`_keep_in_fp32_modules`), the FFN output projections (`wo`) stay in fp32 in an f16 model:
/// they overflow in fp16 for T5 v1.1/Flan. transformers does this for f16 only (bf16 has fp32's
/// range), so a bf16 model is bf16 throughout, and greedy decoding picks its tokens.
fn param_kind(name: &str, kind: Kind) -> Kind {
    if kind == Kind::Half && name.ends_with("DenseReluDense.wo.weight") {
        Kind::Float
    } else {
        kind
    }
}

/// Refuses a model dtype other than Float, BFloat16, Half or Double.
fn check_model_kind(kind: Kind) -> Result<()> {
    if matches!(
        kind,
        Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
    ) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "model dtype must be Float, BFloat16, Half or Double, got {kind:?}"
        )))
    }
}

impl Params {
    fn var(&self, path: &nn::Path, name: &str, dims: &[i64], init: nn::Init) -> Tensor {
        let mut key: Vec<&str> = path.components().skip(self.root_len).collect();
        key.push(name);
        let key = key.join(".");
        let tensor = match self.zero_init {
            // No random draw for weights a checkpoint overwrites. The variable store makes
            // them in its own kind (the model's); the few kept in fp32 are swapped one by one.
            Some(kind) => {
                let tensor = path.var(name, dims, nn::Init::Const(0.0));
                let want = param_kind(&key, kind);
                if tensor.kind() != want {
                    let zeros = Tensor::zeros(dims, (want, path.device()));
                    tch::no_grad(|| tensor.shallow_clone().set_data(&zeros));
                }
                tensor
            }
            None => path.var(name, dims, init),
        };
        self.list.borrow_mut().push((key, tensor.shallow_clone()));
        tensor
    }

    /// A bias-free linear layer, weight `[out, in]` as in PyTorch, normal with `std`.
    fn linear(
        &self,
        path: &nn::Path,
        name: &str,
        in_dim: i64,
        out_dim: i64,
        std: f64,
    ) -> PrepackedLinear {
        let module = &(path / name);
        let key: Vec<&str> = module.components().skip(self.root_len).collect();
        PrepackedLinear::new(
            key.join("."),
            self.var(
                module,
                "weight",
                &[out_dim, in_dim],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ),
        )
    }
}

/// How a pass runs through the network's layers: whether dropout applies, and whether the linear
/// layers may use a decoding step's faster kernels. The public API's `train: bool` becomes
/// [`Pass::Train`] or [`Pass::Eval`]; only [`T5ForConditionalGeneration::decode_step`] makes
/// [`Pass::DecodeStep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Training: dropout applies (at the config's `dropout_rate`).
    Train,
    /// Evaluation, full decoding and multi-position cached steps: no dropout, plain products
    /// (bf16 ones through [`crate::bf16_dot_linear`] where that is bitwise the same:
    /// [`PrepackedLinear::apply`]).
    Eval,
    /// A one-position decoding step over a KV cache: no dropout, and the projections of the new
    /// position may use packed weights or a chunked product ([`PrepackedLinear::forward_step`],
    /// bitwise the plain product).
    DecodeStep,
}

impl Pass {
    /// [`Pass::Train`] when `train`, else [`Pass::Eval`].
    fn from_train(train: bool) -> Self {
        if train {
            Pass::Train
        } else {
            Pass::Eval
        }
    }
}

/// Dropout in training only (see [`crate::dropout`] for why not libtorch's). Outside training
/// libtorch's dropout would return its input but still cost a dispatch, and a decoding step makes
/// hundreds of small calls.
fn dropout(x: Tensor, p: f64, pass: Pass) -> Tensor {
    if pass == Pass::Train && p > 0.0 {
        crate::dropout::dropout(&x, p)
    } else {
        x
    }
}

/// fp16 keeps T5 finite only with transformers' clamp after every sublayer.
fn clamp_fp16(h: Tensor) -> Tensor {
    if h.kind() != Kind::Half {
        return h;
    }
    let max = 65504.0;
    let limit = if h.isinf().any().int64_value(&[]) != 0 {
        max - 1000.0
    } else {
        max
    };
    h.clamp(-limit, limit)
}

/// `T5LayerNorm`: a scale vector; see [`rms_norm`].
#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(p: &Params, path: nn::Path, dim: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.var(&path, "weight", &[dim], nn::Init::Const(1.0)),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        rms_norm(x, &self.weight, self.eps)
    }
}

/// `T5Attention`: q, k, v, o without bias and without 1/sqrt(d_kv) scaling.
#[derive(Debug)]
struct Attention {
    q: PrepackedLinear,
    k: PrepackedLinear,
    v: PrepackedLinear,
    o: PrepackedLinear,
    /// q, k and v as one product in decoding steps (self-attention).
    qkv: StackedLinears,
    relative_attention_bias: Option<Tensor>,
    num_heads: i64,
    d_kv: i64,
    num_buckets: i64,
    max_distance: i64,
    bidirectional: bool,
    dropout: f64,
}

impl Attention {
    fn new(
        p: &Params,
        path: nn::Path,
        cfg: &T5Config,
        has_bias: bool,
        bidirectional: bool,
    ) -> Self {
        let inner = cfg.num_heads * cfg.d_kv;
        let d = cfg.d_model;
        let rel = has_bias.then(|| {
            p.var(
                &(&path / "relative_attention_bias"),
                "weight",
                &[cfg.relative_attention_num_buckets, cfg.num_heads],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: (d as f64).powf(-0.5),
                },
            )
        });
        Attention {
            q: p.linear(&path, "q", d, inner, ((d * cfg.d_kv) as f64).powf(-0.5)),
            k: p.linear(&path, "k", d, inner, (d as f64).powf(-0.5)),
            v: p.linear(&path, "v", d, inner, (d as f64).powf(-0.5)),
            o: p.linear(&path, "o", inner, d, (inner as f64).powf(-0.5)),
            qkv: StackedLinears::default(),
            relative_attention_bias: rel,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
            bidirectional,
            dropout: cfg.dropout_rate,
        }
    }

    /// `[1, heads, query_len, key_len]` position bias for queries starting at `offset`.
    fn position_bias(&self, query_len: i64, key_len: i64, offset: i64) -> Option<Tensor> {
        let table = self.relative_attention_bias.as_ref()?;
        let buckets = bucket_grid(
            query_len,
            key_len,
            offset,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
            table.device(),
        );
        let values = Tensor::embedding(table, &buckets, -1, false, false);
        Some(values.permute([2, 0, 1]).unsqueeze(0))
    }

    /// `[rows, heads, 1, key_len]` position bias of one query per row, row `i`'s at position
    /// `query_pos[i]` (int64 `[rows]`), over keys `0..key_len`.
    fn row_position_bias(&self, query_pos: &Tensor, key_len: i64) -> Option<Tensor> {
        let table = self.relative_attention_bias.as_ref()?;
        let key = Tensor::arange(key_len, (Kind::Int64, table.device())).unsqueeze(0);
        let relative = key - query_pos.unsqueeze(1);
        let buckets = relative_position_bucket(
            &relative,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
        );
        let values = Tensor::embedding(table, &buckets, -1, false, false);
        Some(values.permute([0, 2, 1]).unsqueeze(2))
    }

    /// `[batch, len, inner]` -> `[batch, heads, len, d_kv]`.
    fn heads(&self, x: Tensor) -> Tensor {
        let (b, t, _) = x.size3().expect("projection output is 3-d");
        x.view([b, t, self.num_heads, self.d_kv]).transpose(1, 2)
    }

    /// Self-attention of `hidden` `[batch, len, d_model]` (the encoder's, or the decoder's,
    /// causal through `bias`). `bias` is the position bias plus the additive mask, broadcastable
    /// to `[batch, heads, query, key]`. With a cache slot, the new positions' keys and values are
    /// appended to the earlier ones' and the queries attend to all of them. With a `grid`,
    /// `hidden` is its tokens, `[tokens, d_model]`, and so is the output (see [`TokenGrid`]).
    fn self_attention(
        &self,
        hidden: &Tensor,
        bias: &Tensor,
        grid: Option<&TokenGrid>,
        cache: Option<&mut LayerCache>,
        pass: Pass,
    ) -> Tensor {
        let [q, k, v] = self
            .qkv
            .apply([&self.q, &self.k, &self.v], hidden, pass)
            .map(|x| self.heads(on_grid(grid, x)));
        let (k, v) = match cache {
            Some(slot) => slot.append_self(k, v),
            None => (k, v),
        };
        self.attend(&q, &k, &v, bias, grid, pass)
    }

    /// Cross-attention of the decoder's `hidden` `[batch, len, d_model]` (or `grid`'s tokens)
    /// over the encoder's output (`encoder.hidden`, `[batch, source_len, d_model]` or its own
    /// grid's tokens); `encoder.mask` is the additive mask over the encoder's positions. With a
    /// cache slot the keys and values are projected once, at the first step, and reused: they
    /// are products over the whole source, never a decoding step's, so they never use packed
    /// weights.
    fn cross_attention(
        &self,
        hidden: &Tensor,
        grid: Option<&TokenGrid>,
        encoder: Encoded<'_>,
        cache: Option<&mut LayerCache>,
        pass: Pass,
    ) -> Tensor {
        let q = self.heads(on_grid(grid, self.q.apply(hidden, pass)));
        // Products over the whole source, never a decoding step's.
        let full = if pass == Pass::DecodeStep {
            Pass::Eval
        } else {
            pass
        };
        let project = || {
            let source = |l: &PrepackedLinear| {
                self.heads(on_grid(encoder.grid, l.apply(encoder.hidden, full)))
            };
            (source(&self.k), source(&self.v))
        };
        let (k, v) = match cache {
            None => project(),
            Some(slot) => {
                // Kept for every step, so laid out once with each (row, head)'s keys (values)
                // contiguous: sdpa's bf16 kernel reads the heads' strided views of the projection
                // about twice as slowly once they have left the cache (AMD EPYC, batch 32, 64
                // source positions: 1.75-1.98 ms a call against 0.95-1.15), for the same bits.
                let (k, v) = slot.cross_kv.get_or_insert_with(|| {
                    let (k, v) = project();
                    (k.contiguous(), v.contiguous())
                });
                (k.shallow_clone(), v.shallow_clone())
            }
        };
        self.attend(&q, &k, &v, encoder.mask, grid, pass)
    }

    /// Softmax attention of `q` over `k`, `v` (`[batch, heads, len, d_kv]`) with the additive
    /// `bias`, dropout on the weights when training, heads merged (and taken back to the
    /// queries' `grid`'s tokens) and projected by `o`.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &Tensor,
        grid: Option<&TokenGrid>,
        pass: Pass,
    ) -> Tensor {
        let (b, _, t, _) = q.size4().expect("query heads are 4-d");
        let out = if pass == Pass::Train && self.dropout > 0.0 {
            // What sdpa does on CPU when it has to drop attention weights (its math path, as
            // transformers' eager T5), with our dropout in place of libtorch's serial one. The
            // bias is added in place, as transformers' eager T5 does, so that under autocast the
            // scores stay in the matmul's precision.
            let mut scores = q.matmul(&k.transpose(-1, -2));
            // Under autocast the scores are bf16 (or f16) and the mask is the model's fp32
            // minimum, which rounds to -inf there: a fully masked row (a padding query of a
            // packed batch) would give NaN, and NaN reaches real tokens through the values.
            // The half dtype's own minimum keeps it finite; rows with an allowed key are
            // unchanged (their masked entries still vanish in the softmax).
            let bias = if matches!(scores.kind(), Kind::BFloat16 | Kind::Half)
                && bias.kind() != scores.kind()
            {
                bias.clamp_min(mask_value(scores.kind()))
            } else {
                bias.shallow_clone()
            };
            let _ = scores.g_add_(&bias);
            let weights = scores.softmax(-1, Kind::Float).to_kind(scores.kind());
            dropout(weights, self.dropout, pass).matmul(v)
        } else {
            Tensor::scaled_dot_product_attention(q, k, v, Some(bias), 0.0, false, 1.0, false)
        };
        let out = out
            .transpose(1, 2)
            .contiguous()
            .view([b, t, self.num_heads * self.d_kv]);
        self.o.apply(&off_grid(grid, out), pass)
    }
}

/// `DenseReluDense`: `wo(act(wi x))` or gated `wo(act(wi_0 x) * wi_1 x)`.
#[derive(Debug)]
struct DenseReluDense {
    wi: Vec<PrepackedLinear>,
    wo: PrepackedLinear,
    /// A gated FFN's wi_0 and wi_1 as one product in decoding steps.
    wi_stack: StackedLinears,
    kind: FeedForwardKind,
    dropout: f64,
}

impl DenseReluDense {
    fn new(p: &Params, path: nn::Path, cfg: &T5Config, kind: FeedForwardKind) -> Self {
        let std_in = (cfg.d_model as f64).powf(-0.5);
        let wi = if kind.gated {
            vec![
                p.linear(&path, "wi_0", cfg.d_model, cfg.d_ff, std_in),
                p.linear(&path, "wi_1", cfg.d_model, cfg.d_ff, std_in),
            ]
        } else {
            vec![p.linear(&path, "wi", cfg.d_model, cfg.d_ff, std_in)]
        };
        DenseReluDense {
            wi,
            wo: p.linear(
                &path,
                "wo",
                cfg.d_ff,
                cfg.d_model,
                (cfg.d_ff as f64).powf(-0.5),
            ),
            wi_stack: StackedLinears::default(),
            kind,
            dropout: cfg.dropout_rate,
        }
    }

    fn forward(&self, x: &Tensor, pass: Pass) -> Tensor {
        let act = |h: Tensor| match self.kind.activation {
            Activation::Relu => h.relu(),
            Activation::GeluTanh => gelu_tanh(&h),
            Activation::Gelu => h.gelu("none"),
            Activation::Silu => h.silu(),
        };
        let h = match self.wi.as_slice() {
            [wi_0, wi_1] => {
                let [h0, h1] = self.wi_stack.apply([wi_0, wi_1], x, pass);
                act(h0) * h1
            }
            wi => act(wi[0].apply(x, pass)),
        };
        let h = dropout(h, self.dropout, pass);
        // transformers keeps `wo` in fp32 for f16 models; follow the weight's dtype.
        let wo_kind = self.wo.weight.kind();
        let h = if h.kind() != wo_kind {
            h.to_kind(wo_kind)
        } else {
            h
        };
        self.wo.apply(&h, pass)
    }
}

/// transformers' `gelu_new`, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. In fp32 the fused
/// kernel equals it to rounding; in bf16/f16 (half-precision weights, or autocast, where the
/// linear layer before it returns bf16) transformers rounds after each of its elementwise steps,
/// so the same steps in the same order are what gives the same numbers.
fn gelu_tanh(x: &Tensor) -> Tensor {
    if !matches!(x.kind(), Kind::BFloat16 | Kind::Half) {
        return x.gelu("tanh");
    }
    // Built in transformers' evaluation order: autograd sums the gradient of `x` from its three
    // uses in reverse creation order, and in half precision that order shows in the result.
    let half = x * 0.5;
    let inner = (x + x.pow_tensor_scalar(3.0) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt();
    half * (inner.tanh() + 1.0)
}

/// What the decoder's cross-attention reads: the encoder's output `[batch, source_len, d_model]`
/// (or its grid's tokens, `[tokens, d_model]`) and the additive mask over its positions,
/// broadcastable to `[batch, heads, query, source_len]`.
#[derive(Clone, Copy)]
struct Encoded<'a> {
    hidden: &'a Tensor,
    mask: &'a Tensor,
    grid: Option<&'a TokenGrid>,
}

/// One sublayer: pre-norm, the op, dropout, residual.
#[derive(Debug)]
struct Block {
    self_attn: Attention,
    self_norm: LayerNorm,
    cross: Option<(Attention, LayerNorm)>,
    ffn: DenseReluDense,
    ffn_norm: LayerNorm,
    dropout: f64,
}

impl Block {
    fn new(
        p: &Params,
        path: nn::Path,
        cfg: &T5Config,
        index: i64,
        is_decoder: bool,
        ff: FeedForwardKind,
    ) -> Self {
        let layer = &path / "layer";
        let eps = cfg.layer_norm_epsilon;
        let self_attn = Attention::new(
            p,
            &layer / 0 / "SelfAttention",
            cfg,
            index == 0,
            !is_decoder,
        );
        let self_norm = LayerNorm::new(p, &layer / 0 / "layer_norm", cfg.d_model, eps);
        let cross = is_decoder.then(|| {
            (
                Attention::new(p, &layer / 1 / "EncDecAttention", cfg, false, true),
                LayerNorm::new(p, &layer / 1 / "layer_norm", cfg.d_model, eps),
            )
        });
        let ff_index = if is_decoder { 2 } else { 1 };
        Block {
            self_attn,
            self_norm,
            cross,
            ffn: DenseReluDense::new(p, &layer / ff_index / "DenseReluDense", cfg, ff),
            ffn_norm: LayerNorm::new(p, &layer / ff_index / "layer_norm", cfg.d_model, eps),
            dropout: cfg.dropout_rate,
        }
    }

    /// The block over `h` (`[batch, len, d_model]`, or `grid`'s tokens), with `self_bias` as
    /// its self-attention bias and, in the decoder, cross-attention over `encoder`.
    fn forward(
        &self,
        h: &Tensor,
        self_bias: &Tensor,
        grid: Option<&TokenGrid>,
        encoder: Option<Encoded<'_>>,
        mut cache: Option<&mut LayerCache>,
        pass: Pass,
    ) -> Tensor {
        let normed = self.self_norm.forward(h);
        let a = self
            .self_attn
            .self_attention(&normed, self_bias, grid, cache.as_deref_mut(), pass);
        let mut h = clamp_fp16(h + dropout(a, self.dropout, pass));
        if let (Some((attn, norm)), Some(encoder)) = (&self.cross, encoder) {
            let normed = norm.forward(&h);
            let a = attn.cross_attention(&normed, grid, encoder, cache, pass);
            h = clamp_fp16(h + dropout(a, self.dropout, pass));
        }
        let f = self.ffn.forward(&self.ffn_norm.forward(&h), pass);
        clamp_fp16(h + dropout(f, self.dropout, pass))
    }
}

/// A stack's input in a packed pass: its embedded tokens `[tokens, d_model]`, where they sit in
/// the batch's grid, and the additive self-attention mask over the grid.
#[derive(Debug)]
struct StackInput {
    embedded: Tensor,
    mask: Tensor,
    grid: TokenGrid,
}

/// `T5Stack`: blocks and a final norm. The embedding is the model's `shared` table.
#[derive(Debug)]
struct Stack {
    blocks: Vec<Block>,
    final_layer_norm: LayerNorm,
    dropout: f64,
}

impl Stack {
    fn new(
        p: &Params,
        path: nn::Path,
        cfg: &T5Config,
        layers: i64,
        is_decoder: bool,
        ff: FeedForwardKind,
    ) -> Self {
        Stack {
            blocks: (0..layers)
                .map(|i| Block::new(p, &path / "block" / i, cfg, i, is_decoder, ff))
                .collect(),
            final_layer_norm: LayerNorm::new(
                p,
                &path / "final_layer_norm",
                cfg.d_model,
                cfg.layer_norm_epsilon,
            ),
            dropout: cfg.dropout_rate,
        }
    }

    /// Runs the blocks. `mask` is the additive self-attention mask; block 0's position bias
    /// (queries from `offset`) is added to it once and shared by all blocks.
    fn forward(
        &self,
        embedded: &Tensor,
        mask: &Tensor,
        offset: i64,
        encoder: Option<Encoded<'_>>,
        cache: Option<&mut KvCache>,
        pass: Pass,
    ) -> Tensor {
        let bias = self.self_bias(embedded.size()[1], offset, mask);
        self.forward_with_bias(embedded, &bias, None, encoder, cache, pass)
    }

    /// The self-attention bias every block shares: block 0's position bias for `query_len`
    /// queries from `offset` plus the additive `mask`.
    fn self_bias(&self, query_len: i64, offset: i64, mask: &Tensor) -> Tensor {
        match self.position_bias(query_len, offset + query_len, offset) {
            Some(pos) => pos.to_kind(mask.kind()) + mask,
            None => mask.shallow_clone(),
        }
    }

    /// Block 0's relative position bias, `[1, heads, query_len, key_len]` for queries from
    /// `offset` (None when the stack has no relative attention table).
    fn position_bias(&self, query_len: i64, key_len: i64, offset: i64) -> Option<Tensor> {
        self.blocks
            .first()
            .and_then(|b| b.self_attn.position_bias(query_len, key_len, offset))
    }

    /// Block 0's position bias `[rows, heads, 1, key_len]` for one query per row at `query_pos`.
    fn row_position_bias(&self, query_pos: &Tensor, key_len: i64) -> Option<Tensor> {
        self.blocks
            .first()
            .and_then(|b| b.self_attn.row_position_bias(query_pos, key_len))
    }

    /// Runs the blocks over a packed batch's tokens (see [`TokenGrid`]), from position 0.
    fn forward_on_tokens(
        &self,
        input: &StackInput,
        encoder: Option<Encoded<'_>>,
        pass: Pass,
    ) -> Tensor {
        let bias = self.self_bias(input.grid.len(), 0, &input.mask);
        self.forward_with_bias(
            &input.embedded,
            &bias,
            Some(&input.grid),
            encoder,
            None,
            pass,
        )
    }

    /// Runs the blocks with `bias` (position bias plus mask) as every block's self-attention
    /// bias, over `embedded` `[batch, len, d_model]` or, with a `grid`, its tokens.
    fn forward_with_bias(
        &self,
        embedded: &Tensor,
        bias: &Tensor,
        grid: Option<&TokenGrid>,
        encoder: Option<Encoded<'_>>,
        mut cache: Option<&mut KvCache>,
        pass: Pass,
    ) -> Tensor {
        let mut h = dropout(embedded.shallow_clone(), self.dropout, pass);
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = block.forward(&h, bias, grid, encoder, slot, pass);
        }
        dropout(self.final_layer_norm.forward(&h), self.dropout, pass)
    }

    /// The stacks a decoding step may multiply through: self-attention's q, k, v and the FFN's
    /// wi_0, wi_1 (cross-attention's q is alone; its keys and values are projected once).
    fn stacked_linears(&self) -> impl Iterator<Item = &StackedLinears> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.self_attn.qkv, &b.ffn.wi_stack])
    }

    /// Every linear layer of the blocks.
    fn linears(&self) -> impl Iterator<Item = &PrepackedLinear> {
        self.blocks.iter().flat_map(|b| {
            let attns = std::iter::once(&b.self_attn).chain(b.cross.as_ref().map(|(a, _)| a));
            attns
                .flat_map(|a| [&a.q, &a.k, &a.v, &a.o])
                .chain(b.ffn.wi.iter())
                .chain(std::iter::once(&b.ffn.wo))
        })
    }
}

/// Packed (or padded) batch as tensors, t5x feature names (flan-train makes them from flan-data's
/// `PackedBatch`; the model takes tensors and knows nothing of the data pipeline).
#[derive(Debug)]
pub struct PackedTensors {
    /// `[batch, input_len]` encoder tokens (0 = padding).
    pub encoder_input_tokens: Tensor,
    /// `[batch, input_len]` example index within the row, from 1; 0 = padding.
    pub encoder_segment_ids: Tensor,
    /// `[batch, input_len]` position within the example.
    pub encoder_positions: Tensor,
    /// `[batch, target_len]` targets.
    pub decoder_target_tokens: Tensor,
    /// `[batch, target_len]` targets shifted right per segment.
    pub decoder_input_tokens: Tensor,
    /// `[batch, target_len]` segment ids of the targets.
    pub decoder_segment_ids: Tensor,
    /// `[batch, target_len]` positions of the targets.
    pub decoder_positions: Tensor,
    /// `[batch, target_len]` fp32 loss weights (1 on real targets).
    pub decoder_loss_weights: Tensor,
}

/// Logits at the target positions of a packed batch ([`T5ForConditionalGeneration::forward_packed_targets`]),
/// flattened in row-major order of the batch. A loss made from them is backpropagated with
/// [`TargetLogits::backward`], which also recomputes the checkpointed blocks of the model
/// (`'m`) that made them.
#[derive(Debug)]
pub struct TargetLogits<'m> {
    /// `[n, vocab]`, one row per position with a nonzero loss weight.
    pub logits: Tensor,
    /// `[n]` target ids of those positions.
    pub targets: Tensor,
    /// `[n]` their loss weights.
    pub weights: Tensor,
    /// The blocks' inputs and dropout seeds of a checkpointed training pass.
    recompute: Option<Recompute<'m>>,
}

impl TargetLogits<'_> {
    /// Backpropagates `objective` (a scalar made from these logits) into the parameters'
    /// `.grad`, accumulating as `objective.backward()` does. It is that call when the pass kept
    /// its activations; after a checkpointed pass it goes on through the blocks, last first:
    /// each is recomputed from its saved input (with the dropout masks of the first pass, under
    /// the autocast the first pass ran in) and backpropagated on its own, then the gradients
    /// of its input, of the shared attention bias and of the encoder's output go on into the
    /// embedding, the position-bias tables and the encoder.
    ///
    /// Run it outside the autocast region of the forward pass, as `torch.autocast` asks of a
    /// backward pass: inside it the recomputed blocks would reuse the region's weight casts,
    /// which were made without gradients ([`Error::ActivationCheckpointing`]).
    pub fn backward(self, objective: &Tensor) -> Result<()> {
        let TargetLogits {
            logits,
            targets,
            weights,
            recompute,
        } = self;
        objective.f_backward()?;
        // The logits are the largest tensor of the step after the blocks: not kept through the
        // recompute.
        drop((logits, targets, weights));
        match recompute {
            Some(recompute) => recompute.run(),
            None => Ok(()),
        }
    }

    /// All positions of `logits` `[batch, target_len, vocab]` (for models without a head of
    /// their own that can skip padding): the weights then zero out the padding.
    pub fn all(logits: Tensor, batch: &PackedTensors) -> Self {
        let vocab = logits.size().last().copied().unwrap_or(0);
        TargetLogits {
            logits: logits.reshape([-1, vocab]),
            targets: batch.decoder_target_tokens.reshape([-1]),
            weights: batch.decoder_loss_weights.reshape([-1]),
            recompute: None,
        }
    }

    /// Token cross-entropy weighted by the loss weights and divided by their sum (at least 1):
    /// the same loss as [`T5ForConditionalGeneration::packed_loss`].
    pub fn mean_loss(&self) -> Tensor {
        weighted_mean_cross_entropy(&self.logits, &self.targets, &self.weights)
    }
}

/// Σ w·CE / max(Σ w, 1) over `logits` `[n, vocab]` with `targets` and `weights` `[n]`, in fp32.
fn weighted_mean_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Tensor {
    let v = logits.size().last().copied().unwrap_or(0);
    let ce = logits
        .to_kind(Kind::Float)
        .reshape([-1, v])
        .cross_entropy_loss::<Tensor>(
            &targets.reshape([-1]),
            None,
            tch::Reduction::None,
            -100,
            0.0,
        );
    let w = weights.reshape([-1]).to_kind(Kind::Float);
    (ce * &w).sum(Kind::Float) / w.sum(Kind::Float).clamp_min(1.0)
}

/// T5 for conditional generation: shared embedding, encoder, decoder, output head.
#[derive(Debug)]
pub struct T5ForConditionalGeneration {
    shared: Tensor,
    encoder: Stack,
    decoder: Stack,
    /// `lm_head`, or the `shared` embedding for a tied head.
    head: PrepackedLinear,
    /// Tied heads scale the decoder output by `d_model^-0.5` first.
    head_scale: Option<f64>,
    /// Whether decoding steps may use packed weights ([`Self::set_prepacked_decoding`]).
    prepacked_decoding: Cell<bool>,
    /// The LoRA adapter attached to the linear layers, if any (see [`crate::lora`]).
    pub(crate) adapter: RefCell<Option<AdapterState>>,
    /// Whether training passes keep only the blocks' inputs
    /// ([`Self::set_activation_checkpointing`]).
    activation_checkpointing: Cell<bool>,
    config: T5Config,
    params: Vec<(String, Tensor)>,
}

impl T5ForConditionalGeneration {
    /// Builds the network's variables under `path` (usually `vs.root()`), randomly initialised
    /// with T5's init scales (seed with `tch::manual_seed` first). Variable names below `path`
    /// equal the Hugging Face checkpoint keys.
    pub fn new(path: &nn::Path, config: &T5Config) -> Result<Self> {
        Self::build(path, config, None)
    }

    /// `zero_init`: see [`Params::zero_init`].
    fn build(path: &nn::Path, config: &T5Config, zero_init: Option<Kind>) -> Result<Self> {
        let invalid = |reason| Error::InvalidConfig {
            path: "<config>".into(),
            reason,
        };
        config.validate().map_err(invalid)?;
        let ff = config.feed_forward_kind().map_err(invalid)?;
        let p = Params {
            root_len: path.components().count(),
            zero_init,
            list: RefCell::new(Vec::new()),
        };
        let shared = p.var(
            &(path / "shared"),
            "weight",
            &[config.vocab_size, config.d_model],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let encoder = Stack::new(&p, path / "encoder", config, config.num_layers, false, ff);
        let decoder = Stack::new(
            &p,
            path / "decoder",
            config,
            config.num_decoder_layers(),
            true,
            ff,
        );
        let (head, head_scale) = if config.tied_head() {
            (
                PrepackedLinear::new("lm_head".into(), shared.shallow_clone()),
                Some((config.d_model as f64).powf(-0.5)),
            )
        } else {
            let head = p.linear(path, "lm_head", config.d_model, config.vocab_size, 1.0);
            (head, None)
        };
        Ok(T5ForConditionalGeneration {
            shared,
            encoder,
            decoder,
            head,
            head_scale,
            prepacked_decoding: Cell::new(true),
            adapter: RefCell::new(None),
            activation_checkpointing: Cell::new(false),
            config: config.clone(),
            params: p.list.into_inner(),
        })
    }

    /// Loads a Hugging Face model directory (`config.json` + safetensors) onto `device` in
    /// `kind` (Float, BFloat16, Half or Double; the FFN output projections stay fp32 for the
    /// half kinds, see [`Self::set_kind`]). The model owns its weights; nothing else needs to
    /// live.
    ///
    /// The parameters are made in their final dtype and each stored tensor is converted as it
    /// is copied in, one at a time: a bf16 checkpoint loads into bf16 without an fp32 copy, and
    /// an fp32 checkpoint loaded as bf16 needs the bf16 model plus one fp32 tensor at a time
    /// (the conversions are listed in [`LoadReport::cast`]).
    pub fn from_pretrained(
        dir: impl AsRef<std::path::Path>,
        device: tch::Device,
        kind: Kind,
    ) -> Result<(Self, LoadReport)> {
        check_model_kind(kind)?;
        let dir = dir.as_ref();
        let config = T5Config::from_file(dir.join("config.json"))?;
        let mut vs = nn::VarStore::new(device);
        // The store is empty: this only sets the kind new variables are made in.
        vs.set_kind(kind);
        let model = Self::build(&vs.root(), &config, Some(kind))?;
        let vars = model.variables();
        let report = load_variables(dir, &vars)?;
        if let Some((tensor, count)) = model.first_non_finite()? {
            // float16 tops out at 65504: larger weights become infinite in the conversion.
            let overflowed = kind == Kind::Half
                && report
                    .cast
                    .iter()
                    .any(|(name, from)| *name == tensor && *from != Kind::Half);
            return Err(Error::NonFiniteWeights {
                dir: dir.to_path_buf(),
                tensor,
                count,
                after: if overflowed {
                    " after the cast to float16".into()
                } else {
                    String::new()
                },
            });
        }
        Ok((model, report))
    }

    /// The parameters by checkpoint key (shallow clones: writing them writes the model).
    fn variables(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    /// Overwrites every parameter from the checkpoint in `dir` (strict: see [`load_variables`])
    /// and refuses weights that are NaN or infinite ([`Error::NonFiniteWeights`]): a model with
    /// them generates empty text and scores NaN without any other sign.
    pub fn load_weights(&self, dir: impl AsRef<std::path::Path>) -> Result<LoadReport> {
        let report = load_variables(dir.as_ref(), &self.variables())?;
        self.check_finite(dir.as_ref(), "")?;
        Ok(report)
    }

    /// The first parameter, in checkpoint-key order, that holds NaN or infinite values, and how
    /// many. One f64 sum per tensor decides (NaN and infinities survive a sum, and a sum of
    /// finite f32 values cannot overflow f64), so the check reads the weights once and
    /// allocates nothing of their size; only a tensor that fails is counted element-wise.
    pub fn first_non_finite(&self) -> Result<Option<(String, i64)>> {
        let mut params: Vec<&(String, Tensor)> = self.params.iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (name, t) in params {
                let sum = t.f_sum(Kind::Double)?.f_double_value(&[])?;
                if !sum.is_finite() {
                    let count = t
                        .f_isfinite()?
                        .f_logical_not()?
                        .f_sum(Kind::Int64)?
                        .f_int64_value(&[])?;
                    return Ok(Some((name.clone(), count)));
                }
            }
            Ok(None)
        })
    }

    fn check_finite(&self, dir: &std::path::Path, after: &str) -> Result<()> {
        match self.first_non_finite()? {
            None => Ok(()),
            Some((tensor, count)) => Err(Error::NonFiniteWeights {
                dir: dir.to_path_buf(),
                tensor,
                count,
                after: after.to_string(),
            }),
        }
    }

    /// Casts the parameters to `kind` in place, one tensor at a time. As in transformers, the
    /// FFN output projections (`wo`) stay in fp32 for half-precision kinds: they overflow in
    /// fp16 for T5 v1.1/Flan.
    pub fn set_kind(&self, kind: Kind) -> Result<()> {
        check_model_kind(kind)?;
        tch::no_grad(|| {
            for (name, tensor) in &self.params {
                let target = param_kind(name, kind);
                if tensor.kind() != target {
                    tensor.shallow_clone().set_data(&tensor.to_kind(target));
                }
            }
        });
        Ok(())
    }

    /// Writes `config.json`, `generation_config.json` and `model.safetensors` into `dir`
    /// (created if needed): the layout `transformers` loads.
    pub fn save_pretrained(&self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        self.save_pretrained_sharded(dir, None)
    }

    /// As [`Self::save_pretrained`], splitting the weights into shards of at most
    /// `max_shard_bytes` with a `model.safetensors.index.json` when they do not fit in one.
    pub fn save_pretrained_sharded(
        &self,
        dir: impl AsRef<std::path::Path>,
        max_shard_bytes: Option<usize>,
    ) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut config = self.config.clone();
        // Say explicitly what the weights are, readable by transformers 4.x and 5.x alike.
        config.tie_word_embeddings = Some(self.head_scale.is_some());
        config.scale_decoder_outputs = None;
        // transformers 5 loads in the dtype the config names ("auto"): it must be the dtype of
        // the weights we write, not the one of the checkpoint we loaded from.
        let dtype = match self.kind() {
            Kind::BFloat16 => "bfloat16",
            Kind::Half => "float16",
            Kind::Double => "float64",
            _ => "float32",
        };
        config.extra.insert("dtype".into(), dtype.into());
        if config.extra.contains_key("torch_dtype") {
            config.extra.insert("torch_dtype".into(), dtype.into());
        }
        config.save(dir.join("config.json"))?;
        let generation = serde_json::json!({
            "decoder_start_token_id": config.decoder_start_token_id(),
            "eos_token_id": config.eos_token_id,
            "pad_token_id": config.pad_token_id,
        });
        let gen_path = dir.join("generation_config.json");
        std::fs::write(&gen_path, format!("{generation:#}\n")).map_err(|source| Error::Io {
            path: gen_path.clone(),
            source,
        })?;
        let vars: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        save_variables(dir, &vars, max_shard_bytes)?;
        Ok(())
    }

    /// Every parameter with its Hugging Face checkpoint key, in creation order.
    pub fn named_parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// dtype of the embedding (the model's compute dtype).
    pub fn kind(&self) -> Kind {
        self.shared.kind()
    }

    /// Device of the weights.
    pub fn device(&self) -> tch::Device {
        self.shared.device()
    }

    /// Number of decoder blocks (the size of a [`KvCache`]).
    pub fn num_decoder_layers(&self) -> usize {
        self.decoder.blocks.len()
    }

    /// A fresh cache for this model's decoder.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.num_decoder_layers())
    }

    fn embed(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.shared, ids, -1, false, false)
    }

    /// The additive mask `[batch, 1, 1, len]` that hides padded keys (`mask` 1 = token).
    fn key_padding_mask(&self, mask: &Tensor) -> Tensor {
        additive_mask(&mask.ne(0).unsqueeze(1).unsqueeze(1), self.kind())
    }

    /// Encoder over `input_ids` `[batch, len]` with `attention_mask` (1 = token, 0 = padding).
    pub fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let mask = self.key_padding_mask(attention_mask);
        self.encoder.forward(
            &self.embed(input_ids),
            &mask,
            0,
            None,
            None,
            Pass::from_train(train),
        )
    }

    /// Output head over decoder states: tied heads scale by `d_model^-0.5` first.
    fn head(&self, h: &Tensor, pass: Pass) -> Tensor {
        match self.head_scale {
            None => self.head.apply(h, pass),
            Some(scale) => self.head.apply(&(h * scale), pass),
        }
    }

    /// Whether decoding steps may multiply by weights packed for MKL's GEMM or reordered for
    /// oneDNN, or chunk by chunk in one batched product, whichever was fastest when first timed,
    /// and multiply self-attention's q, k, v and a gated FFN's wi_0, wi_1 as one product each
    /// (on by default; see [`crate::prepacked_linear`] and [`crate::stacked_linears`]). Results
    /// are bitwise the same either way: a kernel or a stack is used only where it was checked to
    /// give the plain products. Switching off drops the plans, the stacks and the packed copies'
    /// memory (about the size of the decoder's and the head's weights per batch size in use,
    /// and a copy of the stacked weights).
    pub fn set_prepacked_decoding(&self, on: bool) {
        self.prepacked_decoding.set(on);
        if !on {
            for linear in self.prepacked_linears() {
                linear.clear_prepacked();
            }
            for stack in self.decoder.stacked_linears() {
                stack.clear();
            }
        }
    }

    /// Activation checkpointing (off by default), as `torch.utils.checkpoint` per T5 block: a
    /// training pass of [`Self::forward_packed_targets`] keeps each block's input instead of
    /// its activations, and [`TargetLogits::backward`] recomputes each block's forward pass,
    /// with the very dropout masks of the first one, before it backpropagates through it. The
    /// loss is bitwise the one without checkpointing and the gradients are the same up to the
    /// order of summation; peak memory is lower, at the cost of one more forward pass of the
    /// blocks. Other entry points (`forward`, `forward_packed`, evaluation passes) are not
    /// affected.
    ///
    /// Off the CPU the fused dropout kernel draws masks that cannot be drawn again, so a model
    /// there with a dropout rate above 0 refuses ([`Error::ActivationCheckpointing`]).
    pub fn set_activation_checkpointing(&self, on: bool) -> Result<()> {
        if on && self.config.dropout_rate > 0.0 && self.device() != tch::Device::Cpu {
            return Err(Error::ActivationCheckpointing(format!(
                "needs dropout_rate = 0 on {:?} (libtorch's fused dropout there draws masks that \
                 cannot be drawn again for the recomputed pass; got {})",
                self.device(),
                self.config.dropout_rate
            )));
        }
        self.activation_checkpointing.set(on);
        Ok(())
    }

    /// Whether training passes checkpoint activations ([`Self::set_activation_checkpointing`]).
    pub fn activation_checkpointing(&self) -> bool {
        self.activation_checkpointing.get()
    }

    /// The decoding-step plans the decoder and the head hold now, and which use packed copies
    /// or chunks.
    pub fn prepacked_decoding_stats(&self) -> PrepackedStats {
        let mut stats = PrepackedStats::default();
        for linear in self.prepacked_linears() {
            linear.add_stats(&mut stats);
        }
        for stack in self.decoder.stacked_linears() {
            stack.add_stats(&mut stats);
        }
        stats
    }

    /// Every linear layer, in network order: encoder, decoder, head.
    pub(crate) fn linear_modules(&self) -> impl Iterator<Item = &PrepackedLinear> {
        self.encoder
            .linears()
            .chain(self.decoder.linears())
            .chain(std::iter::once(&self.head))
    }

    /// The layers a decoding step may run packed.
    fn prepacked_linears(&self) -> impl Iterator<Item = &PrepackedLinear> {
        self.decoder.linears().chain(std::iter::once(&self.head))
    }

    /// Full (uncached) decoder pass: logits `[batch, target_len, vocab]`. `decoder_mask` (1 =
    /// token) adds a padding mask on decoder keys on top of the causal mask.
    pub fn decode(
        &self,
        decoder_input_ids: &Tensor,
        encoder_hidden: &Tensor,
        encoder_mask: &Tensor,
        decoder_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let t = decoder_input_ids.size()[1];
        let device = decoder_input_ids.device();
        let causal = Tensor::ones([t, t], (Kind::Bool, device))
            .tril(0)
            .view([1, 1, t, t]);
        let allowed = match decoder_mask {
            Some(m) => causal.logical_and(&m.ne(0).view([-1, 1, 1, t])),
            None => causal,
        };
        let self_mask = additive_mask(&allowed, self.kind());
        let cross = self.key_padding_mask(encoder_mask);
        let pass = Pass::from_train(train);
        let encoded = Encoded {
            hidden: encoder_hidden,
            mask: &cross,
            grid: None,
        };
        let h = self.decoder.forward(
            &self.embed(decoder_input_ids),
            &self_mask,
            0,
            Some(encoded),
            None,
            pass,
        );
        self.head(&h, pass)
    }

    /// One cached decoding step over `decoder_input_ids` `[batch, n]` (usually n = 1): appends
    /// to `cache` and returns logits `[batch, n, vocab]`. The cross-attention mask is taken from
    /// `encoder_mask` (1 = token).
    pub fn decode_step(
        &self,
        decoder_input_ids: &Tensor,
        encoder_hidden: &Tensor,
        encoder_mask: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        let n = decoder_input_ids.size()[1];
        let past = cache.len();
        let device = decoder_input_ids.device();
        if n == 1 {
            // The usual step: one query that sees every key, so no self-attention mask; its
            // position bias is a slice of a table kept in the cache, and the cross-attention
            // mask is built once. Same values as the general path, a fraction of its calls.
            let bias = self.step_bias(cache, past);
            let cross = cache
                .cross_mask
                .get_or_insert_with(|| self.key_padding_mask(encoder_mask))
                .shallow_clone();
            let pass = if self.prepacked_decoding.get() {
                Pass::DecodeStep
            } else {
                Pass::Eval
            };
            let encoded = Encoded {
                hidden: encoder_hidden,
                mask: &cross,
                grid: None,
            };
            let h = self.decoder.forward_with_bias(
                &self.embed(decoder_input_ids),
                &bias,
                None,
                Some(encoded),
                Some(cache),
                pass,
            );
            cache.advance(1);
            return self.head(&h, pass);
        }
        // Query i (at past + i) may see keys 0..=past + i.
        let allowed = Tensor::ones([n, past + n], (Kind::Bool, device))
            .tril(past)
            .view([1, 1, n, past + n]);
        let self_mask = additive_mask(&allowed, self.kind());
        let cross = self.key_padding_mask(encoder_mask);
        let encoded = Encoded {
            hidden: encoder_hidden,
            mask: &cross,
            grid: None,
        };
        let h = self.decoder.forward(
            &self.embed(decoder_input_ids),
            &self_mask,
            past,
            Some(encoded),
            Some(cache),
            Pass::Eval,
        );
        cache.advance(n);
        self.head(&h, Pass::Eval)
    }

    /// Every decoder block's cross-attention keys and values `[batch, heads, source_len, d_kv]`
    /// over `encoder_hidden`, as a cached step projects them on its first step.
    pub(crate) fn project_cross(&self, encoder_hidden: &Tensor) -> Vec<(Tensor, Tensor)> {
        self.decoder
            .blocks
            .iter()
            .filter_map(|b| b.cross.as_ref())
            .map(|(attn, _)| {
                (
                    attn.heads(attn.k.apply(encoder_hidden, Pass::Eval)),
                    attn.heads(attn.v.apply(encoder_hidden, Pass::Eval)),
                )
            })
            .collect()
    }

    /// One decoding step of rows at different positions (see [`crate::continuous`]): `ids`
    /// `[rows, 1]`, row `i` at position `positions[i]` (int64 `[rows]`) over keys
    /// `0..key_len`; `cross_mask` is the additive mask over the padded source positions
    /// `[rows, 1, 1, source_len]`; `cache` holds ragged self-attention buffers and the
    /// cross-attention keys and values. Returns logits `[rows, 1, vocab]`.
    ///
    /// Plain products ([`Pass::Eval`]): packed weights are kept for two row counts per weight,
    /// and a continuous batch changes its row count at every join and leave.
    pub(crate) fn decode_rows_step(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        key_len: i64,
        cross_mask: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        let device = ids.device();
        let key = Tensor::arange(key_len, (Kind::Int64, device)).unsqueeze(0);
        let allowed = key
            .le_tensor(&positions.unsqueeze(1))
            .view([-1, 1, 1, key_len]);
        let mask = additive_mask(&allowed, self.kind());
        let bias = match self.decoder.row_position_bias(positions, key_len) {
            Some(pos) => pos.to_kind(self.kind()) + mask,
            None => mask,
        };
        // The cross-attention keys and values are in the cache: the hidden states are not read.
        let unused = Tensor::zeros([0], (self.kind(), device));
        let encoded = Encoded {
            hidden: &unused,
            mask: cross_mask,
            grid: None,
        };
        let h = self.decoder.forward_with_bias(
            &self.embed(ids),
            &bias,
            None,
            Some(encoded),
            Some(cache),
            Pass::Eval,
        );
        self.head(&h, Pass::Eval)
    }

    /// The self-attention bias of a query at position `p` over keys `0..=p`, `[1, heads, 1, p+1]`:
    /// the last `p + 1` entries of the bias of a query at the end of a longer table (relative
    /// positions `-p..=0`), which the cache keeps and regrows by doubling.
    fn step_bias(&self, cache: &mut KvCache, p: i64) -> Tensor {
        let need = p + 1;
        let table = match &cache.step_bias {
            Some(t) if t.size()[3] >= need => t.shallow_clone(),
            _ => {
                let len = (2 * need).max(64);
                let t = match self.decoder.position_bias(1, len, len - 1) {
                    Some(pos) => pos.to_kind(self.kind()),
                    None => Tensor::zeros([1, 1, 1, len], (self.kind(), self.device())),
                };
                cache.step_bias = Some(t.shallow_clone());
                t
            }
        };
        let len = table.size()[3];
        table.narrow(3, len - need, need)
    }

    /// Encoder-decoder forward: logits `[batch, target_len, vocab]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let enc = self.encode(input_ids, attention_mask, train);
        self.decode(
            decoder_input_ids,
            &enc,
            attention_mask,
            decoder_attention_mask,
            train,
        )
    }

    /// transformers' `_shift_right`: start token first, labels shifted right, -100 -> pad.
    pub fn shift_right(&self, labels: &Tensor) -> Tensor {
        let b = labels.size()[0];
        let start = Tensor::full(
            [b, 1],
            self.config.decoder_start_token_id(),
            (Kind::Int64, labels.device()),
        );
        let t = labels.size()[1];
        let shifted = Tensor::cat(&[start, labels.narrow(1, 0, t - 1)], 1);
        shifted.masked_fill(&shifted.eq(-100), self.config.pad_token_id)
    }

    /// Forward with `labels` (`-100` ignored) as transformers does: decoder inputs are the
    /// shifted labels; returns `(logits, loss)` with the loss the mean over non-ignored tokens.
    pub fn forward_with_labels(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        labels: &Tensor,
        train: bool,
    ) -> (Tensor, Tensor) {
        let decoder_input_ids = self.shift_right(labels);
        let logits = self.forward(input_ids, attention_mask, &decoder_input_ids, None, train);
        let loss = Self::loss(&logits, labels);
        (logits, loss)
    }

    /// Cross-entropy in fp32 with ignore index -100, mean over non-ignored tokens.
    pub fn loss(logits: &Tensor, labels: &Tensor) -> Tensor {
        let v = logits.size()[2];
        logits
            .to_kind(Kind::Float)
            .view([-1, v])
            .cross_entropy_loss::<Tensor>(&labels.view([-1]), None, tch::Reduction::Mean, -100, 0.0)
    }

    /// Forward over a packed batch (t5x semantics): tokens attend only within their own segment
    /// (encoder, decoder causal, and cross attention), never to padding. Returns logits
    /// `[batch, target_len, vocab]`; autograd-friendly, with dropout when `train`.
    pub fn forward_packed(&self, batch: &PackedTensors, train: bool) -> Tensor {
        let pass = Pass::from_train(train);
        self.head(&self.packed_decoder_states(batch, pass, false).0, pass)
    }

    /// Logits of a packed batch at its target positions only (those with a nonzero loss
    /// weight), with their targets and weights: what a training loss needs.
    ///
    /// Why not [`Self::forward_packed`]: the output head and the softmax over the vocabulary run
    /// on every decoder slot there, padding included, and a packed batch's decoder rows are
    /// often far from full (58% of the slots hold a target in the bench's small-shape batches,
    /// whose head is about a fifth of the step's FLOPs). Padding has weight 0, so its logits only
    /// ever multiplied into zero gradients.
    ///
    /// Backpropagate through [`TargetLogits::backward`]: with activation checkpointing on
    /// ([`Self::set_activation_checkpointing`]) a training pass keeps only the blocks' inputs,
    /// and that is where the blocks are recomputed.
    pub fn forward_packed_targets(&self, batch: &PackedTensors, train: bool) -> TargetLogits<'_> {
        let pass = Pass::from_train(train);
        let checkpoint = pass == Pass::Train && self.activation_checkpointing.get();
        let (states, recompute) = self.packed_decoder_states(batch, pass, checkpoint);
        let d_model = states.size().last().copied().unwrap_or(0);
        let positions = batch
            .decoder_loss_weights
            .view([-1])
            .ne(0.0)
            .nonzero()
            .view([-1]);
        let pick = |t: &Tensor| t.reshape([-1]).index_select(0, &positions);
        TargetLogits {
            logits: self.head(
                &states.reshape([-1, d_model]).index_select(0, &positions),
                pass,
            ),
            targets: pick(&batch.decoder_target_tokens),
            weights: pick(&batch.decoder_loss_weights),
            recompute,
        }
    }

    /// Final decoder states `[batch, target_len, d_model]` of a packed batch (before the head).
    /// With `checkpoint` (a training pass) the blocks keep only their inputs, and what their
    /// recompute needs comes back too.
    fn packed_decoder_states(
        &self,
        batch: &PackedTensors,
        pass: Pass,
        checkpoint: bool,
    ) -> (Tensor, Option<Recompute<'_>>) {
        let kind = self.kind();
        let enc_seg = &batch.encoder_segment_ids;
        let dec_seg = &batch.decoder_segment_ids;
        let same = |q: &Tensor, k: &Tensor| {
            q.unsqueeze(2)
                .eq_tensor(&k.unsqueeze(1))
                .logical_and(&k.ne(0).unsqueeze(1))
                .logical_and(&q.ne(0).unsqueeze(2))
                .unsqueeze(1)
        };
        // Relative positions come from the token index: within a segment they equal the
        // differences of `*_positions`, and other segments are masked out anyway.
        let enc_mask = additive_mask(&same(enc_seg, enc_seg), kind);
        let t = dec_seg.size()[1];
        let causal = Tensor::ones([t, t], (Kind::Bool, dec_seg.device()))
            .tril(0)
            .view([1, 1, t, t]);
        let dec_mask = additive_mask(&same(dec_seg, dec_seg).logical_and(&causal), kind);
        let cross_mask = additive_mask(&same(dec_seg, enc_seg), kind);
        // The blocks run on the tokens alone; only attention sees the grid (see TokenGrid).
        let enc_grid = TokenGrid::of_segments(enc_seg);
        let dec_grid = TokenGrid::of_segments(dec_seg);
        let enc = StackInput {
            embedded: self.embed(&enc_grid.tokens(&batch.encoder_input_tokens)),
            mask: enc_mask,
            grid: enc_grid,
        };
        let dec = StackInput {
            embedded: self.embed(&dec_grid.tokens(&batch.decoder_input_tokens)),
            mask: dec_mask,
            grid: dec_grid,
        };
        let (states, recompute) = if checkpoint {
            let (states, recompute) = Recompute::forward(self, &enc, &dec, &cross_mask);
            (states, Some(recompute))
        } else {
            let h_enc = self.encoder.forward_on_tokens(&enc, None, pass);
            let encoded = Encoded {
                hidden: &h_enc,
                mask: &cross_mask,
                grid: Some(&enc.grid),
            };
            let states = self.decoder.forward_on_tokens(&dec, Some(encoded), pass);
            (states, None)
        };
        (dec.grid.grid(&states), recompute)
    }

    /// Token-weighted mean cross-entropy of a packed batch: `sum(w * ce) / sum(w)`.
    pub fn packed_loss(logits: &Tensor, batch: &PackedTensors) -> Tensor {
        weighted_mean_cross_entropy(
            logits,
            &batch.decoder_target_tokens,
            &batch.decoder_loss_weights,
        )
    }
}
