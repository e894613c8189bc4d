// Our own products for flan-model's decoding steps (`fma_linear.rs`): `x [rows, in] · wᵀ` with
// every output summed as one chain of fused multiply-adds over the input positions, restarted at
// every `k_block` positions, the blocks' sums added in order.
// - fp32: one FMA per position. That is how MKL's generic (`def`) sgemm kernels sum at a few dozen
//   rows on an AMD EPYC (K blocks of 192), and there they leave half of the machine's peak unused.
// - bf16: one AVX512-BF16 `vdpbf16ps` per pair of positions (the odd position's product added
//   first, then the even one's, each rounded to fp32), the sum rounded to bf16 at the end. That
//   is how oneDNN's AVX512-BF16 kernels sum there (K blocks of 512), streaming a batch-1 step's
//   weights at about half of the memory bandwidth.
// The caller uses a kernel only where a probe shows it bitwise the plain product.
//
// Why the bits do not depend on the vector width: each vector lane is one output column, and a
// column's chain is the same sequence of scalar operations whichever register it sits in. The
// fp32 AVX-512 and AVX2 kernels therefore give the same result; which one runs follows
// libtorch's own CPU capability (capped by ATEN_CPU_CAPABILITY). The bf16 kernel needs
// AVX512-BF16 and that capability at AVX512.
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
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

// Output columns per panel: three vectors of fp32 lanes.
constexpr int64_t kWidth512 = 48;
constexpr int64_t kWidth256 = 24;

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

// `out[r][c] (r < MR, c < 48)` for a panel: the rows' chains over positions [0, k) in blocks of
// `k_block`, the first block's sum stored, each later one's added.
template <int MR>
__attribute__((target("avx512f"))) void tile_avx512(const float* x, int64_t ldx,
                                                     const float* panel, int64_t k,
                                                     int64_t k_block, float* out, int64_t ldo) {
  for (int64_t k0 = 0; k0 < k; k0 += k_block) {
    const int64_t k1 = std::min(k, k0 + k_block);
    __m512 acc[MR][3];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    }
    for (int64_t i = k0; i < k1; ++i) {
      const float* w = panel + i * kWidth512;
      const __m512 w0 = _mm512_loadu_ps(w);
      const __m512 w1 = _mm512_loadu_ps(w + 16);
      const __m512 w2 = _mm512_loadu_ps(w + 32);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512 a = _mm512_set1_ps(x[r * ldx + i]);
        acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(a, w2, acc[r][2]);
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      #pragma GCC unroll 8
      for (int v = 0; v < 3; ++v) {
        float* o = out + r * ldo + 16 * v;
        _mm512_storeu_ps(o, k0 == 0 ? acc[r][v] : _mm512_add_ps(_mm512_loadu_ps(o), acc[r][v]));
      }
    }
  }
}

// The AVX2 kernel: the same chains, 24 columns per panel.
template <int MR>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, int64_t ldx,
                                                   const float* panel, int64_t k,
                                                   int64_t k_block, float* out, int64_t ldo) {
  for (int64_t k0 = 0; k0 < k; k0 += k_block) {
    const int64_t k1 = std::min(k, k0 + k_block);
    __m256 acc[MR][3];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = acc[r][1] = acc[r][2] = _mm256_setzero_ps();
    }
    for (int64_t i = k0; i < k1; ++i) {
      const float* w = panel + i * kWidth256;
      const __m256 w0 = _mm256_loadu_ps(w);
      const __m256 w1 = _mm256_loadu_ps(w + 8);
      const __m256 w2 = _mm256_loadu_ps(w + 16);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m256 a = _mm256_set1_ps(x[r * ldx + i]);
        acc[r][0] = _mm256_fmadd_ps(a, w0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(a, w1, acc[r][1]);
        acc[r][2] = _mm256_fmadd_ps(a, w2, acc[r][2]);
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      #pragma GCC unroll 8
      for (int v = 0; v < 3; ++v) {
        float* o = out + r * ldo + 8 * v;
        _mm256_storeu_ps(o, k0 == 0 ? acc[r][v] : _mm256_add_ps(_mm256_loadu_ps(o), acc[r][v]));
      }
    }
  }
}

