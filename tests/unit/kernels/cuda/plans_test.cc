// Host-side plans of the CUDA backend (kernels/cuda/plans): expert
// permutation, compaction between loops, block-table flattening and launch
// shapes. Plain C++, so they are tested here without a GPU.
#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cuda/plans/block_table_plan.h"
#include "kernels/cuda/plans/compaction_plan.h"
#include "kernels/cuda/plans/expert_plan.h"
#include "kernels/cuda/plans/launch_shape.h"
#include "kernels/cuda/plans/workspace.h"

namespace loopserve::cuda {
namespace {

TEST(ExpertPlanTest, GroupsPerExpertWithTokensAscendingAndInverse) {
  // 4 tokens, k = 2, E = 3.
  const int32_t ids[] = {2, 0,  //
                         0, 1,  //
                         2, 1,  //
                         0, 2};
  const ExpertPlan plan = BuildExpertPlan(ids, 4, 2, 3);
  EXPECT_EQ(plan.offsets, (std::vector<int32_t>{0, 3, 5, 8}));
  EXPECT_EQ(plan.token, (std::vector<int32_t>{0, 1, 3, 1, 2, 0, 2, 3}));
  EXPECT_EQ(plan.slot, (std::vector<int32_t>{1, 0, 0, 1, 1, 0, 0, 1}));
  for (int t = 0; t < 4; ++t) {
    for (int j = 0; j < 2; ++j) {
      const int32_t row = plan.inverse[t * 2 + j];
      EXPECT_EQ(plan.token[row], t);
      EXPECT_EQ(plan.slot[row], j);
      EXPECT_GE(row, plan.offsets[ids[t * 2 + j]]);
      EXPECT_LT(row, plan.offsets[ids[t * 2 + j] + 1]);
    }
  }
  EXPECT_EQ(plan.GroupSize(1), 2);
}

TEST(ExpertPlanTest, MatchesCpuGroupingOnRandomRouting) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const int num_experts = 1 + static_cast<int>(rng() % 16);
    const int k = 1 + static_cast<int>(rng() % num_experts);
    const int64_t n = static_cast<int64_t>(rng() % 40);
    std::vector<int32_t> ids(n * k);
    for (int64_t t = 0; t < n; ++t) {  // k distinct experts per token
      std::vector<int32_t> all(num_experts);
      for (int e = 0; e < num_experts; ++e) all[e] = e;
      std::shuffle(all.begin(), all.end(), rng);
      std::copy(all.begin(), all.begin() + k, ids.begin() + t * k);
    }
    const ExpertPlan plan = BuildExpertPlan(ids.data(), n, k, num_experts);
    const ExpertGroups cpu = GroupByExpert(ids.data(), n, k, num_experts);
    EXPECT_EQ(plan.offsets, cpu.offsets);
    EXPECT_EQ(plan.token, cpu.token);
    EXPECT_EQ(plan.slot, cpu.slot);
    EXPECT_EQ(plan.rows(), n * k);
  }
}

TEST(ExpertPlanTest, EmptyBatch) {
  const ExpertPlan plan = BuildExpertPlan(nullptr, 0, 2, 4);
  EXPECT_EQ(plan.offsets, (std::vector<int32_t>{0, 0, 0, 0, 0}));
  EXPECT_EQ(plan.rows(), 0);
}

TEST(CompactionPlanTest, KeepsOrderAndListsExits) {
  const uint8_t exits[] = {0, 1, 0, 0, 1, 0};
  const CompactionPlan plan = BuildCompactionPlan(exits, 6);
  EXPECT_EQ(plan.kept, (std::vector<int32_t>{0, 2, 3, 5}));
  EXPECT_EQ(plan.exited, (std::vector<int32_t>{1, 4}));
  EXPECT_FALSE(plan.identity());
  std::vector<int> positions = {10, 11, 12, 13, 14, 15};
  CompactRows(plan, positions);
  EXPECT_EQ(positions, (std::vector<int>{10, 12, 13, 15}));
}

TEST(CompactionPlanTest, NoExitIsIdentityAndAllExitEmpties) {
  const uint8_t none[] = {0, 0, 0};
  EXPECT_TRUE(BuildCompactionPlan(none, 3).identity());
  EXPECT_EQ(BuildCompactionPlan(none, 3).new_size(), 3);
  const uint8_t all[] = {1, 1};
  EXPECT_EQ(BuildCompactionPlan(all, 2).new_size(), 0);
}

