// Our own products for flan-model's decoding steps (`fma_linear.rs`): `x [rows, in] · wᵀ` with
// every output summed as one chain of fused multiply-adds over the input positions, restarted at
// every `k_block` positions, the blocks' sums added in order.
// - fp32: one FMA per position. That is how MKL's generic (`def`) sgemm kernels sum at a few dozen
//   rows on an AMD EPYC (K blocks of 192), and there they leave half of the machine's peak unused.
// - bf16: one AVX512-BF16 `vdpbf16ps` per pair of positions (the odd position's product added
//   first, then the even one's, each rounded to fp32), the sum rounded to bf16 at the end. That
//   is how oneDNN's AVX512-BF16 kernels sum there (K blocks of 512), streaming a batch-1 step's
//   weights at about half of the memory bandwidth.
// - fp32, one row (four_lane_tile): each product rounded, then added, in four chains after a
//   short sequential head. That is how MKL's generic sgemv sums (SSE, no FMA), streaming the
//   weights at about a third of the memory bandwidth. Built with -ffp-contract=off for it.
// The caller uses a kernel only where a probe shows it bitwise the plain product.
//
// Why the bits do not depend on the vector width: each vector lane is one output column, and a
// column's chain is the same sequence of scalar operations whichever register it sits in. The
// fp32 AVX-512 and AVX2 kernels therefore give the same result; which one runs follows
// libtorch's own CPU capability (capped by ATEN_CPU_CAPABILITY). The bf16 kernel needs
// AVX512-BF16 and that capability at AVX512. The three share one tile body,
// fma_linear_tile.h, compiled once per ISA.
//
// The weight is packed once into panels of 48 (fp32 with AVX2: 24) output columns, the last
// panel padded with zeros, so that a step reads each input position's (bf16: pair of positions')
// weights for the panel as consecutive vectors: `[panels, in, width]` (fp32) or `[panels, in / 2,
// width, 2]` (bf16). Errors follow flan_model_shim.h's convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"
#include "intra_op_pool.h"

#include <ATen/ATen.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

// The fp32 AVX-512 kernel: 48 columns a panel, tiles of up to 8 rows (24 accumulators of 32
// registers).
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
struct Lanes {
  using Elem = float;
  using Sum = __m512;
  static constexpr int64_t kLanes = 16;
  static constexpr int64_t kStep = 1;
  static constexpr int kRows = 8;
  static Sum zero() { return _mm512_setzero_ps(); }
  static Sum load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Sum s) { _mm512_storeu_ps(p, s); }
  static Sum add(Sum a, Sum b) { return _mm512_add_ps(a, b); }
  static __m512 weights(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 input(const float* p) { return _mm512_set1_ps(*p); }
  static Sum step(Sum acc, __m512 a, __m512 w) { return _mm512_fmadd_ps(a, w, acc); }
  static Sum mul(Sum a, Sum b) { return _mm512_mul_ps(a, b); }
};
#include "fma_linear_tile.h"
}  // namespace avx512
#pragma GCC pop_options

// The fp32 AVX2 kernel: 24 columns a panel, tiles of up to 4 rows (12 accumulators of 16).
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
struct Lanes {
  using Elem = float;
  using Sum = __m256;
  static constexpr int64_t kLanes = 8;
  static constexpr int64_t kStep = 1;
  static constexpr int kRows = 4;
  static Sum zero() { return _mm256_setzero_ps(); }
  static Sum load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Sum s) { _mm256_storeu_ps(p, s); }
  static Sum add(Sum a, Sum b) { return _mm256_add_ps(a, b); }
  static __m256 weights(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 input(const float* p) { return _mm256_set1_ps(*p); }
  static Sum step(Sum acc, __m256 a, __m256 w) { return _mm256_fmadd_ps(a, w, acc); }
  static Sum mul(Sum a, Sum b) { return _mm256_mul_ps(a, b); }
};
#include "fma_linear_tile.h"
}  // namespace avx2
#pragma GCC pop_options

