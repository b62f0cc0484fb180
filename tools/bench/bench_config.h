// loopserve-bench's settings: command-line flags, validated into one value.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace loopserve::bench {

enum class LengthDist : uint8_t { kFixed, kUniform, kExponential };
const char* LengthDistName(LengthDist dist);

struct LengthSpec {
  double mean = 0;
  LengthDist dist = LengthDist::kFixed;
};

struct BenchConfig {
  std::string target = "127.0.0.1:50051";
  std::string deployment;  // empty = the server's default
  int concurrency = 1;     // closed loop: clients sending back to back
  double rate = 0;         // > 0: open loop, Poisson arrivals at `rate` requests/s
  int64_t num_requests = 100;
  double duration_s = 0;  // 0 = no time limit (stop after num_requests)
  int warmup = 0;         // sequential requests before measuring, not counted
  LengthSpec prompt_len{32, LengthDist::kFixed};
  LengthSpec max_tokens{32, LengthDist::kFixed};
  int64_t vocab = 0;  // 0 = ModelInfo.vocab_size
  bool stream = false;
  double temperature = -1;  // < 0 = deployment default
  uint64_t seed = 1;
  double request_timeout_s = 600;
  int max_inflight = 1024;  // open loop: cap on outstanding requests
  bool json = false;
};

// Reads the flags (after absl::ParseCommandLine) and checks them.
absl::StatusOr<BenchConfig> ConfigFromFlags();

}  // namespace loopserve::bench
