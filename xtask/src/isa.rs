//! Caps on libtorch's CPU kernels: which instruction set a run's kernels may use, as the
//! environment variables libtorch and its libraries read at start-up. One definition for every
//! task that caps them (`cargo xtask ci`'s second numerics pass, `cargo xtask bench --isa`).
//!
//! libtorch picks its CPU kernels at run time (see flan-model's `cpu_kernels` and
//! docs/numerics.md): ATen's vectorised loops by its CPU capability (`ATEN_CPU_CAPABILITY`),
//! oneDNN's primitives by its ISA (`ONEDNN_MAX_CPU_ISA`), MKL's fp32 products by its own dispatch
//! (`MKL_ENABLE_INSTRUCTIONS`). Each cap only lowers a choice: a cap above what the CPU has
//! changes nothing, which is why a capped run on a CPU without the ISA is refused rather than
//! reported as if it had run there.

use anyhow::{bail, Result};

/// The environment variables that cap libtorch's kernel choice (as flan-model's `KERNEL_LIMITS`).
pub const CAP_VARIABLES: [&str; 3] = [
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
];

/// The instruction set libtorch's CPU kernels are capped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Isa {
    /// No cap: the kernels libtorch picks for this CPU.
    #[default]
    Native,
    /// The kernels of an AVX2-only CPU: ATen's AVX2 loops, oneDNN at AVX2 (so bf16 products go
    /// to ATen's own GEMM), MKL's AVX2 code.
    Avx2,
    /// The kernels of an AVX-512 CPU without VNNI, BF16 or AMX (Skylake-SP class): ATen's
    /// AVX512 loops, oneDNN at AVX-512 core, MKL's AVX-512 code.
    Avx512,
}

impl Isa {
    /// The name `--isa` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Native => "native",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The environment that caps libtorch's kernels to this ISA, in [`CAP_VARIABLES`] order
    /// (none for `Native`). The values are each library's own spelling.
    pub fn kernel_caps(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Isa::Native => &[],
            Isa::Avx2 => &[
                ("ATEN_CPU_CAPABILITY", "avx2"),
                ("ONEDNN_MAX_CPU_ISA", "AVX2"),
                ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
            ],
            Isa::Avx512 => &[
                ("ATEN_CPU_CAPABILITY", "avx512"),
                ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"),
                ("MKL_ENABLE_INSTRUCTIONS", "AVX512"),
            ],
        }
    }

    /// What `torch.backends.cpu.get_cpu_capability()` answers under this cap (`None` for
    /// `Native`: whatever the CPU supports).
    pub fn expected_capability(self) -> Option<&'static str> {
        match self {
            Isa::Native => None,
            Isa::Avx2 => Some("AVX2"),
            Isa::Avx512 => Some("AVX512"),
        }
    }

    /// The CPU features (`/proc/cpuinfo` spelling) that ATen requires before it runs kernels of
    /// this capability: AVX2 with FMA3, and for AVX512 also AVX-512 F, BW, VL and DQ (which is
    /// oneDNN's AVX-512 core as well). Without them a cap would silently fall back lower.
    pub fn required_flags(self) -> &'static [&'static str] {
        match self {
            Isa::Native => &[],
            Isa::Avx2 => &["avx2", "fma"],
            Isa::Avx512 => &["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"],
        }
    }

    /// Refuses an ISA the CPU lacks, naming the missing features; `flags` are the CPU's
    /// `/proc/cpuinfo` flags.
    pub fn check_supported(self, cpu: &str, flags: &[String]) -> Result<()> {
        let missing: Vec<&str> = self
            .required_flags()
            .iter()
            .copied()
            .filter(|f| !flags.iter().any(|g| g == f))
            .collect();
        if !missing.is_empty() {
            bail!(
                "--isa {} needs a CPU with {}, but this one ({cpu}) lacks {}: the caps would \
                 fall back to lower kernels and the results would not be {}'s; pick a lower \
                 --isa (or native)",
                self.name(),
                self.required_flags().join(" "),
                missing.join(" "),
                self.name().to_uppercase(),
            );
        }
        Ok(())
    }

    /// The `KEY=VALUE` form of the caps, for messages.
    pub fn caps_display(self) -> String {
        self.kernel_caps()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The caps a child process runs under: `isa`'s, over any that `inherited` (the environment)
/// sets. In [`CAP_VARIABLES`] order, only those that are set.
pub fn effective_caps(
    isa: Isa,
    inherited: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    CAP_VARIABLES
        .iter()
        .filter_map(|&key| {
            let ours = isa
                .kernel_caps()
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string());
            ours.or_else(|| inherited(key).filter(|v| !v.is_empty()))
                .map(|v| (key, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn each_isa_sets_every_cap_variable_or_none() {
        assert!(Isa::Native.kernel_caps().is_empty());
        assert_eq!(
            Isa::Avx2.kernel_caps(),
            [
                ("ATEN_CPU_CAPABILITY", "avx2"),
                ("ONEDNN_MAX_CPU_ISA", "AVX2"),
                ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
            ]
        );
        assert_eq!(
            Isa::Avx512.caps_display(),
            "ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE MKL_ENABLE_INSTRUCTIONS=AVX512"
        );
        for isa in [Isa::Avx2, Isa::Avx512] {
            let keys: Vec<&str> = isa.kernel_caps().iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, CAP_VARIABLES, "{isa:?}");
            // ATen's own spelling of the capability is the lowercase of what torch reports.
            assert_eq!(
                isa.kernel_caps()[0].1.to_uppercase(),
                isa.expected_capability().unwrap()
            );
            assert_eq!(isa.kernel_caps()[0].1, isa.name());
        }
        assert_eq!(Isa::Native.expected_capability(), None);
    }

    #[test]
    fn an_isa_the_cpu_lacks_is_refused_with_what_is_missing() {
        let haswell = flags("fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2");
        Isa::Native.check_supported("x", &[]).unwrap();
        Isa::Avx2.check_supported("Haswell", &haswell).unwrap();
        let err = Isa::Avx512
            .check_supported("Haswell", &haswell)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--isa avx512"), "{err}");
        assert!(
            err.contains("lacks avx512f avx512bw avx512vl avx512dq"),
            "{err}"
        );
        assert!(err.contains("(Haswell)"), "{err}");
        // AVX2 without FMA (VIA/Zhaoxin parts exist) does not get ATen's AVX2 kernels.
        let err = Isa::Avx2
            .check_supported("no fma", &flags("avx avx2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks fma"), "{err}");
        // Knights Landing has AVX-512 F and CD but not BW, VL or DQ.
        let err = Isa::Avx512
            .check_supported("knl", &flags("avx2 fma avx512f avx512cd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks avx512bw avx512vl avx512dq"), "{err}");
        Isa::Avx512
            .check_supported(
                "zen4",
                &flags("avx2 fma avx512f avx512dq avx512bw avx512vl"),
            )
            .unwrap();
    }

    #[test]
    fn effective_caps_are_the_isas_over_the_inherited_ones() {
        let inherited = |k: &str| match k {
            "ATEN_CPU_CAPABILITY" => Some("default".to_string()),
            "ONEDNN_MAX_CPU_ISA" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            effective_caps(Isa::Native, inherited),
            [("ATEN_CPU_CAPABILITY", "default".to_string())]
        );
        assert_eq!(effective_caps(Isa::Native, |_| None), []);
        let avx2 = effective_caps(Isa::Avx2, inherited);
        assert_eq!(
            avx2,
            Isa::Avx2
                .kernel_caps()
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect::<Vec<_>>()
        );
    }
}
