// Per-device autocast switches of libtorch (at::autocast), for flan-model's `Autocast` guard.
// Errors follow flan_model_shim.h's convention.
#include "flan_model_shim.h"
#include "flan_shim_error.h"

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>

using flan_shim::guarded;

extern "C" {

char* flan_model_autocast_enter(int32_t device_type, int32_t scalar_type, int32_t* prev_enabled,
                                int32_t* prev_scalar_type) {
  return guarded([&] {
    auto device = static_cast<c10::DeviceType>(device_type);
    // Checked first: libtorch's own switches do not all check, and index per-device tables.
    TORCH_CHECK(at::autocast::is_autocast_available(device),
                "autocast is not available for device type ", c10::DeviceTypeName(device, true));
    *prev_enabled = at::autocast::is_autocast_enabled(device) ? 1 : 0;
    *prev_scalar_type = static_cast<int32_t>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(scalar_type));
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
  });
}

// Leaving the outermost region drops the cache of casted weights, as torch.autocast's __exit__
// does, so that an optimizer step taken after it is never hidden by a stale low-precision copy.
char* flan_model_autocast_exit(int32_t device_type, int32_t prev_enabled,
                               int32_t prev_scalar_type) {
  return guarded([&] {
    auto device = static_cast<c10::DeviceType>(device_type);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, prev_enabled != 0);
    at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(prev_scalar_type));
  });
}

char* flan_model_autocast_is_enabled(int32_t device_type, int32_t* out) {
  return guarded([&] {
    *out = at::autocast::is_autocast_enabled(static_cast<c10::DeviceType>(device_type)) ? 1 : 0;
  });
}

}  // extern "C"
