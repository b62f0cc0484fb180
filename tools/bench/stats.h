// Aggregates loopserve-bench's per-request results into the report:
// counts by status, throughput, client-side latency percentiles, loops per
// token and compute saved (from the servers' usage).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "tools/bench/bench_config.h"
#include "tools/bench/client.h"

namespace loopserve::bench {

struct Percentiles {
  int64_t count = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};
// Linear interpolation between closest ranks; all zero when `values` is empty.
Percentiles ComputePercentiles(std::vector<double> values);

struct BenchReport {
  int64_t requests = 0;
  int64_t ok = 0;
  std::map<std::string, int64_t> failed_by_code;  // e.g. "RESOURCE_EXHAUSTED" -> 3
  std::string first_error;
  double wall_s = 0;
  double requests_per_s = 0;       // ok requests / wall
  double output_tokens_per_s = 0;  // generated tokens of ok requests / wall
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  Percentiles ttft_s, tpot_s, e2e_s;
  double mean_loops_per_token = 0;  // Σ token loops / Σ generated tokens
  double compute_saved = 0;         // 1 − Σ flops_done / Σ flops_full_depth
  double loops_skipped_share = 0;   // 1 − Σ loops_executed / Σ loops_full_depth
};

class StatsCollector {
 public:
  void Add(const RequestResult& result);
  BenchReport Finish(double wall_s) const;

 private:
  mutable absl::Mutex mu_;
  std::vector<RequestResult> results_ ABSL_GUARDED_BY(mu_);
};

std::string FormatText(const BenchConfig& config, const ServerInfo& server,
                       const BenchReport& report);
nlohmann::json ToJson(const BenchConfig& config, const ServerInfo& server,
                      const BenchReport& report);

}  // namespace loopserve::bench