// The bf16 kernel (AVX512-BF16): a step is one `vdpbf16ps` over a pair of positions, whose
// weights the panel holds side by side for each column; 48 columns a panel, tiles of up to 8
// rows.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16")
namespace avx512bf16 {
struct Lanes {
  using Elem = uint16_t;
  using Sum = __m512;
  static constexpr int64_t kLanes = 16;
  static constexpr int64_t kStep = 2;
  static constexpr int kRows = 8;
  static Sum zero() { return _mm512_setzero_ps(); }
  static Sum load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Sum s) { _mm512_storeu_ps(p, s); }
  static Sum add(Sum a, Sum b) { return _mm512_add_ps(a, b); }
  static __m512bh weights(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static __m512bh input(const uint16_t* p) {
    int32_t pair;
    std::memcpy(&pair, p, sizeof(pair));
    return (__m512bh)_mm512_set1_epi32(pair);
  }
  static Sum step(Sum acc, __m512bh a, __m512bh w) { return _mm512_dpbf16_ps(acc, a, w); }
};
#include "fma_linear_tile.h"

// Writes `cols` of the panel's fp32 sums `sums [m, 48]` to `y` (row stride `n`) as bf16,
// rounded to nearest even as oneDNN does.
void emit(const float* sums, int64_t m, int64_t cols, uint16_t* y, int64_t n) {
  for (int64_t r = 0; r < m; ++r) {
    uint16_t row[3 * Lanes::kLanes];
    for (int v = 0; v < 3; ++v) {
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(sums + r * 3 * Lanes::kLanes + 16 * v));
      std::memcpy(row + 16 * v, &h, sizeof(h));
    }
    std::memcpy(y + r * n, row, cols * sizeof(uint16_t));
  }
}
}  // namespace avx512bf16
#pragma GCC pop_options

// Output columns per panel: three vectors of fp32 lanes.
constexpr int64_t kWidth512 = 3 * avx512::Lanes::kLanes;
constexpr int64_t kWidth256 = 3 * avx2::Lanes::kLanes;

// The panel width this process's kernels use for `dtype` (Float or BFloat16), 0 where there is
// no kernel.
int64_t panel_width(at::ScalarType dtype) {
  static const std::string capability = at::get_cpu_capability();
  static const bool avx512 = capability == "AVX512" && __builtin_cpu_supports("avx512f");
  static const bool avx2 = (capability == "AVX512" || capability == "AVX2") &&
                           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  switch (dtype) {
    case at::kFloat:
      return avx512 ? kWidth512 : avx2 ? kWidth256 : 0;
    case at::kBFloat16:
      return bf16 ? kWidth512 : 0;
    default:
      return 0;
  }
}

// Writes `cols` of the panel's fp32 sums `sums [m, width]` to `y` (row stride `n`).
void emit(const float* sums, int64_t m, int64_t width, int64_t cols, float* y, int64_t n) {
  for (int64_t r = 0; r < m; ++r) {
    std::memcpy(y + r * n, sums + r * width, cols * sizeof(float));
  }
}

// `y [m, n] = x [m, k] · wᵀ` over `packed` (`panels` panels of `width` columns, `k` positions
// each) through one ISA's kernel (its namespace's `Lanes`, `tile_for`): the panels are shared out
// among libtorch's intra-op threads, and each goes through all the rows, into its thread's fp32
// sums, while its weights are in cache; `emit` writes a panel's sums out.
template <typename Lanes, typename TileFor, typename Emit>
void product(const typename Lanes::Elem* x, int64_t m, int64_t k,
             const typename Lanes::Elem* packed, int64_t panels, int64_t n, int64_t k_block,
             TileFor tile_for, Emit emit) {
  constexpr int64_t width = 3 * Lanes::kLanes;
  // Allocated here, since nothing may throw on the pool's threads.
  std::vector<float> sums(flan_pool::most_parts(panels) * m * width);
  flan_pool::parallel_ranges(panels, [&](int64_t part, int64_t begin, int64_t end) {
    float* own = sums.data() + part * m * width;
    for (int64_t p = begin; p < end; ++p) {
      const typename Lanes::Elem* panel = packed + p * k * width;
      for (int64_t r = 0; r < m; r += Lanes::kRows) {
        const int64_t rows = std::min<int64_t>(Lanes::kRows, m - r);
        tile_for(rows)(x + r * k, k, panel, k, k_block, own + r * width, width);
      }
      emit(own, m, std::min(width, n - p * width), p * width);
    }
  });
}

