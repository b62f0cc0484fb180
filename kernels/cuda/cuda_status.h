// CUDA runtime and cuBLAS errors as absl::Status naming the failed call and
// its file:line, so an error surfaces as a Status instead of a crash deep in
// the backend (STYLE.md, llm.c's cudaCheck).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"

namespace loopserve::cuda {

// cudaErrorMemoryAllocation -> ResourceExhausted, no device / driver too old
// -> Unavailable, anything else -> Internal. The message is
// "file:line: expr: cudaErrorName (description)".
absl::Status CudaStatus(cudaError_t err, const char* expr, const char* file, int line);
// CUBLAS_STATUS_ALLOC_FAILED -> ResourceExhausted, NOT_SUPPORTED ->
// Unimplemented, anything else -> Internal.
absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line);

}  // namespace loopserve::cuda

#define LOOPSERVE_CUDA_CONCAT_INNER(a, b) a##b
#define LOOPSERVE_CUDA_CONCAT(a, b) LOOPSERVE_CUDA_CONCAT_INNER(a, b)

// Returns an absl::Status from the enclosing function when a CUDA runtime
// call (or a kernel launcher returning cudaError_t) fails.
#define CUDA_RETURN_IF_ERROR(expr)                                                            \
  do {                                                                                        \
    const cudaError_t LOOPSERVE_CUDA_CONCAT(cuda_err_, __LINE__) = (expr);                    \
    if (LOOPSERVE_CUDA_CONCAT(cuda_err_, __LINE__) != cudaSuccess) {                          \
      return ::loopserve::cuda::CudaStatus(LOOPSERVE_CUDA_CONCAT(cuda_err_, __LINE__), #expr, \
                                           __FILE__, __LINE__);                               \
    }                                                                                         \
  } while (0)

// Same for cuBLAS and cuBLASLt calls.
#define CUBLAS_RETURN_IF_ERROR(expr)                                                             \
  do {                                                                                           \
    const cublasStatus_t LOOPSERVE_CUDA_CONCAT(cublas_st_, __LINE__) = (expr);                   \
    if (LOOPSERVE_CUDA_CONCAT(cublas_st_, __LINE__) != CUBLAS_STATUS_SUCCESS) {                  \
      return ::loopserve::cuda::CublasStatus(LOOPSERVE_CUDA_CONCAT(cublas_st_, __LINE__), #expr, \
                                             __FILE__, __LINE__);                                \
    }                                                                                            \
  } while (0)

// Propagates a non-OK absl::Status.
#define LOOPSERVE_RETURN_IF_ERROR(expr)                               \
  do {                                                                \
    ::absl::Status LOOPSERVE_CUDA_CONCAT(status_, __LINE__) = (expr); \
    if (!LOOPSERVE_CUDA_CONCAT(status_, __LINE__).ok()) {             \
      return LOOPSERVE_CUDA_CONCAT(status_, __LINE__);                \
    }                                                                 \
  } while (0)
