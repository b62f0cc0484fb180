// The exported entry points of libloopserve_cuda_backend.so
// (engine/cuda_plugin_api.h). Everything else in the plugin is hidden.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda_plugin_api.h"
#include "engine/forward_backend.h"
#include "kernels/cuda/device_probe.h"

#define LOOPSERVE_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

LOOPSERVE_PLUGIN_EXPORT int loopserve_cuda_plugin_abi() { return loopserve::kCudaPluginAbi; }

LOOPSERVE_PLUGIN_EXPORT loopserve::ForwardBackend* loopserve_cuda_backend_create(
    const loopserve::BackendContext* context, int* code, std::string* message) {
  const loopserve::cuda::DeviceProbe probe = loopserve::cuda::ProbeDevices();
  if (!probe.reason.empty()) {
    *code = static_cast<int>(absl::StatusCode::kUnavailable);
    *message = "no usable CUDA device: " + probe.reason;
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<loopserve::ForwardBackend>> backend =
      loopserve::CreateCudaBackend(*context);
  if (!backend.ok()) {
    *code = static_cast<int>(backend.status().code());
    *message = std::string(backend.status().message());
    return nullptr;
  }
  return backend->release();
}
