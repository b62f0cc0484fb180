// Device sampling (kernels/cuda/sampling) against the CPU Sampler: the same
// seed gives the same token for greedy, temperature, top-k, top-p and both,
// with the model log-probability. Skipped without a GPU.
#include <random>
#include <vector>

#include "engine/sampler.h"
#include "gtest/gtest.h"
#include "kernels/cuda/sampling.h"
#include "tests/cuda/cuda_test_util.h"

namespace loopserve {
namespace {

using cuda_test::DeviceZeros;
using cuda_test::ToDevice;
using cuda_test::ToHost;

// The first draw of Sampler's RNG for `seed` (Sampler::NextUniform).
double FirstUniform(uint64_t seed) {
  std::mt19937_64 rng(seed);
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

TEST(CudaSamplingTest, SameTokensAsCpuSamplerForEveryMode) {
  LOOPSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  const int64_t vocab = 3001;
  const std::vector<SamplingParams> modes = {{0.0f, 0, 1.0f, 1, 0},  {0.7f, 0, 1.0f, 2, 0},
                                             {1.3f, 5, 1.0f, 3, 0},  {0.9f, 0, 0.9f, 4, 0},
                                             {1.0f, 40, 0.5f, 5, 0}, {2.0f, 1, 1.0f, 6, 0}};
  std::vector<float> logits;
  std::vector<cuda::SamplingRow> rows;
  std::vector<int32_t> want_tokens;
  std::vector<float> want_logprobs;
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (int rep = 0; rep < 8; ++rep) {
    for (SamplingParams p : modes) {
      p.seed += 1000 * rep;
      std::vector<float> row(vocab);
      for (float& x : row) x = dist(rng);
      row[17] = row[2000];  // a tie in the candidate order
      Sampler sampler(p);
      const SampledToken s = sampler.Sample(row.data(), vocab);
      want_tokens.push_back(s.token);
      want_logprobs.push_back(s.logprob);
      logits.insert(logits.end(), row.begin(), row.end());
      rows.push_back({p.temperature, p.top_k, p.top_p, FirstUniform(p.seed)});
    }
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  size_t bytes = 0;
  ASSERT_EQ(cuda::SampleRowsWorkspaceBytes(n, vocab, &bytes), cudaSuccess);
  auto workspace = DeviceZeros<uint8_t>(static_cast<int64_t>(bytes));
  auto dlogits = ToDevice(logits);
  auto drows = ToDevice(rows);
  auto tokens = DeviceZeros<int32_t>(n);
  auto logprobs = DeviceZeros<float>(n);
  ASSERT_EQ(cuda::SampleRows(dlogits.data(), n, vocab, drows.data(), workspace.data(), bytes,
                             tokens.data(), logprobs.data(), nullptr),
            cudaSuccess);
  EXPECT_EQ(ToHost(tokens, n), want_tokens);
  const std::vector<float> got = ToHost(logprobs, n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[i], want_logprobs[i], 1e-5) << i;
}

}  // namespace
}  // namespace loopserve
