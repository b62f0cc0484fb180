#include "tools/bench/stats.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loopserve::bench {
namespace {

double Quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

nlohmann::json PercentilesJson(const Percentiles& p) {
  return {{"count", p.count}, {"mean", p.mean}, {"p50", p.p50},
          {"p90", p.p90},     {"p99", p.p99},   {"max", p.max}};
}

std::string PercentilesLine(const char* name, const Percentiles& p) {
  if (p.count == 0) return absl::StrFormat("  %-5s  n/a\n", name);
  return absl::StrFormat("  %-5s  p50 %9.2f  p90 %9.2f  p99 %9.2f  mean %9.2f  max %9.2f ms\n",
                         name, 1e3 * p.p50, 1e3 * p.p90, 1e3 * p.p99, 1e3 * p.mean, 1e3 * p.max);
}

}  // namespace

Percentiles ComputePercentiles(std::vector<double> values) {
  Percentiles p;
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  p.count = static_cast<int64_t>(values.size());
  double sum = 0;
  for (double v : values) sum += v;
  p.mean = sum / static_cast<double>(values.size());
  p.p50 = Quantile(values, 0.50);
  p.p90 = Quantile(values, 0.90);
  p.p99 = Quantile(values, 0.99);
  p.max = values.back();
  return p;
}

void StatsCollector::Add(const RequestResult& result) {
  absl::MutexLock lock(&mu_);
  results_.push_back(result);
}

BenchReport StatsCollector::Finish(double wall_s) const {
  absl::MutexLock lock(&mu_);
  BenchReport report;
  report.wall_s = wall_s;
  std::vector<double> ttft, tpot, e2e;
  int64_t token_loops = 0, loops_executed = 0, loops_full = 0;
  double flops_done = 0, flops_full = 0;
  for (const RequestResult& r : results_) {
    ++report.requests;
    if (r.code != 0) {
      ++report.failed_by_code[absl::StatusCodeToString(static_cast<absl::StatusCode>(r.code))];
      if (report.first_error.empty()) report.first_error = r.message;
      continue;
    }
    ++report.ok;
    e2e.push_back(r.e2e_s);
    if (r.ttft_s >= 0) ttft.push_back(r.ttft_s);
    if (r.tpot_s >= 0) tpot.push_back(r.tpot_s);
    report.prompt_tokens += r.prompt_tokens;
    report.output_tokens += r.completion_tokens;
    token_loops += r.token_loops;
    loops_executed += r.loops_executed;
    loops_full += r.loops_full_depth;
    flops_done += r.flops_done;
    flops_full += r.flops_full_depth;
  }
  if (wall_s > 0) {
    report.requests_per_s = static_cast<double>(report.ok) / wall_s;
    report.output_tokens_per_s = static_cast<double>(report.output_tokens) / wall_s;
  }
  report.ttft_s = ComputePercentiles(std::move(ttft));
  report.tpot_s = ComputePercentiles(std::move(tpot));
  report.e2e_s = ComputePercentiles(std::move(e2e));
  if (report.output_tokens > 0) {
    report.mean_loops_per_token =
        static_cast<double>(token_loops) / static_cast<double>(report.output_tokens);
  }
  if (flops_full > 0) report.compute_saved = 1 - flops_done / flops_full;
  if (loops_full > 0) {
    report.loops_skipped_share =
        1 - static_cast<double>(loops_executed) / static_cast<double>(loops_full);
  }
  return report;
}

std::string FormatText(const BenchConfig& config, const ServerInfo& server, const BenchReport& r) {
  std::string out = absl::StrFormat(
      "loopserve-bench  target %s  deployment %s (policy %s)  backend %s  loops %d\n"
      "  mode %s  %s  prompt %.0f (%s)  max_tokens %.0f (%s)\n",
      config.target, server.deployment, server.policy, server.backend, server.num_loops,
      config.stream ? "stream" : "unary",
      config.rate > 0 ? absl::StrFormat("open loop %.2f req/s", config.rate)
                      : absl::StrFormat("closed loop concurrency %d", config.concurrency),
      config.prompt_len.mean, LengthDistName(config.prompt_len.dist), config.max_tokens.mean,
      LengthDistName(config.max_tokens.dist));
  absl::StrAppendFormat(&out, "requests %d  ok %d  failed %d", r.requests, r.ok, r.requests - r.ok);
  for (const auto& [code, n] : r.failed_by_code) absl::StrAppendFormat(&out, "  %s=%d", code, n);
  out += "\n";
  if (!r.first_error.empty()) absl::StrAppendFormat(&out, "  first error: %s\n", r.first_error);
  absl::StrAppendFormat(&out,
                        "wall %.2f s  throughput %.2f req/s  %.1f output tok/s  "
                        "(prompt %d, output %d tokens)\n",
                        r.wall_s, r.requests_per_s, r.output_tokens_per_s, r.prompt_tokens,
                        r.output_tokens);
  out += PercentilesLine("TTFT", r.ttft_s);
  out += PercentilesLine("TPOT", r.tpot_s);
  out += PercentilesLine("e2e", r.e2e_s);
  absl::StrAppendFormat(&out, "loops/token %.2f of %d  compute_saved %.3f  loops skipped %.3f\n",
                        r.mean_loops_per_token, server.num_loops, r.compute_saved,
                        r.loops_skipped_share);
  return out;
}

nlohmann::json ToJson(const BenchConfig& config, const ServerInfo& server, const BenchReport& r) {
  nlohmann::json failed = nlohmann::json::object();
  for (const auto& [code, n] : r.failed_by_code) failed[code] = n;
  return {
      {"config",
       {{"target", config.target},
        {"deployment", server.deployment},
        {"policy", server.policy},
        {"backend", server.backend},
        {"num_loops", server.num_loops},
        {"mode", config.stream ? "stream" : "unary"},
        {"concurrency", config.rate > 0 ? 0 : config.concurrency},
        {"rate", config.rate},
        {"prompt_len", config.prompt_len.mean},
        {"prompt_len_dist", LengthDistName(config.prompt_len.dist)},
        {"max_tokens", config.max_tokens.mean},
        {"max_tokens_dist", LengthDistName(config.max_tokens.dist)},
        {"seed", config.seed}}},
      {"requests", r.requests},
      {"ok", r.ok},
      {"failed", failed},
      {"first_error", r.first_error},
      {"wall_s", r.wall_s},
      {"requests_per_s", r.requests_per_s},
      {"output_tokens_per_s", r.output_tokens_per_s},
      {"prompt_tokens", r.prompt_tokens},
      {"output_tokens", r.output_tokens},
      {"ttft_s", PercentilesJson(r.ttft_s)},
      {"tpot_s", PercentilesJson(r.tpot_s)},
      {"e2e_s", PercentilesJson(r.e2e_s)},
      {"mean_loops_per_token", r.mean_loops_per_token},
      {"compute_saved", r.compute_saved},
      {"loops_skipped_share", r.loops_skipped_share},
  };
}

}  // namespace loopserve::bench
