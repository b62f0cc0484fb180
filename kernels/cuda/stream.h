// A CUDA stream and a CUDA event owned by RAII (non-blocking stream, so the
// backend never synchronises with the legacy default stream by accident).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace loopserve::cuda {

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    if (this != &o) {
      Destroy();
      stream_ = std::exchange(o.stream_, nullptr);
    }
    return *this;
  }
  ~Stream() { Destroy(); }

  static absl::StatusOr<Stream> Create() {
    Stream s;
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s.stream_, cudaStreamNonBlocking));
    return s;
  }
  absl::Status Synchronize() const {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  cudaStream_t get() const { return stream_; }

 private:
  void Destroy() {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& o) noexcept : event_(std::exchange(o.event_, nullptr)) {}
  Event& operator=(Event&& o) noexcept {
    if (this != &o) {
      Destroy();
      event_ = std::exchange(o.event_, nullptr);
    }
    return *this;
  }
  ~Event() { Destroy(); }

  static absl::StatusOr<Event> Create() {
    Event e;
    CUDA_RETURN_IF_ERROR(cudaEventCreate(&e.event_));
    return e;
  }
  absl::Status Record(cudaStream_t stream) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(event_, stream));
    return absl::OkStatus();
  }
  absl::Status Synchronize() const {
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(event_));
    return absl::OkStatus();
  }
  // Milliseconds from `start` to this event (both recorded and complete).
  absl::StatusOr<float> MillisSince(const Event& start) const {
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }
  cudaEvent_t get() const { return event_; }

 private:
  void Destroy() {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
    event_ = nullptr;
  }
  cudaEvent_t event_ = nullptr;
};

}  // namespace loopserve::cuda
