// C interface of flan-model's shims over what tch does not bind: per-device autocast
// (autocast.cpp), flushing denormals on every intra-op thread (denormals.cpp), inference mode
// (inference_mode.cpp), MKL's packed GEMM and oneDNN's reordered bf16 weights for decoding
// steps (prepacked_linear.cpp), our own products for them (fma_linear.cpp, bf16_dot_linear.cpp)
// and T5's layer norm in one call (rms_norm.cpp).
//
// The convention is flan-dist's (flan-dist/csrc/c10d_shim.h): every function that can fail
// returns NULL on success or a heap-allocated, NUL-terminated error message that the caller frees
// with flan_model_free_error, and hands its results back through out-parameters. C++ exceptions
// never cross this boundary. Functions that cannot fail return their result directly.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void flan_model_free_error(char* message);

// --- autocast.cpp. Device types are c10::DeviceType, scalar types c10::ScalarType.

// Turns autocast on for `device_type` with `scalar_type` as its lower precision, after saving the
// previous switch and dtype (for flan_model_autocast_exit) in *prev_enabled and *prev_scalar_type.
char* flan_model_autocast_enter(
    int32_t device_type, int32_t scalar_type, int32_t* prev_enabled, int32_t* prev_scalar_type);
// Restores what flan_model_autocast_enter saved.
char* flan_model_autocast_exit(
    int32_t device_type, int32_t prev_enabled, int32_t prev_scalar_type);
// *out: 1 when autocast is on, on this thread, for `device_type`, else 0.
char* flan_model_autocast_is_enabled(int32_t device_type, int32_t* out);

// --- denormals.cpp

// Switches flush-to-zero / denormals-are-zero on (on != 0) or off, on this thread and on each
// thread of libtorch's intra-op pool. Fails on a CPU without the mode.
char* flan_model_set_flush_denormal(int32_t on);
// 1 when this thread flushes denormals, else 0.
int32_t flan_model_flush_denormal_is_on(void);
// Bit masks over OpenMP thread numbers: the threads of a pool-sized team (*seen) and those of them
// that flush (*on); for tests.
void flan_model_flush_denormal_threads(int64_t* seen, int64_t* on);

// --- inference_mode.cpp

// *out: a heap-held c10::InferenceMode guard, released by flan_model_inference_mode_exit on the
// same thread.
char* flan_model_inference_mode_enter(void** out);
void flan_model_inference_mode_exit(void* guard);
// 1 when inference mode is on, on this thread, else 0.
int32_t flan_model_inference_mode_is_enabled(void);

// --- prepacked_linear.cpp. Tensors are the at::Tensor* behind a tch::Tensor (tch's C_tensor);
// the shim only reads them during the call. A tensor handed back in *out is a new at::Tensor*
// that the caller owns.

// 1 when this libtorch has MKL's packed GEMM (mkl::_mkl_reorder_linear_weight and
// mkl::_mkl_linear), else 0.
int32_t flan_model_prepacked_linear_available(void);
// *out: `weight` ([out, in], a contiguous fp32 CPU matrix) packed for inputs of `rows` rows.
// Fails when MKL packing is unavailable or the weight is not such a matrix.
char* flan_model_prepacked_linear_pack(void* weight, int64_t rows, void** out);
// *out: `x [rows, in] · weightᵀ` through `packed` (the weight packed for `rows` rows); NULL,
// with nothing computed, where the packed kernel would not compute what `linear` does in the
// current mode (grad mode on, CPU autocast on). Fails when the operands are not contiguous fp32
// CPU matrices of matching shapes.
char* flan_model_prepacked_linear_forward(
    void* x, void* packed, void* weight, int64_t rows, void** out);
// 1 when this libtorch has oneDNN's reordered linear weights (mkldnn::_reorder_linear_weight
// and mkldnn::_linear_pointwise), else 0.
int32_t flan_model_onednn_linear_available(void);
// *out: `weight` ([out, in], a contiguous bf16 CPU matrix) reordered by oneDNN for inputs of
// `rows` rows, an opaque mkldnn tensor. Fails when oneDNN is unavailable or the weight is not
// such a matrix.
char* flan_model_onednn_linear_pack(void* weight, int64_t rows, void** out);
// *out: `x [rows, in] · weightᵀ` through `packed` (`weight` reordered by oneDNN); NULL, with
// nothing computed, in the modes where flan_model_prepacked_linear_forward gives NULL. Fails
// when the operands are not contiguous bf16 CPU matrices of matching shapes.
char* flan_model_onednn_linear_forward(void* x, void* packed, void* weight, void** out);

