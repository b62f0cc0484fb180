// What loopserve-bench sends: request i's prompt and max_tokens depend only
// on (seed, i), so every run (and every concurrency) sends the same requests;
// open-loop arrival times are a seeded Poisson process.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "tools/bench/bench_config.h"

namespace loopserve::bench {

struct RequestSpec {
  int64_t index = 0;
  std::vector<int32_t> prompt;
  int max_tokens = 1;
};

class Workload {
 public:
  // Lengths are clamped to [1, max_*] when the limit is > 0 (the deployment's).
  Workload(const BenchConfig& config, int64_t vocab, int max_prompt_tokens, int max_tokens_limit);

  RequestSpec Make(int64_t index) const;

  // Seconds between consecutive open-loop arrivals (exponential, mean 1/rate).
  class Arrivals {
   public:
    Arrivals(double rate, uint64_t seed) : rng_(seed), gap_(rate) {}
    double NextGap() { return gap_(rng_); }

   private:
    std::mt19937_64 rng_;
    std::exponential_distribution<double> gap_;
  };
  Arrivals MakeArrivals() const;

 private:
  static int DrawLength(const LengthSpec& spec, int limit, std::mt19937_64& rng);

  BenchConfig config_;
  int64_t vocab_;
  int max_prompt_tokens_;
  int max_tokens_limit_;
};

}  // namespace loopserve::bench