// `y [n] = x [k] · wᵀ` for one fp32 row over `packed` (`panels` panels of `width` columns)
// through one ISA's `tile` (its namespace's four_lane_tile), the panels shared out among
// libtorch's intra-op threads.
template <typename Lanes, typename FourLaneTile>
void four_lane_product(const float* x, int64_t k, const float* packed, int64_t panels, int64_t n,
                       int64_t head, FourLaneTile tile, float* y) {
  constexpr int64_t width = 3 * Lanes::kLanes;
  flan_pool::parallel_ranges(panels, [&](int64_t, int64_t begin, int64_t end) {
    float sums[width];
    for (int64_t p = begin; p < end; ++p) {
      tile(x, packed + p * k * width, k, head, sums);
      std::memcpy(y + p * width, sums, std::min(width, n - p * width) * sizeof(float));
    }
  });
}

// Throws unless `t` is a contiguous Float or BFloat16 CPU tensor of `dims` dimensions.
void check_operand(const at::Tensor& t, const char* what, int64_t dims) {
  TORCH_CHECK(t.defined(), "fma linear: the ", what, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, "fma linear: the ", what,
              " must be a strided CPU tensor, got ", t.layout(), " on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
              "fma linear: the ", what, " must be Float or BFloat16, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dims && t.is_contiguous(), "fma linear: the ", what, " must be a ",
              "contiguous ", dims, "-d tensor, got shape ", t.sizes());
}

// Whether the kernels apply in the current mode. Not applying is not an error: they have no
// autograd formula and ignore autocast, so in those modes the caller takes the plain product.
bool kernels_apply() {
  return !c10::GradMode::is_enabled() && !at::autocast::is_autocast_enabled(at::kCPU);
}

// Throws unless the packed weight `p`'s panels are `width` wide and `out_features` fill them.
void check_panels(const at::Tensor& p, int64_t width, int64_t out_features) {
  const int64_t panels = p.size(0);
  TORCH_CHECK(p.size(2) == width, "fma linear: the packed weight's panels are ", p.size(2),
              " wide, this process's kernels ", width);
  TORCH_CHECK(out_features > (panels - 1) * width && out_features <= panels * width,
              "fma linear: ", out_features, " outputs do not fill ", panels, " panels of ", width);
}

// The panel width for `dtype`; throws where there is no kernel for it.
int64_t checked_width(at::ScalarType dtype) {
  const int64_t width = panel_width(dtype);
  TORCH_CHECK(width > 0, "fma linear: no kernel for ", dtype, " here (fp32 needs AVX2 with FMA, ",
              "bf16 AVX512-BF16), and libtorch's CPU capability is ", at::get_cpu_capability());
  return width;
}

}  // namespace

extern "C" {

int64_t flan_model_fma_linear_panel_width(int32_t scalar_type) {
  try {
    return panel_width(static_cast<at::ScalarType>(scalar_type));
  } catch (...) {
    return 0;
  }
}

char* flan_model_fma_linear_pack(void* weight, void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    check_operand(w, "weight", 2);
    const int64_t width = checked_width(w.scalar_type());
    const int64_t n = w.size(0);
    const int64_t k = w.size(1);
    const int64_t panels = (n + width - 1) / width;
    at::NoGradGuard no_grad;
    at::Tensor padded = at::zeros({panels * width, k}, w.options());
    padded.narrow(0, 0, n).copy_(w.detach());
    if (w.scalar_type() == at::kFloat) {
      // [panels · width, k] -> [panels, width, k] -> [panels, k, width].
      *out = new at::Tensor(padded.view({panels, width, k}).transpose(1, 2).contiguous());
    } else {
      TORCH_CHECK(k % 2 == 0, "fma linear: a bf16 weight needs an even input width, got ", k);
      // [panels · width, k] -> [panels, width, k / 2, 2] -> [panels, k / 2, width, 2].
      *out = new at::Tensor(
          padded.view({panels, width, k / 2, 2}).permute({0, 2, 1, 3}).contiguous());
    }
  });
}

