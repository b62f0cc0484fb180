// A cuBLAS handle owned by RAII and bound to one stream.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace loopserve::cuda {

class CublasHandle {
 public:
  CublasHandle() = default;
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  CublasHandle(CublasHandle&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  CublasHandle& operator=(CublasHandle&& o) noexcept {
    if (this != &o) {
      Destroy();
      handle_ = std::exchange(o.handle_, nullptr);
    }
    return *this;
  }
  ~CublasHandle() { Destroy(); }

  // Pedantic math for f32 GEMMs: no silent TF32, so the f32 path is the
  // reference-precision path the parity tests rely on.
  static absl::StatusOr<CublasHandle> Create(cudaStream_t stream) {
    CublasHandle h;
    CUBLAS_RETURN_IF_ERROR(cublasCreate(&h.handle_));
    CUBLAS_RETURN_IF_ERROR(cublasSetStream(h.handle_, stream));
    CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(h.handle_, CUBLAS_DEFAULT_MATH));
    return h;
  }
  cublasHandle_t get() const { return handle_; }

 private:
  void Destroy() {
    if (handle_ != nullptr) (void)cublasDestroy(handle_);
    handle_ = nullptr;
  }
  cublasHandle_t handle_ = nullptr;
};

}  // namespace loopserve::cuda
