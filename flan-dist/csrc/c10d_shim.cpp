// flan-dist's shim over libtorch's c10d. Compiled by build.rs against the headers of the
// installed libtorch, plus our declaration-only gloo headers (../include). All c10d code runs
// from libtorch_cpu.so / libtorch_cuda.so; this file only builds objects and waits on work.

#include "c10d_shim.h"
#include "flan_shim_error.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#ifdef FLAN_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

struct FlanDistStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct FlanDistGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
  int32_t world_size;
  bool supports_avg;
};

namespace {

using flan_shim::copy_message;
using flan_shim::guarded;

std::chrono::milliseconds millis(int64_t ms) {
  return std::chrono::milliseconds(ms);
}

// Waits for `work` to finish on this rank. Work::wait throws the backend's exception when the
// collective failed (a peer closed its connection, gloo's own timeout) and a timeout error when
// it did not finish within `timeout_ms`.
void wait_for(const c10::intrusive_ptr<c10d::Work>& work, int64_t timeout_ms) {
  if (!work->wait(millis(timeout_ms))) {
    throw std::runtime_error("c10d work was aborted before it completed");
  }
}

}  // namespace

extern "C" {

void flan_dist_free_error(char* message) { std::free(message); }

void flan_dist_free_bytes(uint8_t* bytes) { std::free(bytes); }

char* flan_dist_store_new(
    const char* host, uint16_t port, int32_t world_size, int32_t is_server,
    int64_t timeout_ms, FlanDistStore** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<size_t>(world_size);
    opts.waitWorkers = true;
    opts.timeout = millis(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new FlanDistStore{std::move(store)};
  });
}

void flan_dist_store_free(FlanDistStore* store) { delete store; }

char* flan_dist_store_set(FlanDistStore* store, const char* key, const uint8_t* value, uint64_t len) {
  return guarded([&] {
    std::vector<uint8_t> bytes(value, value + len);
    store->store->set(std::string(key), bytes);
  });
}

char* flan_dist_store_get(FlanDistStore* store, const char* key, uint8_t** out, uint64_t* out_len) {
  return guarded([&] {
    std::vector<uint8_t> bytes = store->store->get(std::string(key));
    auto* buffer = static_cast<uint8_t*>(std::malloc(bytes.empty() ? 1 : bytes.size()));
    if (buffer == nullptr) {
      throw std::bad_alloc();
    }
    if (!bytes.empty()) {
      std::memcpy(buffer, bytes.data(), bytes.size());
    }
    *out = buffer;
    *out_len = bytes.size();
  });
}

char* flan_dist_group_gloo_new(
    FlanDistStore* store, int32_t rank, int32_t world_size, int64_t timeout_ms,
    const char* hostname, FlanDistGroup** out) {
  return guarded([&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(millis(timeout_ms));
    if (hostname != nullptr) {
      opts->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(std::string(hostname)));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // The constructor connects the full mesh through the store; it throws after the timeout
    // when a peer never shows up.
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world_size, opts);
    // Gloo has no AVG reduction (c10d rejects it); we sum and divide instead.
    *out = new FlanDistGroup{group, world_size, false};
  });
}

char* flan_dist_group_nccl_new(
    FlanDistStore* store, int32_t rank, int32_t world_size, int64_t timeout_ms,
    FlanDistGroup** out) {
#ifdef FLAN_DIST_NCCL
  return guarded([&] {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = millis(timeout_ms);
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, world_size, opts);
    *out = new FlanDistGroup{group, world_size, true};
  });
#else
  (void)store;
  (void)rank;
  (void)world_size;
  (void)timeout_ms;
  (void)out;
  return copy_message(
      "flan-dist was built without NCCL support: rebuild with `--features nccl` "
      "(needs the NCCL and CUDA headers)");
#endif
}

void flan_dist_group_free(FlanDistGroup* group) { delete group; }

char* flan_dist_all_reduce(FlanDistGroup* group, void* tensor, int32_t op, int64_t timeout_ms) {
  return guarded([&] {
    at::Tensor& t = *static_cast<at::Tensor*>(tensor);
    c10d::AllreduceOptions opts;
    opts.timeout = millis(timeout_ms);
    bool divide_after = false;
    switch (op) {
      case FLAN_DIST_SUM:
        opts.reduceOp = c10d::ReduceOp::SUM;
        break;
      case FLAN_DIST_AVG:
        if (group->supports_avg) {
          opts.reduceOp = c10d::ReduceOp::AVG;
        } else {
          opts.reduceOp = c10d::ReduceOp::SUM;
          divide_after = true;
        }
        break;
      case FLAN_DIST_MAX:
        opts.reduceOp = c10d::ReduceOp::MAX;
        break;
      case FLAN_DIST_MIN:
        opts.reduceOp = c10d::ReduceOp::MIN;
        break;
      default:
        throw std::invalid_argument("unknown reduce op " + std::to_string(op));
    }
    std::vector<at::Tensor> tensors{t};
    wait_for(group->backend->allreduce(tensors, opts), timeout_ms);
    if (divide_after) {
      t.div_(group->world_size);
    }
  });
}

char* flan_dist_broadcast(FlanDistGroup* group, void* tensor, int32_t root, int64_t timeout_ms) {
  return guarded([&] {
    at::Tensor& t = *static_cast<at::Tensor*>(tensor);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = millis(timeout_ms);
    std::vector<at::Tensor> tensors{t};
    wait_for(group->backend->broadcast(tensors, opts), timeout_ms);
  });
}

char* flan_dist_barrier(FlanDistGroup* group, int64_t timeout_ms) {
  return guarded([&] {
    c10d::BarrierOptions opts;
    opts.timeout = millis(timeout_ms);
    wait_for(group->backend->barrier(opts), timeout_ms);
  });
}

}  // extern "C"
