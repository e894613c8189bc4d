// c10::InferenceMode for flan-model's `InferenceMode` guard: tch has only no_grad, which still
// runs every op through autograd's dispatch keys; inference mode skips them (and the version
// counters of views), which is most of the cost of the many small ops of a decoding step.
#include <c10/core/InferenceMode.h>

#include <exception>

extern "C" {

// A heap-held guard (nullptr if libtorch threw); flan_inference_mode_exit restores the state.
void* flan_inference_mode_enter() {
  try {
    return new c10::InferenceMode(true);
  } catch (const std::exception&) {
    return nullptr;
  }
}

void flan_inference_mode_exit(void* guard) {
  delete static_cast<c10::InferenceMode*>(guard);
}

int flan_inference_mode_is_enabled() { return c10::InferenceMode::is_enabled() ? 1 : 0; }

}  // extern "C"
