// Which rows of the active batch go on to the next loop and where each one
// lands, so the device state is compacted by one gather (order kept) and
// later loops run only on tokens that have not exited. Plain C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace loopserve::cuda {

struct CompactionPlan {
  std::vector<int32_t> kept;    // old row of each new row, ascending
  std::vector<int32_t> exited;  // old rows that left, ascending

  int64_t new_size() const { return static_cast<int64_t>(kept.size()); }
  // True when no row left: the state needs no gather.
  bool identity() const { return exited.empty(); }
};

// exits (n): non-zero when the row leaves at this boundary.
CompactionPlan BuildCompactionPlan(const uint8_t* exits, int64_t n);

// Applies the plan to a per-row host array (positions, token indices, ...).
template <typename T>
void CompactRows(const CompactionPlan& plan, std::vector<T>& rows) {
  for (std::size_t i = 0; i < plan.kept.size(); ++i) rows[i] = rows[plan.kept[i]];
  rows.resize(plan.kept.size());
}

}  // namespace loopserve::cuda
