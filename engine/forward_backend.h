// The forward step behind one interface (DESIGN.md "Backends behind one
// interface"): the engine schedules, samples and accounts the same way
// whether the looped forward runs on the CPU or on a CUDA device.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/forward_batch.h"
#include "engine/model_weights.h"

namespace loopserve {

class KvCache;
class ThreadPool;

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  // "cpu" or "cuda".
  virtual std::string_view name() const = 0;

  // Runs one step of the looped forward with early exit (contract of
  // LoopedForward::Run): block tables must already cover every position.
  virtual absl::Status Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                           ForwardTrace* trace = nullptr) = 0;
};

enum class BackendKind : uint8_t { kCpu, kCuda, kAuto };

// "cpu" | "cuda" | "auto"; anything else is InvalidArgument.
absl::StatusOr<BackendKind> ParseBackendKind(std::string_view name);

// What a backend runs on: the model, the engine's KV cache (block layout and
// bookkeeping; the CPU backend also uses its host pool) and thread pool.
struct BackendContext {
  std::shared_ptr<const LoadedModel> model;
  KvCache* kv = nullptr;
  ThreadPool* pool = nullptr;
  // CUDA only: run every GEMM in f32 (weights widened at upload) instead of
  // the checkpoint dtype with f32 accumulation; the parity tests use it.
  bool cuda_f32_compute = false;
  // CUDA only: the device KV pool plus the step workspace must fit in this
  // fraction of the free memory left after the weights.
  double cuda_kv_memory_fraction = 0.9;
  // CUDA only: the largest step (tokens) the workspace is sized for.
  int64_t max_batch_tokens = 512;
};

struct BackendChoice {
  std::unique_ptr<ForwardBackend> backend;
  // Why `auto` chose the CPU (no device, build without CUDA, ...); empty
  // when the requested backend runs.
  std::string fallback_reason;
};

// Creates the backend named `name`. "cuda" fails (Unavailable) when this
// build has no CUDA backend or no device is usable; "auto" then returns the
// CPU backend with the reason in `fallback_reason`, for the caller to log.
absl::StatusOr<BackendChoice> MakeBackend(std::string_view name, const BackendContext& context);

// Whether this binary was built with the CUDA backend.
bool CudaBackendCompiled();

}  // namespace loopserve
