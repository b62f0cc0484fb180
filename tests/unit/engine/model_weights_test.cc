// Tests for engine/model_weights: binding every spec-named tensor, the views
// pointing into the mapping, tied heads, parameter counts, and each error kind.
#include "engine/model_weights.h"

#include <string>

#include "engine/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using testutil::RawTensor;

// Every optional feature on: qk-norm, IterAdaLN, exit gate, shared experts,
// an untied head, and both FFN kinds.
Json FullConfig() {
  return Json{{"model_type", "looped_moe"}, {"vocab_size", 11},
              {"hidden_size", 8},           {"num_attention_heads", 2},
              {"num_key_value_heads", 1},   {"qk_norm", true},
              {"num_prelude_layers", 1},    {"num_recurrent_layers", 2},
              {"num_coda_layers", 1},       {"num_loops", 3},
              {"intermediate_size", 12},    {"num_experts", 3},
              {"num_experts_per_tok", 2},   {"moe_intermediate_size", 4},
              {"num_shared_experts", 1},    {"iter_adaln_rank", 2},
              {"exit_gate", true},          {"tie_word_embeddings", false}};
}

ModelConfig Parsed(const Json& j) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump(), "test");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

void WriteCheckpoint(const testutil::TempDir& dir, const Json& config,
                     const std::vector<RawTensor>& tensors) {
  ASSERT_TRUE(testutil::WriteFile(dir.Join("config.json"), config.dump()).ok());
  ASSERT_TRUE(testutil::WriteSafetensors(dir.Join("model.safetensors"), tensors).ok());
}

std::string LoadError(const testutil::TempDir& dir) {
  absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
  EXPECT_FALSE(m.ok());
  if (m.ok()) return "";
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  return std::string(m.status().message());
}

void Replace(std::vector<RawTensor>& tensors, const RawTensor& t) {
  for (RawTensor& old : tensors) {
    if (old.name == t.name) old = t;
  }
}

TEST(ModelWeightsTest, BindsEveryTensorIntoTheMapping) {
  testutil::TempDir dir;
  ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir.path(), FullConfig(), 7, DType::kF32).ok());
  absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = (*m)->weights;
  const Checkpoint& ckpt = *(*m)->checkpoint;
  EXPECT_EQ((*m)->dir, dir.path());
  EXPECT_EQ((*m)->config.num_loops, 3);

  ASSERT_EQ(w.Layers(ModelPart::kPrelude).size(), 1u);
  ASSERT_EQ(w.Layers(ModelPart::kRecurrent).size(), 2u);  // once, not R * L
  ASSERT_EQ(w.Layers(ModelPart::kCoda).size(), 1u);
  const LayerWeights& rec1 = w.recurrent[1];
  EXPECT_EQ(rec1.ffn, FfnKind::kMoe);
  EXPECT_EQ(w.prelude[0].ffn, FfnKind::kDense);
  ASSERT_EQ(rec1.moe.experts.size(), 3u);
  ASSERT_EQ(rec1.moe.shared.size(), 1u);

  // Views alias the mapped tensors (no copies) and carry the spec shapes.
  struct Expect {
    const char* name;
    const void* data;
    int64_t rows, cols;
  };
  for (const Expect& e : std::vector<Expect>{
           {"model.embed_tokens.weight", w.embed_tokens.data, w.embed_tokens.rows,
            w.embed_tokens.cols},
           {"model.recurrent.1.mlp.gate.weight", rec1.moe.router.data, rec1.moe.router.rows,
            rec1.moe.router.cols},
           {"model.recurrent.1.mlp.experts.2.down_proj.weight", rec1.moe.experts[2].down.data,
            rec1.moe.experts[2].down.rows, rec1.moe.experts[2].down.cols},
           {"model.recurrent.1.mlp.shared_experts.0.up_proj.weight", rec1.moe.shared[0].up.data,
            rec1.moe.shared[0].up.rows, rec1.moe.shared[0].up.cols},
           {"model.recurrent.1.adaln.up.weight", rec1.adaln.up.data, rec1.adaln.up.rows,
            rec1.adaln.up.cols},
           {"model.recurrent.0.adaln.iter_embed", w.recurrent[0].adaln.iter_embed.data,
            w.recurrent[0].adaln.iter_embed.rows, w.recurrent[0].adaln.iter_embed.cols},
           {"model.prelude.0.self_attn.k_proj.weight", w.prelude[0].attn.k_proj.data,
            w.prelude[0].attn.k_proj.rows, w.prelude[0].attn.k_proj.cols},
           {"model.coda.0.mlp.down_proj.weight", w.coda[0].dense.down.data,
            w.coda[0].dense.down.rows, w.coda[0].dense.down.cols},
           {"lm_head.weight", w.lm_head.data, w.lm_head.rows, w.lm_head.cols},
           {"model.exit_gate.weight", w.exit_gate.data, w.exit_gate.rows, w.exit_gate.cols},
       }) {
    const TensorInfo* t = ckpt.Find(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(e.data, t->data) << e.name;
    EXPECT_EQ(std::vector<int64_t>({e.rows, e.cols}), t->shape) << e.name;
  }
  EXPECT_EQ(rec1.moe.router.rows, 3);
  EXPECT_EQ(rec1.moe.router.cols, 8);
  EXPECT_EQ(rec1.adaln.up.rows, 48);
  EXPECT_EQ(rec1.adaln.up_bias.size, 48);
  EXPECT_EQ(rec1.attn.q_proj.rows, 8);  // H * d = 2 * 4
  EXPECT_EQ(rec1.attn.k_proj.rows, 4);  // Hkv * d
  EXPECT_EQ(rec1.attn.q_norm.size, 4);
  EXPECT_EQ(w.final_norm.data, ckpt.Find("model.norm.weight")->data);
  EXPECT_EQ(w.exit_gate_bias.data, ckpt.Find("model.exit_gate.bias")->data);
  EXPECT_NE(w.lm_head.data, w.embed_tokens.data);
}