// --- fma_linear.cpp. Tensors as for prepacked_linear.cpp.
// Output columns per packed panel of this process's kernel for `scalar_type` (a c10::ScalarType):
// fp32 48 with AVX-512, 24 with AVX2 and FMA, following libtorch's CPU capability; bf16 48 with
// AVX512-BF16; 0 where there is none.
int64_t flan_model_fma_linear_panel_width(int32_t scalar_type);
// *out: `weight` ([out, in], a contiguous fp32 or bf16 CPU matrix; bf16: `in` even) packed into
// panels, `[panels, in, width]` (fp32) or `[panels, in / 2, width, 2]` (bf16). Fails where there
// is no kernel for the dtype or the weight is not such a matrix.
char* flan_model_fma_linear_pack(void* weight, void** out);
// *out: `x [rows, in] · weightᵀ` through `packed` (the weight's panels, `out_features` of their
// columns real), each output one chain of fused multiply-adds (bf16: of vdpbf16ps, by pairs of
// positions) per block of `k_block` input positions, the blocks' sums added in order (bf16: then
// rounded to bf16); NULL, with nothing computed, in the modes where
// flan_model_prepacked_linear_forward gives NULL. Fails when the operands do not match.
char* flan_model_fma_linear_forward(
    void* x, void* packed, int64_t out_features, int64_t k_block, void** out);
// *out: `x [1, in] · weightᵀ` for one fp32 row through `packed` (the fp32 weight's panels),
// each output summed in MKL's generic sgemv order: products rounded, then added; the first
// `head` (1 to 4) in sequence, then four chains over the positions in turn, their sums added as
// (0 + 2) + (1 + 3), then the positions past the last whole group of four, then zero. NULL as for
// flan_model_fma_linear_forward. Fails when the operands do not match.
char* flan_model_fma_linear_four_lanes(
    void* x, void* packed, int64_t out_features, int64_t head, void** out);

// --- bf16_dot_linear.cpp. Tensors as for prepacked_linear.cpp.
// 1 where this process's libtorch sums bf16 dot products as flan_model_bf16_dot_linear_forward
// does (its AVX2 build, on a CPU with AVX2 and FMA), else 0.
int32_t flan_model_bf16_dot_linear_available(void);
// *out: `x [rows, in] · weightᵀ` for a bf16 input and weight (contiguous 2-d CPU tensors), each
// output summed as libtorch's AVX2 bf16_dot_with_fp32_arith sums (64 chains of FMAs, added in a
// fixed tree; the positions past the last multiple of 64 after them) and rounded to bf16; NULL
// as for flan_model_fma_linear_forward. Fails when the operands do not match or the kernel is
// not available.
char* flan_model_bf16_dot_linear_forward(void* x, void* weight, void** out);

// --- rms_norm.cpp. Tensors as for prepacked_linear.cpp.
// Lanes of the vectors libtorch's float sums run in (8 in its AVX2 and default builds, 16 in its
// AVX-512 one), 0 where rms_norm.cpp does not know the build.
int32_t flan_model_rms_norm_lanes(void);
// *out: T5's layer norm `weight * to(x * rsqrt(mean(x²) + eps), weight.dtype)` of a contiguous
// float or bf16 `x [..., n]` with a 1-d `weight [n]`, every row's sum of squares added in ATen's
// cascade order over vectors of `lanes` lanes (0: flan_model_rms_norm_lanes()), and, when
// `variance` is not NULL, *variance: the rows' mean squares (fp32, `[..., 1]`). *out stays NULL
// where the kernel does not apply: autograd on an input that needs it, CPU autocast, other
// dtypes, layouts or shapes, 32768 elements or more (libtorch sums those in parallel).
char* flan_model_rms_norm_forward(
    void* x, void* weight, double eps, int32_t lanes, void** out, void** variance);
#ifdef __cplusplus
}
#endif
