// Prefill rows attended in blocks (kernels/cpu/attention_row_block.h) give
// exactly the bits of attending each row alone (the row path decode uses):
// consecutive-position runs of several sequences, GQA groups of 1, 2 and 4,
// head_dim 16..128, block sizes 4 and 16, causal tiles cut mid-block.
#include "kernels/cpu/attention_row_block.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::RandomFloats;

struct Case {
  AttentionShape shape;
  int block_size;
};

class AttentionRowBlockTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionRowBlockTest, BlocksOfRowsEqualRowsAlone) {
  const Case c = GetParam();
  std::mt19937 rng(11 + c.shape.head_dim + c.block_size);
  const int kv_dim = c.shape.num_kv_heads * c.shape.head_dim;
  const int qdim = c.shape.num_heads * c.shape.head_dim;
  const int num_instances = 2, instance = 1, max_len = 80;
  const int blocks_per_seq = (max_len + c.block_size - 1) / c.block_size;
  const int num_blocks = 2 * blocks_per_seq;
  std::vector<float> pool =
      RandomFloats(rng, int64_t{num_blocks} * num_instances * 2 * c.block_size * kv_dim);
  const PagedKvView kv{pool.data(), num_instances, c.block_size, kv_dim};
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::vector<int32_t> table_a(ids.begin(), ids.begin() + blocks_per_seq);
  const std::vector<int32_t> table_b(ids.begin() + blocks_per_seq, ids.end());

  // Rows: A at positions 3..41 (39 rows: two full blocks and a partial
  // one), one lone row of B at 60, then B at 61..79 (19 rows).
  std::vector<int32_t> positions;
  std::vector<const int32_t*> tables;
  for (int p = 3; p <= 41; ++p) positions.push_back(p), tables.push_back(table_a.data());
  positions.push_back(60), tables.push_back(table_b.data());
  for (int p = 61; p < max_len; ++p) positions.push_back(p), tables.push_back(table_b.data());
  const int64_t n = static_cast<int64_t>(positions.size());
  const std::vector<float> q = RandomFloats(rng, n * qdim);

  ThreadPool threads(2);
  std::vector<float> together(n * qdim, -1.0f);
  PagedAttention(kv, instance, c.shape, q.data(), n, positions.data(), tables.data(), nullptr,
                 nullptr, together.data(), &threads);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> alone(qdim, -2.0f);
    PagedAttention(kv, instance, c.shape, q.data() + i * qdim, 1, &positions[i], &tables[i],
                   nullptr, nullptr, alone.data(), nullptr);
    for (int j = 0; j < qdim; ++j) {
      ASSERT_EQ(together[i * qdim + j], alone[j])
          << "row " << i << " (position " << positions[i] << ") element " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionRowBlockTest,
                         ::testing::Values(Case{{8, 2, 16}, 4}, Case{{8, 2, 32}, 16},
                                           Case{{16, 4, 64}, 16}, Case{{4, 4, 64}, 4},
                                           Case{{8, 4, 128}, 16}, Case{{6, 3, 8}, 4}));

TEST(AttentionRowBlock, SupportNeedsHeadDimMultipleOf16) {
  EXPECT_FALSE(internal::AttendRowBlockSupported(8));
  EXPECT_FALSE(internal::AttendRowBlockSupported(24));
  if (__builtin_cpu_supports("avx512f")) {
    EXPECT_TRUE(internal::AttendRowBlockSupported(64));
  } else {
    EXPECT_FALSE(internal::AttendRowBlockSupported(64));
  }
}

}  // namespace
}  // namespace loopserve
