// Backend selection (engine/forward_backend): names, the CPU backend behind
// the interface, and `auto` falling back to the CPU with a reason when no
// CUDA device is usable (every CI machine; a GPU machine picks cuda).
#include "engine/forward_backend.h"

#include <memory>

#include "absl/strings/match.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

nlohmann::json SmallConfig() {
  return {{"model_type", "looped_moe"},
          {"vocab_size", 32},
          {"hidden_size", 16},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"head_dim", 8},
          {"max_position_embeddings", 32},
          {"num_recurrent_layers", 1},
          {"num_loops", 2},
          {"num_experts", 2},
          {"num_experts_per_tok", 1},
          {"moe_intermediate_size", 8}};
}

// Whether the CUDA plugin loads and finds a usable device here.
bool CudaUsable(const BackendContext& context) { return MakeBackend("cuda", context).ok(); }

class ForwardBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir_.path(), SmallConfig(), 3, DType::kF32).ok());
    absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir_.path());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    absl::StatusOr<std::unique_ptr<KvCache>> kv = KvCache::Create(model_->config, 8, 4);
    ASSERT_TRUE(kv.ok()) << kv.status();
    kv_ = *std::move(kv);
  }
  BackendContext Context() { return BackendContext{model_, kv_.get(), &pool_}; }

  testutil::TempDir dir_;
  std::shared_ptr<const LoadedModel> model_;
  std::unique_ptr<KvCache> kv_;
  ThreadPool pool_{1};
};

TEST_F(ForwardBackendTest, ParsesNames) {
  EXPECT_EQ(*ParseBackendKind("cpu"), BackendKind::kCpu);
  EXPECT_EQ(*ParseBackendKind("cuda"), BackendKind::kCuda);
  EXPECT_EQ(*ParseBackendKind("auto"), BackendKind::kAuto);
  EXPECT_EQ(ParseBackendKind("gpu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeBackend("tpu", Context()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ForwardBackendTest, CpuBackendRunsTheForward) {
  absl::StatusOr<BackendChoice> choice = MakeBackend("cpu", Context());
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->backend->name(), "cpu");
  EXPECT_TRUE(choice->fallback_reason.empty());
  ASSERT_TRUE(kv_->blocks().Append(1, 2).ok());
  const int32_t* table = kv_->blocks().Table(1)->blocks.data();
  ForwardToken tokens[2];
  for (int p = 0; p < 2; ++p) {
    tokens[p].token_id = 3 + p;
    tokens[p].position = p;
    tokens[p].block_table = table;
  }
  tokens[1].wants_logits = true;
  ForwardResult result;
  ASSERT_TRUE(choice->backend->Run(tokens, &result).ok());
  ASSERT_EQ(result.tokens.size(), 2u);
  EXPECT_EQ(result.tokens[1].exit_loop, 1);
  EXPECT_EQ(result.tokens[1].logits_row, 0);
  EXPECT_EQ(result.logits.size(), 32u);
}

TEST_F(ForwardBackendTest, AutoFallsBackToCpuWithAReasonWithoutADevice) {
  absl::StatusOr<BackendChoice> choice = MakeBackend("auto", Context());
  ASSERT_TRUE(choice.ok()) << choice.status();
  if (CudaUsable(Context())) {
    EXPECT_EQ(choice->backend->name(), "cuda");
    EXPECT_TRUE(choice->fallback_reason.empty());
    return;
  }
  EXPECT_EQ(choice->backend->name(), "cpu");
  EXPECT_NE(choice->fallback_reason.find("using cpu"), std::string::npos)
      << choice->fallback_reason;
}

TEST_F(ForwardBackendTest, CudaWithoutADeviceIsUnavailable) {
  absl::StatusOr<BackendChoice> choice = MakeBackend("cuda", Context());
  if (choice.ok()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kUnavailable) << choice.status();
  // Says why: no device (plugin built) or no plugin (build without nvcc).
  EXPECT_TRUE(absl::StrContains(choice.status().message(), CudaBackendCompiled()
                                                               ? "no usable CUDA device"
                                                               : "no CUDA backend"))
      << choice.status();
}

TEST_F(ForwardBackendTest, EngineReportsItsBackend) {
  EngineOptions options;
  options.num_threads = 1;
  options.block_size = 4;
  options.kv_cache_bytes = int64_t{1} << 20;
  options.backend = "auto";
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model_, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  if ((*engine)->backend_name() == "cpu") {
    EXPECT_FALSE((*engine)->backend_fallback_reason().empty());
  }
  options.backend = "nonsense";
  EXPECT_FALSE(Engine::Create(model_, options).ok());
}

}  // namespace
}  // namespace loopserve