// The bf16 kernel: `out[r][c]` (fp32 sums, r < MR, c < 48) of bf16 rows `x` over a panel
// `[k / 2, 48, 2]`, each lane's chain one `vdpbf16ps` per pair of positions, in blocks of
// `k_block` (even) positions.
template <int MR>
__attribute__((target("avx512f,avx512bf16"))) void tile_bf16(const uint16_t* x, int64_t ldx,
                                                             const uint16_t* panel, int64_t k,
                                                             int64_t k_block, float* out,
                                                             int64_t ldo) {
  for (int64_t k0 = 0; k0 < k; k0 += k_block) {
    const int64_t k1 = std::min(k, k0 + k_block);
    __m512 acc[MR][3];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    }
    for (int64_t i = k0; i < k1; i += 2) {
      const uint16_t* w = panel + i * kWidth512;
      const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w);
      const __m512bh w1 = (__m512bh)_mm512_loadu_si512(w + 32);
      const __m512bh w2 = (__m512bh)_mm512_loadu_si512(w + 64);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        int32_t pair;
        std::memcpy(&pair, x + r * ldx + i, sizeof(pair));
        const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, w0);
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, w1);
        acc[r][2] = _mm512_dpbf16_ps(acc[r][2], a, w2);
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      #pragma GCC unroll 8
      for (int v = 0; v < 3; ++v) {
        float* o = out + r * ldo + 16 * v;
        _mm512_storeu_ps(o, k0 == 0 ? acc[r][v] : _mm512_add_ps(_mm512_loadu_ps(o), acc[r][v]));
      }
    }
  }
}

// Writes `cols` of the panel's fp32 sums `sums [m, 48]` to `y` (row stride `n`) as bf16, rounded
// to nearest even as oneDNN does.
__attribute__((target("avx512f,avx512bf16"))) void emit_bf16(const float* sums, int64_t m,
                                                             int64_t cols, uint16_t* y,
                                                             int64_t n) {
  for (int64_t r = 0; r < m; ++r) {
    uint16_t row[kWidth512];
    for (int v = 0; v < 3; ++v) {
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(sums + r * kWidth512 + 16 * v));
      std::memcpy(row + 16 * v, &h, sizeof(h));
    }
    std::memcpy(y + r * n, row, cols * sizeof(uint16_t));
  }
}

// Writes `cols` of the panel's fp32 sums `sums [m, width]` to `y` (row stride `n`).
void emit_fp32(const float* sums, int64_t m, int64_t width, int64_t cols, float* y, int64_t n) {
  for (int64_t r = 0; r < m; ++r) {
    std::memcpy(y + r * n, sums + r * width, cols * sizeof(float));
  }
}

template <typename T>
using Tile = void (*)(const T*, int64_t, const T*, int64_t, int64_t, float*, int64_t);

// Rows per tile: as many as leave the accumulators in registers (3 vectors a row, of 32
// registers with AVX-512 and 16 with AVX2).
constexpr int kRows512 = 8;
constexpr int kRows256 = 4;

// The tile function for `rows` rows (1 to the kernel's most) of panels `width` wide.
Tile<float> fp32_tile(int64_t width, int64_t rows) {
  static constexpr Tile<float> avx512[kRows512] = {
      tile_avx512<1>, tile_avx512<2>, tile_avx512<3>, tile_avx512<4>,
      tile_avx512<5>, tile_avx512<6>, tile_avx512<7>, tile_avx512<8>};
  static constexpr Tile<float> avx2[kRows256] = {tile_avx2<1>, tile_avx2<2>, tile_avx2<3>,
                                                 tile_avx2<4>};
  return width == kWidth512 ? avx512[rows - 1] : avx2[rows - 1];
}

