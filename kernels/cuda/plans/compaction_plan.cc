#include "kernels/cuda/plans/compaction_plan.h"

namespace loopserve::cuda {

CompactionPlan BuildCompactionPlan(const uint8_t* exits, int64_t n) {
  CompactionPlan plan;
  plan.kept.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    (exits[i] ? plan.exited : plan.kept).push_back(static_cast<int32_t>(i));
  }
  return plan;
}

}  // namespace loopserve::cuda
