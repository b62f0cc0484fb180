// Binds a checkpoint's tensors to the structured weight views by the exact
// names of MODEL_SPEC.md "Tensor names"; anything missing, mis-shaped,
// wrongly typed or left over is an error.
#include "engine/model_weights.h"

#include <filesystem>
#include <functional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/checkpoint.h"

namespace loopserve {
namespace {

// Looks tensors up by name and shape, remembering what it bound (to find
// leftovers) and every problem (so one load reports all of them at once).
class WeightBinder {
 public:
  explicit WeightBinder(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}

  MatrixView Matrix(const std::string& name, int64_t rows, int64_t cols) {
    MatrixView view;
    if (const TensorInfo* t = Bind(name, {rows, cols})) {
      view = MatrixView{*ToWeightDType(t->dtype), rows, cols, t->data};
    }
    return view;
  }

  VectorView Vector(const std::string& name, int64_t size) {
    VectorView view;
    if (const TensorInfo* t = Bind(name, {size})) {
      view = VectorView{*ToWeightDType(t->dtype), size, t->data};
    }
    return view;
  }

  // Reports leftovers, then the first problem (with how many more exist).
  absl::Status Finish() {
    for (const std::string& name : checkpoint_.tensor_names()) {
      if (!bound_.contains(name)) {
        errors_.push_back(
            absl::StrCat(checkpoint_.FindEntry(name).file->path(), ": unexpected tensor ", name));
      }
    }
    if (errors_.empty()) return absl::OkStatus();
    std::string msg = errors_.front();
    if (errors_.size() > 1) absl::StrAppend(&msg, " (and ", errors_.size() - 1, " more problems)");
    return absl::InvalidArgumentError(msg);
  }

 private:
  const TensorInfo* Bind(const std::string& name, const std::vector<int64_t>& shape) {
    bound_.insert(name);
    Checkpoint::Entry entry = checkpoint_.FindEntry(name);
    if (entry.tensor == nullptr) {
      errors_.push_back(absl::StrCat(checkpoint_.dir(), ": tensor ", name, ": missing (expected ",
                                     FormatShape(shape), " F32/F16/BF16)"));
      return nullptr;
    }
    const TensorInfo& t = *entry.tensor;
    if (t.shape != shape) {
      errors_.push_back(absl::StrCat(entry.file->path(), ": tensor ", name, ": expected ",
                                     FormatShape(shape), ", found ", FormatShape(t.shape)));
      return nullptr;
    }
    if (!ToWeightDType(t.dtype)) {
      errors_.push_back(absl::StrCat(entry.file->path(), ": tensor ", name,
                                     ": expected dtype F32/F16/BF16, found ",
                                     SafetensorsDTypeName(t.dtype)));
      return nullptr;
    }
    return &t;
  }

