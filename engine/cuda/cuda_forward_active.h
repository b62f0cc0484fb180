// Host bookkeeping of CudaForward's rows still looping (private to
// engine/cuda/cuda_forward*.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/cuda/cuda_forward.h"
#include "engine/exit_policy.h"

namespace loopserve {

struct CudaForward::Active {
  std::vector<int> index;  // token index of each active row
  std::vector<int32_t> positions;
  std::vector<int32_t> row_table;  // into the step's BlockTablePlan
  std::vector<uint8_t> exits;      // per active row, at the current boundary
  // Per token, for the criteria that compare boundaries.
  std::vector<std::optional<ExitTracker>> trackers;
  std::vector<uint8_t> has_prev_logits, has_prev_hidden;
  std::vector<double> prev_lse;

  int64_t size() const { return static_cast<int64_t>(index.size()); }
};

}  // namespace loopserve
