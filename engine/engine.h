// The engine: one loaded model, its KV pool and thread pool, the sequences
// in flight and the step loop that schedules, runs the looped forward with
// early exit and samples. Transport-free: the CLI and the server drive it.
// Not thread-safe: one thread drives Step().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/forward_backend.h"
#include "engine/kv_cache.h"
#include "engine/looped_forward.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kernels/cpu/thread_pool.h"

namespace loopserve {

class Tokenizer;

struct EngineOptions {
  int num_threads = 0;  // 0 = hardware concurrency
  int block_size = 16;
  int64_t kv_cache_bytes = int64_t{256} << 20;
  SchedulerOptions scheduler;
  // For stop strings; not owned, must outlive the engine. May be null.
  const Tokenizer* tokenizer = nullptr;
  // Forward backend: "cpu" | "cuda" | "auto" (engine/forward_backend.h).
  std::string backend = "cpu";
  bool cuda_f32_compute = false;          // CUDA: f32 GEMMs (parity tests)
  double cuda_kv_memory_fraction = 0.9;   // CUDA: cap on the device KV pool
};

// Teacher-forced full-depth scoring of a token sequence.
struct ScoreResult {
  int num_loops = 0;
  int64_t num_tokens = 0;
  int64_t vocab_size = 0;
  ForwardTrace trace;  // hidden, per-loop logits z_t, router choices
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const LoadedModel> model,
                                                        const EngineOptions& options);

  // Checks a request against the model and the pool without queuing it.
  // Thread-safe: reads only what never changes after Create.
  absl::Status ValidateRequest(const GenerationRequest& request) const;
  // Validates and queues a request; returns its id.
  absl::StatusOr<int64_t> Add(GenerationRequest request);
  // Same with a caller-chosen id (> 0, unused), for callers that hand out
  // ids before the request reaches the engine thread.
  absl::StatusOr<int64_t> AddWithId(GenerationRequest request, int64_t id);
  // Replaces the exit policy of a queued or running sequence; takes effect
  // at its next step (a policy never changes inside a forward).
  absl::Status SetPolicy(int64_t id, const ExitPolicy& policy);
  // Finishes a sequence with kCancelled at the next step; false if unknown.
  bool Cancel(int64_t id);
  bool HasWork() const { return !sequences_.empty(); }
  // One step: schedules, runs, samples. Returns the sequences that advanced.
  absl::StatusOr<std::vector<SequenceUpdate>> Step();

  // Runs the requests to completion (CLI, tests, benchmarks).
  absl::StatusOr<std::vector<GenerationResult>> Generate(std::vector<GenerationRequest> requests);
  // Per-loop exit-head logits of every position at full depth.
  absl::StatusOr<ScoreResult> Score(const std::vector<int32_t>& ids);

  const ModelConfig& config() const { return model_->config; }
  const LoadedModel& model() const { return *model_; }
  const KvCache& kv_cache() const { return *kv_; }
  const Scheduler& scheduler() const { return *scheduler_; }
  ThreadPool& thread_pool() { return *pool_; }
  int64_t last_batch_tokens() const { return last_batch_tokens_; }
  // The backend running the forward ("cpu" | "cuda") and, when `auto` fell
  // back to the CPU, why (for the caller to log); empty otherwise.
  std::string_view backend_name() const { return forward_->name(); }
  const std::string& backend_fallback_reason() const { return backend_fallback_reason_; }

 private:
  Engine(std::shared_ptr<const LoadedModel> model, const EngineOptions& options,
         std::unique_ptr<KvCache> kv);
  void Finish(Sequence& seq, FinishReason reason);
  void AccountToken(Sequence& seq, const TokenResult& r, bool full_depth);
  bool AppendSample(Sequence& seq, const float* logits, int exit_loop, SequenceUpdate& update);
  bool HitsStopString(Sequence& seq, int32_t token) const;

  std::shared_ptr<const LoadedModel> model_;
  EngineOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ForwardBackend> forward_;
  std::string backend_fallback_reason_;
  std::map<int64_t, std::unique_ptr<Sequence>> sequences_;
  std::vector<int64_t> cancelled_;
  int64_t next_id_ = 1;
  int64_t last_batch_tokens_ = 0;
};

}  // namespace loopserve
