//! The allocators of both binaries (`flan` and `flan-bench`, which must measure what `flan`
//! runs): mimalloc for Rust's allocations, and the settings of glibc's malloc, which libtorch's
//! tensors go through.
//!
//! The data pipeline allocates many short strings and id lists on rayon's threads that are freed
//! on others; under glibc's malloc that churn (arena locking, consolidation, page faults) was its
//! largest cost, and mimalloc nearly doubled its throughput (CoT mixture, 2 threads: ~55k ->
//! ~95k examples/s). libtorch's tensors do not go through it: libtorch calls glibc's malloc.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets up glibc's malloc; call first thing in `main`. (mimalloc's own defaults serve the
/// pipeline: its v3 already waits a second before returning freed memory to the OS.)
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::keep_large_blocks();
}

/// libtorch allocates tensors with glibc's malloc, which serves blocks above its mmap threshold
/// (at most 32 MiB) with fresh mappings and unmaps them on free. A training step allocates the
/// same large activations every time (the small shape's logits alone are 262 MB), so every
/// step faulted them in again and the kernel zeroed every page: `clear_page` was 14% of a small
/// shape training run's samples. Served from the heap, and the heap never trimmed, they are
/// reused instead (small shape, flan-bench, 2 timed runs each: 428/442 real tokens/s packed
/// before, 508/517, 534/543 and 544/571 in three runs after; sys time 24.8 s -> 12-16.5 s, the
/// rest being the heap's first growth: RSS stays at 4.3 GB over 5 packed runs). The cost:
/// memory freed stays with the process, at its peak, which a training or evaluation run reaches
/// every step anyway. Settings given through `GLIBC_TUNABLES` or `MALLOC_*` variables are left
/// alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_MAX: c_int = -4;

    pub(super) fn keep_large_blocks() {
        let user_set = std::env::vars_os().any(|(k, v)| {
            k.to_string_lossy().starts_with("MALLOC_")
                || (k == "GLIBC_TUNABLES" && v.to_string_lossy().contains("malloc"))
        });
        if user_set {
            return;
        }
        // SAFETY: mallopt only changes malloc's parameters; called before threads start.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            // -1 turns trimming off (mallopt(3)).
            mallopt(M_TRIM_THRESHOLD, -1);
        }
    }
}
