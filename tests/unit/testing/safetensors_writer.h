// Test utilities that write safetensors files and whole checkpoints (valid
// or deliberately broken), plus a self-deleting temporary directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "kernels/common/weight_view.h"
#include "nlohmann/json.hpp"

namespace loopserve::testutil {

// One tensor as it will be written. `dtype` is the raw header string so that
// tests can write dtypes the reader must reject ("F64", "U8", ...).
struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// f32 -> IEEE half, round to nearest even (overflow to inf, NaN kept NaN).
uint16_t F32ToF16(float f);
// What `v` reads back as after being stored as `dtype`.
float RoundTrip(DType dtype, float v);

// `values` (row-major, product(shape) of them) encoded as `dtype`.
RawTensor FloatTensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                      const std::vector<float>& values);
RawTensor Int32Tensor(const std::string& name, std::vector<int64_t> shape,
                      const std::vector<int32_t>& values);

// A well-formed file: tensors packed in order, header padded to 8 bytes.
std::string SerializeSafetensors(const std::vector<RawTensor>& tensors);
// Length prefix + `header` verbatim + `data`: for hand-made broken headers.
std::string SerializeRaw(const std::string& header, const std::string& data);

absl::Status WriteFile(const std::string& path, const std::string& contents);
absl::Status WriteSafetensors(const std::string& path, const std::vector<RawTensor>& tensors);
// Splits `tensors` round-robin into `num_shards` files
// model-0000N-of-0000M.safetensors in `dir`, plus model.safetensors.index.json.
absl::Status WriteShardedSafetensors(const std::string& dir, const std::vector<RawTensor>& tensors,
                                     int num_shards);

// Every tensor MODEL_SPEC.md names for `config`, with deterministic
// pseudo-random values of sensible scale (norm weights near 1, matrices
// ~U(-1,1)/sqrt(fan_in)), all in `dtype`.
std::vector<RawTensor> RandomCheckpointTensors(const ModelConfig& config, uint32_t seed,
                                               DType dtype);
// Writes `dir`/config.json (`config` verbatim) and a valid model.safetensors.
absl::Status WriteRandomCheckpoint(const std::string& dir, const nlohmann::json& config,
                                   uint32_t seed, DType dtype);

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // `path()`/`name`.
  std::string Join(const std::string& name) const;

 private:
  std::string path_;
};

}  // namespace loopserve::testutil
