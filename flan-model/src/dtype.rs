//! The dtype a user names for weights and compute, parsed once for every entry point (`--dtype` of
//! `flan generate` / `score`, `dtype` of a training config), so that they accept the same names.
//! Which dtypes a use allows is the user's check (training has no f16: T5 v1.1 and Flan-T5
//! overflow it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Kind;

use crate::{Error, Result};

/// A floating-point dtype. Its text form is `f32`, `bf16` or `f16`; PyTorch's names
/// (`float32`, `bfloat16`, `float16`) and `fp32` / `fp16` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dtype {
    /// 32-bit IEEE float.
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

/// The names [`Dtype`] accepts, for messages.
pub const ACCEPTED: &str = "f32, bf16 or f16 (also float32, bfloat16, float16, fp32, fp16)";

impl Dtype {
    /// libtorch's kind.
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::Bf16 => Kind::BFloat16,
            Dtype::F16 => Kind::Half,
        }
    }
}

impl FromStr for Dtype {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "f32" | "fp32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "fp16" | "float16" => Ok(Dtype::F16),
            other => Err(Error::UnknownDtype {
                given: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        })
    }
}

/// Written as its text form, so that a config file says `dtype = "bf16"`.
impl Serialize for Dtype {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dtype {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_one_dtype_and_print_as_the_short_form() {
        for (names, dtype) in [
            (&["f32", "fp32", "float32"][..], Dtype::F32),
            (&["bf16", "bfloat16"][..], Dtype::Bf16),
            (&["f16", "fp16", "float16"][..], Dtype::F16),
        ] {
            for name in names {
                assert_eq!(name.parse::<Dtype>().unwrap(), dtype);
            }
            assert_eq!(dtype.to_string().parse::<Dtype>().unwrap(), dtype);
        }
        let err = "half".parse::<Dtype>().unwrap_err().to_string();
        assert!(err.contains("`half`") && err.contains(ACCEPTED), "{err}");
        assert_eq!(Dtype::Bf16.kind(), Kind::BFloat16);
    }
}
