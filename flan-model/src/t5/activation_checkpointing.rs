//! Activation checkpointing per T5 block, as `torch.utils.checkpoint` around each block (what
//! transformers' `gradient_checkpointing_enable()` does): a training pass runs the blocks
//! without autograd and keeps only each block's input; the backward pass recomputes the blocks,
//! last first, each from its input and with the dropout masks of its first pass, and
//! backpropagates through each alone. At most one block's activations live at a time.
//!
//! Why not an autograd Function: tch cannot define one, and a C++ Function calling back into
//! Rust for the recompute would take a shim, unwinding across the FFI boundary and the autograd
//! engine's threads. Here the gradient is carried by hand across the cuts instead, and every
//! cut is a leaf: the last block's output enters the final layer norm as a leaf that requires
//! grad, so the loss's own backward stops there and leaves that leaf's gradient `g`; block `i`
//! is recomputed from its saved input made a leaf, and `sum(out · g)` is backpropagated through
//! it (the gradient of that sum with respect to `out` is exactly `g`), which accumulates its
//! parameters' gradients and leaves the gradient of its input, the `g` of block `i - 1`. The
//! tensors every block reads (the self-attention bias, made from block 0's position-bias table,
//! and in the decoder the encoder's output) are leaves too, shared by the blocks, whose gradients
//! accumulate over them; at the end the gradients of the first input, the bias and the encoder
//! output go on into the graphs that made them (embedding and its dropout, position-bias table,
//! the encoder's final norm), the decoder first, since its cross-attention is where the encoder's
//! output gets its gradient, then the encoder's blocks the same way.
//!
//! The first pass draws its dropout seeds from libtorch's generator exactly as a pass without
//! checkpointing does (same calls, same order), recording them per block; the recompute replays
//! them ([`crate::dropout::replay_seeds`]) and draws nothing. So the loss is bitwise the plain
//! pass's, the masks are the same, and gradients differ only in the order of summation (of the
//! shared tensors' gradients over the blocks, and of the embedding's over its uses).
//!
//! Frozen parameters (`requires_grad` false) are respected as autograd would: a block is
//! recomputed only when a gradient must flow through it, and the stacks' inputs, bias and
//! encoder output are leaves requiring grad only when their graphs do.

use tch::{Device, Kind, Tensor};

use super::token_grid::TokenGrid;
use super::{dropout, Encoded, Pass, Stack, StackInput, T5ForConditionalGeneration};
use crate::dropout::{record_seeds, replay_seeds, SeedRecord};
use crate::{Autocast, Error, Result};

/// `t` cut from its graph: a leaf that requires grad when `t` does.
fn leaf(t: &Tensor) -> Tensor {
    let cut = t.detach();
    if t.requires_grad() {
        cut.set_requires_grad(true)
    } else {
        cut
    }
}

/// Backpropagates each gradient into its tensor's graph, in one backward pass: the gradient of
/// `Σ sum(t · g)` with respect to `t` is `g`. Pairs whose tensor has no graph are left out.
fn backprop_into(pairs: Vec<(Tensor, Tensor)>) -> Result<()> {
    let mut total: Option<Tensor> = None;
    for (t, g) in pairs {
        if !t.requires_grad() || !g.defined() {
            continue;
        }
        let term = t.f_mul(&g)?.f_sum(Kind::Float)?;
        total = Some(match total {
            None => term,
            Some(sum) => sum.f_add(&term)?,
        });
    }
    match total {
        Some(total) => Ok(total.f_backward()?),
        None => Ok(()),
    }
}

/// The encoder's output as the decoder's blocks read it.
#[derive(Debug)]
struct EncoderInput {
    /// With the encoder's final norm and dropout behind it.
    graph: Tensor,
    /// The leaf the blocks read, where their gradients of it accumulate.
    leaf: Tensor,
    /// The cross-attention's additive mask.
    mask: Tensor,
    /// Where the encoder's tokens sit in the batch.
    grid: TokenGrid,
}

/// What one stack's checkpointed pass keeps for its recompute.
#[derive(Debug)]
struct StackTape {
    /// Block `i`'s input (no graph), and whether a gradient must reach it (something before it
    /// trains).
    inputs: Vec<(Tensor, bool)>,
    /// The dropout seeds block `i` drew.
    seeds: Vec<SeedRecord>,
    /// Block 0's input with its graph (the embedding and its dropout).
    first: Tensor,
    /// The self-attention bias with its graph (block 0's position-bias table, plus the mask).
    bias: Tensor,
    /// The bias as the blocks read it.
    bias_leaf: Tensor,
    /// The decoder's view of the encoder's output.
    encoder: Option<EncoderInput>,
    /// The last block's output, where the rest of the pass starts (a leaf).
    output: Tensor,
    /// Where the stack's tokens sit in the batch.
    grid: TokenGrid,
}

