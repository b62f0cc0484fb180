// One resident copy of a model's weights on the device, in the shape of
// engine/model_weights.h: the recurrent layers are uploaded once whatever
// num_loops is, a tied LM head shares the embedding's copy, and norm
// weights, biases and IterAdaLN embeddings are widened to f32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_weights.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm.h"

namespace loopserve {

struct DeviceSwiGlu {
  cuda::DeviceMatrix gate, up, down;
};

struct DeviceLayer {
  const float* input_layernorm = nullptr;  // [D]
  cuda::DeviceMatrix q_proj, k_proj, v_proj, o_proj;
  const float* q_norm = nullptr;  // [d] when qk_norm
  const float* k_norm = nullptr;
  const float* post_attention_layernorm = nullptr;  // [D]
  FfnKind ffn = FfnKind::kDense;
  DeviceSwiGlu dense;
  cuda::DeviceMatrix router;  // [E, D]
  std::vector<DeviceSwiGlu> experts, shared;
  // IterAdaLN (recurrent layers, r > 0)
  cuda::DeviceMatrix adaln_down;         // [r, D]
  const float* iter_embed = nullptr;     // [L, r] f32
  cuda::DeviceMatrix adaln_up;           // [6D, r]
  const float* adaln_up_bias = nullptr;  // [6D]
};

class DeviceModel {
 public:
  // Copies `weights` to the device. With `f32_compute`, every matrix is
  // widened to f32 first (the parity path); otherwise matrices keep their
  // checkpoint dtype.
  static absl::StatusOr<std::unique_ptr<DeviceModel>> Upload(const ModelConfig& config,
                                                             const ModelWeights& weights,
                                                             bool f32_compute, cudaStream_t stream);

  cuda::DeviceMatrix embed_tokens;  // [V, D] (any dtype; read by the Embedding kernel)
  std::vector<DeviceLayer> prelude, recurrent, coda;
  const float* final_norm = nullptr;      // [D]
  cuda::DeviceMatrix lm_head;             // [V, D]
  cuda::DeviceMatrix exit_gate;           // [1, D] when config.exit_gate
  const float* exit_gate_bias = nullptr;  // [1]

  const std::vector<DeviceLayer>& Layers(ModelPart part) const;
  int64_t device_bytes() const { return bytes_; }

 private:
  DeviceModel() = default;
  class Uploader;
  std::vector<cuda::DeviceBuffer<uint8_t>> storage_;
  int64_t bytes_ = 0;
};

}  // namespace loopserve
