// Tests engine/kv_cache: bytes per token, budget sizing and its error, and the
// pool layout seen through PagedKvView (every K/V row of every block, layer
// instance and slot is its own non-overlapping row inside the allocation).
#include "engine/kv_cache.h"

#include <cstdint>
#include <memory>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

// P + R*L + C = 1 + 2*3 + 1 = 8 instances; kv_dim = 2 * 4 = 8.
ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 16;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.num_prelude_layers = 1;
  c.num_recurrent_layers = 2;
  c.num_loops = 3;
  c.num_coda_layers = 1;
  return c;
}

TEST(KvCache, BytesPerTokenCountsKAndVOfEveryInstance) {
  const ModelConfig c = SmallConfig();
  ASSERT_EQ(c.NumLayerInstances(), 8);
  EXPECT_EQ(KvCache::BytesPerToken(c), 8 * 2 * 8 * 4);
  ModelConfig no_prelude = c;
  no_prelude.num_prelude_layers = 0;
  no_prelude.num_loops = 5;  // 2*5 + 1 = 11 instances
  EXPECT_EQ(KvCache::BytesPerToken(no_prelude), 11 * 2 * 8 * 4);
}

TEST(KvCache, CreateSizesThePool) {
  const ModelConfig c = SmallConfig();
  absl::StatusOr<std::unique_ptr<KvCache>> kv = KvCache::Create(c, 5, 4);
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ((*kv)->num_blocks(), 5);
  EXPECT_EQ((*kv)->block_size(), 4);
  EXPECT_EQ((*kv)->TotalBytes(), 5 * 4 * KvCache::BytesPerToken(c));
  EXPECT_EQ((*kv)->blocks().NumFreeBlocks(), 5);
  EXPECT_EQ((*kv)->blocks().block_size(), 4);
  const PagedKvView& v = (*kv)->view();
  EXPECT_EQ(v.num_instances, 8);
  EXPECT_EQ(v.kv_dim, 8);
  EXPECT_EQ(v.block_size, 4);
  ASSERT_NE(v.base, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.base) % 64, 0u);
}

TEST(KvCache, CreateRejectsNonPositiveSizes) {
  const ModelConfig c = SmallConfig();
  EXPECT_EQ(KvCache::Create(c, 0, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCache::Create(c, 3, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCache::Create(c, -1, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCache, CreateWithBudgetRoundsDownToWholeBlocks) {
  const ModelConfig c = SmallConfig();
  const int block_size = 4;
  const int64_t per_block = KvCache::BytesPerToken(c) * block_size;
  for (int64_t blocks : {1, 3, 10}) {
    for (int64_t extra : {int64_t{0}, int64_t{1}, per_block - 1}) {
      absl::StatusOr<std::unique_ptr<KvCache>> kv =
          KvCache::CreateWithBudget(c, blocks * per_block + extra, block_size);
      ASSERT_TRUE(kv.ok()) << kv.status();
      EXPECT_EQ((*kv)->num_blocks(), blocks) << "extra " << extra;
      EXPECT_LE((*kv)->TotalBytes(), blocks * per_block + extra);
      EXPECT_EQ((*kv)->TotalBytes(), blocks * per_block);
    }
  }
}

TEST(KvCache, BudgetBelowOneBlockIsAnError) {
  const ModelConfig c = SmallConfig();
  const int64_t per_block = KvCache::BytesPerToken(c) * 4;
  for (int64_t bytes : {int64_t{0}, int64_t{1}, per_block - 1}) {
    absl::StatusOr<std::unique_ptr<KvCache>> kv = KvCache::CreateWithBudget(c, bytes, 4);
    ASSERT_FALSE(kv.ok()) << bytes;
    EXPECT_EQ(kv.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(kv.status().message(), HasSubstr("less than one block"));
    EXPECT_THAT(kv.status().message(), HasSubstr(std::to_string(per_block)));
  }
}

TEST(KvCache, RowsAreDistinctNonOverlappingAndInsideTheAllocation) {
  const ModelConfig c = SmallConfig();
  absl::StatusOr<std::unique_ptr<KvCache>> kv = KvCache::Create(c, 3, 4);
  ASSERT_TRUE(kv.ok()) << kv.status();
  const PagedKvView& v = (*kv)->view();
  const int64_t total_floats = (*kv)->TotalBytes() / static_cast<int64_t>(sizeof(float));
  std::set<int64_t> offsets;
  for (int32_t b = 0; b < (*kv)->num_blocks(); ++b) {
    for (int inst = 0; inst < v.num_instances; ++inst) {
      for (int k = 0; k < 2; ++k) {
        for (int s = 0; s < v.block_size; ++s) {
          const int64_t off = v.Row(b, inst, k, s) - v.base;
          ASSERT_GE(off, 0);
          ASSERT_LE(off + v.kv_dim, total_floats);
          ASSERT_EQ(off % v.kv_dim, 0) << "rows must not overlap";
          offsets.insert(off);
        }
      }
    }
  }
  // Every row distinct and, kv_dim apart, they tile the allocation exactly.
  EXPECT_EQ(static_cast<int64_t>(offsets.size()) * v.kv_dim, total_floats);
}

TEST(KvCache, PoolStartsZeroedAndRowAtFollowsTheBlockTable) {
  const ModelConfig c = SmallConfig();
  absl::StatusOr<std::unique_ptr<KvCache>> kv = KvCache::Create(c, 4, 2);
  ASSERT_TRUE(kv.ok()) << kv.status();
  const PagedKvView& v = (*kv)->view();
  const int64_t total_floats = (*kv)->TotalBytes() / static_cast<int64_t>(sizeof(float));
  for (int64_t i = 0; i < total_floats; ++i) {
    ASSERT_EQ(v.base[i], 0.0f) << i;
  }
  // Position 3 of a sequence with table {2, 0} lives in block 0, slot 1.
  const int32_t table[] = {2, 0};
  EXPECT_EQ(v.RowAt(table, 5, 1, 3), v.Row(0, 5, 1, 1));
  EXPECT_EQ(v.RowAt(table, 5, 1, 0), v.Row(2, 5, 1, 0));
  // K and V of the same slot, and neighbouring instances, are different rows.
  EXPECT_NE(v.Row(1, 3, 0, 1), v.Row(1, 3, 1, 1));
  EXPECT_NE(v.Row(1, 3, 0, 1), v.Row(1, 4, 0, 1));
  v.Row(1, 3, 1, 1)[v.kv_dim - 1] = 7.0f;
  EXPECT_EQ(v.Row(1, 3, 0, 1)[v.kv_dim - 1], 0.0f);
  EXPECT_EQ(v.Row(1, 3, 1, 0)[v.kv_dim - 1], 0.0f);
}

}  // namespace
}  // namespace loopserve
