// Parsing and validation of config.json (MODEL_SPEC.md "config.json"). Every
// error names the source, the field, what was expected and what was found.
#include "engine/model_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "kernels/common/check.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using Json = nlohmann::json;

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

// Short rendering of an offending value for messages: its JSON type and text.
std::string Describe(const Json& v) {
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  if (v.is_string()) return absl::StrCat("string ", text);
  if (v.is_boolean()) return absl::StrCat("boolean ", text);
  if (v.is_number_integer()) return absl::StrCat("integer ", text);
  if (v.is_number()) return absl::StrCat("number ", text);
  return absl::StrCat(v.type_name(), " ", text);
}

// Reads fields of one JSON object, recording which keys it consumed so that
// the rest can be reported as unknown.
class FieldReader {
 public:
  FieldReader(const Json& obj, std::string source) : obj_(obj), source_(std::move(source)) {}

  absl::Status Error(absl::string_view field, absl::string_view expected,
                     absl::string_view found) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field `", field, "`: expected ", expected, ", found ", found));
  }

  // Null counts as absent: HF-style configs write `"head_dim": null` for "default".
  const Json* Get(absl::string_view field) {
    known_.insert(std::string(field));
    auto it = obj_.find(std::string(field));
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  bool Has(absl::string_view field) {
    auto it = obj_.find(std::string(field));
    return it != obj_.end() && !it->is_null();
  }

  // An integer in [min, kIntMax]; `out` is left untouched when absent.
  template <typename T>
  absl::Status Int(absl::string_view field, bool required, int64_t min, T* out) {
    const std::string expected = absl::StrCat("an integer >= ", min);
    const Json* v = Get(field);
    if (v == nullptr) {
      return required ? Error(field, absl::StrCat(expected, " (required)"), "nothing")
                      : absl::OkStatus();
    }
    if (!v->is_number_integer()) return Error(field, expected, Describe(*v));
    // Non-negative literals parse as unsigned; anything past int32 is rejected
    // so that products of two sizes always fit in int64.
    const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{kIntMax};
    const int64_t value = too_big ? kIntMax : v->get<int64_t>();
    if (too_big || value < min) {
      return Error(field, absl::StrCat("an integer in [", min, ", ", kIntMax, "]"), v->dump());
    }
    *out = static_cast<T>(value);
    return absl::OkStatus();
  }

  // A finite number; `positive` demands > 0.
  absl::Status Number(absl::string_view field, bool positive, double* out) {
    const char* expected = positive ? "a finite number > 0" : "a finite number";
    const Json* v = Get(field);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return Error(field, expected, Describe(*v));
    double d = v->get<double>();
    if (!std::isfinite(d) || (positive && d <= 0)) return Error(field, expected, v->dump());
    *out = d;
    return absl::OkStatus();
  }

  absl::Status Bool(absl::string_view field, bool* out) {
    const Json* v = Get(field);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return Error(field, "true or false", Describe(*v));
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  // One of two strings, mapped to the matching enumerator.
  template <typename E>
  absl::Status Choice(absl::string_view field, const char* a, E ea, const char* b, E eb, E* out) {
    const std::string expected = absl::StrFormat("\"%s\" or \"%s\"", a, b);
    const Json* v = Get(field);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return Error(field, expected, Describe(*v));
    const std::string& s = v->get_ref<const std::string&>();
    if (s == a) {
      *out = ea;
    } else if (s == b) {
      *out = eb;
    } else {
      return Error(field, expected, v->dump());
    }
    return absl::OkStatus();
  }

  std::vector<std::string> UnknownFields() const {
    std::vector<std::string> unknown;
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (!known_.contains(it.key())) unknown.push_back(it.key());
    }
    return unknown;  // nlohmann objects iterate in key order: deterministic
  }

  const std::string& source() const { return source_; }

 private:
  const Json& obj_;
  std::string source_;
  absl::flat_hash_set<std::string> known_;
};

