// Every CUDA kernel against its CPU counterpart (kernels/cpu), the
// reference path: row kernels, RoPE, paged attention (GQA, several blocks,
// the probe's own K/V), router top-k, expert combine, exit statistics and
// the cuBLAS linear in f32 and bf16. Skipped without a GPU.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/logit_stats.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/cublas_handle.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/logit_stats.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/plans/block_table_plan.h"
#include "kernels/cuda/plans/expert_plan.h"
#include "tests/cuda/cuda_test_util.h"

namespace loopserve {
namespace {

using cuda_test::DeviceZeros;
using cuda_test::ToDevice;
using cuda_test::ToHost;

std::vector<float> Random(std::mt19937& rng, int64_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// f32 tolerance for kernels whose reductions run in a different order.
constexpr float kF32Tol = 2e-5f;

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0f, std::abs(want[i]))) << "at " << i;
  }
}

TEST(CudaKernelsTest, RmsNormWithModulation) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  const int64_t n = 5, dim = 300, ld = 6 * dim;
  const std::vector<float> x = Random(rng, n * dim, -3, 3), w = Random(rng, dim);
  const std::vector<float> mod = Random(rng, n * ld);
  std::vector<float> want(n * dim);
  RmsNorm(x.data(), n, dim, VectorView{DType::kF32, dim, w.data()}, 1e-6f, want.data());
  Modulate(want.data(), n, dim, mod.data() + dim, mod.data(), ld);
  auto dx = ToDevice(x), dw = ToDevice(w), dmod = ToDevice(mod);
  auto out = DeviceZeros<float>(n * dim);
  ASSERT_EQ(cuda::RmsNorm(dx.data(), n, dim, dw.data(), 1e-6f, dmod.data() + dim, dmod.data(), ld,
                          out.data(), nullptr),
            cudaSuccess);
  ExpectNear(ToHost(out, n * dim), want, kF32Tol);
}

TEST(CudaKernelsTest, RopeSiluMulResidualMatchCpu) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  const int64_t n = 4;
  const int heads = 3, d = 16;
  std::vector<float> x = Random(rng, n * heads * d);
  const std::vector<int32_t> pos = {0, 7, 100, 4000};
  auto dx = ToDevice(x);
  auto dpos = ToDevice(pos);
  ASSERT_EQ(cuda::Rope(dx.data(), n, heads, d, dpos.data(), 10000.0f, nullptr), cudaSuccess);
  ApplyRope(x.data(), n, heads, d, pos.data(), 10000.0f);
  ExpectNear(ToHost(dx, n * heads * d), x, 1e-6f);

  const int64_t count = 1000;
  const std::vector<float> g = Random(rng, count, -5, 5), u = Random(rng, count);
  std::vector<float> want(count);
  SiluMul(g.data(), u.data(), 1, count, want.data());
  auto dg = ToDevice(g), du = ToDevice(u);
  auto dout = DeviceZeros<float>(count);
  ASSERT_EQ(cuda::SiluMul(dg.data(), du.data(), count, dout.data(), nullptr), cudaSuccess);
  ExpectNear(ToHost(dout, count), want, 1e-6f);

  std::vector<float> acc = Random(rng, count), gain = Random(rng, count);
  auto dacc = ToDevice(acc), dgain = ToDevice(gain);
  ASSERT_EQ(cuda::ResidualAdd(dacc.data(), du.data(), 4, 250, dgain.data(), 250, nullptr),
            cudaSuccess);
  ResidualAdd(acc.data(), u.data(), 4, 250, gain.data(), 250);
  ExpectNear(ToHost(dacc, count), acc, 1e-6f);
}

