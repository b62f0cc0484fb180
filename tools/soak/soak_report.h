// The soak's figures and verdict: printed as a summary for people and
// optionally written as JSON (scripts/soak.sh keeps it next to the log).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/soak/drain_phase.h"
#include "tools/soak/soak_checks.h"

namespace loopserve::soak {

struct SoakReport {
  std::string started_at;  // UTC
  int64_t planned = 0;
  int concurrency = 0;
  double reference_seconds = 0;
  double load_seconds = 0;
  double duration_seconds = 0;
  Tally::Counts load;  // everything sent during the load phase
  int64_t preemptions = 0;
  int64_t policy_flips = 0;
  int slow_readers = 0;  // streams left unread during the load
  int64_t kv_blocks_total = 0;
  int64_t kv_peak_blocks = 0;   // gauge sampled every 200 ms
  int64_t kv_final_blocks = -1;
  int64_t rss_start_kib = 0;    // after start-up and the references
  int64_t rss_warm_kib = 0;     // after warm-up (the baseline of the growth check)
  int64_t rss_end_kib = 0;      // after the load
  int64_t rss_peak_kib = 0;
  std::vector<std::string> metrics_lines;  // server vs client per deployment
  DrainResult drain;
  std::vector<std::string> violations;
};

std::string NowUtc();
void PrintReport(const SoakReport& report, std::FILE* out);
void WriteReportJson(const SoakReport& report, const std::string& path);

}  // namespace loopserve::soak
