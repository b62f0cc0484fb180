// Exit statistics (see logit_stats.h): one block per row, reductions by
// CUB's BlockReduce; the final arithmetic is scalar_math.h's, shared with
// the CPU tests.
#include <cfloat>
#include <climits>
#include <cmath>
#include <cub/block/block_reduce.cuh>

#include "kernels/cuda/logit_stats.h"

namespace loopserve::cuda {
namespace {

constexpr int kThreads = 256;

// Largest value (lowest index on a tie) and the runner-up, which equals the
// largest when it occurs twice: the CPU's TopTwo semantics.
struct TopTwo {
  float l1;
  int32_t index;
  float l2;
};

struct MergeTopTwo {
  __device__ TopTwo operator()(const TopTwo& a, const TopTwo& b) const {
    const bool a_wins = a.l1 > b.l1 || (a.l1 == b.l1 && a.index < b.index);
    const TopTwo& win = a_wins ? a : b;
    const TopTwo& lose = a_wins ? b : a;
    TopTwo out;
    out.l1 = win.l1;
    out.index = win.index;
    out.l2 = (a.l1 == b.l1 && a.index != INT_MAX && b.index != INT_MAX) ? win.l1
                                                                        : fmaxf(win.l2, lose.l1);
    return out;
  }
};

struct SumPair {
  double z, weighted;
};
struct AddPair {
  __device__ SumPair operator()(const SumPair& a, const SumPair& b) const {
    return SumPair{a.z + b.z, a.weighted + b.weighted};
  }
};

__global__ void __launch_bounds__(kThreads)
    RowStatsKernel(const float* logits, int64_t vocab, RowExitStats* stats) {
  using TopReduce = cub::BlockReduce<TopTwo, kThreads>;
  using SumReduce = cub::BlockReduce<SumPair, kThreads>;
  __shared__ union {
    typename TopReduce::TempStorage top;
    typename SumReduce::TempStorage sum;
  } temp;
  __shared__ TopTwo best;
  const float* z = logits + blockIdx.x * vocab;
  TopTwo mine{-INFINITY, INT_MAX, -INFINITY};
  const MergeTopTwo merge;
  for (int64_t v = threadIdx.x; v < vocab; v += kThreads) {
    mine = merge(mine, TopTwo{z[v], static_cast<int32_t>(v), -INFINITY});
  }
  const TopTwo reduced = TopReduce(temp.top).Reduce(mine, merge);
  if (threadIdx.x == 0) best = reduced;
  __syncthreads();
  const float l1 = best.l1;
  SumPair part{0.0, 0.0};
  for (int64_t v = threadIdx.x; v < vocab; v += kThreads) {
    const float shifted = z[v] - l1;
    const double e = expf(shifted);
    part.z += e;
    part.weighted += e * shifted;
  }
  const SumPair sums = SumReduce(temp.sum).Reduce(part, AddPair());
  if (threadIdx.x == 0) {
    stats[blockIdx.x] =
        ExitStatsFromSums(best.index, l1, best.l2, sums.z, sums.weighted, vocab > 1);
  }
}

__global__ void __launch_bounds__(kThreads)
    KlKernel(const float* p, const RowExitStats* p_stats, const float* q_base, const double* q_lse,
             const int32_t* q_rows, int64_t vocab, double* kl) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int64_t row = blockIdx.x;
  const float* pr = p + row * vocab;
  const int64_t q_row = q_rows[row];
  const float* qr = q_base + q_row * vocab;
  const double p_lse = p_stats[row].log_sum_exp, ql = q_lse[q_row];
  double part = 0.0;
  for (int64_t v = threadIdx.x; v < vocab; v += kThreads) part += KlTerm(pr[v], p_lse, qr[v], ql);
  const double total = Reduce(temp).Sum(part);
  if (threadIdx.x == 0) kl[row] = total > 0.0 ? total : 0.0;
}

struct Dots {
  double ab, aa, bb;
};
struct AddDots {
  __device__ Dots operator()(const Dots& x, const Dots& y) const {
    return Dots{x.ab + y.ab, x.aa + y.aa, x.bb + y.bb};
  }
};

__global__ void __launch_bounds__(kThreads)
    CosineKernel(const float* a, const float* b_base, const int32_t* b_rows, int64_t dim,
                 double* cosine) {
  using Reduce = cub::BlockReduce<Dots, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const float* ar = a + blockIdx.x * dim;
  const float* br = b_base + int64_t{b_rows[blockIdx.x]} * dim;
  Dots part{0.0, 0.0, 0.0};
  for (int64_t i = threadIdx.x; i < dim; i += kThreads) {
    part.ab += static_cast<double>(ar[i]) * br[i];
    part.aa += static_cast<double>(ar[i]) * ar[i];
    part.bb += static_cast<double>(br[i]) * br[i];
  }
  const Dots d = Reduce(temp).Reduce(part, AddDots());
  if (threadIdx.x == 0) cosine[blockIdx.x] = CosineFromDots(d.ab, d.aa, d.bb);
}

}  // namespace

cudaError_t LogitRowStats(const float* logits, int64_t n, int64_t vocab, RowExitStats* stats,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n > INT_MAX || vocab > INT_MAX) return cudaErrorInvalidValue;
  RowStatsKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(logits, vocab, stats);
  return cudaGetLastError();
}

cudaError_t KlRows(const float* p, const RowExitStats* p_stats, const float* q_base,
                   const double* q_lse, const int32_t* q_rows, int64_t n, int64_t vocab, double* kl,
                   cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n > INT_MAX) return cudaErrorInvalidValue;
  KlKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(p, p_stats, q_base, q_lse, q_rows,
                                                              vocab, kl);
  return cudaGetLastError();
}

cudaError_t CosineRows(const float* a, const float* b_base, const int32_t* b_rows, int64_t n,
                       int64_t dim, double* cosine, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n > INT_MAX) return cudaErrorInvalidValue;
  CosineKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(a, b_base, b_rows, dim, cosine);
  return cudaGetLastError();
}

}  // namespace loopserve::cuda
