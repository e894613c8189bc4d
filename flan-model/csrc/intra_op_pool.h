// Work on libtorch's intra-op thread pool from a shim. The pool is OpenMP's (libgomp in the
// PyPI wheels), and ATen's parallel_for is a header template that runs serially in a file
// compiled without -fopenmp, as the shims are; so a parallel region is opened through
// GOMP_parallel, looked up in the process at run time. Without it everything runs on the
// calling thread.
#pragma once

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>

namespace flan_pool {

using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpInt = int (*)();

inline GompParallel gomp_parallel() {
  static const auto fn = reinterpret_cast<GompParallel>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
  return fn;
}

inline OmpInt omp_thread_num() {
  static const auto fn = reinterpret_cast<OmpInt>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
  return fn;
}

inline OmpInt omp_num_threads() {
  static const auto fn = reinterpret_cast<OmpInt>(dlsym(RTLD_DEFAULT, "omp_get_num_threads"));
  return fn;
}

// Runs `fn(data)` once on each thread of an OpenMP team as large as libtorch's intra-op pool
// (on the calling thread alone if there is no OpenMP in the process).
inline void on_every_thread(void (*fn)(void*), void* data) {
  if (GompParallel parallel = gomp_parallel()) {
    parallel(fn, data, static_cast<unsigned>(at::get_num_threads()), 0);
  } else {
    fn(data);
  }
}

// How many parts parallel_ranges splits [0, n) into at most.
inline int64_t most_parts(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
}

// Calls `body(part, begin, end)` on contiguous parts of [0, n) that cover it, one part per
// thread of the pool, from those threads; `part` counts from 0 and stays below most_parts(n).
// `body` must not throw: an exception cannot leave an OpenMP region.
template <typename Body>
void parallel_ranges(int64_t n, const Body& body) {
  const int64_t threads = most_parts(n);
  if (threads <= 1 || at::in_parallel_region() || !gomp_parallel() || !omp_thread_num() ||
      !omp_num_threads()) {
    if (n > 0) {
      body(int64_t{0}, int64_t{0}, n);
    }
    return;
  }
  struct Job {
    const Body* body;
    int64_t n;
  } job{&body, n};
  gomp_parallel()(
      [](void* data) {
        const auto* job = static_cast<const Job*>(data);
        const int64_t thread = omp_thread_num()();
        const int64_t team = omp_num_threads()();
        const int64_t begin = job->n * thread / team;
        const int64_t end = job->n * (thread + 1) / team;
        if (begin < end) {
          (*job->body)(thread, begin, end);
        }
      },
      &job, static_cast<unsigned>(threads), 0);
}

}  // namespace flan_pool
