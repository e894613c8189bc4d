//! Decoding-step products of layers that read the same input (self-attention's q, k and v; a
//! gated FFN's wi_0 and wi_1), computed as one product over their weights stacked along the
//! outputs, where that gives each layer's own product bitwise.
//!
//! Why: at batch 1 a decoding step of the bench's small shape in bf16 streams about 77 MB of
//! weights (44 MB in the decoder's 72 products, 33 MB in the head) from memory, since they do not
//! fit in cache together, and each small product pays a fixed cost besides. On the AMD EPYC (2
//! threads, oneDNN over reordered weights), the decoder's 72 products took 3.5 ms per step one by
//! one and 2.8–3.0 ms as 48 products with q, k, v and wi_0, wi_1 stacked; the head alone
//! streams at about 22 GB/s there, the 384×512 projections at about 14.
//!
//! Numerics: each output of a product is a dot product of the input row with one row of the
//! weight; stacking rows does not have to change the order in which a kernel sums it, but a
//! kernel may pick its blocking by the output width. So, per row count, the stacked plain product
//! of a probe input (the one [`crate::prepacked_linear`]'s plans use) is compared with the
//! layers' own plain products, and stacking is used only where they are equal bitwise. The
//! stacked layer then plans its kernels as any other layer does, each checked against the
//! stacked plain product; by the check here, that is each layer's own product. The AMD EPYC and
//! libtorch 2.13 passed the check at every row count tried, in bf16.
//!
//! The stack is made the first time a decoding step needs it and kept until a member's weight
//! changes (the same storage-and-version test as the plans), an adapter is attached to a member
//! (then each member is multiplied on its own, as its adapter needs), or planning is switched off.
//! It costs a copy of the members' weights, plus the stacked layer's packed copies (which the
//! members then do not make), and is made only where that copy leaves the call its memory
//! ([`crate::step_copies`]).

use std::cell::{Cell, RefCell};

use tch::Tensor;

use crate::prepacked_linear::{
    probe_input, step_rows, PrepackedLinear, PrepackedStats, MAX_ROW_COUNTS,
};
use crate::step_copies::{self, ShortOfMemory, WeightCopy};
use crate::t5::Pass;

/// The decoding-step stack of `N` layers that read the same input (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct StackedLinears {
    stack: RefCell<Option<Stack>>,
    /// Whether the stack was not made for want of memory (see [`crate::step_copies`]); not
    /// tried again until [`Self::clear`].
    short_of_memory: Cell<bool>,
}

/// Layers' weights stacked along the outputs, and the row counts at which that was checked.
#[derive(Debug)]
struct Stack {
    /// The stacked weight as a layer of its own, with its own step plans.
    linear: PrepackedLinear,
    /// The stacked weight, counted as a step copy.
    _copy: WeightCopy,
    /// Each member's output width, in order.
    widths: Vec<i64>,
    /// For each member, an alias of its weight's storage when stacked (kept alive, so the
    /// address cannot be reused) and its version counter then.
    sources: Vec<(Tensor, i64)>,
    /// Row counts checked, and whether the stacked plain product equalled the members' there.
    checked: Vec<(i64, bool)>,
}

impl Stack {
    /// The members' weights stacked, in inference mode; None if they cannot be (different
    /// input widths or dtypes), ShortOfMemory if the copy would not fit.
    fn new(members: &[&PrepackedLinear]) -> Result<Option<Stack>, ShortOfMemory> {
        let weights: Vec<&Tensor> = members.iter().map(|m| &m.weight).collect();
        let name = members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let Some(widths) = weights
            .iter()
            .map(|w| w.size2().ok().map(|(out, _)| out))
            .collect::<Option<Vec<i64>>>()
        else {
            return Ok(None);
        };
        let Some(sources) = weights
            .iter()
            .map(|w| Some((w.detach(), w.f_internal_version().ok()?)))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let bytes = weights.iter().map(|w| step_copies::copy_bytes(w)).sum();
        let Some(copy) = step_copies::make_copy(bytes, || Tensor::f_cat(&weights, 0).ok())? else {
            return Ok(None);
        };
        Ok(Some(Stack {
            linear: PrepackedLinear::of_private_weight(name, copy.tensor.shallow_clone()),
            _copy: copy,
            widths,
            sources,
            checked: Vec::new(),
        }))
    }

    /// Whether `members` are still the layers stacked, with unchanged weights.
    fn stacks(&self, members: &[&PrepackedLinear]) -> bool {
        self.sources.len() == members.len()
            && self
                .sources
                .iter()
                .zip(members)
                .all(|((alias, version), m)| {
                    alias.data_ptr() == m.weight.data_ptr()
                        && m.weight.f_internal_version().ok() == Some(*version)
                })
    }

