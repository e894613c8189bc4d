// Our own bf16 product for flan-model's decoding steps (`bf16_dot_linear.rs`): `x [rows, in] ·
// wᵀ` with every output summed as libtorch's AVX2 build sums a bf16 dot product
// (`at::native::AVX2::bf16_dot_with_fp32_arith`). On a CPU without AVX-512 (an AMD EPYC of
// the Zen 3 family, say) libtorch has no oneDNN bf16 matmul, and a bf16 linear is one such dot
// product per (row, output): each reads and widens both operands again, keeps its eight
// accumulators in memory, and is a function call of its own. This kernel widens each weight row
// once for all the rows and keeps the accumulators in registers.
//
// The order, from the function's disassembly (torch 2.13) and checked against libtorch's
// products in Python (every output, 1 to 32 rows, widths 100 to 1024, 1 and 2 threads):
// - the products are exact in fp32 (bf16 has 8-bit significands), so an FMA is one rounding;
// - 64 chains: position i goes to chain i % 64 while i < k64 = k / 64 · 64, one FMA each;
// - the chains are eight vectors x0..x7 of eight lanes (chain 8j + l is x_j's lane l), added as
//   ((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7)), then the lanes as
//   ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7));
// - positions [k64, k16), k16 = k / 16 · 16: one more vector of eight chains, each 16 positions
//   adding their first eight, then their last eight; its lanes added as above, plus the first sum;
// - positions [k16, k): each product added in turn;
// - the sum rounded to bf16, to nearest even (c10::BFloat16).
// The caller uses the kernel only where a probe shows it bitwise the plain product; libtorch's
// AVX-512 build sums in 16-lane vectors, another order, so the kernel is offered only under the
// AVX2 capability. Errors follow flan_model_shim.h's convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"
#include "intra_op_pool.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

#pragma GCC push_options
#pragma GCC target("avx2,fma")

// Eight bf16 values widened to fp32 (exactly: a bf16 is an fp32's upper half).
inline __m256 widen(const uint16_t* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

// The lanes' sum, as ATen's AVX2 vec_reduce_all adds them: halves, then pairs, then neighbours.
inline float lane_sum(__m256 v) {
  const __m256 halves = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 0x1));
  const __m256 pairs = _mm256_add_ps(halves, _mm256_permute_ps(halves, 0x4e));
  return _mm256_cvtss_f32(_mm256_add_ps(pairs, _mm256_permute_ps(pairs, 0xb1)));
}

// One output of one row: `x` the row's fp32 values, `w` the output's `k` weights, fp32 or (for
// one row, where widening them once would not pay) bf16 bits widened as they are read.
inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load(const uint16_t* p) { return widen(p); }
inline float value(const float* p) { return *p; }
inline float value(const uint16_t* p) {
  const uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

template <typename W>
inline float dot(const float* x, const W* w, int64_t k) {
  const int64_t k64 = k / 64 * 64;
  const int64_t k16 = k / 16 * 16;
  __m256 acc[8];
  for (auto& a : acc) {
    a = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < k64; i += 64) {
    #pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * j), load(w + i + 8 * j),
                               acc[j]);
    }
  }
  const __m256 sum = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
      _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
  __m256 tail = _mm256_setzero_ps();
  for (int64_t i = k64; i < k16; i += 16) {
    tail = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load(w + i), tail);
    tail = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load(w + i + 8), tail);
  }
  float s = lane_sum(tail) + lane_sum(sum);
  for (int64_t i = k16; i < k; ++i) {
    s += x[i] * value(w + i);
  }
  return s;
}

// `w`'s `k` bf16 values widened into `out`.
void widen_row(const uint16_t* w, int64_t k, float* out) {
  const int64_t k8 = k / 8 * 8;
  for (int64_t i = 0; i < k8; i += 8) {
    _mm256_storeu_ps(out + i, widen(w + i));
  }
  for (int64_t i = k8; i < k; ++i) {
    out[i] = value(w + i);
  }
}

// A thread's part of a one-row product is read as four streams from this many bytes, as two
// from kTwoStreamBytes, else as one.
constexpr int64_t kFourStreamBytes = int64_t{4} << 20;
constexpr int64_t kTwoStreamBytes = int64_t{64} << 10;

