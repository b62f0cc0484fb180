// Tests engine/kv_block_manager: block counts at boundaries, all-or-nothing
// allocation, release, fork sharing and invariants under random operations.
#include "engine/kv_block_manager.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loopserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BlockPool, AllocatesInOrderAndFailsWithoutSideEffects) {
  BlockPool pool(4);
  absl::StatusOr<std::vector<int32_t>> a = pool.Allocate(3);
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(*a, ElementsAre(0, 1, 2));
  EXPECT_EQ(pool.NumFree(), 1);
  EXPECT_EQ(pool.NumUsed(), 3);

  absl::StatusOr<std::vector<int32_t>> too_many = pool.Allocate(2);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_many.status().message(), HasSubstr("need 2"));
  EXPECT_THAT(too_many.status().message(), HasSubstr("1 free"));
  EXPECT_EQ(pool.NumFree(), 1);
  EXPECT_TRUE(pool.CheckInvariants().ok());

  EXPECT_TRUE(pool.Allocate(0).ok());
  EXPECT_TRUE(pool.Allocate(0)->empty());
}

TEST(BlockPool, RefCountsReturnBlocksAtZero) {
  BlockPool pool(2);
  const int32_t b = pool.Allocate(1)->front();
  pool.AddRef(b);
  EXPECT_EQ(pool.RefCount(b), 2);
  pool.Free(b);
  EXPECT_EQ(pool.NumFree(), 1);  // still referenced once
  pool.Free(b);
  EXPECT_EQ(pool.NumFree(), 2);
  EXPECT_EQ(pool.RefCount(b), 0);
  EXPECT_TRUE(pool.CheckInvariants().ok());
  // Most recently freed is reused first.
  EXPECT_EQ(pool.Allocate(1)->front(), b);
}

TEST(BlockPoolDeathTest, DoubleFreeCrashes) {
  BlockPool pool(2);
  const int32_t b = pool.Allocate(1)->front();
  pool.Free(b);
  EXPECT_DEATH(pool.Free(b), "freed while not in use");
  EXPECT_DEATH(pool.AddRef(1), "shared while not in use");
}

TEST(KvBlockManager, ExactBlockCountsAtBoundaries) {
  KvBlockManager kv(16, 4);
  EXPECT_EQ(kv.BlocksFor(0), 0);
  EXPECT_EQ(kv.BlocksFor(1), 1);
  EXPECT_EQ(kv.BlocksFor(4), 1);
  EXPECT_EQ(kv.BlocksFor(5), 2);

  EXPECT_EQ(kv.PlanAppend(7, 4).new_blocks, 1);  // unknown sequence plans as empty
  EXPECT_EQ(kv.Table(7), nullptr);
  ASSERT_TRUE(kv.Append(7, 3).ok());
  EXPECT_EQ(kv.Table(7)->blocks.size(), 1u);
  EXPECT_EQ(kv.PlanAppend(7, 1).new_blocks, 0);  // fills block 0 exactly
  ASSERT_TRUE(kv.Append(7, 1).ok());
  EXPECT_EQ(kv.Table(7)->num_tokens, 4);
  EXPECT_EQ(kv.Table(7)->blocks.size(), 1u);
  EXPECT_EQ(kv.PlanAppend(7, 1).new_blocks, 1);  // the 5th token opens block 1
  EXPECT_EQ(kv.PlanAppend(7, 9).new_blocks, 3);  // 13 tokens -> 4 blocks
  ASSERT_TRUE(kv.Append(7, 9).ok());
  EXPECT_EQ(kv.Table(7)->blocks.size(), 4u);
  EXPECT_EQ(kv.NumUsedBlocks(), 4);
  ASSERT_TRUE(kv.Append(7, 0).ok());
  EXPECT_EQ(kv.NumUsedBlocks(), 4);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvBlockManager, SlotOfMapsPositionsThroughTheTable) {
  KvBlockManager kv(8, 4);
  ASSERT_TRUE(kv.Append(1, 2).ok());  // block 0
  ASSERT_TRUE(kv.Append(2, 5).ok());  // blocks 1, 2
  ASSERT_TRUE(kv.Append(1, 3).ok());  // block 3 for positions 4..
  EXPECT_THAT(kv.Table(1)->blocks, ElementsAre(0, 3));
  EXPECT_EQ(kv.SlotOf(1, 1), 1);
  EXPECT_EQ(kv.SlotOf(1, 4), 3 * 4 + 0);
  EXPECT_EQ(kv.SlotOf(2, 4), 2 * 4 + 0);
}

