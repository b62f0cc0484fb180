// Linear: picks the decode or prefill tiling, splits the work over the
// pool, and dispatches to the AVX-512 or AVX2 tiles or the portable scalar loop.
#include "kernels/cpu/linear.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/common/check.h"
#include "kernels/cpu/linear_avx2.h"
#include "kernels/cpu/linear_avx512.h"
#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/widen.h"

namespace loopserve {
namespace {

// Up to this many x rows, streaming each weight row once (decode tiling)
// beats packing W: the packed GEMM pays the widening + transpose per panel
// and only amortises it over many rows. Measured in bench/kernels_bench.cc.
constexpr int64_t kDecodeMaxRows = 32;

// Below this many multiply-adds a chunk is not worth waking a worker for.
constexpr int64_t kMinMacsPerChunk = 1 << 15;

bool CpuHasAvx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

// libgcc's feature probe also checks that the OS saves the zmm state (XCR0).
bool CpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = CpuHasAvx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}

// The SIMD tiles of one path: decode tiling, packed GEMM and its blocking.
struct SimdTiles {
  void (*decode)(const float* x, int64_t m, const MatrixView& w, float* y, int64_t n_begin,
                 int64_t n_end);
  void (*gemm)(const float* x, const MatrixView& w, float* y, int64_t m_begin, int64_t m_end,
               int64_t n_begin, int64_t n_end);
  int64_t panel_cols;
  int64_t tile_rows;
};

constexpr SimdTiles kAvx2Tiles{internal::LinearDecodeAvx2, internal::LinearGemmAvx2,
                               internal::kGemmPanelCols, internal::kGemmTileRows};
constexpr SimdTiles kAvx512Tiles{internal::LinearDecodeAvx512, internal::LinearGemmAvx512,
                                 internal::kGemm512PanelCols, internal::kGemm512TileRows};

void RunParallel(ThreadPool* pool, int64_t n, int64_t min_chunk,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || pool->num_threads() == 1) {
    fn(0, n);
  } else {
    pool->ParallelFor(n, min_chunk, fn);
  }
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Bench instrumentation: the bytes of W one call streams (each weight is read
// once per call on every path) and its FLOPs, plus the weight-read trace.
void CountWeightRead(op_profile::Scope& profile, const MatrixView& w, int64_t m) {
  const int64_t bytes = w.rows * w.cols * DTypeSize(w.dtype);
  if (profile.active()) profile.Count(static_cast<double>(bytes), 2.0 * m * w.rows * w.cols);
  if (op_profile::TracingWeights()) op_profile::RecordWeightRead(w.data, bytes);
}

// Portable path: W rows [n_begin, n_end) widened one at a time into a
// scratch row, then dotted with each x row (4 partial sums for ILP).
void ScalarRows(const float* x, int64_t m, const MatrixView& w, float* y, int64_t n_begin,
                int64_t n_end) {
  const int64_t k_total = w.cols;
  std::vector<float> row(static_cast<size_t>(k_total));
  const char* base = static_cast<const char*>(w.data);
  for (int64_t n = n_begin; n < n_end; ++n) {
    WidenRow(base + n * k_total * DTypeSize(w.dtype), w.dtype, k_total, row.data());
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * k_total;
      float s[4] = {0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 4 <= k_total; k += 4) {
        for (int j = 0; j < 4; ++j) s[j] += row[k + j] * xi[k + j];
      }
      for (; k < k_total; ++k) s[0] += row[k] * xi[k];
      y[i * w.rows + n] = (s[0] + s[1]) + (s[2] + s[3]);
    }
  }
}

void LinearImpl(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool,
                LinearPath path) {
  const int64_t n_total = w.rows, k_total = w.cols;
  if (m <= 0 || n_total <= 0) return;
  op_profile::Scope profile(m <= kDecodeMaxRows ? "linear(decode)" : "linear(gemm)", n_total,
                            k_total);
  CountWeightRead(profile, w, m);
  if (k_total == 0) {
    std::fill(y, y + m * n_total, 0.0f);
    return;
  }
  const int64_t macs_per_row = std::max<int64_t>(1, m * k_total);  // per output column
  const int64_t min_cols = CeilDiv(kMinMacsPerChunk, macs_per_row);

  if (path == LinearPath::kPortable) {
    RunParallel(pool, n_total, min_cols,
                [&](int64_t b, int64_t e) { ScalarRows(x, m, w, y, b, e); });
    return;
  }
  const SimdTiles& tiles = path == LinearPath::kAvx512 ? kAvx512Tiles : kAvx2Tiles;
  if (m <= kDecodeMaxRows) {
    // Split N in multiples of 4 rows so every chunk keeps the 4-row tile.
    RunParallel(pool, CeilDiv(n_total, 4), CeilDiv(min_cols, 4), [&](int64_t b, int64_t e) {
      tiles.decode(x, m, w, y, b * 4, std::min(n_total, e * 4));
    });
    return;
  }
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  const int64_t panels = CeilDiv(n_total, tiles.panel_cols);
  if (panels >= 2 * threads) {
    // Enough columns: each thread packs only its own panels of W.
    RunParallel(pool, panels, CeilDiv(min_cols, tiles.panel_cols), [&](int64_t b, int64_t e) {
      tiles.gemm(x, w, y, 0, m, b * tiles.panel_cols, std::min(n_total, e * tiles.panel_cols));
    });
  } else {
    // Narrow W (router, exit gate): split the x rows instead.
    const int64_t row_tiles = CeilDiv(m, tiles.tile_rows);
    const int64_t min_tiles = CeilDiv(kMinMacsPerChunk, tiles.tile_rows * k_total * n_total);
    RunParallel(pool, row_tiles, min_tiles, [&](int64_t b, int64_t e) {
      tiles.gemm(x, w, y, b * tiles.tile_rows, std::min(m, e * tiles.tile_rows), 0, n_total);
    });
  }
}

// LinearBestPath, unless LOOPSERVE_LINEAR_PATH names a narrower supported
// path (portable | avx2): an A/B switch for benches, and a way out should a
// wide path misbehave on some machine.
LinearPath DispatchedPath() {
  const char* env = std::getenv("LOOPSERVE_LINEAR_PATH");
  if (env != nullptr) {
    for (LinearPath p : {LinearPath::kPortable, LinearPath::kAvx2, LinearPath::kAvx512}) {
      if (std::strcmp(env, LinearPathName(p)) == 0 && LinearPathSupported(p)) return p;
    }
  }
  return LinearBestPath();
}

}  // namespace

