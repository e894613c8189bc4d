// T5's layer norm in one call for small inputs (`src/layer_norm.rs`): the same operations as the
// composite `weight * to(x.float() * rsqrt(x.float().pow(2).mean(-1) + eps), weight.dtype)`,
// with the same bits. Decoding a token runs three of these per block on one row each, and the
// composite is eight libtorch calls whose dispatch, not their arithmetic, is the cost.
//
// The only operation whose result depends on an order is the mean's sum. ATen sums a contiguous
// row of n ≥ one vector's floats as `vectorized_inner_sum` in SumKernel.cpp does (torch 2.13):
// - the row is read as n / W vectors of W lanes (W = 8 in the AVX2 and default builds, 16 in the
//   AVX-512 one), in groups of four, each group's vectors added lane-wise into four accumulators
//   by `multi_row_sum`'s cascade (runs of `level_step` added into one level, levels added up);
// - the four accumulators are added in sequence, then the vectors past the last group of four;
// - the floats past the last whole vector are added in sequence from zero, then the lanes in turn;
// - the mean is that sum divided by n.
// Every other step is elementwise and correctly rounded (a square, an add, 1 / sqrt, products,
// bf16 rounding to nearest even), so its bits do not depend on how it is vectorised. libtorch
// sums large inputs in parallel, in another order: the caller passes only inputs below ATen's
// grain size (32768 elements), and checks the kernel against the composite before using it.
// Errors follow flan_model_shim.h's convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// The loops are elementwise or over fixed lane counts: vectorised at -O3, scalar at -O2.
#pragma GCC optimize("O3")

namespace {

// ceil(log2(x)) for x ≥ 1, and 0 below (ATen's utils::CeilLog2).
int64_t ceil_log2(int64_t x) {
  if (x <= 2) {
    return x <= 1 ? 0 : 1;
  }
  return 64 - __builtin_clzll(static_cast<uint64_t>(x - 1));
}

template <int W>
using Lanes = std::array<float, W>;

template <int W>
inline void add_into(Lanes<W>& acc, const Lanes<W>& v) {
  for (int l = 0; l < W; ++l) {
    acc[l] += v[l];
  }
}

// ATen's multi_row_sum over `size` groups of four vectors: group i's vector k is `vec(4 i + k)`.
template <int W, typename Vec>
std::array<Lanes<W>, 4> multi_row_sum(int64_t size, const Vec& vec) {
  constexpr int64_t kLevels = 4;
  const int64_t level_power = std::max<int64_t>(4, ceil_log2(size) / kLevels);
  const int64_t level_step = int64_t{1} << level_power;
  const int64_t level_mask = level_step - 1;
  std::array<std::array<Lanes<W>, 4>, kLevels> acc{};
  int64_t i = 0;
  while (i + level_step <= size) {
    for (int64_t j = 0; j < level_step; ++j, ++i) {
      for (int k = 0; k < 4; ++k) {
        add_into<W>(acc[0][k], vec(4 * i + k));
      }
    }
    for (int64_t j = 1; j < kLevels; ++j) {
      for (int k = 0; k < 4; ++k) {
        add_into<W>(acc[j][k], acc[j - 1][k]);
        acc[j - 1][k] = Lanes<W>{};
      }
      if ((i & (level_mask << (j * level_power))) != 0) {
        break;
      }
    }
  }
  for (; i < size; ++i) {
    for (int k = 0; k < 4; ++k) {
      add_into<W>(acc[0][k], vec(4 * i + k));
    }
  }
  for (int64_t j = 1; j < kLevels; ++j) {
    for (int k = 0; k < 4; ++k) {
      add_into<W>(acc[0][k], acc[j][k]);
    }
  }
  return acc[0];
}

// The sum of `x`'s n squares as ATen's vectorized_inner_sum adds them (n ≥ W).
template <int W>
float sum_of_squares(const float* x, int64_t n) {
  const auto vec = [x](int64_t index) {
    Lanes<W> v;
    for (int l = 0; l < W; ++l) {
      const float value = x[index * W + l];
      v[l] = value * value;
    }
    return v;
  };
  const int64_t vectors = n / W;
  const int64_t groups = vectors / 4;
  auto partial = multi_row_sum<W>(groups, vec);
  for (int64_t i = groups * 4; i < vectors; ++i) {
    add_into<W>(partial[0], vec(i));
  }
  for (int k = 1; k < 4; ++k) {
    add_into<W>(partial[0], partial[k]);
  }
  float sum = 0.0f;
  for (int64_t i = vectors * W; i < n; ++i) {
    sum += x[i] * x[i];
  }
  for (int l = 0; l < W; ++l) {
    sum += partial[0][l];
  }
  return sum;
}

// Lanes of libtorch's Vectorized<float> in the build it chose, 0 where the kernel does not know.
int32_t native_lanes() {
  static const int32_t lanes = [] {
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") {
      return 16;
    }
    if (capability == "AVX2" || capability == "DEFAULT") {
      return 8;
    }
    return 0;
  }();
  return lanes;
}