impl Stack {
    /// The stack's training pass over `input`'s tokens (and in the decoder cross-attention
    /// over `encoder`: the encoder's output, the mask over it and its grid), its blocks run
    /// without autograd; `trainable[i]` says whether block `i` has parameters that train.
    /// Same values and the same dropout draws, in the same order, as
    /// `self.forward_on_tokens(input, encoder, Pass::Train)`.
    fn forward_checkpointed(
        &self,
        input: &StackInput,
        encoder: Option<(&Tensor, &Tensor, &TokenGrid)>,
        trainable: &[bool],
    ) -> (Tensor, StackTape) {
        let pass = Pass::Train;
        let grid = input.grid.shallow_clone();
        let bias = self.self_bias(grid.len(), 0, &input.mask);
        let bias_leaf = leaf(&bias);
        let encoder = encoder.map(|(hidden, mask, grid)| EncoderInput {
            graph: hidden.shallow_clone(),
            leaf: leaf(hidden),
            mask: mask.shallow_clone(),
            grid: grid.shallow_clone(),
        });
        let first = dropout(input.embedded.shallow_clone(), self.dropout, pass);
        let shared_grad =
            bias.requires_grad() || encoder.as_ref().is_some_and(|e| e.graph.requires_grad());
        let mut grad = first.requires_grad();
        let mut h = first.detach();
        let mut inputs = Vec::with_capacity(self.blocks.len());
        let mut seeds = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let encoded = encoder.as_ref().map(|e| Encoded {
                hidden: &e.leaf,
                mask: &e.mask,
                grid: Some(&e.grid),
            });
            let (out, record) = tch::no_grad(|| {
                record_seeds(|| block.forward(&h, &bias_leaf, Some(&grid), encoded, None, pass))
            });
            inputs.push((h, grad));
            seeds.push(record);
            grad = grad || shared_grad || trainable.get(i).copied().unwrap_or(true);
            h = out;
        }
        let output = if grad { h.set_requires_grad(true) } else { h };
        let states = dropout(self.final_layer_norm.forward(&output), self.dropout, pass);
        let tape = StackTape {
            inputs,
            seeds,
            first,
            bias,
            bias_leaf,
            encoder,
            output,
            grid,
        };
        (states, tape)
    }
}

impl StackTape {
    /// Recomputes `stack`'s blocks, last first (under `autocast` when the first pass ran under
    /// it), backpropagating the gradient its output leaf holds through each, then into the
    /// graphs of its first input, bias and encoder output.
    fn backward(self, stack: &Stack, autocast: Option<(Device, Kind)>) -> Result<()> {
        let StackTape {
            mut inputs,
            mut seeds,
            first,
            bias,
            bias_leaf,
            encoder,
            output,
            grid,
        } = self;
        let mut g = output.grad();
        if !g.defined() {
            // Nothing behind this stack trains, or the loss does not depend on it.
            return Ok(());
        }
        drop(output);
        let mut first_grad = None;
        for block in stack.blocks.iter().rev() {
            let (Some((input, input_grad)), Some(record)) = (inputs.pop(), seeds.pop()) else {
                return Err(Error::ActivationCheckpointing(
                    "the stack has more blocks than its checkpointed pass ran".into(),
                ));
            };
            let x = if input_grad {
                input.set_requires_grad(true)
            } else {
                input
            };
            // The block reads aliases of the leaves, not the leaves: autocast caches its
            // low-precision cast of a leaf that requires grad, and the gradients of a block's
            // several uses of one cached cast (the encoder output's keys and values) would sum
            // in bf16 where the plain pass, whose tensors are no leaves, sums them in fp32.
            let (bias_in, hidden_in) =
                (bias_leaf.alias(), encoder.as_ref().map(|e| e.leaf.alias()));
            let encoded = encoder
                .as_ref()
                .zip(hidden_in.as_ref())
                .map(|(e, hidden)| Encoded {
                    hidden,
                    mask: &e.mask,
                    grid: Some(&e.grid),
                });
            let out = {
                let _autocast = autocast
                    .map(|(device, kind)| Autocast::enter(device, kind))
                    .transpose()?;
                replay_seeds(&record, || {
                    block.forward(
                        &x.alias(),
                        &bias_in,
                        Some(&grid),
                        encoded,
                        None,
                        Pass::Train,
                    )
                })?
            };
            out.f_mul(&g)?.f_sum(Kind::Float)?.f_backward()?;
            if !input_grad {
                // Nothing before this block trains: the blocks before need no recompute.
                break;
            }
            g = x.grad();
            if inputs.is_empty() {
                first_grad = Some(g.shallow_clone());
            }
        }
        let mut pairs = Vec::with_capacity(3);
        if let Some(g) = first_grad {
            pairs.push((first, g));
        }
        pairs.push((bias, bias_leaf.grad()));
        if let Some(e) = encoder {
            pairs.push((e.graph, e.leaf.grad()));
        }
        backprop_into(pairs)
    }
}