// `y [m, n] = x [m, k] · wᵀ`, `xf` the rows widened to fp32, `w` the bf16 weight `[n, k]`: the
// outputs shared out among libtorch's intra-op threads; each widens an output's weights into
// its own buffer once and multiplies every row by them (one row reads them as they are).
void product(const float* xf, int64_t m, int64_t k, const uint16_t* w, int64_t n, uint16_t* y) {
  // Allocated here, since nothing may throw on the pool's threads.
  std::vector<float> rows(flan_pool::most_parts(n) * k);
  flan_pool::parallel_ranges(n, [&](int64_t part, int64_t begin, int64_t end) {
    float* wf = rows.data() + part * k;
    if (m == 1) {
      // One row reads each weight once, so the product waits on memory. The part's outputs
      // are read as up to four streams, a weight row from each in turn: on the Zen 3 EPYC a
      // core read cold weights 10-40% faster that way than as one stream (two streams for
      // parts under 4 MB, four above, did best there). Each output is the same dot product.
      const int64_t outputs = end - begin;
      const int64_t bytes = outputs * k * static_cast<int64_t>(sizeof(uint16_t));
      const int64_t streams = std::min<int64_t>(
          outputs, bytes >= kFourStreamBytes ? 4 : bytes >= kTwoStreamBytes ? 2 : 1);
      int64_t first[4];
      int64_t last[4];
      int64_t longest = 0;
      for (int64_t s = 0; s < streams; ++s) {
        first[s] = begin + outputs * s / streams;
        last[s] = begin + outputs * (s + 1) / streams;
        longest = std::max(longest, last[s] - first[s]);
      }
      for (int64_t i = 0; i < longest; ++i) {
        for (int64_t s = 0; s < streams; ++s) {
          const int64_t c = first[s] + i;
          if (c < last[s]) {
            y[c] = c10::BFloat16(dot(xf, w + c * k, k)).x;
          }
        }
      }
      return;
    }
    for (int64_t c = begin; c < end; ++c) {
      widen_row(w + c * k, k, wf);
      for (int64_t r = 0; r < m; ++r) {
        y[r * n + c] = c10::BFloat16(dot(xf + r * k, wf, k)).x;
      }
    }
  });
}

#pragma GCC pop_options

// Whether this process's libtorch sums bf16 products in the order above: its AVX2 build, on a
// CPU with AVX2 and FMA.
bool available() {
  static const bool yes = at::get_cpu_capability() == "AVX2" &&
                          __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

// Throws unless `t` is a contiguous 2-d bf16 CPU tensor.
void check_operand(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.defined(), "bf16 dot linear: the ", what, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, "bf16 dot linear: the ", what,
              " must be a strided CPU tensor, got ", t.layout(), " on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kBFloat16, "bf16 dot linear: the ", what,
              " must be BFloat16, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), "bf16 dot linear: the ", what,
              " must be a contiguous 2-d tensor, got shape ", t.sizes());
}

}  // namespace

extern "C" {

int32_t flan_model_bf16_dot_linear_available() {
  try {
    return available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

char* flan_model_bf16_dot_linear_forward(void* x, void* weight, void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    // No autograd formula, and autocast is not followed: the caller takes the plain product.
    if (c10::GradMode::is_enabled() || at::autocast::is_autocast_enabled(at::kCPU)) {
      return;
    }
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    check_operand(input, "input");
    check_operand(w, "weight");
    TORCH_CHECK(available(), "bf16 dot linear: libtorch's CPU capability is ",
                at::get_cpu_capability(), ", and this order is its AVX2 build's (with FMA)");
    TORCH_CHECK(input.size(1) == w.size(1), "bf16 dot linear: input of shape ", input.sizes(),
                " for a weight of shape ", w.sizes());
    const int64_t m = input.size(0);
    const int64_t n = w.size(0);
    const int64_t k = w.size(1);
    at::Tensor y = at::empty({m, n}, input.options());
    const at::Tensor xf = input.to(at::kFloat).contiguous();
    product(xf.data_ptr<float>(), m, k, reinterpret_cast<const uint16_t*>(w.data_ptr()), n,
            reinterpret_cast<uint16_t*>(y.data_ptr()));
    *out = new at::Tensor(std::move(y));
  });
}

}  // extern "C"
