// Linear layers over MKL-packed weights, for flan-model's `PrepackedLinear` (decoding steps).
//
// libtorch registers `mkl::_mkl_reorder_linear_weight` (cblas_sgemm_pack of a [out, in] weight
// for a given number of input rows) and `mkl::_mkl_linear` (cblas_sgemm_compute over it) when it
// is built with MKL, as the x86-64 PyPI wheels are. tch binds neither, and they are not part of
// ATen's public op list, so they are looked up in the dispatcher at run time: a libtorch without
// them (no MKL, another CPU architecture) makes these functions return null, and the caller
// falls back to the plain linear layer.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>

#include <exception>
#include <optional>

namespace {

using PackFn = at::Tensor(const at::Tensor&, int64_t);
using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const std::optional<at::Tensor>&, int64_t);

template <typename Fn>
std::optional<c10::TypedOperatorHandle<Fn>> lookup(const char* name) {
  try {
    auto handle = c10::Dispatcher::singleton().findSchema({name, ""});
    if (!handle.has_value() || !handle->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
      return std::nullopt;
    }
    return handle->typed<Fn>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

const std::optional<c10::TypedOperatorHandle<PackFn>>& pack_op() {
  static const auto op = lookup<PackFn>("mkl::_mkl_reorder_linear_weight");
  return op;
}

const std::optional<c10::TypedOperatorHandle<LinearFn>>& linear_op() {
  static const auto op = lookup<LinearFn>("mkl::_mkl_linear");
  return op;
}

// A 2-d contiguous fp32 CPU tensor.
bool plain_cpu_matrix(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 2 &&
         t.is_contiguous() && t.layout() == at::kStrided;
}

}  // namespace

extern "C" {

int flan_prepacked_linear_available() {
  return pack_op().has_value() && linear_op().has_value() ? 1 : 0;
}

// The weight `[out, in]` packed for inputs of `rows` rows, as a new at::Tensor* the caller owns;
// null when MKL packing is unavailable, the weight is not a contiguous fp32 CPU matrix, or
// libtorch threw.
void* flan_prepacked_linear_pack(void* weight, int64_t rows) {
  try {
    const auto& op = pack_op();
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    if (!op.has_value() || !linear_op().has_value() || rows <= 0 || !plain_cpu_matrix(w)) {
      return nullptr;
    }
    // The packed copy is data, not a parameter: no autograd history.
    at::NoGradGuard no_grad;
    return new at::Tensor(op->call(w.detach(), rows));
  } catch (const std::exception&) {
    return nullptr;
  }
}

// `x [rows, in] · weightᵀ` through the weight packed for `rows` rows, as a new at::Tensor*; null
// (nothing computed) unless the packed kernel computes exactly what `linear` would here: no
// autograd (grad mode off or inference mode), no CPU autocast, fp32 contiguous CPU operands of
// matching shapes.
void* flan_prepacked_linear_forward(void* x, void* packed, void* weight, int64_t rows) {
  try {
    const auto& op = linear_op();
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    const at::Tensor& p = *static_cast<at::Tensor*>(packed);
    if (!op.has_value() || c10::GradMode::is_enabled() ||
        at::autocast::is_autocast_enabled(at::kCPU) || !plain_cpu_matrix(input) ||
        !plain_cpu_matrix(w) || !p.defined() || !p.device().is_cpu() ||
        input.size(0) != rows || input.size(1) != w.size(1)) {
      return nullptr;
    }
    return new at::Tensor(op->call(input, p, w, std::nullopt, rows));
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // extern "C"