Tile<uint16_t> bf16_tile(int64_t rows) {
  static constexpr Tile<uint16_t> tiles[kRows512] = {
      tile_bf16<1>, tile_bf16<2>, tile_bf16<3>, tile_bf16<4>,
      tile_bf16<5>, tile_bf16<6>, tile_bf16<7>, tile_bf16<8>};
  return tiles[rows - 1];
}

// `y [m, n] = x [m, k] · wᵀ` over `packed` (`panels` panels of `width` columns, `k` positions
// each): the panels are shared out among libtorch's intra-op threads, and each goes through all
// the rows, into its thread's fp32 sums, while its weights are in cache.
template <typename T>
void product(const T* x, int64_t m, int64_t k, const T* packed, int64_t panels, int64_t width,
             int64_t n, int64_t k_block, T* y) {
  const int64_t most_rows = width == kWidth512 ? kRows512 : kRows256;
  // Allocated here, since nothing may throw on the pool's threads.
  std::vector<float> sums(flan_pool::most_parts(panels) * m * width);
  flan_pool::parallel_ranges(panels, [&](int64_t part, int64_t begin, int64_t end) {
    float* own = sums.data() + part * m * width;
    for (int64_t p = begin; p < end; ++p) {
      const T* panel = packed + p * k * width;
      for (int64_t r = 0; r < m; r += most_rows) {
        const int64_t rows = std::min(most_rows, m - r);
        if constexpr (std::is_same<T, uint16_t>::value) {
          bf16_tile(rows)(x + r * k, k, panel, k, k_block, own + r * width, width);
        } else {
          fp32_tile(width, rows)(x + r * k, k, panel, k, k_block, own + r * width, width);
        }
      }
      const int64_t cols = std::min(width, n - p * width);
      if constexpr (std::is_same<T, uint16_t>::value) {
        emit_bf16(own, m, cols, y + p * width, n);
      } else {
        emit_fp32(own, m, width, cols, y + p * width, n);
      }
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
    // Not an error: the kernel has no autograd formula and ignores autocast, so in those modes
    // the caller takes the plain product.
    if (c10::GradMode::is_enabled() || at::autocast::is_autocast_enabled(at::kCPU)) {
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
    TORCH_CHECK(p.size(2) == width, "fma linear: the packed weight's panels are ", p.size(2),
                " wide, this process's kernels ", width);
    TORCH_CHECK(bf16 ? p.size(1) * 2 == k && p.size(3) == 2 : p.size(1) == k,
                "fma linear: input of shape ", input.sizes(), " for a packed weight of shape ",
                p.sizes());
    TORCH_CHECK(out_features > (panels - 1) * width && out_features <= panels * width,
                "fma linear: ", out_features, " outputs do not fill ", panels, " panels of ",
                width);
    // A block boundary must not split a bf16 pair (one block covering everything has none).
    TORCH_CHECK(k_block > 0 && (!bf16 || k_block % 2 == 0 || k_block >= k), "fma linear: blocks ",
                "of ", k_block, " input positions", bf16 ? " (bf16 needs an even number)" : "");
    at::Tensor y = at::empty({input.size(0), out_features}, input.options());
    if (k == 0) {
      y.zero_();
    } else if (bf16) {
      product(reinterpret_cast<const uint16_t*>(input.data_ptr()), input.size(0), k,
              reinterpret_cast<const uint16_t*>(p.data_ptr()), panels, width, out_features,
              k_block, reinterpret_cast<uint16_t*>(y.data_ptr()));
    } else {
      product(input.data_ptr<float>(), input.size(0), k, p.data_ptr<float>(), panels, width,
              out_features, k_block, y.data_ptr<float>());
    }
    *out = new at::Tensor(std::move(y));
  });
}

}  // extern "C"
