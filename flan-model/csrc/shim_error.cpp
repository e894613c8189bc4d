// flan_model_free_error, the one deallocator of the shims' error messages (see flan-build's flan_shim_error.h).
#include "flan_model_shim.h"

#include <cstdlib>

extern "C" void flan_model_free_error(char* message) { std::free(message); }