// Conversions written so that the loops below vectorise (c10::BFloat16's own have a branch for
// NaN): a bf16 is an fp32's upper half, and fp32 rounds to bf16 to nearest even, NaN to a quiet
// NaN, as c10::BFloat16(float) does.
inline float to_float(c10::BFloat16 v) {
  const uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
inline float to_float(float v) { return v; }

template <typename T>
inline T from_float(float f);
template <>
inline float from_float<float>(float f) {
  return f;
}
template <>
inline c10::BFloat16 from_float<c10::BFloat16>(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint16_t out = f != f ? uint16_t{0x7fc0} : static_cast<uint16_t>(rounded);
  return c10::BFloat16(out, c10::BFloat16::from_bits());
}

// One row: `x` (n values of type X), `w` (n of type Wt), into `y` (n of type Wt); the row's
// variance into `*variance`.
template <int W, typename X, typename Wt>
void row(const X* x, const Wt* w, int64_t n, float eps, float* xf, Wt* y, float* variance) {
  for (int64_t i = 0; i < n; ++i) {
    xf[i] = to_float(x[i]);
  }
  const float mean = sum_of_squares<W>(xf, n) / static_cast<float>(n);
  *variance = mean;
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) {
    const Wt normed = from_float<Wt>(xf[i] * scale);
    y[i] = from_float<Wt>(to_float(w[i]) * to_float(normed));
  }
}

template <int W, typename X, typename Wt>
void rows(const at::Tensor& x, const at::Tensor& w, float eps, at::Tensor& y, at::Tensor& var) {
  const int64_t n = w.numel();
  const int64_t count = x.numel() / n;
  std::vector<float> xf(n);
  const X* xs = x.data_ptr<X>();
  const Wt* ws = w.data_ptr<Wt>();
  Wt* ys = y.data_ptr<Wt>();
  float* vs = var.data_ptr<float>();
  for (int64_t r = 0; r < count; ++r) {
    row<W>(xs + r * n, ws, n, eps, xf.data(), ys + r * n, vs + r);
  }
}

template <int W>
void dispatch(const at::Tensor& x, const at::Tensor& w, float eps, at::Tensor& y,
              at::Tensor& var) {
  const bool x_bf16 = x.scalar_type() == at::kBFloat16;
  const bool w_bf16 = w.scalar_type() == at::kBFloat16;
  if (x_bf16 && w_bf16) {
    rows<W, c10::BFloat16, c10::BFloat16>(x, w, eps, y, var);
  } else if (x_bf16) {
    rows<W, c10::BFloat16, float>(x, w, eps, y, var);
  } else if (w_bf16) {
    rows<W, float, c10::BFloat16>(x, w, eps, y, var);
  } else {
    rows<W, float, float>(x, w, eps, y, var);
  }
}

bool float_or_bf16(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

}  // namespace

extern "C" {

int32_t flan_model_rms_norm_lanes() {
  try {
    return native_lanes();
  } catch (...) {
    return 0;
  }
}

char* flan_model_rms_norm_forward(void* x, void* weight, double eps, int32_t lanes, void** out,
                                  void** variance) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    if (variance != nullptr) {
      *variance = nullptr;
    }
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    // Outside these the composite runs: autograd and autocast follow it, and other dtypes,
    // layouts and sizes are not what the kernel knows.
    const bool grads = c10::GradMode::is_enabled() && (input.requires_grad() || w.requires_grad());
    if (grads || at::autocast::is_autocast_enabled(at::kCPU) || !input.defined() ||
        !w.defined() || !input.device().is_cpu() || !w.device().is_cpu() ||
        input.layout() != at::kStrided || w.layout() != at::kStrided || !input.is_contiguous() ||
        !w.is_contiguous() || !float_or_bf16(input) || !float_or_bf16(w) || w.dim() != 1 ||
        input.dim() < 1 || input.size(-1) != w.size(0) || input.numel() >= 32768) {
      return;
    }
    const int32_t width = lanes == 0 ? native_lanes() : lanes;
    const int64_t n = w.numel();
    if ((width != 8 && width != 16) || n < width) {
      return;
    }
    at::Tensor y = at::empty(input.sizes(), w.options());
    std::vector<int64_t> var_shape(input.sizes().begin(), input.sizes().end());
    var_shape.back() = 1;
    at::Tensor var = at::empty(var_shape, input.options().dtype(at::kFloat));
    const float eps_f = static_cast<float>(eps);
    if (width == 8) {
      dispatch<8>(input, w, eps_f, y, var);
    } else {
      dispatch<16>(input, w, eps_f, y, var);
    }
    *out = new at::Tensor(std::move(y));
    if (variance != nullptr) {
      *variance = new at::Tensor(std::move(var));
    }
  });
}

}  // extern "C"
