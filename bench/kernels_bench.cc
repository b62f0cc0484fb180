// Google Benchmark of the CPU kernels: Linear at decode (m <= 32, weight-
// bandwidth bound) and prefill (m = 512, FLOP bound) shapes for f32 and bf16
// weights, plus the pool's fork-join overhead, decode attention, logit stats.
//   loopserve_kernels_bench --benchmark_filter=Linear
#include <immintrin.h>
#include <time.h>

#include <atomic>
#include <chrono>
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

// ---- Machine peak: register-resident multiply-add loops ---------------------
// 12 independent accumulators hide the FMA latency; nothing touches memory.
// f32: vfmadd231ps zmm (16 lanes x 2 FLOP). bf16: vdpbf16ps zmm (32 bf16 pairs
// x 2 FLOP into 16 f32 lanes), the AVX512-BF16 dot product the linear
// kernels do NOT use (it rounds activations to bf16), measured as the
// ceiling a bf16 GEMM could reach. Returns the FLOPs done.
constexpr int kPeakAcc = 12;

__attribute__((target("avx512f"))) double PeakF32(int64_t iters) {
  __m512 acc[kPeakAcc];
  for (int i = 0; i < kPeakAcc; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kPeakAcc; ++i) sum = _mm512_add_ps(sum, acc[i]);
  benchmark::DoNotOptimize(sum);
  return 2.0 * 16 * kPeakAcc * static_cast<double>(iters);
}

__attribute__((target("avx512f,avx512bf16"))) double PeakBf16(int64_t iters) {
  __m512 acc[kPeakAcc];
  for (int i = 0; i < kPeakAcc; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80);  // bf16 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3A83);  // bf16 ~0.001
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakAcc; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kPeakAcc; ++i) sum = _mm512_add_ps(sum, acc[i]);
  benchmark::DoNotOptimize(sum);
  return 2.0 * 32 * kPeakAcc * static_cast<double>(iters);
}

