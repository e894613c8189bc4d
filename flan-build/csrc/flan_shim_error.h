// The error half of the shims' FFI convention (flan-model's flan_model_shim.h, flan-dist's
// c10d_shim.h), for their C++ side: `guarded` runs a function body and turns any C++ exception
// into the owned message the C interface returns; each crate exports its own function that
// frees it. flan-build's `libtorch_cpp_build` puts this directory on the include path.
#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace flan_shim {

// A malloc'd, NUL-terminated copy of `message`, freed by the crate's `*_free_error`.
inline char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.data(), message.size());
    out[message.size()] = '\0';
  }
  return out;
}

// Runs `body`: NULL when it returns, the exception's message when it throws. c10 errors carry a
// C++ backtrace in what(); the message without it is what a user can act on.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception (not a std::exception) in a flan shim");
  }
}

}  // namespace flan_shim
