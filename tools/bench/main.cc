// loopserve-bench: load generator for loopserve-server over gRPC.
//   loopserve-bench --target 127.0.0.1:50051 --deployment fast --concurrency 8
//       --num_requests 200 --prompt_len 64 --max_tokens 32 --stream
//   loopserve-bench --target ... --rate 5 --duration 60 --json
#include <chrono>
#include <cstdio>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/bench/bench_config.h"
#include "tools/bench/client.h"
#include "tools/bench/load_driver.h"
#include "tools/bench/stats.h"
#include "tools/bench/workload.h"

int main(int argc, char** argv) {
  using namespace loopserve::bench;  // NOLINT(build/namespaces): a tool's main
  absl::SetProgramUsageMessage(
      "loopserve-bench --target host:port [--concurrency N | --rate R] [--stream] [--json] ...");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<BenchConfig> config = ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "loopserve-bench: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  BenchClient client(*config);
  absl::StatusOr<ServerInfo> server = client.FetchServerInfo();
  if (!server.ok()) {
    std::fprintf(stderr, "loopserve-bench: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const int64_t vocab = config->vocab > 0 ? config->vocab : server->vocab_size;
  if (vocab <= 0) {
    std::fprintf(stderr, "loopserve-bench: server reports no vocab size; pass --vocab\n");
    return 1;
  }
  const Workload workload(*config, vocab, server->max_prompt_tokens, server->max_tokens_limit);

  // Warm-up requests use indices past the measured ones' range.
  for (int i = 0; i < config->warmup; ++i) client.Send(workload.Make(-1 - i));

  StatsCollector stats;
  const double wall = config->rate > 0 ? RunOpenLoop(*config, workload, client, stats)
                                       : RunClosedLoop(*config, workload, client, stats);
  const BenchReport report = stats.Finish(wall);
  if (config->json) {
    std::printf("%s\n", ToJson(*config, *server, report).dump(2).c_str());
  } else {
    std::fputs(FormatText(*config, *server, report).c_str(), stdout);
  }
  return report.ok > 0 ? 0 : 1;
}
