// Tests for engine/model_config: defaults, type checks, consistency rules and
// the wording of every error (source, field, expected, found).
#include "engine/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

Json BaseConfig() {
  return Json{{"model_type", "looped_moe"}, {"vocab_size", 32},         {"hidden_size", 16},
              {"num_attention_heads", 4},   {"num_key_value_heads", 2}, {"num_prelude_layers", 1},
              {"num_recurrent_layers", 2},  {"num_coda_layers", 1},     {"num_loops", 3},
              {"intermediate_size", 24},    {"num_experts", 4},         {"num_experts_per_tok", 2},
              {"moe_intermediate_size", 8}};
}

absl::StatusOr<ModelConfig> Parse(const Json& j) { return ParseModelConfig(j.dump(), "cfg.json"); }

// The error message for `j`, which must fail with InvalidArgument.
std::string ErrorOf(const Json& j) {
  absl::StatusOr<ModelConfig> c = Parse(j);
  EXPECT_FALSE(c.ok());
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

TEST(ModelConfigTest, MinimalConfigGetsSpecDefaults) {
  Json j = BaseConfig();
  j.erase("num_key_value_heads");
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 32);
  EXPECT_EQ(c->hidden_size, 16);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 4);  // defaults to H
  EXPECT_EQ(c->head_dim, 4);             // D / H
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->prelude_ffn, FfnKind::kDense);
  EXPECT_EQ(c->recurrent_ffn, FfnKind::kMoe);
  EXPECT_EQ(c->coda_ffn, FfnKind::kDense);
  EXPECT_EQ(c->num_shared_experts, 0);
  EXPECT_EQ(c->router_score, RouterScore::kSoftmax);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 1.0);
  EXPECT_EQ(c->iter_adaln_rank, 0);
  EXPECT_FALSE(c->exit_gate);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->unknown_fields.empty());
}

TEST(ModelConfigTest, EveryFieldIsRead) {
  Json j = BaseConfig();
  j.update(Json{{"head_dim", 6},
                {"rope_theta", 500000.0},
                {"max_position_embeddings", 128},
                {"rms_norm_eps", 1e-5},
                {"qk_norm", true},
                {"prelude_ffn", "moe"},
                {"recurrent_ffn", "dense"},
                {"coda_ffn", "moe"},
                {"num_shared_experts", 2},
                {"router_score", "sigmoid"},
                {"norm_topk_prob", false},
                {"routed_scaling_factor", 2.5},
                {"iter_adaln_rank", 3},
                {"exit_gate", true},
                {"tie_word_embeddings", false}});
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 6);
  EXPECT_EQ(c->QDim(), 24);
  EXPECT_EQ(c->KvDim(), 12);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->max_position_embeddings, 128);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_EQ(c->Ffn(ModelPart::kPrelude), FfnKind::kMoe);
  EXPECT_EQ(c->Ffn(ModelPart::kRecurrent), FfnKind::kDense);
  EXPECT_EQ(c->Ffn(ModelPart::kCoda), FfnKind::kMoe);
  EXPECT_EQ(c->num_shared_experts, 2);
  EXPECT_EQ(c->router_score, RouterScore::kSigmoid);
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 2.5);
  EXPECT_EQ(c->iter_adaln_rank, 3);
  EXPECT_TRUE(c->exit_gate);
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(ModelConfigTest, UnknownFieldsAreCollected) {
  Json j = BaseConfig();
  j["torch_dtype"] = "bfloat16";
  j["architectures"] = Json::array({"LoopedMoe"});
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->unknown_fields, ElementsAre("architectures", "torch_dtype"));
}

TEST(ModelConfigTest, NullMeansDefault) {
  Json j = BaseConfig();
  j["head_dim"] = nullptr;
  j["rope_theta"] = nullptr;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
}

TEST(ModelConfigTest, BadModelType) {
  Json j = BaseConfig();
  j["model_type"] = "llama";
  EXPECT_EQ(ErrorOf(j),
            "cfg.json: field `model_type`: expected \"looped_moe\", found string \"llama\"");
  j.erase("model_type");
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `model_type`: expected \"looped_moe\" (required)"));
}

