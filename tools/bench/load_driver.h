// How loopserve-bench issues requests: closed loop (N clients, each sending
// the next request when its last one returns) or open loop (Poisson arrivals
// at a fixed rate, regardless of how fast the server answers).
#pragma once

#include "tools/bench/bench_config.h"
#include "tools/bench/client.h"
#include "tools/bench/stats.h"
#include "tools/bench/workload.h"

namespace loopserve::bench {

// Sends requests until config.num_requests (when > 0) or config.duration_s
// (when > 0) is reached, whichever first; returns the wall time in seconds
// from the first send to the last answer.
double RunClosedLoop(const BenchConfig& config, const Workload& workload, BenchClient& client,
                     StatsCollector& stats);
double RunOpenLoop(const BenchConfig& config, const Workload& workload, BenchClient& client,
                   StatsCollector& stats);

}  // namespace loopserve::bench