    /// Whether the stacked plain product of a `[rows, inner]` probe equals the members' plain
    /// products of it, side by side, bitwise (checked once per row count).
    fn gives_members_products(
        &mut self,
        members: &[&PrepackedLinear],
        rows: i64,
        inner: i64,
    ) -> bool {
        if let Some(&(_, equal)) = self.checked.iter().find(|(r, _)| *r == rows) {
            return equal;
        }
        let probe = probe_input(rows, inner, self.linear.weight.kind());
        let apart: Vec<Tensor> = members.iter().map(|m| m.forward(&probe)).collect();
        let equal =
            Tensor::f_cat(&apart, -1).is_ok_and(|apart| self.linear.forward(&probe).equal(&apart));
        if self.checked.len() >= 2 * MAX_ROW_COUNTS {
            self.checked.remove(0);
        }
        self.checked.push((rows, equal));
        equal
    }
}

impl StackedLinears {
    /// Each member's product of `x` (as [`PrepackedLinear::apply`] gives it): in a decoding step
    /// one product over the stacked weights where that was checked to give each member's own
    /// product bitwise (see the module docs), else each member's.
    pub(crate) fn apply<const N: usize>(
        &self,
        members: [&PrepackedLinear; N],
        x: &Tensor,
        pass: Pass,
    ) -> [Tensor; N] {
        if pass == Pass::DecodeStep {
            if let Some(outs) = self.stacked_step(&members, x) {
                if let Ok(outs) = <[Tensor; N]>::try_from(outs) {
                    return outs;
                }
            }
        }
        members.map(|m| m.apply(x, pass))
    }

    /// The members' products through the stack, or None where it does not apply.
    fn stacked_step(&self, members: &[&PrepackedLinear], x: &Tensor) -> Option<Vec<Tensor>> {
        let kind = members.first()?.weight.kind();
        let (rows, inner) = step_rows(x, kind)?;
        if members
            .iter()
            .any(|m| m.weight.kind() != kind || m.lora.try_borrow().map_or(true, |l| l.is_some()))
        {
            return None;
        }
        let mut slot = self.stack.try_borrow_mut().ok()?;
        if !slot.as_ref().is_some_and(|s| s.stacks(members)) {
            if self.short_of_memory.get() {
                return None;
            }
            // The old stack's copy goes first, so that the new one has its room.
            *slot = None;
            *slot = Stack::new(members).unwrap_or_else(|ShortOfMemory| {
                self.short_of_memory.set(true);
                None
            });
        }
        let stack = slot.as_mut()?;
        if !stack.gives_members_products(members, rows, inner) {
            return None;
        }
        let out = stack.linear.forward_step(x);
        let outs = out.f_split_with_sizes(&stack.widths, -1).ok()?;
        // With more than one row, each member's output is a strided view; elementwise kernels
        // run over strided rows in another split than over a contiguous tensor (scalar tails
        // per row instead of one at the end), which can change the bits of a transcendental
        // such as the FFN's tanh. One row is one contiguous run either way.
        Some(if rows > 1 {
            outs.iter().map(Tensor::contiguous).collect()
        } else {
            outs
        })
    }

    /// Drops the stack (its copy of the weights and its plans), and forgets a want of memory.
    pub(crate) fn clear(&self) {
        if let Ok(mut slot) = self.stack.try_borrow_mut() {
            *slot = None;
        }
        self.short_of_memory.set(false);
    }

