//! flan-dist: data-parallel building blocks on PyTorch's own distributed engine, c10d.
//!
//! Rust code joins the same kind of process group a `torchrun` job uses: the same rendezvous
//! (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, rank 0 hosting a `TCPStore`; under
//! Slurm's `srun`, `SLURM_PROCID` and `SLURM_NTASKS` in place of the first two) and the same
//! backends (Gloo on CPU, NCCL on CUDA behind the `nccl` feature). The collectives are libtorch's
//! own, reached through a small C++ shim (`csrc/c10d_shim.cpp`) that `build.rs` compiles against
//! the headers of the installed libtorch; they block until done and turn C++ exceptions (a dead
//! peer, a timeout) into [`Error::C10d`].
//!
//! Main types: [`Membership`] (rank and world size, from torchrun's or Slurm's variables),
//! [`Rendezvous`] (who and where), [`TcpStore`], [`ProcessGroup`] with
//! [`ProcessGroup::all_reduce`], [`ProcessGroup::broadcast`] and [`ProcessGroup::barrier`];
//! [`DataParallel`] keeps a `tch` VarStore in step across ranks (broadcast from rank 0, bucketed
//! gradient averaging).
//!
//! ```no_run
//! use flan_dist::{Backend, ProcessGroup, ReduceOp};
//! use tch::Tensor;
//!
//! # fn main() -> flan_dist::Result<()> {
//! // Launched by `torchrun --nproc_per_node=2 --no-python ...` (or any launcher that sets
//! // RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
//! let group = ProcessGroup::from_env(Backend::Gloo)?;
//! let mut t = Tensor::from_slice(&[group.rank() as f32 + 1.0]);
//! group.all_reduce(&mut t, ReduceOp::Sum)?; // 1 + 2 = 3 on both ranks
//! group.barrier()?;
//! # Ok(()) }
//! ```
//!
//! # Why our own gloo headers
//!
//! `ProcessGroupGloo.hpp` includes five gloo headers that the PyPI torch wheel does not ship,
//! although the gloo code itself is inside `libtorch_cpu.so`. We supply declaration-only
//! stand-ins (`flan-dist/include/gloo/`) rather than Debian's `libgloo-dev` headers, because:
//!
//! - Debian's package (bookworm: `0.0~git20220518`) is years older than the gloo the wheel
//!   bundles, and their class definitions differ: gloo's current `rendezvous::Store` derives
//!   from an `IStore` and adds the "store v2" virtuals (`GLOO_STORE_HAS_STORE_V2`) that c10d's
//!   `GlooStore` overrides, which the 2022 header lacks. Compiling against it would give the
//!   compiler a wrong picture of those classes, which is worse than giving it none.
//! - We checked the result: the shim's archive has no undefined `gloo::` symbol (`nm -uC` on
//!   `libflan_dist_c10d.a`); the only gloo names in it are `std::vector<std::shared_ptr<
//!   gloo::transport::Device>>` instantiations, which handle pointers only.
//! - c10d's header only holds gloo objects through `std::shared_ptr`/`std::unique_ptr`, whose
//!   layout does not depend on the pointee; so `ProcessGroupGloo`, its `Options` and the work
//!   objects have the same layout whatever gloo declarations we show the compiler.
//! - Our shim never constructs, calls or destroys a gloo object: the store adapter, the
//!   contexts and the device transport are created and used inside `libtorch_cpu.so` (compiled
//!   with the real headers). The few gloo members c10d's inline code names (`Context::setTimeout`,
//!   the pure virtuals of `rendezvous::Store`) are declared so the header parses, and are never
//!   odr-used by us, so no symbol of ours refers to gloo. The shim's object file therefore links
//!   only against c10d symbols exported by libtorch; no second gloo is linked.
//! - Nothing to download: users without root (and without apt) build the same way.
//!
//! # Timeouts and failures
//!
//! [`Rendezvous::timeout`] bounds both the rendezvous (a rank that never arrives) and each
//! collective. A peer that dies mid-run closes its sockets; Gloo notices at the next collective
//! and the surviving ranks get an [`Error::C10d`] (usually at once, at the latest after the
//! timeout), never a hang.
//!
//! # NCCL
//!
//! The `nccl` feature compiles the NCCL process group (`ProcessGroupNCCL` from
//! `libtorch_cuda.so`) into the shim. Its headers need NCCL and CUDA's headers: build.rs looks in
//! `FLAN_DIST_CUDA_INCLUDE` (a path list), then in the `nvidia/*/include` directories of the pip
//! packages installed with the torch wheel (NCCL and the CUDA runtime headers come with it), then
//! `/usr/local/cuda/include`. The wheel's packages lack CUDA's `crt/` and `nv/` headers; they are
//! in the PyPI packages `nvidia-cuda-crt` and `nvidia-cuda-cccl` (for torch 2.13.0's CUDA 13.0:
//! versions 13.0.88 and 13.0.85), which `cargo xtask setup --cuda` installs into the same venv,
//! next to the wheel's own CUDA headers. With those, `cargo test -p flan-dist --features nccl`
//! builds, links and passes the Gloo tests on a machine without GPU, and `flan` gets the NCCL
//! group through its own `nccl` feature (flan-cli → flan-train → flan-dist). The NCCL group itself has not been run on GPUs by our tests: this
//! project's machines have none.

#![deny(missing_docs)]

mod data_parallel;
mod error;
mod ffi;
mod group;
mod rendezvous;
mod store;

pub use data_parallel::{DataParallel, DEFAULT_BUCKET_ELEMENTS};
pub use error::{Error, Result};
pub use group::{Backend, ProcessGroup, ReduceOp};
pub use rendezvous::{Launcher, Membership, Rendezvous, DEFAULT_MASTER_PORT, DEFAULT_TIMEOUT};
pub use store::TcpStore;
