// Our own fp32 product for flan-model's decoding steps (`fma_linear.rs`): `x [rows, in] · wᵀ`
// with every output summed as one fused multiply-add chain over the input positions, restarted
// at every `k_block` positions, the blocks' sums added in order. That is how MKL's generic
// (`def`) sgemm kernels sum at a few dozen rows on an AMD EPYC (K blocks of 192), and there
// they leave half of the machine's peak unused; the caller uses this kernel only where a probe
// shows it bitwise the plain product.
//
// Why the bits do not depend on the vector width: each vector lane is one output column, and a
// column's chain is the same sequence of scalar FMAs whichever register it sits in. The AVX-512
// and AVX2 kernels therefore give the same result; which one runs follows libtorch's own CPU
// capability (capped by ATEN_CPU_CAPABILITY), and with neither the kernel is unavailable.
//
// The weight is packed once into panels of `width` output columns, `[panels, in, width]`, the
// last panel padded with zeros, so that a step reads each input position's `width` weights as
// consecutive vectors. Errors follow flan_model_shim.h's convention.
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
#include <vector>

namespace {

// Output columns per panel: three vectors of each ISA's width.
constexpr int64_t kWidth512 = 48;
constexpr int64_t kWidth256 = 24;

// The panel width this process's kernels use, 0 where there is none.
int64_t panel_width() {
  static const int64_t width = [] {
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512" && __builtin_cpu_supports("avx512f")) {
      return kWidth512;
    }
    if ((capability == "AVX512" || capability == "AVX2") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma")) {
      return kWidth256;
    }
    return int64_t{0};
  }();
  return width;
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

using Tile = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);

// Rows per tile: as many as leave the accumulators in registers (3 vectors a row, of 32
// registers with AVX-512 and 16 with AVX2).
constexpr int kRows512 = 8;
constexpr int kRows256 = 4;

// The tile function for `rows` rows (1 to the ISA's most) of panels `width` wide.
Tile tile_for(int64_t width, int64_t rows) {
  static constexpr Tile avx512[kRows512] = {tile_avx512<1>, tile_avx512<2>, tile_avx512<3>,
                                            tile_avx512<4>, tile_avx512<5>, tile_avx512<6>,
                                            tile_avx512<7>, tile_avx512<8>};
  static constexpr Tile avx2[kRows256] = {tile_avx2<1>, tile_avx2<2>, tile_avx2<3>,
                                          tile_avx2<4>};
  return width == kWidth512 ? avx512[rows - 1] : avx2[rows - 1];
}

// `y [m, n] = x [m, k] · wᵀ` over `packed` `[panels, k, width]`; panels are shared out among
// libtorch's intra-op threads, and each panel goes through all the rows while its weights are
// in cache.
void product(const float* x, int64_t m, int64_t k, const float* packed, int64_t panels,
             int64_t width, int64_t n, int64_t k_block, float* y) {
  const int64_t most_rows = width == kWidth512 ? kRows512 : kRows256;
  // A partial last panel is computed whole into scratch, then its columns copied out; allocated
  // here, since nothing may throw on the pool's threads.
  std::vector<float> partial(n % width == 0 ? 0 : m * width);
  flan_pool::parallel_ranges(panels, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* panel = packed + p * k * width;
      const int64_t cols = std::min(width, n - p * width);
      float* out = y + p * width;
      int64_t ldo = n;
      if (cols < width) {
        out = partial.data();
        ldo = width;
      }
      for (int64_t r = 0; r < m; r += most_rows) {
        const int64_t rows = std::min(most_rows, m - r);
        tile_for(width, rows)(x + r * k, k, panel, k, k_block, out + r * ldo, ldo);
      }
      if (cols < width) {
        for (int64_t r = 0; r < m; ++r) {
          std::memcpy(y + r * n + p * width, out + r * width, cols * sizeof(float));
        }
      }
    }
  });
}

// Throws unless `t` is a contiguous fp32 CPU tensor of `dims` dimensions.
void check_fp32(const at::Tensor& t, const char* what, int64_t dims) {
  TORCH_CHECK(t.defined(), "fma linear: the ", what, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, "fma linear: the ", what,
              " must be a strided CPU tensor, got ", t.layout(), " on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "fma linear: the ", what, " must be Float, got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == dims && t.is_contiguous(), "fma linear: the ", what, " must be a ",
              "contiguous ", dims, "-d tensor, got shape ", t.sizes());
}

void check_available() {
  TORCH_CHECK(panel_width() > 0, "fma linear: needs AVX2 with FMA or AVX-512, and libtorch's ",
              "CPU capability is ", at::get_cpu_capability());
}

}  // namespace

extern "C" {

int64_t flan_model_fma_linear_panel_width() {
  try {
    return panel_width();
  } catch (...) {
    return 0;
  }
}

char* flan_model_fma_linear_pack(void* weight, void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    check_available();
    check_fp32(w, "weight", 2);
    const int64_t width = panel_width();
    const int64_t n = w.size(0);
    const int64_t k = w.size(1);
    const int64_t panels = (n + width - 1) / width;
    at::NoGradGuard no_grad;
    // [n, k] -> zero-padded [panels · width, k] -> [panels, width, k] -> [panels, k, width].
    at::Tensor padded = at::zeros({panels * width, k}, w.options());
    padded.narrow(0, 0, n).copy_(w.detach());
    *out = new at::Tensor(padded.view({panels, width, k}).transpose(1, 2).contiguous());
  });
}

char* flan_model_fma_linear_forward(void* x, void* packed, int64_t out_features, int64_t k_block,
                                    void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& p = *static_cast<at::Tensor*>(packed);
    check_available();
    // Not an error: the kernel has no autograd formula and ignores autocast, so in those modes
    // the caller takes the plain product.
    if (c10::GradMode::is_enabled() || at::autocast::is_autocast_enabled(at::kCPU)) {
      return;
    }
    check_fp32(input, "input", 2);
    check_fp32(p, "packed weight", 3);
    const int64_t width = panel_width();
    const int64_t panels = p.size(0);
    const int64_t k = input.size(1);
    TORCH_CHECK(p.size(2) == width, "fma linear: the packed weight's panels are ", p.size(2),
                " wide, this process's kernels ", width);
    TORCH_CHECK(p.size(1) == k, "fma linear: input of shape ", input.sizes(),
                " for a packed weight of shape ", p.sizes());
    TORCH_CHECK(out_features > (panels - 1) * width && out_features <= panels * width,
                "fma linear: ", out_features, " outputs do not fill ", panels, " panels of ",
                width);
    TORCH_CHECK(k_block > 0, "fma linear: blocks of ", k_block, " input positions");
    at::Tensor y = at::empty({input.size(0), out_features}, input.options());
    if (k == 0) {
      y.zero_();
    } else {
      product(input.data_ptr<float>(), input.size(0), k, p.data_ptr<float>(), panels, width,
              out_features, k_block, y.data_ptr<float>());
    }
    *out = new at::Tensor(std::move(y));
  });
}

}  // extern "C"
