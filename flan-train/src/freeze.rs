//! Frozen parameters (`train.freeze`): globs over the model's parameter names (the Hugging Face
//! checkpoint keys, `encoder.block.0.layer.0.SelfAttention.q.weight`) that pick the parameters
//! which do not train.
//!
//! The globs follow `fnmatch` (Python's, which PEFT and many training scripts use on module
//! names): a pattern matches the whole name, `*` any run of characters *including dots* (so
//! `encoder.*` is the whole encoder and `*.SelfAttention.*` every self-attention weight), `?`
//! one character; everything else is literal (no `[...]` classes: parameter names have no use
//! for them, and a `[` stays a literal character).
//!
//! Frozen parameters are split off before the optimiser sees the parameters and their
//! `requires_grad` is cleared, so autograd computes no gradient for them and the optimiser
//! keeps no state for them. A tied output head is the `shared.weight` tensor itself (there is
//! no `lm_head.weight` parameter, as in transformers' `named_parameters()`): freezing
//! `shared.weight` freezes the embedding and the head together.

use serde::{Deserialize, Serialize};

use crate::optim::NamedParam;
use crate::{Error, Result};

/// Whether `name` matches the fnmatch-style `pattern` as a whole (see the module docs).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point (the last `*`): linear in practice, and never
    // exponential, whatever the pattern.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// How many parameters (tensors and scalars) train and how many are frozen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterCounts {
    /// Scalars in the trainable tensors.
    pub trainable: u64,
    /// Scalars in the frozen tensors.
    pub frozen: u64,
    /// Trainable tensors.
    pub trainable_tensors: u64,
    /// Frozen tensors.
    pub frozen_tensors: u64,
}

/// The model's parameters split by `train.freeze`.
#[derive(Debug)]
pub struct Frozen {
    /// What the optimiser updates (sorted by name, as the model gave them).
    pub trainable: Vec<NamedParam>,
    /// What stays as loaded, with `requires_grad` cleared.
    pub frozen: Vec<NamedParam>,
}

impl ParameterCounts {
    /// The counts of a split, as the run summary reports them.
    pub fn of(trainable: &[NamedParam], frozen: &[NamedParam]) -> ParameterCounts {
        let numel = |ps: &[NamedParam]| ps.iter().map(|(_, t)| t.numel() as u64).sum();
        ParameterCounts {
            trainable: numel(trainable),
            frozen: numel(frozen),
            trainable_tensors: trainable.len() as u64,
            frozen_tensors: frozen.len() as u64,
        }
    }
}

/// How many parameter names an error lists before it only counts the rest.
const NAMES_SHOWN: usize = 40;

/// Splits `params` by `globs`, clearing `requires_grad` of the frozen ones. A glob that matches
/// no parameter is a config error listing the names there are; so is freezing everything.
pub fn freeze(params: Vec<NamedParam>, globs: &[String]) -> Result<Frozen> {
    if let Some(unmatched) = globs
        .iter()
        .find(|g| !params.iter().any(|(n, _)| glob_matches(g, n)))
    {
        return Err(Error::Config {
            message: unmatched_message(unmatched, &params),
        });
    }
    let (frozen, trainable): (Vec<NamedParam>, Vec<NamedParam>) = params
        .into_iter()
        .partition(|(n, _)| globs.iter().any(|g| glob_matches(g, n)));
    if trainable.is_empty() {
        return Err(Error::Config {
            message: format!(
                "train.freeze {globs:?} freezes all {} parameters of the model: nothing would train",
                frozen.len()
            ),
        });
    }
    for (_, t) in &frozen {
        // A shallow clone shares the variable: its flag is the model's.
        let _ = t.shallow_clone().set_requires_grad(false);
    }
    Ok(Frozen { trainable, frozen })
}

