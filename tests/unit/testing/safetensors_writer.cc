// Writers for safetensors test fixtures (see safetensors_writer.h).
#include "tests/unit/testing/safetensors_writer.h"

#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/common/scalar_math.h"

namespace loopserve::testutil {
namespace {

template <typename T>
void AppendLe(std::string* out, T v) {
  char buf[sizeof(T)];
  memcpy(buf, &v, sizeof(T));  // the test hosts are little-endian, as the format is
  out->append(buf, sizeof(T));
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Deterministic values in [-1, 1) from mt19937 (whose output sequence the
// standard fixes, unlike the distributions').
class Uniform {
 public:
  explicit Uniform(uint32_t seed) : gen_(seed) {}
  float Next() { return static_cast<float>(gen_() / 4294967296.0 * 2.0 - 1.0); }

 private:
  std::mt19937 gen_;
};

}  // namespace

uint16_t F32ToF16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (abs < 0x38800000u) {                        // below 2^-14: a half subnormal
    float a;
    memcpy(&a, &abs, sizeof(a));
    // a * 2^24 is exact; lrintf rounds half to even in the default mode.
    return sign | static_cast<uint16_t>(lrintf(a * 16777216.0f));
  }
  const uint32_t mant = abs & 0x7fffffu;
  uint32_t h = (((abs >> 23) - 127 + 15) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry bumps the exponent
  return sign | static_cast<uint16_t>(h);
}

float RoundTrip(DType dtype, float v) {
  switch (dtype) {
    case DType::kF32:
      return v;
    case DType::kF16:
      return F16ToF32(F32ToF16(v));
    case DType::kBF16:
      return Bf16ToF32(F32ToBf16(v));
  }
  return v;
}

RawTensor FloatTensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                      const std::vector<float>& values) {
  RawTensor t{name, DTypeName(dtype), std::move(shape), {}};
  t.bytes.reserve(values.size() * DTypeSize(dtype));
  for (float v : values) {
    switch (dtype) {
      case DType::kF32:
        AppendLe(&t.bytes, v);
        break;
      case DType::kF16:
        AppendLe(&t.bytes, F32ToF16(v));
        break;
      case DType::kBF16:
        AppendLe(&t.bytes, F32ToBf16(v));
        break;
    }
  }
  return t;
}

RawTensor Int32Tensor(const std::string& name, std::vector<int64_t> shape,
                      const std::vector<int32_t>& values) {
  RawTensor t{name, "I32", std::move(shape), {}};
  for (int32_t v : values) AppendLe(&t.bytes, v);
  return t;
}

std::string SerializeSafetensors(const std::vector<RawTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const RawTensor& t : tensors) {
    const size_t begin = data.size();
    data += t.bytes;
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  // Like the reference writer: pad with spaces so the data region is 8-aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  return SerializeRaw(text, data);
}

std::string SerializeRaw(const std::string& header, const std::string& data) {
  std::string out;
  AppendLe(&out, static_cast<uint64_t>(header.size()));
  return out + header + data;
}

absl::Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<RawTensor>& tensors) {
  return WriteFile(path, SerializeSafetensors(tensors));
}

absl::Status WriteShardedSafetensors(const std::string& dir, const std::vector<RawTensor>& tensors,
                                     int num_shards) {
  std::vector<std::vector<RawTensor>> shards(num_shards);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int s = static_cast<int>(i % num_shards);
    shards[s].push_back(tensors[i]);
    weight_map[tensors[i].name] =
        absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, num_shards);
  }
  for (int s = 0; s < num_shards; ++s) {
    const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, num_shards);
    if (absl::Status st = WriteSafetensors(dir + "/" + name, shards[s]); !st.ok()) return st;
  }
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", weight_map}};
  return WriteFile(dir + "/model.safetensors.index.json", index.dump(2));
}

