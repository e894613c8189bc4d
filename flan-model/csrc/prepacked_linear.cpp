// Linear layers over MKL-packed weights, for flan-model's `PrepackedLinear` (decoding steps).
//
// libtorch registers `mkl::_mkl_reorder_linear_weight` (cblas_sgemm_pack of a [out, in] weight
// for a given number of input rows) and `mkl::_mkl_linear` (cblas_sgemm_compute over it) when it
// is built with MKL, as the x86-64 PyPI wheels are. tch binds neither, and they are not part of
// ATen's public op list, so they are looked up in the dispatcher at run time: a libtorch without
// them (no MKL, another CPU architecture) reports 0 from flan_model_prepacked_linear_available,
// and the caller keeps the plain linear layer. Errors follow flan_model_shim.h's convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"

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

// Throws unless `t` is a 2-d contiguous fp32 CPU tensor.
void check_plain_cpu_matrix(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.defined(), "prepacked linear: the ", what, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, "prepacked linear: the ", what,
              " must be a strided CPU tensor, got ", t.layout(), " on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "prepacked linear: the ", what,
              " must be fp32, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), "prepacked linear: the ", what,
              " must be a contiguous matrix, got shape ", t.sizes());
}

void check_available() {
  TORCH_CHECK(pack_op().has_value() && linear_op().has_value(),
              "prepacked linear: this libtorch has no MKL packed GEMM "
              "(mkl::_mkl_reorder_linear_weight, mkl::_mkl_linear)");
}

}  // namespace

extern "C" {

int32_t flan_model_prepacked_linear_available() {
  return pack_op().has_value() && linear_op().has_value() ? 1 : 0;
}

char* flan_model_prepacked_linear_pack(void* weight, int64_t rows, void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    check_available();
    TORCH_CHECK(rows > 0, "prepacked linear: cannot pack for ", rows, " rows");
    check_plain_cpu_matrix(w, "weight");
    // The packed copy is data, not a parameter: no autograd history.
    at::NoGradGuard no_grad;
    *out = new at::Tensor(pack_op()->call(w.detach(), rows));
  });
}

char* flan_model_prepacked_linear_forward(void* x, void* packed, void* weight, int64_t rows,
                                          void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    const at::Tensor& p = *static_cast<at::Tensor*>(packed);
    check_available();
    // Not errors: modes in which the packed kernel would not compute what `linear` does (it has
    // no autograd formula and ignores autocast). The caller then takes the plain product.
    if (c10::GradMode::is_enabled() || at::autocast::is_autocast_enabled(at::kCPU)) {
      return;
    }
    check_plain_cpu_matrix(input, "input");
    check_plain_cpu_matrix(w, "weight");
    TORCH_CHECK(p.defined() && p.device().is_cpu(),
                "prepacked linear: the packed weight must be a CPU tensor");
    TORCH_CHECK(input.size(0) == rows && input.size(1) == w.size(1), "prepacked linear: input of ",
                "shape ", input.sizes(), " for a weight of shape ", w.sizes(), " packed for ",
                rows, " rows");
    *out = new at::Tensor(linear_op()->call(input, p, w, std::nullopt, rows));
  });
}

}  // extern "C"