TEST(KvBlockManager, FailedAppendLeavesStateUntouched) {
  KvBlockManager kv(3, 4);
  ASSERT_TRUE(kv.Append(1, 6).ok());  // 2 blocks
  EXPECT_FALSE(kv.CanAppend(2, 5));   // needs 2, 1 free
  EXPECT_TRUE(kv.CanAppend(2, 4));
  const absl::Status status = kv.Append(2, 5);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("needs 2 new blocks, 1 free"));
  EXPECT_EQ(kv.Table(2), nullptr);  // not even an empty table
  EXPECT_EQ(kv.NumFreeBlocks(), 1);

  EXPECT_FALSE(kv.Append(1, 7).ok());  // 13 tokens: 2 more blocks
  EXPECT_EQ(kv.Table(1)->num_tokens, 6);
  EXPECT_EQ(kv.Table(1)->blocks.size(), 2u);
  EXPECT_EQ(kv.NumFreeBlocks(), 1);
  EXPECT_TRUE(kv.CheckInvariants().ok());

  EXPECT_EQ(kv.Append(1, -1).code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockManager, ReleaseReturnsBlocks) {
  KvBlockManager kv(4, 2);
  ASSERT_TRUE(kv.Append(1, 3).ok());
  ASSERT_TRUE(kv.Append(2, 4).ok());
  EXPECT_EQ(kv.NumFreeBlocks(), 0);
  EXPECT_FALSE(kv.CanAppend(1, 2));
  ASSERT_TRUE(kv.Release(2).ok());
  EXPECT_EQ(kv.NumFreeBlocks(), 2);
  EXPECT_EQ(kv.Table(2), nullptr);
  EXPECT_EQ(kv.NumSequences(), 1);
  EXPECT_TRUE(kv.Append(1, 2).ok());
  EXPECT_EQ(kv.Release(2).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvBlockManager, ForkSharesFullBlocksAndCopiesThePartialOne) {
  KvBlockManager kv(8, 4);
  ASSERT_TRUE(kv.Append(1, 10).ok());  // blocks 0, 1 full; 2 holds 2 tokens
  absl::StatusOr<std::optional<BlockCopy>> fork = kv.Fork(1, 2);
  ASSERT_TRUE(fork.ok()) << fork.status();
  ASSERT_TRUE(fork->has_value());
  EXPECT_EQ((*fork)->src, 2);
  EXPECT_EQ((*fork)->dst, 3);
  EXPECT_EQ((*fork)->tokens, 2);
  EXPECT_THAT(kv.Table(2)->blocks, ElementsAre(0, 1, 3));
  EXPECT_EQ(kv.Table(2)->num_tokens, 10);
  EXPECT_EQ(kv.pool().RefCount(0), 2);
  EXPECT_EQ(kv.pool().RefCount(1), 2);
  EXPECT_EQ(kv.pool().RefCount(2), 1);
  EXPECT_EQ(kv.pool().RefCount(3), 1);
  EXPECT_TRUE(kv.CheckInvariants().ok());

  // Shared blocks stay in use until both sequences are gone.
  ASSERT_TRUE(kv.Release(1).ok());
  EXPECT_EQ(kv.pool().RefCount(0), 1);
  EXPECT_EQ(kv.NumUsedBlocks(), 3);
  ASSERT_TRUE(kv.Release(2).ok());
  EXPECT_EQ(kv.NumUsedBlocks(), 0);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvBlockManager, ForkAtABlockBoundaryCopiesNothing) {
  KvBlockManager kv(2, 4);
  ASSERT_TRUE(kv.Append(1, 8).ok());
  absl::StatusOr<std::optional<BlockCopy>> fork = kv.Fork(1, 2);
  ASSERT_TRUE(fork.ok());
  EXPECT_FALSE(fork->has_value());
  EXPECT_EQ(kv.NumFreeBlocks(), 0);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvBlockManager, ForkErrorsLeaveStateUntouched) {
  KvBlockManager kv(2, 4);
  ASSERT_TRUE(kv.Append(1, 5).ok());  // both blocks
  EXPECT_EQ(kv.Fork(9, 2).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(kv.Append(3, 0).ok());
  EXPECT_EQ(kv.Fork(1, 3).status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<std::optional<BlockCopy>> full = kv.Fork(1, 2);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(kv.Table(2), nullptr);
  EXPECT_EQ(kv.pool().RefCount(0), 1);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvBlockManager, RandomOperationsKeepInvariants) {
  constexpr int32_t kBlocks = 64;
  KvBlockManager kv(kBlocks, 8);
  std::mt19937_64 rng(2024);
  std::vector<int64_t> live;
  int64_t next_id = 0;
  for (int step = 0; step < 5000; ++step) {
    const uint64_t op = rng() % 10;
    if (op < 6 || live.empty()) {
      const int64_t seq = (live.empty() || rng() % 4 == 0) ? next_id++ : live[rng() % live.size()];
      const int64_t n = static_cast<int64_t>(rng() % 20);
      const int32_t free_before = kv.NumFreeBlocks();
      const int64_t planned = kv.PlanAppend(seq, n).new_blocks;
      const bool can = kv.CanAppend(seq, n);
      const absl::Status status = kv.Append(seq, n);
      ASSERT_EQ(status.ok(), can) << status;
      if (status.ok()) {
        EXPECT_EQ(kv.NumFreeBlocks(), free_before - planned);
        if (std::find(live.begin(), live.end(), seq) == live.end()) live.push_back(seq);
      } else {
        EXPECT_EQ(kv.NumFreeBlocks(), free_before);
      }
    } else if (op < 8) {
      const size_t i = rng() % live.size();
      ASSERT_TRUE(kv.Release(live[i]).ok());
      live.erase(live.begin() + static_cast<int64_t>(i));
    } else {
      const int64_t parent = live[rng() % live.size()];
      absl::StatusOr<std::optional<BlockCopy>> fork = kv.Fork(parent, next_id);
      if (fork.ok()) live.push_back(next_id);
      ++next_id;
    }
    const absl::Status invariants = kv.CheckInvariants();
    ASSERT_TRUE(invariants.ok()) << "step " << step << ": " << invariants;
    ASSERT_EQ(kv.NumFreeBlocks() + kv.NumUsedBlocks(), kBlocks);
  }
  for (int64_t seq : live) ASSERT_TRUE(kv.Release(seq).ok());
  EXPECT_EQ(kv.NumFreeBlocks(), kBlocks);
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

}  // namespace
}  // namespace loopserve
