// One transformer layer of the looped-MoE block on the device (MODEL_SPEC
// "Block", with optional IterAdaLN), the CUDA twin of engine/layer_forward:
// cuBLAS GEMMs, the row kernels of kernels/cuda and the host ExpertPlan.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/cuda/device_model.h"
#include "engine/model_config.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/paged_attention.h"

namespace loopserve {

struct CudaContext {
  const ModelConfig* config = nullptr;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cuda::DeviceKvPool pool;
};

// Where a layer's K/V go: the pool's `instance`, or with probe_k/probe_v
// set, those (n, kv_dim) rows (attention then reads them for the row's own
// position and the pool is not written).
struct CudaKvTarget {
  int instance = 0;
  float* probe_k = nullptr;
  float* probe_v = nullptr;
  bool is_probe() const { return probe_k != nullptr; }
};

class CudaLayer {
 public:
  explicit CudaLayer(const CudaContext& context) : ctx_(context) {}

  // x (n, D) in place: x <- Block(x). modulation (n, 6D) or null.
  // router_trace, when set, receives the selected experts (n, k).
  absl::Status Run(const DeviceLayer& w, const CudaKvTarget& kv, const float* modulation,
                   const cuda::DeviceRows& rows, float* x, std::vector<int32_t>* router_trace);

  // out (n, 6D) = up · silu(down · x + iter_embed[loop]) + bias
  absl::Status Modulation(const DeviceLayer& w, int loop, const float* x, int64_t n, float* out);

  // K/V only (kv_fill = propagate): k, v (n, kv_dim) from block input x.
  absl::Status KeyValue(const DeviceLayer& w, const float* modulation, const cuda::DeviceRows& rows,
                        const float* x, float* k, float* v);

  // y (n, w.rows) = x (n, w.cols) · Wᵀ
  absl::Status Linear(const cuda::DeviceMatrix& w, const float* x, int64_t n, float* y);

 private:
  absl::Status NormModulated(const float* x, int64_t n, const float* weight,
                             const float* modulation, int scale_chunk, int shift_chunk, float* out);
  absl::Status Qkv(const DeviceLayer& w, const float* xn, const cuda::DeviceRows& rows, float* q,
                   float* k, float* v);
  absl::Status Attention(const DeviceLayer& w, const CudaKvTarget& kv, const float* modulation,
                         const cuda::DeviceRows& rows, const float* x, float* out);
  absl::Status Ffn(const DeviceLayer& w, const float* x, int64_t n, float* out,
                   std::vector<int32_t>* router_trace);
  absl::Status SwiGlu(const DeviceSwiGlu& w, const float* x, int64_t n, float* out);

  CudaContext ctx_;
  cuda::DeviceBuffer<float> norm_, q_, k_, v_, attn_, delta_, hidden_, ffn_a_, ffn_b_, adaln_;
  cuda::DeviceBuffer<float> router_logits_, expert_weights_, gathered_, expert_out_, shared_out_;
  cuda::DeviceBuffer<int32_t> expert_ids_, plan_token_, plan_inverse_;
  cuda::DeviceBuffer<uint16_t> gemm_input_;
  std::vector<int32_t> host_ids_;
};

}  // namespace loopserve
