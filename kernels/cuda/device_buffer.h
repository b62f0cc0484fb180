// Device memory owned by RAII: a typed, move-only array freed on
// destruction, allocation failures reported as absl::Status.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace loopserve::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Free();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { Free(); }

  // `count` elements, uninitialised (count 0 gives an empty buffer).
  static absl::StatusOr<DeviceBuffer> Allocate(int64_t count) {
    DeviceBuffer buffer;
    if (count > 0) {
      void* p = nullptr;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&p, sizeof(T) * static_cast<size_t>(count)));
      buffer.data_ = static_cast<T*>(p);
      buffer.size_ = count;
    }
    return buffer;
  }

  // Grows to at least `count` elements (contents are not kept), so that
  // scratch buffers reach the largest batch once and are then reused.
  absl::Status Reserve(int64_t count) {
    if (count <= size_) return absl::OkStatus();
    absl::StatusOr<DeviceBuffer> grown = Allocate(count);
    if (!grown.ok()) return grown.status();
    *this = std::move(*grown);
    return absl::OkStatus();
  }

  // Host -> device of `count` elements at element `offset`, on `stream`.
  absl::Status CopyFromHost(const T* host, int64_t count, cudaStream_t stream, int64_t offset = 0) {
    if (count == 0) return absl::OkStatus();
    if (offset < 0 || offset + count > size_) {
      return absl::OutOfRangeError("DeviceBuffer::CopyFromHost past the end of the buffer");
    }
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(data_ + offset, host, sizeof(T) * count, cudaMemcpyHostToDevice, stream));
    return absl::OkStatus();
  }
  absl::Status CopyToHost(T* host, int64_t count, cudaStream_t stream, int64_t offset = 0) const {
    if (count == 0) return absl::OkStatus();
    if (offset < 0 || offset + count > size_) {
      return absl::OutOfRangeError("DeviceBuffer::CopyToHost past the end of the buffer");
    }
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host, data_ + offset, sizeof(T) * count, cudaMemcpyDeviceToHost, stream));
    return absl::OkStatus();
  }
  absl::Status Zero(cudaStream_t stream) {
    if (size_ == 0) return absl::OkStatus();
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(data_, 0, sizeof(T) * size_, stream));
    return absl::OkStatus();
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  int64_t bytes() const { return size_ * static_cast<int64_t>(sizeof(T)); }

 private:
  void Free() {
    // A failing cudaFree at teardown has nowhere to go; the pointer is
    // dropped either way.
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace loopserve::cuda
