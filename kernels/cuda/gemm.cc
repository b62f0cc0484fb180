#include "kernels/cuda/gemm.h"

#include <climits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/elementwise.h"

namespace loopserve::cuda {
namespace {

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

}  // namespace

absl::Status Linear(cublasHandle_t handle, cudaStream_t stream, const DeviceMatrix& w,
                    const float* x, int64_t n, float* y, DeviceBuffer<uint16_t>* scratch) {
  if (n == 0) return absl::OkStatus();
  if (w.rows > INT_MAX || w.cols > INT_MAX || n > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: shape (", n, ", ", w.cols, ") x (", w.rows, ") exceeds int32"));
  }
  const void* input = x;
  if (w.dtype != DType::kF32) {
    if (absl::Status s = scratch->Reserve(n * w.cols); !s.ok()) return s;
    CUDA_RETURN_IF_ERROR(ConvertF32(x, n * w.cols, w.dtype, scratch->data(), stream));
    input = scratch->data();
  }
  // Column-major view: Y^T (out, n) = W (out, in) · X^T (in, n), where the
  // row-major [out, in] weight is a column-major (in, out) matrix: op T.
  const float alpha = 1.0f, beta = 0.0f;
  const int m = static_cast<int>(w.rows), cols = static_cast<int>(w.cols);
  CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, static_cast<int>(n),
                                      cols, &alpha, w.data, CudaType(w.dtype), cols, input,
                                      CudaType(w.dtype), cols, &beta, y, CUDA_R_32F, m,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

}  // namespace loopserve::cuda
