// CUDA vs CPU engine on random batches: random prompts with the fixture
// policies (every criterion, both kv_fill modes), a small token budget so
// steps mix prefill chunks with decodes, and tokens exiting at different
// loops. On the f32 path greedy tokens and exit loops must be equal.
// The CPU-only premise test (mixed exits happen) also runs without a GPU.
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/model_weights.h"
#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/golden/golden_fixture.h"

namespace loopserve {
namespace {

using testing::GoldenFixture;

class CudaParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = testing::FixtureRoot() + "/" + GetParam();
    absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    absl::StatusOr<GoldenFixture> fixture = testing::LoadGoldenFixture(dir);
    ASSERT_TRUE(fixture.ok()) << fixture.status();
    fixture_ = std::move(*fixture);
  }

  std::unique_ptr<Engine> MakeEngine(const std::string& backend) {
    EngineOptions options;
    options.num_threads = 2;
    options.block_size = 4;
    options.kv_cache_bytes = int64_t{64} << 20;
    options.scheduler.max_batch_tokens = 7;  // prefill chunks share steps with decodes
    options.backend = backend;
    options.cuda_f32_compute = true;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model_, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  // Seeded random prompts, each with the policy of a random fixture case.
  std::vector<GenerationRequest> RandomRequests(uint32_t seed, int count) const {
    std::mt19937 rng(seed);
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < count; ++i) {
      GenerationRequest r;
      const int len = 1 + static_cast<int>(rng() % 24);
      for (int p = 0; p < len; ++p) {
        r.prompt.push_back(static_cast<int32_t>(rng() % model_->config.vocab_size));
      }
      r.max_tokens = 8;
      r.policy = fixture_.cases[rng() % fixture_.cases.size()].policy;
      requests.push_back(std::move(r));
    }
    return requests;
  }

  std::shared_ptr<const LoadedModel> model_;
  GoldenFixture fixture_;
};

TEST_P(CudaParityTest, CpuRunOfTheBatchHasMixedExitLoops) {
  std::unique_ptr<Engine> cpu = MakeEngine("cpu");
  ASSERT_NE(cpu, nullptr);
  absl::StatusOr<std::vector<GenerationResult>> r = cpu->Generate(RandomRequests(11, 12));
  ASSERT_TRUE(r.ok()) << r.status();
  std::set<int> loops;
  for (const GenerationResult& g : *r) {
    for (const GeneratedToken& t : g.tokens) loops.insert(t.exit_loop);
  }
  EXPECT_GE(loops.size(), 2u) << "the parity batch would not exercise early exit";
}

TEST_P(CudaParityTest, GreedyTokensAndExitLoopsEqualCpu) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  for (uint32_t seed : {11u, 12u, 13u}) {
    std::unique_ptr<Engine> cpu = MakeEngine("cpu");
    std::unique_ptr<Engine> gpu = MakeEngine("cuda");
    ASSERT_NE(cpu, nullptr);
    ASSERT_NE(gpu, nullptr);
    const std::vector<GenerationRequest> requests = RandomRequests(seed, 12);
    absl::StatusOr<std::vector<GenerationResult>> want = cpu->Generate(requests);
    absl::StatusOr<std::vector<GenerationResult>> got = gpu->Generate(requests);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < requests.size(); ++i) {
      SCOPED_TRACE(absl::StrCat(GetParam(), " seed ", seed, " request ", i));
      const std::vector<GeneratedToken>& a = (*want)[i].tokens;
      const std::vector<GeneratedToken>& b = (*got)[i].tokens;
      ASSERT_EQ(a.size(), b.size());
      for (size_t t = 0; t < a.size(); ++t) {
        EXPECT_EQ(b[t].token, a[t].token) << "token " << t;
        EXPECT_EQ(b[t].exit_loop, a[t].exit_loop) << "token " << t;
        EXPECT_NEAR(b[t].logprob, a[t].logprob, 1e-3) << "token " << t;
      }
      EXPECT_DOUBLE_EQ((*got)[i].usage.flops_done, (*want)[i].usage.flops_done);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaParityTest,
                         ::testing::Values("sharded", "bf16", "all_moe", "exit_gate"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace loopserve
