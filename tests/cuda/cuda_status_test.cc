// CUDA/cuBLAS errors as absl::Status with the call site, and the RAII types'
// behaviour when no device is usable. Runs on every machine (no GPU needed):
// these are the paths a GPU-less CI machine and a misconfigured server take.
#include "kernels/cuda/cuda_status.h"

#include <string>

#include "gtest/gtest.h"
#include "kernels/cuda/device_buffer.h"
#include "tests/cuda/cuda_test_util.h"

namespace loopserve {
namespace {

absl::Status FailingCall() {
  CUDA_RETURN_IF_ERROR(cudaErrorInvalidValue);
  return absl::OkStatus();
}

absl::Status FailingCublasCall() {
  CUBLAS_RETURN_IF_ERROR(CUBLAS_STATUS_NOT_SUPPORTED);
  return absl::OkStatus();
}

absl::Status SucceedingCalls() {
  CUDA_RETURN_IF_ERROR(cudaSuccess);
  CUBLAS_RETURN_IF_ERROR(CUBLAS_STATUS_SUCCESS);
  return absl::OkStatus();
}

TEST(CudaStatusTest, NamesCallSiteExpressionAndError) {
  const absl::Status s = FailingCall();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  const std::string m(s.message());
  EXPECT_NE(m.find("cuda_status_test.cc:"), std::string::npos) << m;
  EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
  EXPECT_TRUE(SucceedingCalls().ok());
}

TEST(CudaStatusTest, MapsCodes) {
  EXPECT_EQ(cuda::CudaStatus(cudaErrorMemoryAllocation, "x", "f", 1).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cuda::CudaStatus(cudaErrorNoDevice, "x", "f", 1).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(cuda::CudaStatus(cudaSuccess, "x", "f", 1).ok());
  const absl::Status blas = FailingCublasCall();
  EXPECT_EQ(blas.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(std::string(blas.message()).find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos)
      << blas.message();
  EXPECT_EQ(cuda::CublasStatus(CUBLAS_STATUS_ALLOC_FAILED, "x", "f", 1).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(CudaStatusTest, DeviceBufferWithoutDeviceIsAStatusNotACrash) {
  if (cuda_test::DeviceUsable()) GTEST_SKIP() << "a device is present: covered by the GPU tests";
  absl::StatusOr<cuda::DeviceBuffer<float>> buffer = cuda::DeviceBuffer<float>::Allocate(1024);
  EXPECT_FALSE(buffer.ok());
  // An empty buffer needs no device.
  absl::StatusOr<cuda::DeviceBuffer<float>> empty = cuda::DeviceBuffer<float>::Allocate(0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size(), 0);
  EXPECT_TRUE(empty->CopyFromHost(nullptr, 0, nullptr).ok());
  float x = 0;
  EXPECT_EQ(empty->CopyFromHost(&x, 1, nullptr).code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace loopserve
