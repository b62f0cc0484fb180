#include "kernels/cuda/plans/expert_plan.h"

#include "kernels/common/check.h"

namespace loopserve::cuda {

ExpertPlan BuildExpertPlan(const int32_t* expert_ids, int64_t n, int k, int num_experts) {
  ExpertPlan plan;
  plan.num_experts = num_experts;
  plan.top_k = k;
  const int64_t total = n * k;
  plan.offsets.assign(num_experts + 1, 0);
  for (int64_t i = 0; i < total; ++i) {
    const int32_t e = expert_ids[i];
    LOOPSERVE_CHECK(e >= 0 && e < num_experts)
        << "expert id " << e << " outside [0, " << num_experts << ")";
    ++plan.offsets[e + 1];
  }
  for (int e = 0; e < num_experts; ++e) plan.offsets[e + 1] += plan.offsets[e];
  plan.token.resize(total);
  plan.slot.resize(total);
  plan.inverse.resize(total);
  std::vector<int32_t> cursor(plan.offsets.begin(), plan.offsets.end() - 1);
  // Visiting (t, j) in token-major order keeps tokens ascending per group.
  for (int64_t t = 0; t < n; ++t) {
    for (int j = 0; j < k; ++j) {
      const int32_t row = cursor[expert_ids[t * k + j]]++;
      plan.token[row] = static_cast<int32_t>(t);
      plan.slot[row] = j;
      plan.inverse[t * k + j] = row;
    }
  }
  return plan;
}

}  // namespace loopserve::cuda
