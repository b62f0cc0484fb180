// Reusable f32 scratch memory for a forward step: buffers grow to the
// largest batch seen and are then reused, so steady-state steps allocate
// nothing.
#pragma once

#include <cstdint>
#include <vector>

namespace loopserve {

class ScratchBuffer {
 public:
  // At least `n` floats; contents are unspecified.
  float* Get(int64_t n) {
    if (static_cast<int64_t>(data_.size()) < n) data_.resize(static_cast<size_t>(n));
    return data_.data();
  }

 private:
  std::vector<float> data_;
};

}  // namespace loopserve
