//! The machine a bench ran on, as results.json's `machine` record and results.md's "Measured on"
//! block: the CPU (`/proc/cpuinfo`: model, vendor, cores, the ISA flags that select libtorch's
//! kernels), the kernel caps the run was under, and what libtorch itself chose under them
//! (`xtask/bench/torch_probe.py`, run in the sides' environment). Ratios of two runs mean
//! something only where these agree, or differ in the one way being studied (e.g. `--isa`).

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::isa::Isa;

/// The `/proc/cpuinfo` flags that select among libtorch's CPU kernels (ATen's capability,
/// oneDNN's ISA, MKL's code path) or bound what a cap can reach, lowest first.
pub const ISA_FLAGS: [&str; 16] = [
    "sse4_2",
    "avx",
    "f16c",
    "fma",
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// `model name` of the first processor (the architecture's name where there is none).
    pub model: String,
    /// `vendor_id` of the first processor (empty where there is none).
    pub vendor: String,
    /// `cpu family`, `model` and `stepping` of the first processor, as "family F, model M,
    /// stepping S" (None where one is missing): under a hypervisor the model name may say only
    /// "AMD EPYC", and these numbers tell its generations apart (family 25 is Zen 3 and Zen 4).
    pub signature: Option<String>,
    /// Every flag of the first processor (`flags` on x86, `Features` on Arm).
    pub flags: Vec<String>,
    /// `processor` entries: the logical CPUs the kernel sees.
    pub logical_cpus: usize,
    /// Distinct (`physical id`, `core id`) pairs; `None` when a processor lacks them.
    pub physical_cores: Option<usize>,
}