TEST(ModelConfigTest, MissingRequiredField) {
  for (const char* field :
       {"vocab_size", "hidden_size", "num_attention_heads", "num_recurrent_layers", "num_loops"}) {
    Json j = BaseConfig();
    j.erase(field);
    EXPECT_THAT(ErrorOf(j), HasSubstr(absl::StrCat("cfg.json: field `", field,
                                                   "`: expected an integer >= 1 (required), "
                                                   "found nothing")));
  }
}

TEST(ModelConfigTest, WrongTypes) {
  Json j = BaseConfig();
  j["hidden_size"] = "16";
  EXPECT_EQ(ErrorOf(j),
            "cfg.json: field `hidden_size`: expected an integer >= 1, found string \"16\"");
  j = BaseConfig();
  j["num_loops"] = 2.5;
  EXPECT_EQ(ErrorOf(j), "cfg.json: field `num_loops`: expected an integer >= 1, found number 2.5");
  j = BaseConfig();
  j["qk_norm"] = 1;
  EXPECT_EQ(ErrorOf(j), "cfg.json: field `qk_norm`: expected true or false, found integer 1");
  j = BaseConfig();
  j["rope_theta"] = "big";
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `rope_theta`: expected a finite number > 0"));
  j = BaseConfig();
  j["router_score"] = 1;
  EXPECT_THAT(
      ErrorOf(j),
      HasSubstr("field `router_score`: expected \"softmax\" or \"sigmoid\", found integer"));
}

TEST(ModelConfigTest, OutOfRangeValues) {
  Json j = BaseConfig();
  j["num_loops"] = 0;
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `num_loops`: expected an integer in [1, "));
  j = BaseConfig();
  j["iter_adaln_rank"] = -1;
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `iter_adaln_rank`: expected an integer in [0, "));
  j = BaseConfig();
  j["vocab_size"] = int64_t{1} << 40;
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `vocab_size`: expected an integer in [1, 2147483647]"));
  j = BaseConfig();
  j["rms_norm_eps"] = 0.0;
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `rms_norm_eps`: expected a finite number > 0, found 0"));
}

TEST(ModelConfigTest, HeadsNotDivisibleByKvHeads) {
  Json j = BaseConfig();
  j["num_key_value_heads"] = 3;
  EXPECT_EQ(ErrorOf(j),
            "cfg.json: field `num_key_value_heads`: expected a divisor of num_attention_heads "
            "(4), found 3");
}

TEST(ModelConfigTest, TopKAboveExpertCount) {
  Json j = BaseConfig();
  j["num_experts_per_tok"] = 5;
  EXPECT_EQ(ErrorOf(j),
            "cfg.json: field `num_experts_per_tok`: expected at most num_experts (4), found 5");
}

TEST(ModelConfigTest, HiddenNotDivisibleByHeadsNeedsHeadDim) {
  Json j = BaseConfig();
  j["hidden_size"] = 18;
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `hidden_size`: expected a multiple of "
                                    "num_attention_heads (4) when head_dim is absent, found 18"));
  j["head_dim"] = 8;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 8);
}

TEST(ModelConfigTest, OddHeadDimRejectedForRope) {
  Json j = BaseConfig();
  j["head_dim"] = 5;
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `head_dim`: expected an even head_dim"));
  j.erase("head_dim");
  j["hidden_size"] = 12;  // 12 / 4 = 3
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `hidden_size`: expected an even head_dim (RoPE rotates "
                                    "pairs), found head_dim 3"));
}

TEST(ModelConfigTest, DenseWidthRequiredOnlyWhenADensePartHasLayers) {
  Json j = BaseConfig();
  j.erase("intermediate_size");
  EXPECT_THAT(ErrorOf(j), HasSubstr("field `intermediate_size`: expected an integer >= 1 "
                                    "(required: a part uses a dense FFN), found nothing"));
  j["num_prelude_layers"] = 0;
  j["num_coda_layers"] = 0;  // dense parts now empty
  EXPECT_TRUE(Parse(j).ok()) << Parse(j).status();
}

