// Linear layers on cuBLAS: y (n, out) = x (n, in) · Wᵀ with W stored
// [out, in] row-major (the checkpoint layout). bf16/f16 weights take bf16/
// f16 inputs with fp32 accumulation and f32 output; f32 weights run a true
// f32 GEMM (the parity path).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/common/weight_view.h"
#include "kernels/cuda/device_buffer.h"

namespace loopserve::cuda {

// A weight matrix resident on the device.
struct DeviceMatrix {
  DType dtype = DType::kF32;
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features
  const void* data = nullptr;
  bool empty() const { return data == nullptr; }
};

// Bytes of the 16-bit copy of x that Linear needs for a 16-bit weight.
inline int64_t LinearInputScratch(const DeviceMatrix& w, int64_t n) {
  return w.dtype == DType::kF32 ? 0 : n * w.cols;
}

// x (n, w.cols) f32 -> y (n, w.rows) f32. `scratch` receives the 16-bit
// copy of x when W is 16-bit (grown as needed).
absl::Status Linear(cublasHandle_t handle, cudaStream_t stream, const DeviceMatrix& w,
                    const float* x, int64_t n, float* y, DeviceBuffer<uint16_t>* scratch);

}  // namespace loopserve::cuda