    /// Adds the stacked layer's plans to `stats`, each counted once per member (the members'
    /// products it computes).
    pub(crate) fn add_stats(&self, stats: &mut PrepackedStats) {
        stats.short_of_memory += usize::from(self.short_of_memory.get());
        let Ok(slot) = self.stack.try_borrow() else {
            return;
        };
        let Some(stack) = slot.as_ref() else {
            return;
        };
        let mut own = PrepackedStats::default();
        stack.linear.add_stats(&mut own);
        let n = stack.widths.len();
        stats.checked += n * own.checked;
        stats.in_use += n * own.in_use;
        stats.chunked += n * own.chunked;
        stats.fma += n * own.fma;
        stats.four_lanes += n * own.four_lanes;
        stats.bf16_dots += n * own.bf16_dots;
        stats.trying += n * own.trying;
        stats.stacked += n * own.checked;
        stats.short_of_memory += own.short_of_memory;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::LoraLinear;
    use crate::InferenceMode;
    use tch::Kind;

    /// A `[out, inner]` weight with full mantissas, different for each `seed`.
    fn weight(seed: i64, out: i64, inner: i64, kind: Kind) -> Tensor {
        let w = probe_input(out + seed, inner, Kind::Double).narrow(0, seed, out) * 0.2;
        w.to_kind(kind)
    }

    /// Three layers of output widths 64, 64 and 96 over a 64-wide input, as q, k, v.
    fn layers(kind: Kind) -> [PrepackedLinear; 3] {
        [(1, 64), (2, 64), (3, 96)].map(|(seed, out)| {
            PrepackedLinear::new(format!("l{seed}"), weight(seed, out, 64, kind))
        })
    }

    /// A decoding step's `[rows, 1, 64]` input.
    fn input(rows: i64, kind: Kind) -> Tensor {
        (probe_input(rows + 7, 64, Kind::Double).narrow(0, 7, rows) * 3.0)
            .to_kind(kind)
            .view([rows, 1, 64])
    }

    fn stats(stack: &StackedLinears) -> PrepackedStats {
        let mut stats = PrepackedStats::default();
        stack.add_stats(&mut stats);
        stats
    }

    /// Whatever the check decides on this CPU, each output is bitwise the layer's own plain
    /// product, and every layer is accounted for at each row count (stacked here, or planned on
    /// its own by its layer).
    #[test]
    fn stacked_steps_give_each_layers_own_product() {
        for kind in [Kind::Float, Kind::BFloat16] {
            let members = layers(kind);
            let stack = StackedLinears::default();
            for rows in [1, 3, 20] {
                let x = input(rows, kind);
                let outs = InferenceMode::run(|| {
                    let [a, b, c] = &members;
                    stack.apply([a, b, c], &x, Pass::DecodeStep)
                })
                .unwrap();
                for (out, m) in outs.iter().zip(&members) {
                    assert!(
                        out.equal(&m.forward(&x)),
                        "{kind:?}, {rows} rows, {}",
                        m.name
                    );
                }
            }
            let mut planned = stats(&stack);
            for m in &members {
                m.add_stats(&mut planned);
            }
            eprintln!("{kind:?}: {planned:?}");
            assert_eq!(
                planned.checked,
                3 * 2,
                "{kind:?}: three layers at the last two row counts"
            );
        }
    }

    /// A stack whose product differs from the layers' (as a kernel summing in another order
    /// would) is refused at the next row count checked, and the layers multiply on their own.
    #[test]
    fn a_stack_that_differs_is_refused() {
        let members = layers(Kind::Float);
        let stack = StackedLinears::default();
        let run = |rows| {
            InferenceMode::run(|| {
                let [a, b, c] = &members;
                stack.apply([a, b, c], &input(rows, Kind::Float), Pass::DecodeStep)
            })
            .unwrap()
        };
        let _ = run(1);
        {
            let slot = stack.stack.borrow();
            let stacked = &slot.as_ref().expect("a stack was made").linear.weight;
            let _ = InferenceMode::run(|| stacked.shallow_clone().g_mul_scalar_(1.0 + 1e-6));
        }
        let outs = run(5);
        for (out, m) in outs.iter().zip(&members) {
            assert!(out.equal(&m.forward(&input(5, Kind::Float))), "{}", m.name);
        }
        let checked = stack.stack.borrow().as_ref().unwrap().checked.clone();
        assert_eq!(checked.last(), Some(&(5, false)));
        assert_eq!(stats(&stack).stacked, 3 * usize::from(checked[0].1));
    }

    /// After a member's weight changes, the stack is made again from the new weights; with an
    /// adapter on a member, each layer multiplies on its own (the adapter's term included).
    #[test]
    fn a_changed_member_or_an_adapter_stops_the_old_stack() {
        let members = layers(Kind::Float);
        let stack = StackedLinears::default();
        let x = input(2, Kind::Float);
        let run = |pass| {
            InferenceMode::run(|| {
                let [a, b, c] = &members;
                stack.apply([a, b, c], &x, pass)
            })
            .unwrap()
        };
        let _ = run(Pass::DecodeStep);
        tch::no_grad(|| {
            let _ = members[1].weight.shallow_clone().g_add_scalar_(0.25);
        });
        let outs = run(Pass::DecodeStep);
        assert!(
            outs[1].equal(&members[1].forward(&x)),
            "after an in-place update"
        );

        *members[2].lora.borrow_mut() = Some(LoraLinear {
            a: weight(4, 2, 64, Kind::Float),
            b: weight(5, 96, 2, Kind::Float),
            scaling: 2.0,
            dropout: 0.0,
        });
        let outs = run(Pass::DecodeStep);
        let with_adapter = run(Pass::Eval);
        assert!(
            !with_adapter[2].equal(&members[2].forward(&x)),
            "the adapter adds a term"
        );
        for (step, eval) in outs.iter().zip(&with_adapter) {
            assert!(step.equal(eval));
        }
    }
}
