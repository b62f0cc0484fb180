// The C entry points of the CUDA backend plugin (libloopserve_cuda_backend.so),
// shared by the plugin and engine/forward_backend.cc, which dlopens it.
//
// Why a plugin: binaries that never use the GPU must not load libcudart and
// cuBLAS. cuBLASLt alone brings ~94 KB of static TLS into every thread, and
// glibc then refuses (EINVAL) threads created with small fixed stacks, such
// as civetweb's in the Prometheus exposer; and a CPU-only machine without the
// CUDA libraries must still run the same server binary. llama.cpp loads its
// GPU backends the same way (GGML_BACKEND_DL).
#pragma once

#include <string>

namespace loopserve {

class ForwardBackend;
struct BackendContext;

// Bumped whenever BackendContext, ForwardBackend or these signatures change,
// so a stale plugin is refused instead of misread.
inline constexpr int kCudaPluginAbi = 1;

inline constexpr const char kCudaPluginFile[] = "libloopserve_cuda_backend.so";
inline constexpr const char kCudaPluginAbiSymbol[] = "loopserve_cuda_plugin_abi";
inline constexpr const char kCudaPluginCreateSymbol[] = "loopserve_cuda_backend_create";

using CudaPluginAbiFn = int (*)();
// Returns a new backend (owned by the caller), or null with an
// absl::StatusCode in *code and the reason in *message.
using CudaPluginCreateFn = ForwardBackend* (*)(const BackendContext* context, int* code,
                                               std::string* message);

}  // namespace loopserve
