// The error half of flan_model_shim.h's convention, for the shims' C++ side: `guarded` runs a
// function body and turns any C++ exception into the owned message the C interface returns.
// (The same helpers as flan-dist's c10d_shim.cpp.)
#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace flan_model_shim {

// A malloc'd, NUL-terminated copy of `message`, freed by flan_model_free_error.
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
    return copy_message("unknown C++ exception in flan-model's shim");
  }
}

}  // namespace flan_model_shim