void Linear(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool) {
  static const LinearPath path = DispatchedPath();
  LinearImpl(x, m, w, y, pool, path);
}

void LinearFused(const float* x, int64_t m, std::span<const LinearTarget> targets,
                 ThreadPool* pool) {
  static const LinearPath path = DispatchedPath();
  if (m <= 0 || targets.empty()) return;
  const int64_t k_total = targets[0].w.cols;
  bool fusable = m <= kDecodeMaxRows && path != LinearPath::kPortable && k_total > 0 &&
                 pool != nullptr && pool->num_threads() > 1;
  for (const LinearTarget& t : targets) fusable = fusable && t.w.cols == k_total;
  if (!fusable) {
    for (const LinearTarget& t : targets) LinearImpl(x, m, t.w, t.y, pool, path);
    return;
  }
  // Units of 4 W rows, numbered across the targets in order: a chunk of
  // units is a run of row ranges, each starting at a multiple of 4 within
  // its target, exactly the tiles Linear would give each target.
  std::vector<int64_t> first_unit(targets.size() + 1, 0);
  int64_t rows_total = 0;
  for (size_t j = 0; j < targets.size(); ++j) {
    first_unit[j + 1] = first_unit[j] + CeilDiv(targets[j].w.rows, 4);
    rows_total += targets[j].w.rows;
  }
  op_profile::Scope profile("linear(decode, fused)", rows_total, k_total);
  for (const LinearTarget& t : targets) CountWeightRead(profile, t.w, m);
  const SimdTiles& tiles = path == LinearPath::kAvx512 ? kAvx512Tiles : kAvx2Tiles;
  const int64_t min_units = CeilDiv(CeilDiv(kMinMacsPerChunk, m * k_total), 4);
  pool->ParallelFor(first_unit.back(), min_units, [&](int64_t b, int64_t e) {
    for (size_t j = 0; j < targets.size(); ++j) {
      const int64_t lo = std::max(b, first_unit[j]), hi = std::min(e, first_unit[j + 1]);
      if (lo >= hi) continue;
      const LinearTarget& t = targets[j];
      tiles.decode(x, m, t.w, t.y, (lo - first_unit[j]) * 4,
                   std::min(t.w.rows, (hi - first_unit[j]) * 4));
    }
  });
}

void LinearPortable(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool) {
  LinearImpl(x, m, w, y, pool, LinearPath::kPortable);
}

void LinearReference(const float* x, int64_t m, const MatrixView& w, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double s = 0;
      for (int64_t k = 0; k < w.cols; ++k) {
        s += static_cast<double>(WidenAt(w.data, w.dtype, n * w.cols + k)) * x[i * w.cols + k];
      }
      y[i * w.rows + n] = static_cast<float>(s);
    }
  }
}

bool LinearUsesAvx2() { return CpuHasAvx2(); }

bool LinearPathSupported(LinearPath path) {
  switch (path) {
    case LinearPath::kPortable:
      return true;
    case LinearPath::kAvx2:
      return CpuHasAvx2();
    case LinearPath::kAvx512:
      return CpuHasAvx512();
  }
  return false;
}

LinearPath LinearBestPath() {
  if (CpuHasAvx512()) return LinearPath::kAvx512;
  if (CpuHasAvx2()) return LinearPath::kAvx2;
  return LinearPath::kPortable;
}

const char* LinearPathName(LinearPath path) {
  switch (path) {
    case LinearPath::kPortable:
      return "portable";
    case LinearPath::kAvx2:
      return "avx2";
    case LinearPath::kAvx512:
      return "avx512";
  }
  return "?";
}

void LinearWithPath(LinearPath path, const float* x, int64_t m, const MatrixView& w, float* y,
                    ThreadPool* pool) {
  LOOPSERVE_CHECK(LinearPathSupported(path))
      << "Linear path " << LinearPathName(path) << " not supported on this CPU";
  LinearImpl(x, m, w, y, pool, path);
}

}  // namespace loopserve
