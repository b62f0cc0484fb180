// Structured, non-owning views of a loaded checkpoint's weights, in the
// shape MODEL_SPEC.md names them. The recurrent layers appear once: every
// loop runs the same views (one resident copy whatever num_loops is).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "kernels/common/weight_view.h"

namespace loopserve {

struct SwiGluWeights {
  MatrixView gate;  // [I, D]
  MatrixView up;    // [I, D]
  MatrixView down;  // [D, I]
};

struct AttentionWeights {
  MatrixView q_proj;  // [H*d, D]
  MatrixView k_proj;  // [Hkv*d, D]
  MatrixView v_proj;  // [Hkv*d, D]
  MatrixView o_proj;  // [D, H*d]
  VectorView q_norm;  // [d], empty unless qk_norm
  VectorView k_norm;  // [d]
};

struct MoeWeights {
  MatrixView router;                     // [E, D]
  std::vector<SwiGluWeights> experts;    // E
  std::vector<SwiGluWeights> shared;     // num_shared_experts
};

struct IterAdaLnWeights {
  MatrixView down;        // [r, D]
  MatrixView iter_embed;  // [L, r]
  MatrixView up;          // [6*D, r]
  VectorView up_bias;     // [6*D]
};

struct LayerWeights {
  VectorView input_layernorm;           // [D]
  AttentionWeights attn;
  VectorView post_attention_layernorm;  // [D]
  FfnKind ffn = FfnKind::kDense;
  SwiGluWeights dense;                  // when ffn == kDense
  MoeWeights moe;                       // when ffn == kMoe
  IterAdaLnWeights adaln;               // recurrent layers with r > 0
};

struct ModelWeights {
  MatrixView embed_tokens;  // [V, D]
  std::vector<LayerWeights> prelude;
  std::vector<LayerWeights> recurrent;  // R entries, shared by all loops
  std::vector<LayerWeights> coda;
  VectorView final_norm;    // [D]
  MatrixView lm_head;       // [V, D]; aliases embed_tokens when tied
  MatrixView exit_gate;     // [1, D] when config.exit_gate
  VectorView exit_gate_bias;  // [1]

  const std::vector<LayerWeights>& Layers(ModelPart part) const;
};

class Checkpoint;  // engine/checkpoint.h

// A checkpoint loaded from a directory: config, the mapped files that own
// the bytes, and the structured views into them.
struct LoadedModel {
  ModelConfig config;
  std::shared_ptr<const Checkpoint> checkpoint;  // keeps the mappings alive
  ModelWeights weights;
  std::string dir;
};

// Loads config.json and model.safetensors (or the sharded index) from `dir`
// and checks every tensor against the config: a missing, unexpected or
// mis-shaped tensor is an error naming file, tensor, expected and found.
absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const std::string& dir);

// Binds the views of `config`'s tensors (MODEL_SPEC.md "Tensor names") into
// `checkpoint`, with LoadModel's checks; the views live as long as it does.
absl::StatusOr<ModelWeights> BindModelWeights(const ModelConfig& config,
                                              const Checkpoint& checkpoint);

// Unique parameters (a tied LM head counts once) and the bytes they occupy
// in their storage dtypes.
int64_t CountParameters(const ModelWeights& weights);
int64_t WeightBytes(const ModelWeights& weights);

}  // namespace loopserve