bool UsesFfn(const ModelConfig& c, FfnKind kind) {
  for (ModelPart p : {ModelPart::kPrelude, ModelPart::kRecurrent, ModelPart::kCoda}) {
    if (c.NumLayers(p) > 0 && c.Ffn(p) == kind) return true;
  }
  return false;
}

absl::Status ReadFields(FieldReader& f, ModelConfig& c) {
  {
    const Json* type = f.Get("model_type");
    if (type == nullptr) return f.Error("model_type", "\"looped_moe\" (required)", "nothing");
    if (!type->is_string() || type->get_ref<const std::string&>() != "looped_moe") {
      return f.Error("model_type", "\"looped_moe\"", Describe(*type));
    }
  }
  absl::Status s;
  auto check = [&s](absl::Status st) {
    if (s.ok()) s = std::move(st);
  };
  check(f.Int("vocab_size", true, 1, &c.vocab_size));
  check(f.Int("hidden_size", true, 1, &c.hidden_size));
  check(f.Int("num_attention_heads", true, 1, &c.num_attention_heads));
  check(f.Int("num_key_value_heads", false, 1, &c.num_key_value_heads));
  check(f.Int("head_dim", false, 2, &c.head_dim));
  check(f.Number("rope_theta", true, &c.rope_theta));
  check(f.Int("max_position_embeddings", false, 1, &c.max_position_embeddings));
  check(f.Number("rms_norm_eps", true, &c.rms_norm_eps));
  check(f.Bool("qk_norm", &c.qk_norm));
  check(f.Int("num_prelude_layers", false, 0, &c.num_prelude_layers));
  check(f.Int("num_recurrent_layers", true, 1, &c.num_recurrent_layers));
  check(f.Int("num_coda_layers", false, 0, &c.num_coda_layers));
  check(f.Int("num_loops", true, 1, &c.num_loops));
  for (const char* field : {"prelude_ffn", "recurrent_ffn", "coda_ffn"}) {
    FfnKind* out = field[0] == 'p'   ? &c.prelude_ffn
                   : field[0] == 'r' ? &c.recurrent_ffn
                                     : &c.coda_ffn;
    check(f.Choice(field, "dense", FfnKind::kDense, "moe", FfnKind::kMoe, out));
  }
  check(f.Int("intermediate_size", false, 1, &c.intermediate_size));
  check(f.Int("num_experts", false, 1, &c.num_experts));
  check(f.Int("num_experts_per_tok", false, 1, &c.num_experts_per_tok));
  check(f.Int("moe_intermediate_size", false, 1, &c.moe_intermediate_size));
  check(f.Int("num_shared_experts", false, 0, &c.num_shared_experts));
  check(f.Choice("router_score", "softmax", RouterScore::kSoftmax, "sigmoid", RouterScore::kSigmoid,
                 &c.router_score));
  check(f.Bool("norm_topk_prob", &c.norm_topk_prob));
  check(f.Number("routed_scaling_factor", false, &c.routed_scaling_factor));
  check(f.Int("iter_adaln_rank", false, 0, &c.iter_adaln_rank));
  check(f.Bool("exit_gate", &c.exit_gate));
  check(f.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  return s;
}

// Cross-field rules and defaults that depend on other fields.
absl::Status Validate(FieldReader& f, ModelConfig& c) {
  const int heads = c.num_attention_heads;
  if (!f.Has("num_key_value_heads")) c.num_key_value_heads = heads;
  if (heads % c.num_key_value_heads != 0) {
    return f.Error("num_key_value_heads",
                   absl::StrCat("a divisor of num_attention_heads (", heads, ")"),
                   absl::StrCat(c.num_key_value_heads));
  }
  if (!f.Has("head_dim")) {
    if (c.hidden_size % heads != 0) {
      return f.Error(
          "hidden_size",
          absl::StrCat("a multiple of num_attention_heads (", heads, ") when head_dim is absent"),
          absl::StrCat(c.hidden_size));
    }
    c.head_dim = static_cast<int>(c.hidden_size / heads);
  }
  if (c.head_dim % 2 != 0) {
    return f.Error(f.Has("head_dim") ? "head_dim" : "hidden_size",
                   "an even head_dim (RoPE rotates pairs)", absl::StrCat("head_dim ", c.head_dim));
  }
  // Layer instances (P + R*L + C) each own K/V and are indexed by int: a
  // huge num_loops must be refused here, not overflow later.
  constexpr int64_t kMaxLayerInstances = int64_t{1} << 16;
  const int64_t instances = int64_t{c.num_prelude_layers} +
                            int64_t{c.num_recurrent_layers} * c.num_loops + c.num_coda_layers;
  if (instances > kMaxLayerInstances) {
    return f.Error("num_loops",
                   absl::StrCat("at most ", kMaxLayerInstances,
                                " layer instances (prelude + recurrent * loops + coda)"),
                   absl::StrCat(instances, " instances"));
  }
  if (UsesFfn(c, FfnKind::kDense) && !f.Has("intermediate_size")) {
    return f.Error("intermediate_size", "an integer >= 1 (required: a part uses a dense FFN)",
                   "nothing");
  }
  if (UsesFfn(c, FfnKind::kMoe)) {
    for (const char* field : {"num_experts", "num_experts_per_tok", "moe_intermediate_size"}) {
      if (!f.Has(field)) {
        return f.Error(field, "an integer >= 1 (required: a part uses a MoE FFN)", "nothing");
      }
    }
    if (c.num_experts_per_tok > c.num_experts) {
      return f.Error("num_experts_per_tok",
                     absl::StrCat("at most num_experts (", c.num_experts, ")"),
                     absl::StrCat(c.num_experts_per_tok));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* ModelPartName(ModelPart part) {
  switch (part) {
    case ModelPart::kPrelude:
      return "prelude";
    case ModelPart::kRecurrent:
      return "recurrent";
    case ModelPart::kCoda:
      return "coda";
  }
  return "?";
}

int ModelConfig::NumLayers(ModelPart part) const {
  switch (part) {
    case ModelPart::kPrelude:
      return num_prelude_layers;
    case ModelPart::kRecurrent:
      return num_recurrent_layers;
    case ModelPart::kCoda:
      return num_coda_layers;
  }
  return 0;
}

FfnKind ModelConfig::Ffn(ModelPart part) const {
  switch (part) {
    case ModelPart::kPrelude:
      return prelude_ffn;
    case ModelPart::kRecurrent:
      return recurrent_ffn;
    case ModelPart::kCoda:
      return coda_ffn;
  }
  return FfnKind::kDense;
}

int ModelConfig::LayerInstance(ModelPart part, int layer, int loop) const {
  LOOPSERVE_CHECK(layer >= 0 && layer < NumLayers(part))
      << ModelPartName(part) << " layer " << layer << " of " << NumLayers(part);
  switch (part) {
    case ModelPart::kPrelude:
      return layer;
    case ModelPart::kRecurrent:
      LOOPSERVE_CHECK(loop >= 0 && loop < num_loops) << "loop " << loop << " of " << num_loops;
      return num_prelude_layers + loop * num_recurrent_layers + layer;
    case ModelPart::kCoda:
      return num_prelude_layers + num_recurrent_layers * num_loops + layer;
  }
  return -1;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for 1e+999
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a JSON object, found ", Describe(root)));
  }
  ModelConfig config;
  FieldReader reader(root, source);
  if (absl::Status s = ReadFields(reader, config); !s.ok()) return s;
  if (absl::Status s = Validate(reader, config); !s.ok()) return s;
  config.unknown_fields = reader.UnknownFields();
  return config;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", strerror(err)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseModelConfig(text.str(), path);
}

}  // namespace loopserve
