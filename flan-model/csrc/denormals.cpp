// Flush-to-zero / denormals-are-zero for flan-model's `FlushDenormals` guard. libtorch's own
// switch (what torch.set_flush_denormal calls) sets the MXCSR of the calling thread only; the
// intra-op pool's threads keep theirs, so the switch is also run on each of them (through
// intra_op_pool.h). Errors follow flan_model_shim.h's convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"
#include "intra_op_pool.h"

#include <ATen/Context.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace {

int flush_is_on() {
#if defined(__x86_64__) || defined(_M_X64)
  return (_mm_getcsr() & 0x8040) == 0x8040 ? 1 : 0;
#else
  return 0;
#endif
}

struct Probe {
  bool on;
  flan_pool::OmpInt thread_num = nullptr;
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

}  // namespace

extern "C" {

char* flan_model_set_flush_denormal(int32_t on) {
  return flan_shim::guarded([&] {
    if (!at::globalContext().setFlushDenormal(on != 0)) {
      throw std::runtime_error("this CPU cannot flush denormals (needs SSE3 on x86)");
    }
    Probe probe;
    probe.on = on != 0;
    flan_pool::on_every_thread(&set_on_this_thread, &probe);
  });
}

int32_t flan_model_flush_denormal_is_on() { return flush_is_on(); }

void flan_model_flush_denormal_threads(int64_t* seen, int64_t* on) {
  Probe probe;
  probe.on = false;
  probe.thread_num = flan_pool::omp_thread_num();
  flan_pool::on_every_thread(&probe_this_thread, &probe);
  *seen = probe.seen.load();
  *on = probe.flushing.load();
}

}  // extern "C"
