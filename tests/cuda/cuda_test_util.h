// Helpers of the GPU tests: skip without a usable device, and copy vectors
// to and from the device.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_probe.h"

namespace loopserve::cuda_test {

inline bool DeviceUsable() {
  static const bool usable = cuda::ProbeDevices().reason.empty();
  return usable;
}

// In a TEST body: skips (GTEST_SKIP) on machines without a CUDA device.
#define LOOPSERVE_SKIP_WITHOUT_GPU()                                            \
  do {                                                                          \
    if (!::loopserve::cuda_test::DeviceUsable()) {                              \
      GTEST_SKIP() << "no usable CUDA device: " << cuda::ProbeDevices().reason; \
    }                                                                           \
  } while (0)

template <typename T>
cuda::DeviceBuffer<T> ToDevice(const std::vector<T>& host) {
  absl::StatusOr<cuda::DeviceBuffer<T>> buffer =
      cuda::DeviceBuffer<T>::Allocate(static_cast<int64_t>(host.size()));
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_TRUE(buffer->CopyFromHost(host.data(), static_cast<int64_t>(host.size()), nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return *std::move(buffer);
}

template <typename T>
cuda::DeviceBuffer<T> DeviceZeros(int64_t count) {
  absl::StatusOr<cuda::DeviceBuffer<T>> buffer = cuda::DeviceBuffer<T>::Allocate(count);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_TRUE(buffer->Zero(nullptr).ok());
  return *std::move(buffer);
}

template <typename T>
std::vector<T> ToHost(const cuda::DeviceBuffer<T>& buffer, int64_t count) {
  std::vector<T> host(static_cast<size_t>(count));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(buffer.CopyToHost(host.data(), count, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return host;
}

}  // namespace loopserve::cuda_test
