// Flattens the per-row block tables of a batch for the device attention
// kernel: the distinct tables (rows of one prefill chunk share one) are
// copied into a dense (num_tables, stride) int32 matrix padded with -1, and
// each row names its table. Plain C++.
#pragma once

#include <cstdint>
#include <vector>

namespace loopserve::cuda {

struct BlockTablePlan {
  int32_t stride = 0;              // blocks per table row (max over tables)
  std::vector<int32_t> tables;     // (num_tables, stride), -1 past the end
  std::vector<int32_t> row_table;  // (n) table index of each row
  int64_t num_tables() const { return stride == 0 ? 0 : tables.size() / stride; }
};

// Row i reads positions 0..positions[i], so its table needs
// positions[i] / block_size + 1 blocks; rows with the same table pointer
// share one entry sized for the largest position among them.
BlockTablePlan BuildBlockTablePlan(const int32_t* const* block_tables, const int32_t* positions,
                                   int64_t n, int block_size);

}  // namespace loopserve::cuda
