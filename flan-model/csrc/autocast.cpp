// Per-device autocast switches of libtorch (at::autocast), for flan-model's `Autocast` guard.
// Every function returns 0 on success and -1 when libtorch threw; the message is then in
// flan_autocast_last_error() (thread-local, as autocast state itself is).
#include <ATen/autocast_mode.h>

#include <cstring>
#include <exception>

namespace {
thread_local char last_error[1024];

int fail(const char* what) {
  std::strncpy(last_error, what, sizeof(last_error) - 1);
  last_error[sizeof(last_error) - 1] = '\0';
  return -1;
}
}  // namespace

extern "C" {

const char* flan_autocast_last_error() { return last_error; }

// Turns autocast on for `device_type` (c10::DeviceType) with `scalar_type` (c10::ScalarType) as
// its lower precision, after saving the previous switch and dtype for flan_autocast_exit.
int flan_autocast_enter(int device_type, int scalar_type, int* prev_enabled,
                        int* prev_scalar_type) {
  try {
    auto device = static_cast<c10::DeviceType>(device_type);
    if (!at::autocast::is_autocast_available(device)) {
      return fail("autocast is not available for this device type");
    }
    *prev_enabled = at::autocast::is_autocast_enabled(device) ? 1 : 0;
    *prev_scalar_type = static_cast<int>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(scalar_type));
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

// Restores what flan_autocast_enter saved. Leaving the outermost region drops the cache of
// casted weights, as torch.autocast's __exit__ does, so that an optimizer step taken after it
// is never hidden by a stale low-precision copy.
int flan_autocast_exit(int device_type, int prev_enabled, int prev_scalar_type) {
  try {
    auto device = static_cast<c10::DeviceType>(device_type);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, prev_enabled != 0);
    at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(prev_scalar_type));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

// 1 when autocast is on for `device_type`, 0 when off, -1 on error.
int flan_autocast_is_enabled(int device_type) {
  try {
    return at::autocast::is_autocast_enabled(static_cast<c10::DeviceType>(device_type)) ? 1 : 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

}  // extern "C"
