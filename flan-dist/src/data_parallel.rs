//! Data parallelism over a [`ProcessGroup`]: the same model on every rank, started from rank 0's
//! parameters, and gradients averaged across ranks before each optimiser step, so every rank
//! takes the same step (PyTorch DDP's contract, without its overlap of communication with the
//! backward pass).
//!
//! Tensors travel in flat buckets (one collective per bucket instead of one per parameter),
//! grouped by dtype, in the order of the parameters' names, so every rank builds identical
//! buckets.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::group::{ProcessGroup, ReduceOp};

/// Default bucket size in elements: 25 MiB of f32, DDP's default `bucket_cap_mb`.
pub const DEFAULT_BUCKET_ELEMENTS: usize = 25 * 1024 * 1024 / 4;

/// Keeps a VarStore in step across the ranks of a group.
pub struct DataParallel<'g> {
    group: &'g ProcessGroup,
    bucket_elements: usize,
}

impl<'g> DataParallel<'g> {
    /// Data parallelism over `group` with buckets of [`DEFAULT_BUCKET_ELEMENTS`].
    pub fn new(group: &'g ProcessGroup) -> Self {
        DataParallel {
            group,
            bucket_elements: DEFAULT_BUCKET_ELEMENTS,
        }
    }

    /// The same with buckets of at most `elements` elements (a tensor larger than that gets a
    /// bucket of its own).
    pub fn with_bucket_elements(mut self, elements: usize) -> Result<Self> {
        if elements == 0 {
            return Err(Error::InvalidArgument(
                "bucket size must be at least 1 element".into(),
            ));
        }
        self.bucket_elements = elements;
        Ok(self)
    }

    /// The group this helper communicates over.
    pub fn group(&self) -> &ProcessGroup {
        self.group
    }

    /// Overwrites every variable of `vs` (trainable or not) with rank 0's value. Call once after
    /// building (or loading) the model, before the first step.
    pub fn broadcast_parameters(&self, vs: &VarStore) -> Result<()> {
        self.broadcast_tensors(&sorted_variables(vs))
    }

    /// Replaces each trainable variable's gradient by its mean over the ranks. Call after
    /// `backward` and before the optimiser step, on every rank.
    ///
    /// A parameter that got no gradient on any rank is left alone. One that got a gradient on
    /// some ranks but not on others is an error (the ranks would otherwise step differently):
    /// every rank must use every trainable parameter, as with DDP's default.
    pub fn all_reduce_gradients(&self, vs: &VarStore) -> Result<()> {
        let named: Vec<(String, Tensor)> = sorted_variables(vs)
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        // Which gradients exist, agreed across ranks in one collective: the minimum of
        // [mask, 1 - mask] gives the lowest mask and 1 - the highest.
        let n = named.len();
        if n > 0 {
            let mut both = vec![0f32; 2 * n];
            for (i, (_, t)) in named.iter().enumerate() {
                let defined = f32::from(u8::from(t.grad().defined()));
                both[i] = defined;
                both[n + i] = 1.0 - defined;
            }
            let mut agreed = Tensor::from_slice(&both);
            self.group.all_reduce(&mut agreed, ReduceOp::Min)?;
            let agreed: Vec<f32> = Vec::try_from(&agreed)?;
            // Defined everywhere: lowest = 1, 1 - highest = 0. Nowhere: 0 and 1. Else: 0 and 0.
            if let Some(i) = (0..n).find(|&i| agreed[i] + agreed[n + i] < 0.5) {
                return Err(Error::InvalidArgument(format!(
                    "parameter {} has a gradient on some ranks but not on others; every rank \
                     must use every trainable parameter in each step",
                    named[i].0
                )));
            }
        }
        let grads: Vec<(&str, Tensor)> = named
            .iter()
            .filter_map(|(n, t)| {
                let g = t.grad();
                g.defined().then_some((n.as_str(), g))
            })
            .collect();
        for bucket in self.buckets(&grads) {
            let mut flat = tch::no_grad(|| flatten(&bucket));
            self.group.all_reduce(&mut flat, ReduceOp::Avg)?;
            tch::no_grad(|| unflatten_into(&flat, &bucket));
        }
        Ok(())
    }

    /// Overwrites each of `tensors` with rank 0's value (a model whose parameters are not in a
    /// VarStore, e.g. a trainer's parameter list). Every rank must pass the same names in the
    /// same order.
    pub fn broadcast_tensors(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        let named: Vec<(&str, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t.shallow_clone()))
            .collect();
        for bucket in self.buckets(&named) {
            let mut flat = tch::no_grad(|| flatten(&bucket));
            self.group.broadcast(&mut flat, 0)?;
            tch::no_grad(|| unflatten_into(&flat, &bucket));
        }
        Ok(())
    }

    /// Reduces the gradients of `params` across ranks with `op` (`Sum` when each rank already
    /// divided its loss by the global normaliser, `Avg` for per-rank means). Every rank must
    /// pass the same names in the same order; a parameter without a gradient on this rank is
    /// an error, since the ranks would step differently.
    pub fn reduce_gradients(&self, params: &[(String, Tensor)], op: ReduceOp) -> Result<()> {
        let mut grads: Vec<(&str, Tensor)> = Vec::with_capacity(params.len());
        for (n, t) in params {
            let g = t.grad();
            if !g.defined() {
                return Err(Error::InvalidArgument(format!(
                    "parameter {n} has no gradient; every rank must use every trainable \
                     parameter in each step"
                )));
            }
            grads.push((n.as_str(), g));
        }
        for bucket in self.buckets(&grads) {
            let mut flat = tch::no_grad(|| flatten(&bucket));
            self.group.all_reduce(&mut flat, op)?;
            tch::no_grad(|| unflatten_into(&flat, &bucket));
        }
        Ok(())
    }

    /// Splits tensors into buckets of one dtype and at most `bucket_elements` elements, keeping
    /// the given order inside each dtype.
    fn buckets<'a>(&self, tensors: &'a [(&'a str, Tensor)]) -> Vec<Vec<&'a Tensor>> {
        let mut by_kind: Vec<(Kind, Vec<&Tensor>)> = Vec::new();
        for (_, t) in tensors {
            let kind = t.kind();
            match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, list)) => list.push(t),
                None => by_kind.push((kind, vec![t])),
            }
        }
        let mut buckets = Vec::new();
        for (_, list) in by_kind {
            let mut current: Vec<&Tensor> = Vec::new();
            let mut size = 0usize;
            for t in list {
                let n = t.numel();
                if !current.is_empty() && size + n > self.bucket_elements {
                    buckets.push(std::mem::take(&mut current));
                    size = 0;
                }
                current.push(t);
                size += n;
            }
            if !current.is_empty() {
                buckets.push(current);
            }
        }
        buckets
    }
}

/// Variables by name: the same order on every rank whatever the HashMap order.
fn sorted_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    vs.variables()
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

fn flatten(bucket: &[&Tensor]) -> Tensor {
    let parts: Vec<Tensor> = bucket.iter().map(|t| t.detach().reshape([-1])).collect();
    Tensor::cat(&parts, 0).contiguous()
}

fn unflatten_into(flat: &Tensor, bucket: &[&Tensor]) {
    let mut offset = 0i64;
    for t in bucket {
        let n = t.numel() as i64;
        let mut dst = t.shallow_clone();
        dst.copy_(&flat.narrow(0, offset, n).view_as(t));
        offset += n;
    }
}