/// A checkpointed training pass of [`T5ForConditionalGeneration::forward_packed_targets`]: what
/// [`super::TargetLogits::backward`] needs to finish the backward pass.
pub(super) struct Recompute<'m> {
    model: &'m T5ForConditionalGeneration,
    encoder: StackTape,
    decoder: StackTape,
    /// The lower precision autocast ran the first pass in.
    autocast: Option<Kind>,
    guard: MustRecompute,
}

impl std::fmt::Debug for Recompute<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recompute")
            .field("encoder_blocks", &self.encoder.inputs.len())
            .field("decoder_blocks", &self.decoder.inputs.len())
            .field("autocast", &self.autocast)
            .finish()
    }
}

/// Catches, in debug builds, a checkpointed pass whose loss was backpropagated by hand instead
/// of through [`super::TargetLogits::backward`]: the gradient then stops at the stacks' output
/// leaves, and the blocks' parameters silently get none.
struct MustRecompute {
    outputs: [Tensor; 2],
    done: bool,
}

impl Drop for MustRecompute {
    fn drop(&mut self) {
        if !self.done && !std::thread::panicking() {
            debug_assert!(
                self.outputs.iter().all(|t| !t.grad().defined()),
                "a checkpointed pass was backpropagated without TargetLogits::backward: its \
                 blocks got no gradient"
            );
        }
    }
}

impl<'m> Recompute<'m> {
    /// The checkpointed training pass of `model` over the encoder's and decoder's inputs, with
    /// the cross-attention's mask: the decoder's final states on its tokens (as the plain
    /// pass's) and the recompute.
    pub(super) fn forward(
        model: &'m T5ForConditionalGeneration,
        enc: &StackInput,
        dec: &StackInput,
        cross_mask: &Tensor,
    ) -> (Tensor, Self) {
        // A device type without autocast cannot be in an autocast region.
        let autocast = Autocast::current(model.device()).unwrap_or(None);
        let (h_enc, encoder) = model.encoder.forward_checkpointed(
            enc,
            None,
            &model.trainable_blocks("encoder", model.encoder.blocks.len()),
        );
        let (states, decoder) = model.decoder.forward_checkpointed(
            dec,
            Some((&h_enc, cross_mask, &enc.grid)),
            &model.trainable_blocks("decoder", model.decoder.blocks.len()),
        );
        let guard = MustRecompute {
            outputs: [
                encoder.output.shallow_clone(),
                decoder.output.shallow_clone(),
            ],
            done: false,
        };
        let recompute = Recompute {
            model,
            encoder,
            decoder,
            autocast,
            guard,
        };
        (states, recompute)
    }

    /// Finishes the backward pass once the loss's own backward has reached the stacks' output
    /// leaves: the decoder, then the encoder, whose output the decoder's recompute gave its
    /// gradient.
    pub(super) fn run(self) -> Result<()> {
        let Recompute {
            model,
            encoder,
            decoder,
            autocast,
            mut guard,
        } = self;
        guard.done = true;
        let device = model.device();
        if autocast.is_some() && Autocast::is_enabled(device)? {
            return Err(Error::ActivationCheckpointing(
                "TargetLogits::backward ran inside an autocast region: run the backward pass \
                 after the forward pass's region has ended, as torch.autocast asks"
                    .into(),
            ));
        }
        let autocast = autocast.map(|kind| (device, kind));
        decoder.backward(&model.decoder, autocast)?;
        encoder.backward(&model.encoder, autocast)
    }
}

impl T5ForConditionalGeneration {
    /// Whether each of the `n` blocks of `stack` (`encoder` or `decoder`) has a parameter that
    /// trains (`requires_grad`), by checkpoint key: any parameter under `{stack}.block.{i}.`,
    /// a LoRA adapter's included (its keys are its module's, as in PEFT's file).
    fn trainable_blocks(&self, stack: &str, n: usize) -> Vec<bool> {
        let mut trainable = vec![false; n];
        let adapter = self.adapter_parameters();
        for (name, tensor) in self.params.iter().chain(adapter.iter()) {
            let index = name
                .strip_prefix(stack)
                .and_then(|rest| rest.strip_prefix(".block."))
                .and_then(|rest| rest.split('.').next())
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(slot) = index.and_then(|i| trainable.get_mut(i)) {
                *slot |= tensor.requires_grad();
            }
        }
        trainable
    }
}
