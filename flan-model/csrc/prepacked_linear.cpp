// Linear layers over MKL-packed weights, for flan-model's `PrepackedLinear` (decoding steps).
//
// libtorch registers `mkl::_mkl_reorder_linear_weight` (cblas_sgemm_pack of a [out, in] weight
// for a given number of input rows) and `mkl::_mkl_linear` (cblas_sgemm_compute over it) when it
// is built with MKL, as the x86-64 PyPI wheels are. tch binds neither, and they are not part of
// ATen's public op list, so they are looked up in the dispatcher at run time: a libtorch without
// them (no MKL, another CPU architecture) reports 0 from flan_model_prepacked_linear_available,
// and the caller keeps the plain linear layer.
//
// bf16 weights go through oneDNN instead, which libtorch's bf16 linear uses: libtorch registers
// `mkldnn::_reorder_linear_weight` (the weight reordered into oneDNN's blocked layout, an opaque
// mkldnn tensor) and `mkldnn::_linear_pointwise` (the product over it) when built with oneDNN.
// The same run-time lookup applies (flan_model_onednn_linear_available). Errors follow
// flan_model_shim.h's convention.
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
using OneDnnReorderFn = at::Tensor(const at::Tensor&, std::optional<int64_t>);
using OneDnnLinearFn = at::Tensor(const at::Tensor&, const at::Tensor&,
                                  const std::optional<at::Tensor>&, c10::string_view,
                                  c10::List<std::optional<at::Scalar>>,
                                  std::optional<c10::string_view>);

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

const std::optional<c10::TypedOperatorHandle<OneDnnReorderFn>>& onednn_reorder_op() {
  static const auto op = lookup<OneDnnReorderFn>("mkldnn::_reorder_linear_weight");
  return op;
}

const std::optional<c10::TypedOperatorHandle<OneDnnLinearFn>>& onednn_linear_op() {
  static const auto op = lookup<OneDnnLinearFn>("mkldnn::_linear_pointwise");
  return op;
}

// Throws unless `t` is a 2-d contiguous CPU tensor of `dtype`.
void check_plain_cpu_matrix(const at::Tensor& t, const char* what,
                            at::ScalarType dtype = at::kFloat) {
  TORCH_CHECK(t.defined(), "prepacked linear: the ", what, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, "prepacked linear: the ", what,
              " must be a strided CPU tensor, got ", t.layout(), " on ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "prepacked linear: the ", what, " must be ", dtype,
              ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), "prepacked linear: the ", what,
              " must be a contiguous matrix, got shape ", t.sizes());
}

// Whether the packed kernels would not compute what `linear` does in the current mode: they
// have no autograd formula and ignore autocast.
bool plain_product_mode() {
  return c10::GradMode::is_enabled() || at::autocast::is_autocast_enabled(at::kCPU);
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
    // Not an error (see plain_product_mode): the caller then takes the plain product.
    if (plain_product_mode()) {
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

int32_t flan_model_onednn_linear_available() {
  return onednn_reorder_op().has_value() && onednn_linear_op().has_value() ? 1 : 0;
}

char* flan_model_onednn_linear_pack(void* weight, int64_t rows, void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    TORCH_CHECK(onednn_reorder_op().has_value() && onednn_linear_op().has_value(),
                "prepacked linear: this libtorch has no oneDNN linear "
                "(mkldnn::_reorder_linear_weight, mkldnn::_linear_pointwise)");
    TORCH_CHECK(rows > 0, "prepacked linear: cannot pack for ", rows, " rows");
    check_plain_cpu_matrix(w, "weight", at::kBFloat16);
    at::NoGradGuard no_grad;
    *out = new at::Tensor(onednn_reorder_op()->call(w.detach(), rows));
  });
}

char* flan_model_onednn_linear_forward(void* x, void* packed, void* weight, void** out) {
  return flan_shim::guarded([&] {
    *out = nullptr;
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    const at::Tensor& p = *static_cast<at::Tensor*>(packed);
    TORCH_CHECK(onednn_linear_op().has_value(), "prepacked linear: this libtorch has no oneDNN ",
                "linear (mkldnn::_linear_pointwise)");
    if (plain_product_mode()) {
      return;
    }
    check_plain_cpu_matrix(input, "input", at::kBFloat16);
    check_plain_cpu_matrix(w, "weight", at::kBFloat16);
    TORCH_CHECK(p.defined() && p.is_mkldnn() && p.sizes() == w.sizes(),
                "prepacked linear: the packed weight must be an mkldnn tensor of shape ",
                w.sizes());
    TORCH_CHECK(input.size(1) == w.size(1), "prepacked linear: input of shape ", input.sizes(),
                " for a weight of shape ", w.sizes());
    *out = new at::Tensor(onednn_linear_op()->call(
        input, p, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt));
  });
}

}  // extern "C"
