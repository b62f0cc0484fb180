#include "kernels/cuda/cuda_status.h"

#include "absl/strings/str_cat.h"

namespace loopserve::cuda {
namespace {

std::string CallSite(const char* expr, const char* file, int line) {
  return absl::StrCat(file, ":", line, ": ", expr, ": ");
}

}  // namespace

absl::Status CudaStatus(cudaError_t err, const char* expr, const char* file, int line) {
  const std::string message = absl::StrCat(CallSite(expr, file, line), cudaGetErrorName(err), " (",
                                           cudaGetErrorString(err), ")");
  switch (err) {
    case cudaSuccess:
      return absl::OkStatus();
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line) {
  const std::string message = absl::StrCat(CallSite(expr, file, line), cublasGetStatusName(status),
                                           " (", cublasGetStatusString(status), ")");
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return absl::OkStatus();
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(message);
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return absl::UnimplementedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace loopserve::cuda
