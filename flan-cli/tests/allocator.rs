//! What `allocator::tune` changes: glibc serves blocks far above its mmap threshold from the heap, where libtorch's next step finds them again, instead of fresh
//! mappings. A test without the harness: it must run on the main thread, whose arena (glibc's
//! main one) is the one training and evaluation allocate tensors from; other threads' arenas
//! map such blocks whatever the settings.

#[path = "../src/allocator.rs"]
mod allocator;

fn main() {
    let user_glibc = std::env::vars_os()
        .any(|(k, _)| k == "GLIBC_TUNABLES" || k.to_string_lossy().starts_with("MALLOC_"));
    let glibc = cfg!(all(target_os = "linux", target_env = "gnu")) && !user_glibc;

    // Without the settings glibc maps such a block (so the check after `tune` can fail).
    if glibc {
        assert_eq!(mapped_blocks(256 << 20), 1, "glibc's default maps 256 MiB");
    }
    allocator::tune();

    if glibc {
        assert_eq!(mapped_blocks(256 << 20), 0, "256 MiB mapped after tune");
        println!("test tune_serves_large_blocks_from_the_heap ... ok");
    } else {
        println!("test tune_serves_large_blocks_from_the_heap ... skipped (not glibc's defaults)");
    }
}

/// How many new mappings glibc's malloc makes for a block of `size` bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mapped_blocks(size: usize) -> usize {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    extern "C" {
        fn mallinfo2() -> Mallinfo2;
        fn malloc(size: usize) -> *mut std::ffi::c_void;
        fn free(p: *mut std::ffi::c_void);
    }
    // SAFETY: the malloc'd block is freed once; mallinfo2 only reads malloc's counters.
    unsafe {
        let before = mallinfo2().hblks;
        let p = malloc(size);
        assert!(!p.is_null());
        let during = mallinfo2().hblks;
        free(p);
        during - before
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn mapped_blocks(_size: usize) -> usize {
    0
}