fn unmatched_message(glob: &str, params: &[NamedParam]) -> String {
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let shown = names.len().min(NAMES_SHOWN);
    let more = match names.len() - shown {
        0 => String::new(),
        n => format!(", and {n} more"),
    };
    // transformers' aliases of the shared embedding are not parameters of their own here, as
    // they are not in transformers' `named_parameters()` either.
    let tied = [
        "lm_head.weight",
        "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight",
    ]
    .iter()
    .any(|alias| glob_matches(glob, alias) && !names.contains(alias))
        && names.contains(&"shared.weight");
    let hint = if tied {
        "; the output head and the embedding tables of this model are the one tensor \
         `shared.weight` (tied), which freezes them all"
    } else {
        ""
    };
    format!(
        "train.freeze: `{glob}` matches none of the model's {} parameters (`*` matches any run of \
         characters including dots, `?` one character; the whole name must match){hint}. The \
         parameters are: {}{more}",
        names.len(),
        names[..shown].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::{Kind, Tensor};

    #[test]
    fn globs_match_whole_names_and_stars_cross_dots() {
        let q = "encoder.block.0.layer.0.SelfAttention.q.weight";
        for (pattern, expected) in [
            ("encoder.*", true),
            ("*.SelfAttention.*", true),
            ("*q.weight", true),
            ("encoder.block.?.layer.0.SelfAttention.q.weight", true),
            ("encoder", false),
            ("decoder.*", false),
            ("*.k.weight", false),
            ("encoder.block.1?.*", false),
            (q, true),
            ("", false),
            ("*", true),
            ("**", true),
        ] {
            assert_eq!(glob_matches(pattern, q), expected, "{pattern}");
        }
        assert!(glob_matches("", ""));
        assert!(glob_matches("a*b*c", "a.x.b.y.b.c"));
        assert!(!glob_matches("a*b*c", "a.x.b.y.b.cd"));
    }

    /// The reference: fnmatch's `*` and `?` as a regex-free recursive definition.
    fn reference(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, _) => n.is_empty(),
            (Some('*'), _) => reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..])),
            (Some('?'), Some(_)) => reference(&p[1..], &n[1..]),
            (Some(c), Some(d)) if c == d => reference(&p[1..], &n[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_the_recursive_definition(
            pattern in "[ab.*?]{0,8}",
            name in "[ab.]{0,10}",
        ) {
            let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
            prop_assert_eq!(glob_matches(&pattern, &name), reference(&p, &n));
        }

        #[test]
        fn a_name_matches_itself_and_star_suffixes_of_its_prefixes(name in "[a-z0-9._]{1,20}", cut in 0usize..20) {
            prop_assert!(glob_matches(&name, &name));
            let cut = cut.min(name.len());
            let pattern = format!("{}*", &name[..cut]);
            prop_assert!(glob_matches(&pattern, &name));
        }
    }

    fn params(names: &[&str]) -> Vec<NamedParam> {
        names
            .iter()
            .map(|n| {
                let t =
                    Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
                (n.to_string(), t)
            })
            .collect()
    }

    #[test]
    fn freezing_splits_and_clears_requires_grad() {
        let ps = params(&["decoder.a.weight", "encoder.a.weight", "shared.weight"]);
        let split = freeze(ps, &["encoder.*".into(), "shared.weight".into()]).unwrap();
        let names = |v: &[NamedParam]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&split.trainable), ["decoder.a.weight"]);
        assert_eq!(names(&split.frozen), ["encoder.a.weight", "shared.weight"]);
        assert!(split.frozen.iter().all(|(_, t)| !t.requires_grad()));
        assert!(split.trainable[0].1.requires_grad());
        assert_eq!(
            ParameterCounts::of(&split.trainable, &split.frozen),
            ParameterCounts {
                trainable: 6,
                frozen: 12,
                trainable_tensors: 1,
                frozen_tensors: 2
            }
        );
    }

    #[test]
    fn unmatched_globs_and_freezing_everything_are_config_errors() {
        let ps = params(&["decoder.a.weight", "shared.weight"]);
        let err = freeze(ps, &["lm_head.*".into()]).unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("`lm_head.*` matches none")
                && msg.contains("decoder.a.weight, shared.weight")
                && msg.contains("tied"),
            "{msg}"
        );
        let many: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let msg = freeze(params(&refs), &["q*".into()])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("p39") && !msg.contains("p40") && msg.contains("and 10 more"),
            "{msg}"
        );
        assert!(!msg.contains("tied"), "{msg}");
        let err = freeze(params(&["a", "b"]), &["*".into()]).unwrap_err();
        assert!(
            matches!(err, Error::Config { .. }) && err.to_string().contains("nothing would train")
        );
    }
}