TEST(BlockTablePlanTest, SharesTablesOfOneSequenceAndPads) {
  const std::vector<int32_t> seq_a = {7, 3, 9};  // positions up to 11 with block 4
  const std::vector<int32_t> seq_b = {5};
  // A prefill chunk of seq_a (positions 4..9) and a decode token of seq_b.
  const int32_t* tables[] = {seq_a.data(), seq_a.data(), seq_b.data(), seq_a.data()};
  const int32_t positions[] = {4, 9, 2, 6};
  const BlockTablePlan plan = BuildBlockTablePlan(tables, positions, 4, 4);
  EXPECT_EQ(plan.stride, 3);  // position 9 needs blocks 0..2
  EXPECT_EQ(plan.num_tables(), 2);
  EXPECT_EQ(plan.row_table, (std::vector<int32_t>{0, 0, 1, 0}));
  EXPECT_EQ(plan.tables, (std::vector<int32_t>{7, 3, 9, 5, -1, -1}));
}

TEST(BlockTablePlanTest, EveryRowsPositionResolvesToItsBlock) {
  std::mt19937 rng(5);
  const int block_size = 16;
  std::vector<std::vector<int32_t>> seqs(5);
  for (auto& s : seqs) {
    s.resize(1 + rng() % 6);
    for (int32_t& b : s) b = static_cast<int32_t>(rng() % 1000);
  }
  std::vector<const int32_t*> tables;
  std::vector<int32_t> positions;
  for (int i = 0; i < 30; ++i) {
    const auto& s = seqs[rng() % seqs.size()];
    tables.push_back(s.data());
    positions.push_back(static_cast<int32_t>(rng() % (s.size() * block_size)));
  }
  const BlockTablePlan plan = BuildBlockTablePlan(tables.data(), positions.data(), 30, block_size);
  for (int i = 0; i < 30; ++i) {
    const int32_t* flat = plan.tables.data() + plan.row_table[i] * plan.stride;
    for (int32_t p = 0; p <= positions[i]; ++p) {
      ASSERT_EQ(flat[p / block_size], tables[i][p / block_size]) << "row " << i << " pos " << p;
    }
  }
}

TEST(LaunchShapeTest, CeilDivisionAndRowThreads) {
  EXPECT_EQ(ElementwiseShape(0).blocks, 0);
  EXPECT_EQ(ElementwiseShape(1).blocks, 1);
  EXPECT_EQ(ElementwiseShape(256).blocks, 1);
  EXPECT_EQ(ElementwiseShape(257).blocks, 2);
  EXPECT_EQ(RowShape(5, 1).threads, 32);
  EXPECT_EQ(RowShape(5, 100).threads, 128);
  EXPECT_EQ(RowShape(5, 4096).threads, 1024);
  EXPECT_EQ(RowShape(5, 4096).blocks, 5);
  EXPECT_TRUE(FitsGrid(ElementwiseShape(int64_t{1} << 40, 1024)));
  EXPECT_FALSE(FitsGrid(ElementwiseShape(int64_t{1} << 42, 32)));
}

}  // namespace
}  // namespace loopserve::cuda

namespace loopserve::cuda {
namespace {

ForwardDims SmallMoeDims() {
  ForwardDims d;
  d.hidden = 64;
  d.q_dim = 64;
  d.kv_dim = 32;
  d.ffn_width = 128;
  d.num_experts = 8;
  d.top_k = 2;
  d.vocab = 1000;
  d.adaln_rank = 4;
  d.coda_layers = 1;
  return d;
}

TEST(WorkspaceTest, CountsEveryBufferForOneRow) {
  const ForwardWorkspace w = ComputeForwardWorkspace(SmallMoeDims(), 1);
  EXPECT_EQ(w.state, 2 * 64);
  EXPECT_EQ(w.attention, 64 + 2 * 64 + 2 * 32);
  // delta + hidden, gate/up for 2 pairs, gathered + expert out, shared out
  EXPECT_EQ(w.ffn, 2 * 64 + 2 * 2 * 128 + 2 * 2 * 64 + 64);
  EXPECT_EQ(w.router, 8 + 2);
  EXPECT_EQ(w.adaln, 4 + 6 * 64);
  EXPECT_EQ(w.head, 4 * 64 + 1000 + 2 * 32);
  EXPECT_EQ(w.gemm_input16, 0);
  EXPECT_EQ(w.bytes(), 4 * w.float_count());
}

TEST(WorkspaceTest, LinearInRowsAndSixteenBitInputs) {
  ForwardDims d = SmallMoeDims();
  const ForwardWorkspace one = ComputeForwardWorkspace(d, 1);
  const ForwardWorkspace many = ComputeForwardWorkspace(d, 256);
  EXPECT_EQ(many.float_count(), 256 * one.float_count());
  EXPECT_EQ(ComputeForwardWorkspace(d, 0).bytes(), 0);
  d.weights_16bit = true;
  EXPECT_EQ(ComputeForwardWorkspace(d, 3).gemm_input16, 3 * 2 * 128);
  d.num_experts = 0;  // dense: no router, no pairs
  const ForwardWorkspace dense = ComputeForwardWorkspace(d, 3);
  EXPECT_EQ(dense.router, 0);
  EXPECT_EQ(dense.gemm_input16, 3 * 128);
}

}  // namespace
}  // namespace loopserve::cuda