impl CpuInfo {
    /// Parses the text of `/proc/cpuinfo`: `key<TAB>: value` lines, one block per processor.
    pub fn parse(text: &str) -> CpuInfo {
        let mut blocks: Vec<Vec<(&str, &str)>> = vec![Vec::new()];
        for line in text.lines() {
            if line.trim().is_empty() {
                if blocks.last().is_some_and(|b| !b.is_empty()) {
                    blocks.push(Vec::new());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                if let Some(block) = blocks.last_mut() {
                    block.push((key.trim(), value.trim()));
                }
            }
        }
        blocks.retain(|b| !b.is_empty());
        let first = |key: &str| {
            blocks
                .iter()
                .flatten()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        let processors: Vec<&Vec<(&str, &str)>> = blocks
            .iter()
            .filter(|b| b.iter().any(|(k, _)| *k == "processor"))
            .collect();
        let cores: Option<Vec<(&str, &str)>> = processors
            .iter()
            .map(|b| Some((value(b, "physical id")?, value(b, "core id")?)))
            .collect();
        let physical_cores = cores.filter(|c| !c.is_empty()).map(|mut c| {
            c.sort_unstable();
            c.dedup();
            c.len()
        });
        CpuInfo {
            model: first("model name")
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            vendor: first("vendor_id").unwrap_or_default(),
            signature: match (first("cpu family"), first("model"), first("stepping")) {
                (Some(f), Some(m), Some(s)) => Some(format!("family {f}, model {m}, stepping {s}")),
                _ => None,
            },
            flags: first("flags")
                .or_else(|| first("Features"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            logical_cpus: processors.len(),
            physical_cores,
        }
    }

    /// Reads and parses `/proc/cpuinfo` (Linux).
    pub fn read() -> Result<CpuInfo> {
        let text = std::fs::read_to_string("/proc/cpuinfo")
            .context("cannot read /proc/cpuinfo (the CPU's model and flags are read on Linux)")?;
        Ok(CpuInfo::parse(&text))
    }

    /// Whether the CPU has each of [`ISA_FLAGS`], in that order.
    pub fn isa_flags(&self) -> Vec<(&'static str, bool)> {
        ISA_FLAGS
            .iter()
            .map(|&f| (f, self.flags.iter().any(|g| g == f)))
            .collect()
    }
}

/// The value of `key` in one processor's block.
fn value<'a>(block: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    block.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// What libtorch chose in the sides' environment, as `torch_probe.py` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchKernels {
    pub version: String,
    /// The torch package's directory, whose `lib/` holds the libtorch it loaded.
    pub dir: String,
    /// ATen's CPU capability (`DEFAULT`, `AVX2`, `AVX512`, ...).
    pub cpu_capability: String,
    /// The ISA oneDNN reported (empty when it said none).
    pub onednn_isa: String,
    pub threads: i64,
    /// torch's build lines for MKL, oneDNN and OpenMP.
    pub mkl: String,
    pub onednn: String,
    pub openmp: String,
}

impl TorchKernels {
    /// Reads the probe's JSON line; every field is required.
    pub fn from_json(v: &Value) -> Result<TorchKernels> {
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("torch_probe.py's answer has no string `{key}`: {v}"))
        };
        Ok(TorchKernels {
            version: text("torch")?,
            dir: text("dir")?,
            cpu_capability: text("cpu_capability")?,
            onednn_isa: text("onednn_isa")?,
            threads: v.get("threads").and_then(Value::as_i64).with_context(|| {
                format!("torch_probe.py's answer has no integer `threads`: {v}")
            })?,
            mkl: text("mkl")?,
            onednn: text("onednn")?,
            openmp: text("openmp")?,
        })
    }
}

/// Everything results.json's `machine` record holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpu: CpuInfo,
    /// Cores this process may run on (`available_parallelism`: affinity and cgroup quotas).
    pub available_cores: usize,
    /// Threads each side runs with.
    pub threads: usize,
    pub isa: Isa,
    /// The kernel caps both sides ran under: `--isa`'s over any set in the environment.
    pub caps: Vec<(&'static str, String)>,
    pub torch: TorchKernels,
    /// Whether flan-bench's `LIBTORCH` is the library the probe's torch loaded.
    pub same_libtorch: bool,
}

impl Machine {
    pub fn to_json(&self) -> Value {
        let flags: Map<String, Value> = self
            .cpu
            .isa_flags()
            .into_iter()
            .map(|(f, has)| (f.to_string(), Value::Bool(has)))
            .collect();
        let caps: Map<String, Value> = self
            .caps
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        let t = &self.torch;
        json!({
            "cpu": self.cpu.model, "vendor": self.cpu.vendor, "signature": self.cpu.signature,
            "logical_cpus": self.cpu.logical_cpus, "physical_cores": self.cpu.physical_cores,
            "available_cores": self.available_cores, "threads": self.threads,
            "isa_flags": flags,
            "isa": self.isa.name(), "kernel_caps": caps,
            "torch": {
                "version": t.version, "dir": t.dir, "cpu_capability": t.cpu_capability,
                "onednn_isa": t.onednn_isa, "threads": t.threads,
                "mkl": t.mkl, "onednn": t.onednn, "openmp": t.openmp,
                "same_libtorch_as_flan_bench": self.same_libtorch,
            },
        })
    }

    /// The results.md heading: which kernels the run was capped to, if any.
    pub fn heading(&self) -> String {
        let caps = self
            .caps
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match (self.isa, caps.is_empty()) {
            (Isa::Native, true) => "### `cargo xtask bench`: native kernels\n".to_string(),
            (Isa::Native, false) => {
                format!("### `cargo xtask bench`: kernels capped by the environment ({caps})\n")
            }
            (isa, _) => format!(
                "### `cargo xtask bench --isa {}`: kernels capped to {} ({caps})\n",
                isa.name(),
                isa.name().to_uppercase()
            ),
        }
    }

    /// The "Measured on" block of results.md.
    pub fn markdown(&self) -> String {
        let (has, lacks): (Vec<_>, Vec<_>) =
            self.cpu.isa_flags().into_iter().partition(|(_, has)| *has);
        let names = |v: Vec<(&str, bool)>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.into_iter().map(|(f, _)| f).collect::<Vec<_>>().join(" ")
            }
        };
        let cpu = &self.cpu;
        let vendor = match (cpu.vendor.as_str(), &cpu.signature) {
            ("", None) => String::new(),
            ("", Some(signature)) => format!(" ({signature})"),
            (vendor, None) => format!(" ({vendor})"),
            (vendor, Some(signature)) => format!(" ({vendor}, {signature})"),
        };
        let physical = cpu
            .physical_cores
            .map_or(String::new(), |n| format!(", {n} physical cores"));
        let caps = if self.caps.is_empty() {
            "none".to_string()
        } else {
            self.caps
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let t = &self.torch;
        let libtorch = if self.same_libtorch {
            "the libtorch both sides load"
        } else {
            "transformers' torch; flan-bench loads another LIBTORCH, not probed"
        };
        let libraries: Vec<&str> = [t.mkl.as_str(), t.onednn.as_str(), t.openmp.as_str()]
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect();
        format!(
            "Measured on:\n\
             - CPU: {}{vendor}, {} logical CPUs{physical}, {} available to this run, {} threads on both sides\n\
             - ISA flags: {}; absent: {}\n\
             - kernel caps (`--isa {}`): {caps}\n\
             - torch {} ({libtorch}): ATen CPU capability {}, oneDNN ISA {}, {} intra-op threads\n\
             - libraries: {}\n",
            cpu.model,
            cpu.logical_cpus,
            self.available_cores,
            self.threads,
            names(has),
            names(lacks),
            self.isa.name(),
            t.version,
            t.cpu_capability,
            if t.onednn_isa.is_empty() {
                "not reported"
            } else {
                &t.onednn_isa
            },
            t.threads,
            if libraries.is_empty() {
                "not reported".to_string()
            } else {
                libraries.join("; ")
            },
        )
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `/proc/cpuinfo` of the 2-vCPU AMD EPYC (Zen 4) VM the bench ran on, as captured.
    pub(crate) const EPYC_CPUINFO: &str = r#"processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC
stepping	: 1
microcode	: 0x1000065
cpu MHz		: 2596.148
cache size	: 1024 KB
physical id	: 0
siblings	: 2
core id		: 0
cpu cores	: 2
apicid		: 0
initial apicid	: 0
fpu		: yes
fpu_exception	: yes
cpuid level	: 28
wp		: yes
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext cpuid_fault vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm
bugs		: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user tsa
bogomips	: 5192.29
TLB size	: 3584 4K pages
clflush size	: 64
cache_alignment	: 64
address sizes	: 48 bits physical, 48 bits virtual
power management:

processor	: 1
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC
stepping	: 1
microcode	: 0x1000065
cpu MHz		: 2596.148
cache size	: 1024 KB
physical id	: 0
siblings	: 2
core id		: 1
cpu cores	: 2
apicid		: 1
initial apicid	: 1
fpu		: yes
fpu_exception	: yes
cpuid level	: 28
wp		: yes
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext cpuid_fault vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm
bugs		: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user tsa
bogomips	: 5192.29
TLB size	: 3584 4K pages
clflush size	: 64
cache_alignment	: 64
address sizes	: 48 bits physical, 48 bits virtual
power management:

"#;

    /// An AVX2-only Intel Xeon (Haswell, 2 sockets × 12 cores × 2 threads), abridged: its first
    /// processor with the fields we read and the `flags` line as Linux prints it for that CPU,
    /// then its last processor (on the other socket) with fewer flags, so that cores are
    /// counted across sockets.
    pub(crate) const HASWELL_CPUINFO: &str = "processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 63
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
physical id\t: 0
siblings\t: 24
core id\t\t: 0
cpu cores\t: 12
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm cpuid_fault epb invpcid_single pti intel_ppin ssbd ibrs ibpb stibp tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm xsaveopt cqm_llc cqm_occup_llc dtherm ida arat pln pts md_clear flush_l1d

processor\t: 47
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
physical id\t: 1
core id\t\t: 13
flags\t\t: fpu sse sse2 fma avx f16c avx2
";

    #[test]
    fn cpuinfo_gives_model_vendor_cores_and_the_isa_flags() {
        let epyc = CpuInfo::parse(EPYC_CPUINFO);
        assert_eq!(epyc.model, "AMD EPYC");
        assert_eq!(epyc.vendor, "AuthenticAMD");
        assert_eq!(
            epyc.signature.as_deref(),
            Some("family 25, model 17, stepping 1")
        );
        assert_eq!((epyc.logical_cpus, epyc.physical_cores), (2, Some(2)));
        let has: Vec<&str> = epyc
            .isa_flags()
            .into_iter()
            .filter_map(|(f, has)| has.then_some(f))
            .collect();
        assert_eq!(
            has,
            [
                "sse4_2",
                "avx",
                "f16c",
                "fma",
                "avx2",
                "avx512f",
                "avx512dq",
                "avx512bw",
                "avx512vl",
                "avx512_vnni",
                "avx512_bf16"
            ]
        );
        // Every flag is kept, not only the ones reported.
        assert!(epyc.flags.iter().any(|f| f == "sha_ni"));
        Isa::Avx512
            .check_supported(&epyc.model, &epyc.flags)
            .unwrap();

        let haswell = CpuInfo::parse(HASWELL_CPUINFO);
        assert_eq!(haswell.model, "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz");
        assert_eq!(haswell.vendor, "GenuineIntel");
        // Two processors listed, on two sockets: two distinct cores.
        assert_eq!((haswell.logical_cpus, haswell.physical_cores), (2, Some(2)));
        let flags = haswell.isa_flags();
        assert_eq!(flags.len(), ISA_FLAGS.len());
        assert!(flags.contains(&("avx2", true)) && flags.contains(&("fma", true)));
        assert!(flags.contains(&("avx512f", false)) && flags.contains(&("amx_tile", false)));
        Isa::Avx2
            .check_supported(&haswell.model, &haswell.flags)
            .unwrap();
        let err = Isa::Avx512
            .check_supported(&haswell.model, &haswell.flags)
            .unwrap_err()
            .to_string();
        assert!(err.contains("E5-2680 v3"), "{err}");
        assert!(
            err.contains("lacks avx512f avx512bw avx512vl avx512dq"),
            "{err}"
        );
    }

    #[test]
    fn hyperthreads_share_a_core_and_missing_fields_are_none() {
        let smt = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\nflags\t: avx2\n\n\
                   processor\t: 1\nphysical id\t: 0\ncore id\t: 0\nflags\t: avx2\n";
        let c = CpuInfo::parse(smt);
        assert_eq!((c.logical_cpus, c.physical_cores), (2, Some(1)));
        assert_eq!(c.model, std::env::consts::ARCH);
        assert_eq!(c.vendor, "");
        assert_eq!(c.signature, None);
        // An Arm kernel: `Features`, no physical id.
        let arm = CpuInfo::parse("processor\t: 0\nFeatures\t: fp asimd sve\n\nprocessor\t: 1\n");
        assert_eq!((arm.logical_cpus, arm.physical_cores), (2, None));
        assert_eq!(arm.flags, ["fp", "asimd", "sve"]);
        assert!(arm.isa_flags().iter().all(|(_, has)| !has));
        let empty = CpuInfo::parse("");
        assert_eq!((empty.logical_cpus, empty.physical_cores), (0, None));
        assert!(empty.flags.is_empty());
    }

    pub(crate) fn probe_answer(capability: &str, onednn: &str) -> Value {
        json!({
            "torch": "2.13.0+cu130", "dir": "/venv/torch", "cpu_capability": capability,
            "onednn_isa": onednn, "threads": 2,
            "mkl": "Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605",
            "onednn": "Intel(R) MKL-DNN v3.12.0", "openmp": "OpenMP 201511 (a.k.a. OpenMP 4.5)",
        })
    }

    pub(crate) fn machine(isa: Isa, caps: Vec<(&'static str, String)>, torch: &Value) -> Machine {
        Machine {
            cpu: CpuInfo::parse(EPYC_CPUINFO),
            available_cores: 2,
            threads: 2,
            isa,
            caps,
            torch: TorchKernels::from_json(torch).unwrap(),
            same_libtorch: true,
        }
    }

    #[test]
    fn the_probe_answer_is_read_strictly() {
        let t = TorchKernels::from_json(&probe_answer("AVX2", "Intel AVX2")).unwrap();
        assert_eq!((t.cpu_capability.as_str(), t.threads), ("AVX2", 2));
        for key in ["torch", "cpu_capability", "threads", "onednn_isa"] {
            let mut v = probe_answer("AVX2", "");
            v.as_object_mut().unwrap().remove(key);
            let err = TorchKernels::from_json(&v).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn the_record_and_block_name_cpu_flags_caps_and_kernels() {
        let caps: Vec<_> = Isa::Avx2
            .kernel_caps()
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let m = machine(Isa::Avx2, caps, &probe_answer("AVX2", "Intel AVX2"));
        let j = m.to_json();
        assert_eq!(j["cpu"], "AMD EPYC");
        assert_eq!(j["vendor"], "AuthenticAMD");
        assert_eq!(j["signature"], "family 25, model 17, stepping 1");
        assert_eq!(j["isa"], "avx2");
        assert_eq!(j["isa_flags"]["avx512_bf16"], true);
        assert_eq!(j["isa_flags"]["amx_tile"], false);
        assert_eq!(j["kernel_caps"]["ONEDNN_MAX_CPU_ISA"], "AVX2");
        assert_eq!(j["torch"]["cpu_capability"], "AVX2");
        assert_eq!(j["torch"]["same_libtorch_as_flan_bench"], true);
        let md = m.markdown();
        assert!(
            md.contains(
                "- CPU: AMD EPYC (AuthenticAMD, family 25, model 17, stepping 1), 2 logical CPUs, \
                 2 physical cores"
            ),
            "{md}"
        );
        assert!(
            md.contains("absent: avx_vnni avx512_fp16 amx_tile amx_bf16 amx_int8\n"),
            "{md}"
        );
        assert!(md.contains(
            "- kernel caps (`--isa avx2`): ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
             MKL_ENABLE_INSTRUCTIONS=AVX2\n"
        ));
        assert!(md.contains("ATen CPU capability AVX2, oneDNN ISA Intel AVX2, 2 intra-op threads"));
        assert!(md.contains("Intel(R) MKL-DNN v3.12.0"));

        let native = machine(Isa::Native, vec![], &probe_answer("AVX512", ""));
        let md = native.markdown();
        assert!(
            md.contains("- kernel caps (`--isa native`): none\n"),
            "{md}"
        );
        assert!(md.contains("oneDNN ISA not reported"), "{md}");
        assert_eq!(native.to_json()["kernel_caps"], json!({}));
    }

    #[test]
    fn the_heading_says_which_kernels_ran() {
        let answer = probe_answer("AVX512", "");
        assert_eq!(
            machine(Isa::Native, vec![], &answer).heading(),
            "### `cargo xtask bench`: native kernels\n"
        );
        let caps: Vec<_> = Isa::Avx512
            .kernel_caps()
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        assert_eq!(
            machine(Isa::Avx512, caps, &answer).heading(),
            "### `cargo xtask bench --isa avx512`: kernels capped to AVX512 \
             (ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE MKL_ENABLE_INSTRUCTIONS=AVX512)\n"
        );
        let inherited = vec![("ONEDNN_MAX_CPU_ISA", "AVX2".to_string())];
        assert_eq!(
            machine(Isa::Native, inherited, &answer).heading(),
            "### `cargo xtask bench`: kernels capped by the environment (ONEDNN_MAX_CPU_ISA=AVX2)\n"
        );
    }
}