TEST(ModelConfigTest, MoeFieldsRequiredOnlyWhenAMoePartHasLayers) {
  for (const char* field : {"num_experts", "num_experts_per_tok", "moe_intermediate_size"}) {
    Json j = BaseConfig();
    j.erase(field);
    EXPECT_THAT(ErrorOf(j), HasSubstr(absl::StrCat("field `", field,
                                                   "`: expected an integer >= 1 (required: a part "
                                                   "uses a MoE FFN), found nothing")));
  }
  Json dense = BaseConfig();
  dense["recurrent_ffn"] = "dense";
  dense.erase("num_experts");
  dense.erase("num_experts_per_tok");
  dense.erase("moe_intermediate_size");
  EXPECT_TRUE(Parse(dense).ok()) << Parse(dense).status();
}

TEST(ModelConfigTest, BadEnumValues) {
  Json j = BaseConfig();
  j["coda_ffn"] = "sparse";
  EXPECT_EQ(ErrorOf(j),
            "cfg.json: field `coda_ffn`: expected \"dense\" or \"moe\", found \"sparse\"");
  j = BaseConfig();
  j["router_score"] = "relu";
  EXPECT_EQ(ErrorOf(j),
            "cfg.json: field `router_score`: expected \"softmax\" or \"sigmoid\", found \"relu\"");
}

TEST(ModelConfigTest, NotJsonOrNotAnObject) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig("{\"model_type\": ", "cfg.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("cfg.json: not valid JSON"));
  c = ParseModelConfig("[1, 2]", "cfg.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("cfg.json: expected a JSON object, found array"));
}

TEST(ModelConfigTest, LayerInstancesArePreludeThenLoopMajorRecurrentThenCoda) {
  absl::StatusOr<ModelConfig> c = Parse(BaseConfig());  // P=1, R=2, L=3, C=1
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->NumLayers(ModelPart::kPrelude), 1);
  EXPECT_EQ(c->NumLayers(ModelPart::kRecurrent), 2);
  EXPECT_EQ(c->NumLayers(ModelPart::kCoda), 1);
  EXPECT_EQ(c->NumLayerInstances(), 8);
  EXPECT_EQ(c->LayerInstance(ModelPart::kPrelude, 0, 0), 0);
  EXPECT_EQ(c->LayerInstance(ModelPart::kRecurrent, 0, 0), 1);
  EXPECT_EQ(c->LayerInstance(ModelPart::kRecurrent, 1, 0), 2);
  EXPECT_EQ(c->LayerInstance(ModelPart::kRecurrent, 0, 1), 3);
  EXPECT_EQ(c->LayerInstance(ModelPart::kRecurrent, 1, 2), 6);
  EXPECT_EQ(c->LayerInstance(ModelPart::kCoda, 0, 0), 7);
  EXPECT_STREQ(ModelPartName(ModelPart::kPrelude), "prelude");
  EXPECT_STREQ(ModelPartName(ModelPart::kRecurrent), "recurrent");
  EXPECT_STREQ(ModelPartName(ModelPart::kCoda), "coda");
}

TEST(ModelConfigTest, LoadFromFile) {
  testutil::TempDir dir;
  const std::string path = dir.Join("config.json");
  ASSERT_TRUE(testutil::WriteFile(path, BaseConfig().dump()).ok());
  absl::StatusOr<ModelConfig> c = LoadModelConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_loops, 3);

  absl::StatusOr<ModelConfig> missing = LoadModelConfig(dir.Join("nope.json"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.json: cannot open"));

  ASSERT_TRUE(testutil::WriteFile(path, "{\"model_type\": \"looped_moe\"}").ok());
  c = LoadModelConfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(path + ": field `vocab_size`"));
}

}  // namespace
}  // namespace loopserve
