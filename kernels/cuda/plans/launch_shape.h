// Launch shapes of the simple row-wise kernels, as plain C++ so the host
// arithmetic (ceil-division, grid limits) is unit-tested without a GPU.
#pragma once

#include <cstdint>

namespace loopserve::cuda {

struct LaunchShape {
  int64_t blocks = 0;  // grid.x
  int threads = 0;     // block.x
};

// Largest grid.x a launch may use (CUDA: 2^31 - 1).
inline constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;

// One thread per element: ceil(n / threads) blocks (0 when n == 0).
inline LaunchShape ElementwiseShape(int64_t n, int threads = 256) {
  return LaunchShape{(n + threads - 1) / threads, threads};
}

// One block per row with threads for `width` columns: a power of two from
// 32 (one warp) to 1024, no more than the row needs.
inline LaunchShape RowShape(int64_t rows, int64_t width) {
  int threads = 32;
  while (threads < 1024 && threads < width) threads *= 2;
  return LaunchShape{rows, threads};
}

inline bool FitsGrid(const LaunchShape& s) { return s.blocks >= 0 && s.blocks <= kMaxGridX; }

}  // namespace loopserve::cuda
