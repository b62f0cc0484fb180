// The `looped_moe` model configuration (MODEL_SPEC.md "config.json"), parsed
// and validated from a checkpoint's config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loopserve {

enum class FfnKind : uint8_t { kDense, kMoe };
enum class RouterScore : uint8_t { kSoftmax, kSigmoid };
enum class ModelPart : uint8_t { kPrelude, kRecurrent, kCoda };

const char* ModelPartName(ModelPart part);  // "prelude" | "recurrent" | "coda"

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // D
  int num_attention_heads = 0;  // H
  int num_key_value_heads = 0;  // Hkv
  int head_dim = 0;  // d
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-6;
  bool qk_norm = false;
  int num_prelude_layers = 0;  // P
  int num_recurrent_layers = 0;  // R
  int num_coda_layers = 0;  // C
  int num_loops = 0;  // L
  FfnKind prelude_ffn = FfnKind::kDense;
  FfnKind recurrent_ffn = FfnKind::kMoe;
  FfnKind coda_ffn = FfnKind::kDense;
  int64_t intermediate_size = 0;
  int num_experts = 0;  // E
  int num_experts_per_tok = 0;  // k
  int64_t moe_intermediate_size = 0;
  int num_shared_experts = 0;
  RouterScore router_score = RouterScore::kSoftmax;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
  int iter_adaln_rank = 0;  // r
  bool exit_gate = false;
  bool tie_word_embeddings = true;

  // Fields present in config.json that v1 does not know (warned, ignored).
  std::vector<std::string> unknown_fields;

  int NumLayers(ModelPart part) const;
  FfnKind Ffn(ModelPart part) const;
  int64_t QDim() const { return int64_t{num_attention_heads} * head_dim; }
  int64_t KvDim() const { return int64_t{num_key_value_heads} * head_dim; }
  // Layer instances that own K/V: P + R*L + C (MODEL_SPEC "layer instance").
  int NumLayerInstances() const {
    return num_prelude_layers + num_recurrent_layers * num_loops + num_coda_layers;
  }
  // KV instance index of (part, layer i, loop t); loop is ignored outside
  // the recurrent part. Order: prelude, recurrent (loop-major), coda.
  int LayerInstance(ModelPart part, int layer, int loop) const;
};

// Parses config.json text. Missing required fields, wrong types and
// inconsistent values (H % Hkv != 0, k > E, a dense part without
// intermediate_size, ...) are InvalidArgument naming the field and `source`.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace loopserve
