// Flush-to-zero / denormals-are-zero for flan-model's `FlushDenormals` guard. libtorch's own
// switch (what torch.set_flush_denormal calls) sets the MXCSR of the calling thread only; the
// intra-op pool's threads keep theirs, so the switch is also run on each of them. The pool is
// OpenMP's (libgomp in the PyPI wheels): a parallel region is opened through GOMP_parallel,
// looked up in the process at run time, because ATen's parallel_for is a header template that
// would run serially in this file, compiled without -fopenmp. Errors follow flan_model_shim.h's
// convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace {

using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpThreadNum = int (*)();

GompParallel gomp_parallel() {
  return reinterpret_cast<GompParallel>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
}

int flush_is_on() {
#if defined(__x86_64__) || defined(_M_X64)
  return (_mm_getcsr() & 0x8040) == 0x8040 ? 1 : 0;
#else
  return 0;
#endif
}

struct Probe {
  bool on;
  OmpThreadNum thread_num = nullptr;
  std::atomic<int64_t> seen{0};
  std::atomic<int64_t> flushing{0};
};

void set_on_this_thread(void* data) {
  at::globalContext().setFlushDenormal(static_cast<Probe*>(data)->on);
}

void probe_this_thread(void* data) {
  auto* probe = static_cast<Probe*>(data);
  const int64_t bit = int64_t{1} << ((probe->thread_num ? probe->thread_num() : 0) & 63);
  probe->seen.fetch_or(bit);
  if (flush_is_on() == 1) {
    probe->flushing.fetch_or(bit);
  }
}

// Runs `fn` once on each thread of an OpenMP team as large as libtorch's intra-op pool (on the
// calling thread alone if there is no OpenMP in the process).
void on_every_thread(void (*fn)(void*), Probe* probe) {
  if (GompParallel parallel = gomp_parallel()) {
    parallel(fn, probe, static_cast<unsigned>(at::get_num_threads()), 0);
  } else {
    fn(probe);
  }
}

}  // namespace

extern "C" {

char* flan_model_set_flush_denormal(int32_t on) {
  return flan_shim::guarded([&] {
    if (!at::globalContext().setFlushDenormal(on != 0)) {
      throw std::runtime_error("this CPU cannot flush denormals (needs SSE3 on x86)");
    }
    Probe probe;
    probe.on = on != 0;
    on_every_thread(&set_on_this_thread, &probe);
  });
}

int32_t flan_model_flush_denormal_is_on() { return flush_is_on(); }

void flan_model_flush_denormal_threads(int64_t* seen, int64_t* on) {
  Probe probe;
  probe.on = false;
  probe.thread_num = reinterpret_cast<OmpThreadNum>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
  on_every_thread(&probe_this_thread, &probe);
  *seen = probe.seen.load();
  *on = probe.flushing.load();
}

}  // extern "C"
