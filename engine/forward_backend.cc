#include "engine/forward_backend.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cpu_backend.h"
#include "engine/cuda_plugin_api.h"

namespace loopserve {

absl::StatusOr<BackendKind> ParseBackendKind(std::string_view name) {
  if (name == "cpu") return BackendKind::kCpu;
  if (name == "cuda") return BackendKind::kCuda;
  if (name == "auto") return BackendKind::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("backend: expected cpu, cuda or auto, got `", std::string(name), "`"));
}

bool CudaBackendCompiled() {
#ifdef LOOPSERVE_CUDA_PLUGIN_BUILD_PATH
  return true;
#else
  return false;
#endif
}

namespace {

// Where the plugin may be: $LOOPSERVE_CUDA_BACKEND, next to the executable
// (installed layouts and container images), the build tree, then the
// dynamic linker's own search (LD_LIBRARY_PATH, rpath).
std::vector<std::string> CudaPluginCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LOOPSERVE_CUDA_BACKEND"); env != nullptr && *env != 0) {
    out.emplace_back(env);
    return out;
  }
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / kCudaPluginFile).string());
#ifdef LOOPSERVE_CUDA_PLUGIN_BUILD_PATH
  out.emplace_back(LOOPSERVE_CUDA_PLUGIN_BUILD_PATH);
#endif
  out.emplace_back(kCudaPluginFile);
  return out;
}

struct CudaPlugin {
  CudaPluginCreateFn create = nullptr;
  std::string error;  // why it could not be loaded
};

// Loaded once per process and never unloaded: backends it created may
// live until exit.
const CudaPlugin& LoadCudaPlugin() {
  static const CudaPlugin plugin = [] {
    CudaPlugin p;
    if (!CudaBackendCompiled() && std::getenv("LOOPSERVE_CUDA_BACKEND") == nullptr) {
      p.error = "this build has no CUDA backend (nvcc was not found at build time)";
      return p;
    }
    std::string tried;
    for (const std::string& path : CudaPluginCandidates()) {
      if (path.find('/') != std::string::npos && !std::filesystem::exists(path)) continue;
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        absl::StrAppend(&tried, tried.empty() ? "" : "; ", dlerror());
        continue;
      }
      auto abi = reinterpret_cast<CudaPluginAbiFn>(dlsym(handle, kCudaPluginAbiSymbol));
      auto create = reinterpret_cast<CudaPluginCreateFn>(dlsym(handle, kCudaPluginCreateSymbol));
      if (abi == nullptr || create == nullptr || abi() != kCudaPluginAbi) {
        absl::StrAppend(&tried, tried.empty() ? "" : "; ", path,
                        ": not a CUDA backend plugin of this loopserve version");
        dlclose(handle);
        continue;
      }
      p.create = create;
      return p;
    }
    p.error = absl::StrCat("cannot load the CUDA backend plugin ", kCudaPluginFile, ": ",
                           tried.empty() ? "not found" : tried);
    return p;
  }();
  return plugin;
}

// The CUDA backend, or why it cannot run here (Unavailable).
absl::StatusOr<std::unique_ptr<ForwardBackend>> MakeCudaBackend(const BackendContext& context) {
  const CudaPlugin& plugin = LoadCudaPlugin();
  if (plugin.create == nullptr) return absl::UnavailableError(plugin.error);
  int code = 0;
  std::string message;
  std::unique_ptr<ForwardBackend> backend(plugin.create(&context, &code, &message));
  if (backend == nullptr) return absl::Status(static_cast<absl::StatusCode>(code), message);
  return backend;
}

}  // namespace

absl::StatusOr<BackendChoice> MakeBackend(std::string_view name, const BackendContext& context) {
  absl::StatusOr<BackendKind> kind = ParseBackendKind(name);
  if (!kind.ok()) return kind.status();
  if (context.model == nullptr || context.kv == nullptr) {
    return absl::InvalidArgumentError("backend: no model or KV cache");
  }
  BackendChoice choice;
  if (*kind != BackendKind::kCpu) {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> cuda = MakeCudaBackend(context);
    if (cuda.ok()) {
      choice.backend = *std::move(cuda);
      return choice;
    }
    if (*kind == BackendKind::kCuda) return cuda.status();
    choice.fallback_reason = absl::StrCat("backend auto: using cpu: ", cuda.status().message());
  }
  choice.backend = std::make_unique<CpuBackend>(context);
  return choice;
}

}  // namespace loopserve