TEST(ModelWeightsTest, ValuesReadThroughViewsMatchWhatWasWritten) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    testutil::TempDir dir;
    ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir.path(), FullConfig(), 3, dtype).ok());
    absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
    ASSERT_TRUE(m.ok()) << m.status();
    const ModelWeights& w = (*m)->weights;
    // The same seed in F32 gives the unrounded values, in the same order.
    std::vector<RawTensor> f32 =
        testutil::RandomCheckpointTensors(Parsed(FullConfig()), 3, DType::kF32);
    auto value = [&](const std::string& name, int64_t flat) {
      for (const RawTensor& t : f32) {
        if (t.name == name) {
          float v;
          memcpy(&v, t.bytes.data() + flat * 4, 4);
          return testutil::RoundTrip(dtype, v);
        }
      }
      ADD_FAILURE() << name;
      return 0.0f;
    };
    EXPECT_EQ(w.embed_tokens.dtype, dtype);
    EXPECT_EQ(w.embed_tokens.At(10, 7), value("model.embed_tokens.weight", 10 * 8 + 7));
    EXPECT_EQ(w.recurrent[1].moe.experts[2].gate.At(3, 5),
              value("model.recurrent.1.mlp.experts.2.gate_proj.weight", 3 * 8 + 5));
    EXPECT_EQ(w.recurrent[0].adaln.iter_embed.At(2, 1),
              value("model.recurrent.0.adaln.iter_embed", 2 * 2 + 1));
    EXPECT_EQ(w.coda[0].post_attention_layernorm.At(6),
              value("model.coda.0.post_attention_layernorm.weight", 6));
    EXPECT_EQ(w.exit_gate_bias.At(0), value("model.exit_gate.bias", 0));
    EXPECT_EQ(w.lm_head.At(4, 0), value("lm_head.weight", 4 * 8));
    // Norm weights are drawn near 1: a sanity check on the decoded magnitudes.
    EXPECT_NEAR(w.final_norm.At(3), 1.0f, 0.11f);
  }
}

TEST(ModelWeightsTest, TiedHeadAliasesEmbedding) {
  Json config = FullConfig();
  config["tie_word_embeddings"] = true;
  testutil::TempDir dir;
  ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir.path(), config, 1, DType::kBF16).ok());
  absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = (*m)->weights;
  EXPECT_EQ(w.lm_head.data, w.embed_tokens.data);
  EXPECT_EQ(w.lm_head.rows, 11);
  EXPECT_EQ(w.lm_head.cols, 8);
  EXPECT_EQ(w.lm_head.dtype, DType::kBF16);
  EXPECT_EQ((*m)->checkpoint->Find("lm_head.weight"), nullptr);
}

TEST(ModelWeightsTest, TiedHeadWithAnLmHeadTensorIsAnError) {
  Json config = FullConfig();
  testutil::TempDir dir;
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 1, DType::kF32);  // has lm_head
  config["tie_word_embeddings"] = true;
  WriteCheckpoint(dir, config, tensors);
  EXPECT_EQ(LoadError(dir), dir.Join("model.safetensors") + ": unexpected tensor lm_head.weight");
}