std::vector<RawTensor> RandomCheckpointTensors(const ModelConfig& c, uint32_t seed, DType dtype) {
  Uniform rng(seed);
  std::vector<RawTensor> out;
  // value = offset + scale * U(-1, 1)
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale,
                 float offset = 0.0f) {
    std::vector<float> values(Product(shape));
    for (float& v : values) v = offset + scale * rng.Next();
    out.push_back(FloatTensor(name, dtype, std::move(shape), values));
  };
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols) {
    add(name, {rows, cols}, 1.0f / std::sqrt(static_cast<float>(cols)));
  };
  auto norm = [&](const std::string& name, int64_t n) { add(name, {n}, 0.1f, 1.0f); };
  auto swiglu = [&](const std::string& p, int64_t width) {
    linear(p + "gate_proj.weight", width, c.hidden_size);
    linear(p + "up_proj.weight", width, c.hidden_size);
    linear(p + "down_proj.weight", c.hidden_size, width);
  };
  const int64_t d_model = c.hidden_size;
  add("model.embed_tokens.weight", {c.vocab_size, d_model}, 1.0f);
  for (ModelPart part : {ModelPart::kPrelude, ModelPart::kRecurrent, ModelPart::kCoda}) {
    for (int i = 0; i < c.NumLayers(part); ++i) {
      const std::string p = absl::StrCat("model.", ModelPartName(part), ".", i, ".");
      norm(p + "input_layernorm.weight", d_model);
      linear(p + "self_attn.q_proj.weight", c.QDim(), d_model);
      linear(p + "self_attn.k_proj.weight", c.KvDim(), d_model);
      linear(p + "self_attn.v_proj.weight", c.KvDim(), d_model);
      linear(p + "self_attn.o_proj.weight", d_model, c.QDim());
      if (c.qk_norm) {
        norm(p + "self_attn.q_norm.weight", c.head_dim);
        norm(p + "self_attn.k_norm.weight", c.head_dim);
      }
      norm(p + "post_attention_layernorm.weight", d_model);
      if (c.Ffn(part) == FfnKind::kDense) {
        swiglu(p + "mlp.", c.intermediate_size);
      } else {
        linear(p + "mlp.gate.weight", c.num_experts, d_model);
        for (int e = 0; e < c.num_experts; ++e) {
          swiglu(absl::StrCat(p, "mlp.experts.", e, "."), c.moe_intermediate_size);
        }
        for (int s = 0; s < c.num_shared_experts; ++s) {
          swiglu(absl::StrCat(p, "mlp.shared_experts.", s, "."), c.moe_intermediate_size);
        }
      }
      if (part == ModelPart::kRecurrent && c.iter_adaln_rank > 0) {
        const int64_t r = c.iter_adaln_rank;
        linear(p + "adaln.down.weight", r, d_model);
        add(p + "adaln.iter_embed", {c.num_loops, r}, 1.0f);
        add(p + "adaln.up.weight", {6 * d_model, r}, 0.1f / std::sqrt(static_cast<float>(r)));
        add(p + "adaln.up.bias", {6 * d_model}, 0.05f);
      }
    }
  }
  norm("model.norm.weight", d_model);
  if (!c.tie_word_embeddings) linear("lm_head.weight", c.vocab_size, d_model);
  if (c.exit_gate) {
    linear("model.exit_gate.weight", 1, d_model);
    add("model.exit_gate.bias", {1}, 0.5f);
  }
  return out;
}

absl::Status WriteRandomCheckpoint(const std::string& dir, const nlohmann::json& config,
                                   uint32_t seed, DType dtype) {
  const std::string text = config.dump(2);
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(text, dir + "/config.json");
  if (!parsed.ok()) return parsed.status();
  if (absl::Status s = WriteFile(dir + "/config.json", text); !s.ok()) return s;
  return WriteSafetensors(dir + "/model.safetensors",
                          RandomCheckpointTensors(*parsed, seed, dtype));
}

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string templ =
      absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/loopserve_test_XXXXXX");
  // A test cannot run without scratch space; failing loudly here is the point.
  if (mkdtemp(templ.data()) == nullptr) abort();
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Join(const std::string& name) const { return path_ + "/" + name; }

}  // namespace loopserve::testutil