// args: kind (0 = f32 FMA, 1 = bf16 dot), threads. Each thread runs the loop.
void BM_PeakFlops(benchmark::State& state) {
  const bool bf16 = state.range(0) == 1;
  const int threads = static_cast<int>(state.range(1));
  if (!__builtin_cpu_supports("avx512f") || (bf16 && !__builtin_cpu_supports("avx512bf16"))) {
    state.SkipWithError("CPU lacks AVX-512 (BF16)");
    return;
  }
  ThreadPool pool(threads);
  constexpr int64_t kIters = 1 << 20;
  double flops = 0, cpu_seconds = 0;
  for (auto _ : state) {
    std::atomic<double> done{0}, cpu{0};
    pool.ParallelFor(threads, 1, [&](int64_t b, int64_t e) {
      timespec t0, t1;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
      double f = 0;
      for (int64_t t = b; t < e; ++t) f += bf16 ? PeakBf16(kIters) : PeakF32(kIters);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
      done.fetch_add(f);
      cpu.fetch_add((t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    });
    flops += done.load();
    cpu_seconds += cpu.load();
  }
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsRate);
  // FLOPs per second a thread actually held a core: the per-core peak even
  // when other processes share the cores (then wall-time FLOP/s is lower).
  state.counters["FLOP/cpu_s"] = cpu_seconds > 0 ? flops / cpu_seconds : 0;
  state.SetLabel(bf16 ? "vdpbf16ps zmm" : "vfmadd231ps zmm");
}
BENCHMARK(BM_PeakFlops)
    ->ArgNames({"bf16", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- Can a re-read working set stay in L3 while a large stream passes? ------
// The looped model re-reads its shared block (attention 5.2 MB per layer on
// bench-m) once per loop, with ~70 MB of expert and head weights streamed in
// between. This reads a `set_mib` working set, streams 128 MiB (plain loads
// with a T0 software prefetch like the decode tiles, with prefetchnta, or
// evicting each streamed line with clflushopt behind the loads) and times
// re-reading the working set: L3-hot speed would mean the hint kept it.
// args: set_mib, hint (0 = T0, 1 = NTA, 2 = clflushopt)
__attribute__((target("avx512f,clflushopt"))) float SumStream(const float* p, int64_t n, int hint) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    if (i % 64 == 0) {  // once per 4 lines: prefetch 4 KiB ahead / flush 1 KiB behind
      for (int j = 0; j < 4; ++j) {
        const char* ahead = reinterpret_cast<const char*>(p + i + 1024) + 64 * j;
        if (hint == 0) _mm_prefetch(ahead, _MM_HINT_T0);
        if (hint == 1) _mm_prefetch(ahead, _MM_HINT_NTA);
        if (hint == 2 && i >= 256) _mm_clflushopt(const_cast<float*>(p + i - 256) + 16 * j);
      }
    }
    acc = _mm512_add_ps(acc, _mm512_loadu_ps(p + i));
  }
  alignas(64) float lanes[16];  // (_mm512_reduce_add_ps trips GCC 12's -Wuninitialized)
  _mm512_store_ps(lanes, acc);
  float sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

void BM_CacheResidency(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512f")) {
    state.SkipWithError("CPU lacks AVX-512");
    return;
  }
  const int64_t set = state.range(0) << 18, stream = int64_t{128} << 18;  // floats
  const int hint = static_cast<int>(state.range(1));
  std::vector<float> a(static_cast<size_t>(set + 4096), 1.0f),
      b(static_cast<size_t>(stream + 4096), 1.0f);
  double reread = 0;
  float sink = 0;
  for (auto _ : state) {
    benchmark::ClobberMemory();
    sink += SumStream(a.data(), set, 0);  // warm
    sink += SumStream(b.data(), stream, hint);
    benchmark::DoNotOptimize(sink);
    benchmark::ClobberMemory();
    const auto t0 = std::chrono::steady_clock::now();
    sink += SumStream(a.data(), set, 0);
    benchmark::DoNotOptimize(sink);
    reread += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  benchmark::DoNotOptimize(sink);
  state.counters["reread_B/s"] = static_cast<double>(state.iterations()) * set * 4 / reread;
  state.SetLabel(hint == 0 ? "stream T0" : hint == 1 ? "stream prefetchnta" : "stream clflushopt");
}
BENCHMARK(BM_CacheResidency)
    ->ArgNames({"set_mib", "hint"})
    ->ArgsProduct({{8, 16}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Reference: the same working set re-read with nothing in between (L3-hot).
void BM_CacheHotReread(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512f")) {
    state.SkipWithError("CPU lacks AVX-512");
    return;
  }
  const int64_t set = state.range(0) << 18;
  std::vector<float> a(static_cast<size_t>(set + 4096), 1.0f);
  float sink = SumStream(a.data(), set, 0);
  for (auto _ : state) {
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();  // or the pure sum is computed once
    sink += SumStream(a.data(), set, 0);
    benchmark::DoNotOptimize(sink);
  }
  benchmark::DoNotOptimize(sink);
  state.counters["reread_B/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * set * 4, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CacheHotReread)
    ->ArgName("set_mib")
    ->Arg(8)
    ->Arg(16)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_LogitStats(benchmark::State& state) {
  const int64_t vocab = state.range(0);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& v : logits) v = dist(rng);
  for (auto _ : state) benchmark::DoNotOptimize(ComputeLogitStats(logits.data(), vocab));
}
BENCHMARK(BM_LogitStats)->Arg(32000)->Arg(151936)->Unit(benchmark::kMicrosecond);

// KL(z_t ‖ z_{t-1}) of one row: the kl criterion's cost per boundary beyond
// the exit head itself.
void BM_KlDivergence(benchmark::State& state) {
  const int64_t vocab = state.range(0);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> p(static_cast<size_t>(vocab)), q(p.size());
  for (float& v : p) v = dist(rng);
  for (float& v : q) v = dist(rng);
  const double p_lse = ComputeLogitStats(p.data(), vocab).log_sum_exp;
  const double q_lse = ComputeLogitStats(q.data(), vocab).log_sum_exp;
  for (auto _ : state) {
    benchmark::DoNotOptimize(KlDivergence(p.data(), p_lse, q.data(), q_lse, vocab));
  }
}
BENCHMARK(BM_KlDivergence)->Arg(32000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace loopserve

BENCHMARK_MAIN();