  const Checkpoint& checkpoint_;
  absl::flat_hash_set<std::string> bound_;
  std::vector<std::string> errors_;
};

SwiGluWeights BindSwiGlu(WeightBinder& b, const std::string& prefix, int64_t hidden,
                         int64_t width) {
  SwiGluWeights w;
  w.gate = b.Matrix(prefix + "gate_proj.weight", width, hidden);
  w.up = b.Matrix(prefix + "up_proj.weight", width, hidden);
  w.down = b.Matrix(prefix + "down_proj.weight", hidden, width);
  return w;
}

LayerWeights BindLayer(WeightBinder& b, const ModelConfig& c, ModelPart part, int i) {
  const std::string p = absl::StrCat("model.", ModelPartName(part), ".", i, ".");
  const int64_t d_model = c.hidden_size;
  LayerWeights w;
  w.input_layernorm = b.Vector(p + "input_layernorm.weight", d_model);
  w.attn.q_proj = b.Matrix(p + "self_attn.q_proj.weight", c.QDim(), d_model);
  w.attn.k_proj = b.Matrix(p + "self_attn.k_proj.weight", c.KvDim(), d_model);
  w.attn.v_proj = b.Matrix(p + "self_attn.v_proj.weight", c.KvDim(), d_model);
  w.attn.o_proj = b.Matrix(p + "self_attn.o_proj.weight", d_model, c.QDim());
  if (c.qk_norm) {
    w.attn.q_norm = b.Vector(p + "self_attn.q_norm.weight", c.head_dim);
    w.attn.k_norm = b.Vector(p + "self_attn.k_norm.weight", c.head_dim);
  }
  w.post_attention_layernorm = b.Vector(p + "post_attention_layernorm.weight", d_model);
  w.ffn = c.Ffn(part);
  if (w.ffn == FfnKind::kDense) {
    w.dense = BindSwiGlu(b, p + "mlp.", d_model, c.intermediate_size);
  } else {
    w.moe.router = b.Matrix(p + "mlp.gate.weight", c.num_experts, d_model);
    for (int e = 0; e < c.num_experts; ++e) {
      w.moe.experts.push_back(
          BindSwiGlu(b, absl::StrCat(p, "mlp.experts.", e, "."), d_model, c.moe_intermediate_size));
    }
    for (int s = 0; s < c.num_shared_experts; ++s) {
      w.moe.shared.push_back(BindSwiGlu(b, absl::StrCat(p, "mlp.shared_experts.", s, "."), d_model,
                                        c.moe_intermediate_size));
    }
  }
  if (part == ModelPart::kRecurrent && c.iter_adaln_rank > 0) {
    const int64_t r = c.iter_adaln_rank;
    w.adaln.down = b.Matrix(p + "adaln.down.weight", r, d_model);
    w.adaln.iter_embed = b.Matrix(p + "adaln.iter_embed", c.num_loops, r);
    w.adaln.up = b.Matrix(p + "adaln.up.weight", 6 * d_model, r);
    w.adaln.up_bias = b.Vector(p + "adaln.up.bias", 6 * d_model);
  }
  return w;
}

// Calls `fn(data, elements, dtype)` for every bound view; a tied head
// repeats the embedding's pointer (callers dedupe by pointer).
using ViewFn = std::function<void(const void*, int64_t, DType)>;

void ForEachView(const ModelWeights& w, const ViewFn& fn) {
  auto m = [&](const MatrixView& v) {
    if (!v.empty()) fn(v.data, v.rows * v.cols, v.dtype);
  };
  auto vec = [&](const VectorView& v) {
    if (!v.empty()) fn(v.data, v.size, v.dtype);
  };
  auto swiglu = [&](const SwiGluWeights& s) {
    m(s.gate);
    m(s.up);
    m(s.down);
  };
  m(w.embed_tokens);
  for (ModelPart part : {ModelPart::kPrelude, ModelPart::kRecurrent, ModelPart::kCoda}) {
    for (const LayerWeights& l : w.Layers(part)) {
      vec(l.input_layernorm);
      m(l.attn.q_proj);
      m(l.attn.k_proj);
      m(l.attn.v_proj);
      m(l.attn.o_proj);
      vec(l.attn.q_norm);
      vec(l.attn.k_norm);
      vec(l.post_attention_layernorm);
      swiglu(l.dense);
      m(l.moe.router);
      for (const SwiGluWeights& e : l.moe.experts) swiglu(e);
      for (const SwiGluWeights& s : l.moe.shared) swiglu(s);
      m(l.adaln.down);
      m(l.adaln.iter_embed);
      m(l.adaln.up);
      vec(l.adaln.up_bias);
    }
  }
  vec(w.final_norm);
  m(w.lm_head);
  m(w.exit_gate);
  vec(w.exit_gate_bias);
}

// (parameters, bytes) over unique tensors.
std::pair<int64_t, int64_t> CountUnique(const ModelWeights& w) {
  absl::flat_hash_set<const void*> seen;
  int64_t params = 0, bytes = 0;
  ForEachView(w, [&](const void* data, int64_t n, DType dtype) {
    if (!seen.insert(data).second) return;
    params += n;
    bytes += n * DTypeSize(dtype);
  });
  return {params, bytes};
}

}  // namespace

const std::vector<LayerWeights>& ModelWeights::Layers(ModelPart part) const {
  switch (part) {
    case ModelPart::kPrelude:
      return prelude;
    case ModelPart::kRecurrent:
      return recurrent;
    case ModelPart::kCoda:
      return coda;
  }
  return recurrent;  // unreachable: every enumerator is handled above
}

absl::StatusOr<ModelWeights> BindModelWeights(const ModelConfig& config,
                                              const Checkpoint& checkpoint) {
  WeightBinder b(checkpoint);
  ModelWeights w;
  w.embed_tokens = b.Matrix("model.embed_tokens.weight", config.vocab_size, config.hidden_size);
  for (ModelPart part : {ModelPart::kPrelude, ModelPart::kRecurrent, ModelPart::kCoda}) {
    std::vector<LayerWeights>& layers = part == ModelPart::kPrelude     ? w.prelude
                                        : part == ModelPart::kRecurrent ? w.recurrent
                                                                        : w.coda;
    for (int i = 0; i < config.NumLayers(part); ++i) {
      layers.push_back(BindLayer(b, config, part, i));
    }
  }
  w.final_norm = b.Vector("model.norm.weight", config.hidden_size);
  w.lm_head = config.tie_word_embeddings
                  ? w.embed_tokens
                  : b.Matrix("lm_head.weight", config.vocab_size, config.hidden_size);
  if (config.exit_gate) {
    w.exit_gate = b.Matrix("model.exit_gate.weight", 1, config.hidden_size);
    w.exit_gate_bias = b.Vector("model.exit_gate.bias", 1);
  }
  if (absl::Status s = b.Finish(); !s.ok()) return s;
  return w;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const std::string& dir) {
  absl::StatusOr<ModelConfig> config =
      LoadModelConfig((std::filesystem::path(dir) / "config.json").string());
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir);
  if (!checkpoint.ok()) return checkpoint.status();
  auto model = std::make_shared<LoadedModel>();
  model->config = *std::move(config);
  model->checkpoint = *std::move(checkpoint);
  absl::StatusOr<ModelWeights> weights = BindModelWeights(model->config, *model->checkpoint);
  if (!weights.ok()) return weights.status();
  model->weights = *std::move(weights);
  model->dir = dir;
  return model;
}

int64_t CountParameters(const ModelWeights& weights) { return CountUnique(weights).first; }

int64_t WeightBytes(const ModelWeights& weights) { return CountUnique(weights).second; }

}  // namespace loopserve
