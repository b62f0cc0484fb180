// The looped-MoE forward step with per-token early exit (MODEL_SPEC
// "Forward pass", "Early exit", "KV of exited tokens"): prelude over all
// tokens, then loop by loop over the shared block for the tokens still
// active — the batch compacts as tokens exit — with the exit check at each
// boundary, the coda + head for exiting tokens, and kv_fill of the loops an
// exited token skipped.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/compute_accounting.h"
#include "engine/exit_head.h"
#include "engine/forward_batch.h"
#include "engine/layer_forward.h"
#include "engine/model_weights.h"

namespace loopserve {

class ThreadPool;

class LoopedForward {
 public:
  LoopedForward(std::shared_ptr<const LoadedModel> model, const PagedKvView& kv,
                ThreadPool* pool);

  // Runs one step. Block tables must already cover every token's position.
  absl::Status Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                   ForwardTrace* trace = nullptr);

  const FlopModel& flops() const { return flops_; }

 private:
  struct Active;  // per-step bookkeeping of the tokens still looping

  void RunLoop(int loop, Active& act, ForwardTrace* trace);
  void DecideAtBoundary(int loop, absl::Span<const ForwardToken> tokens, Active& act,
                        ForwardResult* result);
  void FinishFullDepth(absl::Span<const ForwardToken> tokens, Active& act,
                       ForwardResult* result, ForwardTrace* trace);
  void FillSkippedLoops(int exit_loop, const float* h, const LayerRows& rows,
                        KvFill mode);
  // A token leaving at a boundary: its row's position, block table and h.
  struct ExitingRow {
    int token;
    int32_t position;
    const int32_t* table;
    const float* h;
  };
  void FillForExits(int loop, absl::Span<const ForwardToken> tokens,
                    const std::vector<ExitingRow>& rows, ForwardResult* result);
  // Replayed tokens (ForwardToken::forced_exit_loop) leaving at `loop`.
  void ExitReplayed(int loop, absl::Span<const ForwardToken> tokens,
                    const std::vector<int>& rows, Active& act, ForwardResult* result);
  void WriteReplayedCoda(absl::Span<const ForwardToken> tokens, Active& act,
                         ForwardResult* result);
  void TraceLoopLogits(int64_t n, const LayerRows& rows, ForwardTrace* trace);
  int AppendLogits(const float* row, ForwardResult* result) const;

  std::shared_ptr<const LoadedModel> model_;
  const ModelConfig& config_;
  const ModelWeights& weights_;
  PagedKvView kv_;
  ThreadPool* pool_;
  FlopModel flops_;
  LayerForward layers_;
  ExitHead head_;
  ScratchBuffer state_, modulation_, head_in_, head_logits_, fill_k_, fill_v_, normed_;
};

}  // namespace loopserve
