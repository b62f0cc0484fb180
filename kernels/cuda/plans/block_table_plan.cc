#include "kernels/cuda/plans/block_table_plan.h"

#include <algorithm>
#include <unordered_map>

#include "kernels/common/check.h"

namespace loopserve::cuda {

BlockTablePlan BuildBlockTablePlan(const int32_t* const* block_tables, const int32_t* positions,
                                   int64_t n, int block_size) {
  LOOPSERVE_CHECK_LT(0, block_size);
  BlockTablePlan plan;
  plan.row_table.resize(n);
  std::unordered_map<const int32_t*, int32_t> index;
  std::vector<const int32_t*> distinct;
  std::vector<int32_t> needed;  // blocks per distinct table
  for (int64_t i = 0; i < n; ++i) {
    LOOPSERVE_CHECK_GE(positions[i], 0);
    const int32_t blocks = positions[i] / block_size + 1;
    auto [it, inserted] = index.try_emplace(block_tables[i], static_cast<int32_t>(distinct.size()));
    if (inserted) {
      distinct.push_back(block_tables[i]);
      needed.push_back(blocks);
    } else {
      needed[it->second] = std::max(needed[it->second], blocks);
    }
    plan.row_table[i] = it->second;
  }
  for (int32_t b : needed) plan.stride = std::max(plan.stride, b);
  plan.tables.assign(distinct.size() * static_cast<size_t>(plan.stride), -1);
  for (size_t t = 0; t < distinct.size(); ++t) {
    std::copy(distinct[t], distinct[t] + needed[t], plan.tables.begin() + t * plan.stride);
  }
  return plan;
}

}  // namespace loopserve::cuda