// A paged pool with 3 instances and blocks of 4, two sequences, a prefill
// chunk and a decode row, with and without the probe's own K/V.
TEST(CudaKernelsTest, PagedAttentionMatchesCpuWithGqaAndProbe) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  const int heads = 4, kv_heads = 2, d = 32, kv_dim = kv_heads * d, block = 4, instances = 3;
  const int num_blocks = 8;
  std::vector<float> pool = Random(rng, int64_t{num_blocks} * instances * 2 * block * kv_dim);
  const std::vector<int32_t> seq_a = {5, 2, 7}, seq_b = {0, 6};
  const std::vector<int32_t> positions = {8, 9, 10, 5};
  const int32_t* tables[] = {seq_a.data(), seq_a.data(), seq_a.data(), seq_b.data()};
  const int64_t n = 4;
  const std::vector<float> q = Random(rng, n * heads * d);
  const std::vector<float> self_k = Random(rng, n * kv_dim), self_v = Random(rng, n * kv_dim);
  const cuda::BlockTablePlan plan = cuda::BuildBlockTablePlan(tables, positions.data(), n, block);
  auto dpool = ToDevice(pool);
  auto dq = ToDevice(q), dk = ToDevice(self_k), dv = ToDevice(self_v);
  auto dpos = ToDevice(positions), dtables = ToDevice(plan.tables), drt = ToDevice(plan.row_table);
  const cuda::DeviceKvPool dev_pool{dpool.data(), instances, block, kv_dim};
  const cuda::DeviceRows rows{n, dpos.data(), dtables.data(), drt.data(), plan.stride};
  PagedKvView view{pool.data(), instances, block, kv_dim};
  const AttentionShape shape{heads, kv_heads, d};
  for (bool probe : {false, true}) {
    std::vector<float> want(n * heads * d);
    PagedAttentionPortable(view, 1, shape, q.data(), n, positions.data(), tables,
                           probe ? self_k.data() : nullptr, probe ? self_v.data() : nullptr,
                           want.data(), nullptr);
    auto out = DeviceZeros<float>(n * heads * d);
    ASSERT_EQ(cuda::PagedAttention(dev_pool, 1, heads, kv_heads, d, dq.data(), rows,
                                   probe ? dk.data() : nullptr, probe ? dv.data() : nullptr,
                                   out.data(), nullptr),
              cudaSuccess);
    ExpectNear(ToHost(out, n * heads * d), want, 1e-5f);
  }
  // WriteKv then CopyKvInstance land where the CPU view says.
  ASSERT_EQ(cuda::WriteKv(dev_pool, 0, rows, dk.data(), dv.data(), nullptr), cudaSuccess);
  ASSERT_EQ(cuda::CopyKvInstance(dev_pool, 0, 2, rows, nullptr), cudaSuccess);
  const std::vector<float> after = ToHost(dpool, static_cast<int64_t>(pool.size()));
  PagedKvView after_view{const_cast<float*>(after.data()), instances, block, kv_dim};
  for (int64_t i = 0; i < n; ++i) {
    for (int inst : {0, 2}) {
      const float* k = after_view.RowAt(tables[i], inst, 0, positions[i]);
      const float* v = after_view.RowAt(tables[i], inst, 1, positions[i]);
      for (int c = 0; c < kv_dim; ++c) {
        ASSERT_EQ(k[c], self_k[i * kv_dim + c]);
        ASSERT_EQ(v[c], self_v[i * kv_dim + c]);
      }
    }
  }
}

TEST(CudaKernelsTest, RouterAndCombineMatchCpu) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  const int64_t n = 37, dim = 24;
  const int experts = 16, k = 2;
  std::vector<float> logits = Random(rng, n * experts, -2, 2);
  logits[5] = logits[6];  // a tie
  std::vector<int32_t> want_ids(n * k);
  std::vector<float> want_w(n * k);
  RouteTopK(logits.data(), n, experts, k, RouterScoreKind::kSoftmax, true, 1.0f, want_ids.data(),
            want_w.data());
  auto dlogits = ToDevice(logits);
  auto dids = DeviceZeros<int32_t>(n * k);
  auto dw = DeviceZeros<float>(n * k);
  ASSERT_EQ(cuda::RouteTopK(dlogits.data(), n, experts, k, true, true, 1.0f, dids.data(), dw.data(),
                            nullptr),
            cudaSuccess);
  EXPECT_EQ(ToHost(dids, n * k), want_ids);
  ExpectNear(ToHost(dw, n * k), want_w, 1e-6f);

  const cuda::ExpertPlan plan = cuda::BuildExpertPlan(want_ids.data(), n, k, experts);
  const std::vector<float> expert_out = Random(rng, n * k * dim);
  std::vector<float> want(n * dim, 0.0f);
  for (int e = 0; e < experts; ++e) {  // the CPU combine's order
    for (int32_t r = plan.offsets[e]; r < plan.offsets[e + 1]; ++r) {
      const int t = plan.token[r];
      for (int64_t c = 0; c < dim; ++c) {
        want[t * dim + c] += want_w[t * k + plan.slot[r]] * expert_out[r * dim + c];
      }
    }
  }
  auto dout_e = ToDevice(expert_out), dww = ToDevice(want_w);
  auto dinv = ToDevice(plan.inverse);
  auto out = DeviceZeros<float>(n * dim);
  ASSERT_EQ(
      cuda::CombineExperts(dout_e.data(), dinv.data(), dww.data(), n, k, dim, out.data(), nullptr),
      cudaSuccess);
  ExpectNear(ToHost(out, n * dim), want, 1e-6f);
}