char* flan_model_fma_linear_forward(void* x, void* packed, int64_t out_features, int64_t k_block,
                                    void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& p = *static_cast<at::Tensor*>(packed);
    if (!kernels_apply()) {
      return;
    }
    check_operand(input, "input", 2);
    const at::ScalarType dtype = input.scalar_type();
    const bool bf16 = dtype == at::kBFloat16;
    check_operand(p, "packed weight", bf16 ? 4 : 3);
    TORCH_CHECK(p.scalar_type() == dtype, "fma linear: a ", dtype, " input for a ",
                p.scalar_type(), " packed weight");
    const int64_t width = checked_width(dtype);
    const int64_t panels = p.size(0);
    const int64_t k = input.size(1);
    check_panels(p, width, out_features);
    TORCH_CHECK(bf16 ? p.size(1) * 2 == k && p.size(3) == 2 : p.size(1) == k,
                "fma linear: input of shape ", input.sizes(), " for a packed weight of shape ",
                p.sizes());
    // A block boundary must not split a bf16 pair (one block covering everything has none).
    TORCH_CHECK(k_block > 0 && (!bf16 || k_block % 2 == 0 || k_block >= k), "fma linear: blocks ",
                "of ", k_block, " input positions", bf16 ? " (bf16 needs an even number)" : "");
    const int64_t m = input.size(0);
    at::Tensor y = at::empty({m, out_features}, input.options());
    if (k == 0) {
      y.zero_();
    } else if (bf16) {
      auto* out = reinterpret_cast<uint16_t*>(y.data_ptr());
      product<avx512bf16::Lanes>(
          reinterpret_cast<const uint16_t*>(input.data_ptr()), m, k,
          reinterpret_cast<const uint16_t*>(p.data_ptr()), panels, out_features, k_block,
          avx512bf16::tile_for, [&](const float* sums, int64_t rows, int64_t cols, int64_t col) {
            avx512bf16::emit(sums, rows, cols, out + col, out_features);
          });
    } else {
      float* out = y.data_ptr<float>();
      const auto emit_fp32 = [&](const float* sums, int64_t rows, int64_t cols, int64_t col) {
        emit(sums, rows, width, cols, out + col, out_features);
      };
      if (width == kWidth512) {
        product<avx512::Lanes>(input.data_ptr<float>(), m, k, p.data_ptr<float>(), panels,
                               out_features, k_block, avx512::tile_for, emit_fp32);
      } else {
        product<avx2::Lanes>(input.data_ptr<float>(), m, k, p.data_ptr<float>(), panels,
                             out_features, k_block, avx2::tile_for, emit_fp32);
      }
    }
    *out = new at::Tensor(std::move(y));
  });
}

char* flan_model_fma_linear_four_lanes(void* x, void* packed, int64_t out_features, int64_t head,
                                       void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& p = *static_cast<at::Tensor*>(packed);
    if (!kernels_apply()) {
      return;
    }
    check_operand(input, "input", 2);
    check_operand(p, "packed weight", 3);
    TORCH_CHECK(input.scalar_type() == at::kFloat && p.scalar_type() == at::kFloat,
                "fma linear: the four-lane kernel is fp32, got a ", input.scalar_type(),
                " input and a ", p.scalar_type(), " packed weight");
    const int64_t width = checked_width(at::kFloat);
    const int64_t panels = p.size(0);
    const int64_t k = input.size(1);
    TORCH_CHECK(input.size(0) == 1, "fma linear: the four-lane kernel takes one row, got ",
                input.size(0));
    check_panels(p, width, out_features);
    TORCH_CHECK(p.size(1) == k, "fma linear: input of shape ", input.sizes(),
                " for a packed weight of shape ", p.sizes());
    TORCH_CHECK(head >= 1 && head <= 4 && head <= k, "fma linear: a head of ", head,
                " positions (1 to 4, at most the input width ", k, ")");
    at::Tensor y = at::empty({1, out_features}, input.options());
    if (width == kWidth512) {
      four_lane_product<avx512::Lanes>(input.data_ptr<float>(), k, p.data_ptr<float>(), panels,
                                       out_features, head, avx512::four_lane_tile<>,
                                       y.data_ptr<float>());
    } else {
      four_lane_product<avx2::Lanes>(input.data_ptr<float>(), k, p.data_ptr<float>(), panels,
                                     out_features, head, avx2::four_lane_tile<>,
                                     y.data_ptr<float>());
    }
    *out = new at::Tensor(std::move(y));
  });
}

}  // extern "C"