TEST(ModelWeightsTest, OptionalPartsAbsentWhenDisabled) {
  Json config = FullConfig();
  config["qk_norm"] = false;
  config["iter_adaln_rank"] = 0;
  config["exit_gate"] = false;
  testutil::TempDir dir;
  ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir.path(), config, 1, DType::kF32).ok());
  absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = (*m)->weights;
  EXPECT_TRUE(w.recurrent[0].attn.q_norm.empty());
  EXPECT_TRUE(w.recurrent[0].attn.k_norm.empty());
  EXPECT_TRUE(w.recurrent[0].adaln.up.empty());
  EXPECT_TRUE(w.exit_gate.empty());
  EXPECT_TRUE(w.exit_gate_bias.empty());
}

TEST(ModelWeightsTest, ParameterCountsAndBytes) {
  // Closed form for FullConfig: V=11, D=8, q=8, kv=4, d=4, I=12, E=3, Im=4, S=1, r=2, L=3.
  const int64_t attn = 8 * 8 + 4 * 8 + 4 * 8 + 8 * 8 + 4 + 4 + 8 + 8;  // + qk-norms, 2 norms
  const int64_t dense = 3 * 12 * 8;
  const int64_t moe = 3 * 8 + (3 + 1) * 3 * 4 * 8;
  const int64_t adaln = 2 * 8 + 3 * 2 + 48 * 2 + 48;
  const int64_t layers = (attn + dense) * 2 + (attn + moe + adaln) * 2;
  const int64_t untied = 11 * 8 + layers + 8 + 11 * 8 + 8 + 1;
  for (bool tied : {false, true}) {
    Json config = FullConfig();
    config["tie_word_embeddings"] = tied;
    testutil::TempDir dir;
    ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir.path(), config, 1, DType::kF16).ok());
    absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
    ASSERT_TRUE(m.ok()) << m.status();
    const int64_t expected = tied ? untied - 11 * 8 : untied;
    EXPECT_EQ(CountParameters((*m)->weights), expected) << "tied=" << tied;
    EXPECT_EQ(WeightBytes((*m)->weights), 2 * expected) << "tied=" << tied;
    // Every tensor in the file is a parameter, and nothing else is.
    int64_t in_file = 0;
    for (const std::string& name : (*m)->checkpoint->tensor_names()) {
      in_file += (*m)->checkpoint->Find(name)->NumElements();
    }
    EXPECT_EQ(in_file, expected);
  }
}

TEST(ModelWeightsTest, MixedDtypesKeepTheirOwnDtype) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 5, DType::kBF16);
  Replace(tensors, testutil::FloatTensor("model.norm.weight", DType::kF32, {8},
                                         {1, 2, 3, 4, 5, 6, 7, 8.25f}));
  Replace(tensors, testutil::FloatTensor("model.recurrent.0.mlp.gate.weight", DType::kF16, {3, 8},
                                         std::vector<float>(24, 0.3330078125f)));
  testutil::TempDir dir;
  WriteCheckpoint(dir, config, tensors);
  absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = (*m)->weights;
  EXPECT_EQ(w.final_norm.dtype, DType::kF32);
  EXPECT_EQ(w.final_norm.At(7), 8.25f);
  EXPECT_EQ(w.recurrent[0].moe.router.dtype, DType::kF16);
  EXPECT_EQ(w.recurrent[0].moe.router.At(2, 7), 0.3330078125f);  // exact in f16
  EXPECT_EQ(w.recurrent[1].moe.router.dtype, DType::kBF16);
}

TEST(ModelWeightsTest, MissingTensor) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 1, DType::kF32);
  std::erase_if(tensors,
                [](const RawTensor& t) { return t.name == "model.recurrent.1.mlp.gate.weight"; });
  testutil::TempDir dir;
  WriteCheckpoint(dir, config, tensors);
  EXPECT_EQ(LoadError(dir), dir.path() +
                                ": tensor model.recurrent.1.mlp.gate.weight: missing "
                                "(expected [3, 8] F32/F16/BF16)");
}

TEST(ModelWeightsTest, ExtraTensor) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 1, DType::kF32);
  tensors.push_back(testutil::FloatTensor("model.recurrent.2.input_layernorm.weight", DType::kF32,
                                          {8}, std::vector<float>(8, 1.0f)));
  testutil::TempDir dir;
  WriteCheckpoint(dir, config, tensors);
  EXPECT_EQ(LoadError(dir), dir.Join("model.safetensors") +
                                ": unexpected tensor model.recurrent.2.input_layernorm.weight");
}

