// The CUDA backend: one resident copy of the weights, a device KV pool with
// the engine's block layout, a stream and a cuBLAS handle, and the CUDA
// forward, behind the ForwardBackend interface.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/forward_backend.h"

namespace loopserve {

// Uploads the model and allocates the device KV pool (as many blocks as
// the engine's KvCache, which must fit in context.cuda_kv_memory_fraction
// of the free device memory after the weights). Errors name the CUDA call.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(const BackendContext& context);

}  // namespace loopserve
