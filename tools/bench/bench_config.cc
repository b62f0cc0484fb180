#include "tools/bench/bench_config.h"

#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "loopserve-server address host:port");
ABSL_FLAG(std::string, deployment, "", "deployment name (empty = the server's default)");
ABSL_FLAG(int, concurrency, 1, "closed loop: N clients, each sending requests back to back");
ABSL_FLAG(double, rate, 0,
          "open loop: Poisson arrivals at this many requests/s (overrides --concurrency)");
ABSL_FLAG(int64_t, num_requests, 100, "requests to send (0 = until --duration)");
ABSL_FLAG(double, duration, 0, "stop sending after this many seconds (0 = no limit)");
ABSL_FLAG(int, warmup, 0, "sequential warm-up requests before measuring (not counted)");
ABSL_FLAG(double, prompt_len, 32, "mean prompt length in tokens");
ABSL_FLAG(std::string, prompt_len_dist, "fixed", "fixed | uniform | exponential");
ABSL_FLAG(double, max_tokens, 32, "mean max_tokens per request");
ABSL_FLAG(std::string, max_tokens_dist, "fixed", "fixed | uniform | exponential");
ABSL_FLAG(int64_t, vocab, 0, "prompt ids uniform in [0, vocab); 0 = ask ModelInfo");
ABSL_FLAG(bool, stream, false, "use GenerateStream (measures TTFT and TPOT client-side)");
ABSL_FLAG(double, temperature, -1, "sampling temperature (< 0 = deployment default)");
ABSL_FLAG(uint64_t, seed, 1, "seed of prompts, lengths and arrivals");
ABSL_FLAG(double, request_timeout, 600, "per-request deadline in seconds");
ABSL_FLAG(int, max_inflight, 1024, "open loop: cap on outstanding requests");
ABSL_FLAG(bool, json, false, "print a machine-readable JSON summary instead of text");

namespace loopserve::bench {
namespace {

std::optional<LengthDist> ParseDist(const std::string& name) {
  if (name == "fixed") return LengthDist::kFixed;
  if (name == "uniform") return LengthDist::kUniform;
  if (name == "exponential") return LengthDist::kExponential;
  return std::nullopt;
}

absl::StatusOr<LengthSpec> ReadLength(const char* flag, double mean, const std::string& dist) {
  if (!(mean >= 1)) return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be >= 1"));
  std::optional<LengthDist> d = ParseDist(dist);
  if (!d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, "_dist: expected fixed | uniform | exponential, got `", dist, "`"));
  }
  return LengthSpec{mean, *d};
}

}  // namespace

const char* LengthDistName(LengthDist dist) {
  switch (dist) {
    case LengthDist::kFixed:
      return "fixed";
    case LengthDist::kUniform:
      return "uniform";
    case LengthDist::kExponential:
      return "exponential";
  }
  return "unknown";
}

absl::StatusOr<BenchConfig> ConfigFromFlags() {
  BenchConfig c;
  c.target = absl::GetFlag(FLAGS_target);
  c.deployment = absl::GetFlag(FLAGS_deployment);
  c.concurrency = absl::GetFlag(FLAGS_concurrency);
  c.rate = absl::GetFlag(FLAGS_rate);
  c.num_requests = absl::GetFlag(FLAGS_num_requests);
  c.duration_s = absl::GetFlag(FLAGS_duration);
  c.warmup = absl::GetFlag(FLAGS_warmup);
  c.vocab = absl::GetFlag(FLAGS_vocab);
  c.stream = absl::GetFlag(FLAGS_stream);
  c.temperature = absl::GetFlag(FLAGS_temperature);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.request_timeout_s = absl::GetFlag(FLAGS_request_timeout);
  c.max_inflight = absl::GetFlag(FLAGS_max_inflight);
  c.json = absl::GetFlag(FLAGS_json);
  auto prompt = ReadLength("prompt_len", absl::GetFlag(FLAGS_prompt_len),
                           absl::GetFlag(FLAGS_prompt_len_dist));
  if (!prompt.ok()) return prompt.status();
  c.prompt_len = *prompt;
  auto max_tokens = ReadLength("max_tokens", absl::GetFlag(FLAGS_max_tokens),
                               absl::GetFlag(FLAGS_max_tokens_dist));
  if (!max_tokens.ok()) return max_tokens.status();
  c.max_tokens = *max_tokens;

  if (c.target.empty()) return absl::InvalidArgumentError("--target is required (host:port)");
  if (c.concurrency < 1) return absl::InvalidArgumentError("--concurrency must be >= 1");
  if (c.rate < 0) return absl::InvalidArgumentError("--rate must be >= 0");
  if (c.num_requests < 0 || c.duration_s < 0) {
    return absl::InvalidArgumentError("--num_requests and --duration must be >= 0");
  }
  if (c.num_requests == 0 && c.duration_s == 0) {
    return absl::InvalidArgumentError("set --num_requests or --duration (both are 0)");
  }
  if (c.warmup < 0) return absl::InvalidArgumentError("--warmup must be >= 0");
  if (c.vocab < 0) return absl::InvalidArgumentError("--vocab must be >= 0");
  if (!(c.request_timeout_s > 0))
    return absl::InvalidArgumentError("--request_timeout must be > 0");
  if (c.max_inflight < 1) return absl::InvalidArgumentError("--max_inflight must be >= 1");
  return c;
}

}  // namespace loopserve::bench
