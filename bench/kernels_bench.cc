// Google Benchmark of the CPU kernels: Linear at decode (m <= 32, weight-
// bandwidth bound) and prefill (m = 512, FLOP bound) shapes for f32 and bf16
// weights, plus the pool's fork-join overhead, decode attention, logit stats.
//   loopserve_kernels_bench --benchmark_filter=Linear
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/common/scalar_math.h"
#include "kernels/common/weight_view.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/logit_stats.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"

namespace loopserve {
namespace {

// args: dtype, N, K, m, threads
void BM_Linear(benchmark::State& state) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t n_out = state.range(1), k_in = state.range(2), m = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint8_t> wbytes(static_cast<size_t>(n_out * k_in * DTypeSize(dtype)));
  for (int64_t i = 0; i < n_out * k_in; ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) {
      reinterpret_cast<float*>(wbytes.data())[i] = v;
    } else {  // bf16 bits; also a valid (small-magnitude) f16 pattern set for timing
      reinterpret_cast<uint16_t*>(wbytes.data())[i] = F32ToBf16(v);
    }
  }
  const MatrixView w{dtype, n_out, k_in, wbytes.data()};
  std::vector<float> x(static_cast<size_t>(m * k_in)), y(static_cast<size_t>(m * n_out));
  for (float& v : x) v = dist(rng);
  ThreadPool pool(threads);
  for (auto _ : state) {
    Linear(x.data(), m, w, y.data(), &pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["weight_B/s"] =
      benchmark::Counter(iters * static_cast<double>(wbytes.size()), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1024);
  state.counters["FLOP/s"] = benchmark::Counter(iters * 2.0 * static_cast<double>(m * n_out * k_in),
                                                benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dtype == DType::kF32 ? "f32" : "bf16") + " " +
                 (std::getenv("LOOPSERVE_LINEAR_PATH") != nullptr
                      ? std::string(std::getenv("LOOPSERVE_LINEAR_PATH"))
                      : std::string(LinearPathName(LinearBestPath()))));
}

void LinearArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dtype", "N", "K", "m", "threads"});
  for (int dtype : {static_cast<int>(DType::kBF16), static_cast<int>(DType::kF32)}) {
    for (auto [n, k] : {std::pair{1024, 1024}, std::pair{4096, 1024}}) {
      for (int m : {1, 8, 32, 512}) {
        for (int threads : {1, 2}) b->Args({dtype, n, k, m, threads});
      }
    }
  }
}

BENCHMARK(BM_Linear)->Apply(LinearArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// An empty ParallelFor: the fixed cost paid per kernel call.
void BM_ThreadPoolOverhead(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    pool.ParallelFor(1024, 1, [](int64_t b, int64_t e) { benchmark::DoNotOptimize(b + e); });
  }
}
BENCHMARK(BM_ThreadPoolOverhead)->Arg(2)->UseRealTime();

// One decode row per sequence, `ctx` cached positions, H=16, Hkv=4, d=128.
void BM_PagedAttentionDecode(benchmark::State& state) {
  const int64_t ctx = state.range(0), n = state.range(1);
  const AttentionShape shape{16, 4, 128};
  const int block = 16, kv_dim = 4 * 128;
  const int64_t blocks_per_seq = (ctx + block - 1) / block;
  std::vector<float> pool_mem(static_cast<size_t>(n * blocks_per_seq * 2 * block * kv_dim), 0.01f);
  const PagedKvView kv{pool_mem.data(), 1, block, kv_dim};
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(n));
  std::vector<const int32_t*> table_ptrs;
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t b = 0; b < blocks_per_seq; ++b)
      tables[s].push_back(static_cast<int32_t>(b * n + s));
    table_ptrs.push_back(tables[s].data());
  }
  std::vector<int32_t> positions(static_cast<size_t>(n), static_cast<int32_t>(ctx - 1));
  std::vector<float> q(static_cast<size_t>(n * 16 * 128), 0.02f), out(q.size());
  ThreadPool pool(static_cast<int>(state.range(2)));
  for (auto _ : state) {
    PagedAttention(kv, 0, shape, q.data(), n, positions.data(), table_ptrs.data(), nullptr, nullptr,
                   out.data(), &pool);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["kv_B/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(n * ctx * 2 * kv_dim * 4),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1024);
}
BENCHMARK(BM_PagedAttentionDecode)
    ->ArgNames({"ctx", "n", "threads"})
    ->Args({1024, 1, 1})
    ->Args({4096, 8, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_LogitStats(benchmark::State& state) {
  const int64_t vocab = state.range(0);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& v : logits) v = dist(rng);
  for (auto _ : state) benchmark::DoNotOptimize(ComputeLogitStats(logits.data(), vocab));
}
BENCHMARK(BM_LogitStats)->Arg(32000)->Arg(151936)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace loopserve

BENCHMARK_MAIN();
