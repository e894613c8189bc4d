// c10::InferenceMode for flan-model's `InferenceMode` guard: tch has only no_grad, which still
// runs every op through autograd's dispatch keys; inference mode skips them (and the version
// counters of views), which is most of the cost of the many small ops of a decoding step.
// Errors follow flan_model_shim.h's convention; entering can fail only to allocate the guard.
#include "flan_model_shim.h"
#include "flan_shim_error.h"

#include <c10/core/InferenceMode.h>

extern "C" {

char* flan_model_inference_mode_enter(void** out) {
  return flan_shim::guarded([&] { *out = new c10::InferenceMode(true); });
}

void flan_model_inference_mode_exit(void* guard) {
  delete static_cast<c10::InferenceMode*>(guard);
}

int32_t flan_model_inference_mode_is_enabled() {
  return c10::InferenceMode::is_enabled() ? 1 : 0;
}

}  // extern "C"