TEST(ModelWeightsTest, MisShapedTensor) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 1, DType::kF32);
  Replace(tensors, testutil::FloatTensor("model.recurrent.1.mlp.gate.weight", DType::kF32, {3, 7},
                                         std::vector<float>(21, 0.0f)));
  testutil::TempDir dir;
  WriteCheckpoint(dir, config, tensors);
  EXPECT_EQ(LoadError(dir), dir.Join("model.safetensors") +
                                ": tensor model.recurrent.1.mlp.gate.weight: expected [3, 8], "
                                "found [3, 7]");
}

TEST(ModelWeightsTest, IntegerDtypeForAWeight) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 1, DType::kF32);
  Replace(tensors, testutil::Int32Tensor("model.norm.weight", {8}, std::vector<int32_t>(8, 1)));
  testutil::TempDir dir;
  WriteCheckpoint(dir, config, tensors);
  EXPECT_EQ(LoadError(dir), dir.Join("model.safetensors") +
                                ": tensor model.norm.weight: expected dtype F32/F16/BF16, "
                                "found I32");
}

TEST(ModelWeightsTest, ReportsHowManyMoreProblems) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 1, DType::kF32);
  std::erase_if(tensors, [](const RawTensor& t) { return t.name.starts_with("model.coda."); });
  tensors.push_back(testutil::FloatTensor("junk", DType::kF32, {1}, {0}));
  testutil::TempDir dir;
  WriteCheckpoint(dir, config, tensors);
  // 11 coda tensors (2 norms, 4 projections, 2 qk-norms, 3 SwiGLU) + 1 extra = 12.
  const std::string error = LoadError(dir);
  EXPECT_THAT(error, HasSubstr("tensor model.coda.0.input_layernorm.weight: missing"));
  EXPECT_THAT(error, HasSubstr("(and 11 more problems)"));
}

TEST(ModelWeightsTest, ShardedLoadEqualsSingleFileLoad) {
  Json config = FullConfig();
  std::vector<RawTensor> tensors =
      testutil::RandomCheckpointTensors(Parsed(config), 9, DType::kBF16);
  testutil::TempDir single, sharded;
  ASSERT_TRUE(testutil::WriteRandomCheckpoint(single.path(), config, 9, DType::kBF16).ok());
  ASSERT_TRUE(testutil::WriteFile(sharded.Join("config.json"), config.dump()).ok());
  ASSERT_TRUE(testutil::WriteShardedSafetensors(sharded.path(), tensors, 4).ok());
  absl::StatusOr<std::shared_ptr<const LoadedModel>> a = LoadModel(single.path());
  absl::StatusOr<std::shared_ptr<const LoadedModel>> b = LoadModel(sharded.path());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->checkpoint->files().size(), 4u);
  const ModelWeights& wa = (*a)->weights;
  const ModelWeights& wb = (*b)->weights;
  EXPECT_EQ(CountParameters(wa), CountParameters(wb));
  for (int64_t r = 0; r < 11; ++r) {
    for (int64_t c = 0; c < 8; ++c) {
      ASSERT_EQ(wa.embed_tokens.At(r, c), wb.embed_tokens.At(r, c));
      ASSERT_EQ(wa.lm_head.At(r, c), wb.lm_head.At(r, c));
    }
  }
  for (int64_t r = 0; r < 48; ++r) {
    ASSERT_EQ(wa.recurrent[1].adaln.up.At(r, 1), wb.recurrent[1].adaln.up.At(r, 1));
  }
  EXPECT_EQ(wa.coda[0].dense.up.At(11, 7), wb.coda[0].dense.up.At(11, 7));
}

TEST(ModelWeightsTest, ConfigErrorsSurfaceWithTheConfigPath) {
  testutil::TempDir dir;
  absl::StatusOr<std::shared_ptr<const LoadedModel>> m = LoadModel(dir.path());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(dir.Join("config.json") + ": cannot open"));

  Json config = FullConfig();
  config["num_experts_per_tok"] = 4;
  ASSERT_TRUE(testutil::WriteFile(dir.Join("config.json"), config.dump()).ok());
  EXPECT_EQ(LoadError(dir), dir.Join("config.json") +
                                ": field `num_experts_per_tok`: expected at most num_experts "
                                "(3), found 4");
}

}  // namespace
}  // namespace loopserve