TEST(CudaKernelsTest, ExitStatisticsMatchCpu) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const int64_t n = 3, vocab = 5003, dim = 700;
  std::vector<float> z = Random(rng, n * vocab, -6, 6), prev = Random(rng, n * vocab, -6, 6);
  z[vocab + 10] = z[vocab + 4000] = 9.0f;  // a tie at the max in row 1
  auto dz = ToDevice(z), dprev = ToDevice(prev);
  auto stats = DeviceZeros<RowExitStats>(n);
  ASSERT_EQ(cuda::LogitRowStats(dz.data(), n, vocab, stats.data(), nullptr), cudaSuccess);
  const std::vector<RowExitStats> got = ToHost(stats, n);
  std::vector<double> prev_lse(n);
  for (int64_t i = 0; i < n; ++i) {
    const LogitStats want = ComputeLogitStats(z.data() + i * vocab, vocab);
    EXPECT_EQ(got[i].top1, want.top1) << i;
    EXPECT_NEAR(got[i].max_prob, want.max_prob, 1e-6);
    EXPECT_NEAR(got[i].margin, want.margin, 1e-6);
    EXPECT_NEAR(got[i].entropy, want.entropy, 1e-5);
    // The CPU's vectorised exp and the device expf differ by an ulp or two.
    EXPECT_NEAR(got[i].log_sum_exp, want.log_sum_exp,
                1e-6 * std::max(1.0, std::abs(want.log_sum_exp)));
    prev_lse[i] = ComputeLogitStats(prev.data() + i * vocab, vocab).log_sum_exp;
  }
  EXPECT_EQ(got[1].margin, 0.0f);
  const std::vector<int32_t> q_rows = {2, 0, 1};
  auto dlse = ToDevice(prev_lse);
  auto drows = ToDevice(q_rows);
  auto kl = DeviceZeros<double>(n);
  ASSERT_EQ(cuda::KlRows(dz.data(), stats.data(), dprev.data(), dlse.data(), drows.data(), n, vocab,
                         kl.data(), nullptr),
            cudaSuccess);
  auto cos = DeviceZeros<double>(n);
  ASSERT_EQ(cuda::CosineRows(dz.data(), dprev.data(), drows.data(), n, dim, cos.data(), nullptr),
            cudaSuccess);
  const std::vector<double> got_kl = ToHost(kl, n), got_cos = ToHost(cos, n);
  for (int64_t i = 0; i < n; ++i) {
    const float* q = prev.data() + q_rows[i] * vocab;
    const double want_kl =
        KlDivergence(z.data() + i * vocab, got[i].log_sum_exp, q, prev_lse[q_rows[i]], vocab);
    EXPECT_NEAR(got_kl[i], want_kl, 1e-6 * std::max(1.0, want_kl));
    EXPECT_NEAR(got_cos[i], CosineSimilarity(z.data() + i * vocab, q, dim), 1e-9);
  }
}

TEST(CudaKernelsTest, LinearF32AndBf16MatchCpu) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  const int64_t n = 9, in = 256, out = 130;
  const std::vector<float> x = Random(rng, n * in), w = Random(rng, out * in);
  std::vector<uint16_t> w16(w.size());
  std::vector<float> w_rounded(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    w16[i] = F32ToBf16(w[i]);
    w_rounded[i] = Bf16ToF32(w16[i]);
  }
  absl::StatusOr<cuda::CublasHandle> blas = cuda::CublasHandle::Create(nullptr);
  ASSERT_TRUE(blas.ok()) << blas.status();
  cuda::DeviceBuffer<uint16_t> scratch;
  auto dx = ToDevice(x), dw = ToDevice(w);
  auto dw16 = ToDevice(w16);
  auto dy = DeviceZeros<float>(n * out);
  std::vector<float> want(n * out);
  Linear(x.data(), n, MatrixView{DType::kF32, out, in, w.data()}, want.data(), nullptr);
  ASSERT_TRUE(cuda::Linear(blas->get(), nullptr,
                           cuda::DeviceMatrix{DType::kF32, out, in, dw.data()}, dx.data(), n,
                           dy.data(), &scratch)
                  .ok());
  ExpectNear(ToHost(dy, n * out), want, 1e-5f);
  // bf16 weights take bf16 inputs: the CPU sees the same rounded values, so
  // only the accumulation order differs (fp32 in both).
  std::vector<float> x_rounded(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_rounded[i] = Bf16ToF32(F32ToBf16(x[i]));
  Linear(x_rounded.data(), n, MatrixView{DType::kF32, out, in, w_rounded.data()}, want.data(),
         nullptr);
  ASSERT_TRUE(cuda::Linear(blas->get(), nullptr,
                           cuda::DeviceMatrix{DType::kBF16, out, in, dw16.data()}, dx.data(), n,
                           dy.data(), &scratch)
                  .ok());
  ExpectNear(ToHost(dy, n * out), want, 1e-5f);
}

}  // namespace
}  // namespace loopserve
