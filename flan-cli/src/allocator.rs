//! The global allocator of both binaries (`flan` and `flan-bench`, which must measure what `flan`
//! runs) and its one setting.
//!
//! The data pipeline allocates many short strings and id lists on rayon's threads that are freed
//! on others; under glibc's malloc that churn (arena locking, consolidation, page faults) was its
//! largest cost, and mimalloc nearly doubled its throughput (CoT mixture, 2 threads: ~55k ->
//! ~95k examples/s). libtorch's tensors do not go through it (they use libtorch's own allocator).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in the `mi_option_t` enum of mimalloc v2 and v3 (the crate's
/// bindings do not name it).
const PURGE_DELAY: std::ffi::c_int = 15;
/// mimalloc's default purge delay (ms), which tells that option 15 is the one meant.
const DEFAULT_PURGE_DELAY: std::ffi::c_long = 10;
/// Ours (ms).
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Lets freed memory wait a second, not 10 ms, before it goes back to the OS. The pipeline frees
/// a batch's strings and ids and allocates the next batch's moments later; with the default,
/// mimalloc had returned the pages in between, and the kernel's zeroing of the re-faulted
/// (transparent huge) pages took up to a sixth of the pipeline's time (CoT profile stream, 3
/// pairs: 1.26-1.57 s against 1.15-1.18 s, sys 0.09-0.40 s against 0.07-0.10 s). A value set
/// through `MIMALLOC_PURGE_DELAY` is kept, as is any value that is not the default (another
/// mimalloc whose option 15 means something else).
pub fn tune() {
    // SAFETY: plain reads and writes of mimalloc's option table, before any thread is started.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
            && mi_option_get(PURGE_DELAY) == DEFAULT_PURGE_DELAY
        {
            mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 must be mimalloc's purge delay: it has the purge delay's default, and `tune`
    /// changes it. A mimalloc whose enum moved fails here instead of being tuned wrongly.
    #[test]
    fn tune_raises_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: a read of mimalloc's option table.
        let before = unsafe { mi_option_get(PURGE_DELAY) };
        tune();
        let after = unsafe { mi_option_get(PURGE_DELAY) };
        assert!(
            (before, after) == (DEFAULT_PURGE_DELAY, PURGE_DELAY_MS)
                || (before, after) == (PURGE_DELAY_MS, PURGE_DELAY_MS),
            "purge delay {before} -> {after}"
        );
    }
}
