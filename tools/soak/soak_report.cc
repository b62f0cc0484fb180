#include "tools/soak/soak_report.h"

#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace loopserve::soak {
namespace {

double Mib(int64_t kib) { return kib / 1024.0; }

// Codes other than OK, CANCELLED and DEADLINE_EXCEEDED: the server refused.
std::string Rejected(const Tally::Counts& c) {
  std::vector<std::string> parts;
  for (const auto& [code, n] : c.by_code) {
    if (code != "ok" && code != "cancelled" && code != "deadline_exceeded") {
      parts.push_back(absl::StrCat(code, " ", n));
    }
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

}  // namespace

std::string NowUtc() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buffer;
}

void PrintReport(const SoakReport& r, std::FILE* out) {
  const Tally::Counts& c = r.load;
  std::fprintf(out, "== loopserve soak (%s) ==\n", r.started_at.c_str());
  std::fprintf(out, "planned requests      %lld (concurrency %d)\n",
               static_cast<long long>(r.planned), r.concurrency);
  std::fprintf(out, "requests sent         %lld\n", static_cast<long long>(c.sent));
  std::fprintf(out, "completed (OK)        %lld, equal to reference %lld\n",
               static_cast<long long>(c.completed), static_cast<long long>(c.matched_reference));
  std::fprintf(out, "preempted (by usage)  %lld OK replies; %lld differ from reference%s\n",
               static_cast<long long>(c.recomputed),
               static_cast<long long>(c.drift_after_preemption),
               c.drift_after_preemption > 0 ? " (early-exit drift, counted not failed)" : "");
  std::fprintf(out, "live-policy replies   %lld like policy A, %lld like B, %lld mixed\n",
               static_cast<long long>(c.live_matched_a), static_cast<long long>(c.live_matched_b),
               static_cast<long long>(c.live_mixed));
  std::fprintf(out, "cancelled             %lld\n", static_cast<long long>(c.cancelled));
  std::fprintf(out, "deadline exceeded     %lld\n", static_cast<long long>(c.deadline));
  std::fprintf(out, "rejected by code      %s\n", Rejected(c).c_str());
  for (const auto& [kind, codes] : c.by_kind) {
    std::vector<std::string> parts;
    for (const auto& [code, n] : codes) parts.push_back(absl::StrCat(code, " ", n));
    std::fprintf(out, "  %-20s%s\n", kind.c_str(), absl::StrJoin(parts, ", ").c_str());
  }
  std::fprintf(out, "tokens received (OK)  %lld\n", static_cast<long long>(c.tokens_received));
  std::fprintf(out, "policy changes        %lld (live deployment)\n",
               static_cast<long long>(r.policy_flips));
  std::fprintf(out, "slow readers          %d streams unread through the load (last abandoned)\n",
               r.slow_readers);
  std::fprintf(out, "preemptions           %lld\n", static_cast<long long>(r.preemptions));
  std::fprintf(out, "KV blocks             peak %lld / %lld, final %lld\n",
               static_cast<long long>(r.kv_peak_blocks), static_cast<long long>(r.kv_blocks_total),
               static_cast<long long>(r.kv_final_blocks));
  std::fprintf(out, "VmRSS (MiB)           start %.1f, after warm-up %.1f, end %.1f, peak %.1f\n",
               Mib(r.rss_start_kib), Mib(r.rss_warm_kib), Mib(r.rss_end_kib),
               Mib(r.rss_peak_kib));
  std::fprintf(out, "server vs client      (requests by status server/client)\n");
  for (const std::string& line : r.metrics_lines) std::fprintf(out, "  %s\n", line.c_str());
  std::fprintf(out,
               "drain (SIGTERM)       %d/%d in-flight streams completed; of %d later requests %d "
               "UNAVAILABLE, %d OK, %d cut by gRPC's shutdown before admission; server %s after "
               "%.2f s\n",
               r.drain.in_flight_ok, r.drain.in_flight, r.drain.after_signal,
               r.drain.after_unavailable, r.drain.after_ok, r.drain.after_cut,
               r.drain.exit.c_str(), r.drain.exit_seconds);
  std::fprintf(out, "duration              %.1f s (references %.1f s, load %.1f s, %.1f req/s)\n",
               r.duration_seconds, r.reference_seconds, r.load_seconds,
               r.load_seconds > 0 ? c.sent / r.load_seconds : 0.0);
  if (r.violations.empty()) {
    std::fprintf(out, "RESULT: PASS\n");
  } else {
    std::fprintf(out, "RESULT: FAIL (%zu)\n", r.violations.size());
    for (const std::string& v : r.violations) std::fprintf(out, "  - %s\n", v.c_str());
  }
  std::fflush(out);
}

void WriteReportJson(const SoakReport& r, const std::string& path) {
  const Tally::Counts& c = r.load;
  nlohmann::json j;
  j["started_at"] = r.started_at;
  j["planned"] = r.planned;
  j["concurrency"] = r.concurrency;
  j["sent"] = c.sent;
  j["completed"] = c.completed;
  j["matched_reference"] = c.matched_reference;
  j["recomputed"] = c.recomputed;
  j["drift_after_preemption"] = c.drift_after_preemption;
  j["cancelled"] = c.cancelled;
  j["deadline_exceeded"] = c.deadline;
  j["by_code"] = c.by_code;
  j["by_kind"] = c.by_kind;
  j["live"] = {{"a", c.live_matched_a}, {"b", c.live_matched_b}, {"mixed", c.live_mixed}};
  j["tokens_received"] = c.tokens_received;
  j["policy_flips"] = r.policy_flips;
  j["slow_readers"] = r.slow_readers;
  j["preemptions"] = r.preemptions;
  j["kv_blocks"] = {{"total", r.kv_blocks_total},
                    {"peak", r.kv_peak_blocks},
                    {"final", r.kv_final_blocks}};
  j["rss_mib"] = {{"start", Mib(r.rss_start_kib)},
                  {"warm", Mib(r.rss_warm_kib)},
                  {"end", Mib(r.rss_end_kib)},
                  {"peak", Mib(r.rss_peak_kib)}};
  j["metrics"] = r.metrics_lines;
  j["drain"] = {{"in_flight", r.drain.in_flight},
                {"in_flight_ok", r.drain.in_flight_ok},
                {"after_signal", r.drain.after_signal},
                {"after_unavailable", r.drain.after_unavailable},
                {"after_ok", r.drain.after_ok},
                {"after_cut", r.drain.after_cut},
                {"exit", r.drain.exit},
                {"exit_seconds", r.drain.exit_seconds}};
  j["seconds"] = {{"total", r.duration_seconds},
                  {"references", r.reference_seconds},
                  {"load", r.load_seconds}};
  j["violations"] = r.violations;
  j["pass"] = r.violations.empty();
  std::ofstream(path) << j.dump(2) << "\n";
}

}  // namespace loopserve::soak
