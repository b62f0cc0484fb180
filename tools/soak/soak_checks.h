// What the soak asserts about each reply and about the server's own counts:
// references (unloaded greedy outputs), the verdict on every outcome, the
// client-side tallies, and their agreement with the server's metrics.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tools/soak/metrics_scrape.h"
#include "tools/soak/soak_client.h"

namespace loopserve::soak {

// Greedy outputs of every (deployment or policy variant, template) pair,
// computed one at a time on the idle server before the load starts.
class References {
 public:
  void Set(const std::string& variant, int template_index, std::vector<int32_t> tokens);
  // Null when there is no reference for the pair.
  const std::vector<int32_t>* Get(const std::string& variant, int template_index) const;

 private:
  std::map<std::pair<std::string, int>, std::vector<int32_t>> tokens_;
};

// Per deployment, by the client's view.
struct DeploymentTally {
  std::map<std::string, int64_t> by_code;  // lower-case code name -> requests
  int64_t ok_prompt_tokens = 0;            // Σ usage.prompt_tokens of OK replies
  int64_t ok_completion_tokens = 0;        // Σ tokens received in OK replies
};

struct TallyOptions {
  int num_loops = 0;
  // Deployments whose policy runs every loop: recomputing a preempted
  // request reproduces their tokens exactly, so they are always compared.
  std::set<std::string> full_depth;
  // False: an OK reply on an early-exit deployment that differs from its
  // reference after a preemption is counted as drift, not a violation (the
  // engine recomputes a preempted request's tokens at full depth, so their
  // K/V differ from the early-exited originals; docs/reliability.md).
  bool exact_after_preemption = true;
};

class Tally {
 public:
  explicit Tally(TallyOptions options) : options_(std::move(options)) {}
  // Checks `o` (live-policy outcomes against both variants) and counts it.
  // Returns the violation, or "" when the outcome is as documented.
  std::string Record(const Outcome& o, const References& refs, const std::string& live_a,
                     const std::string& live_b);

  // Counters for the summary.
  struct Counts {
    int64_t sent = 0;
    int64_t completed = 0;        // OK
    int64_t cancelled = 0;        // CANCELLED
    int64_t deadline = 0;         // DEADLINE_EXCEEDED
    int64_t matched_reference = 0;
    int64_t recomputed = 0;  // OK replies whose usage shows a preemption
    int64_t drift_after_preemption = 0;
    int64_t live_matched_a = 0, live_matched_b = 0, live_mixed = 0;
    int64_t violations = 0;
    int64_t tokens_received = 0;
    std::map<std::string, int64_t> by_code;                       // every code
    std::map<std::string, std::map<std::string, int64_t>> by_kind;  // kind -> code -> n
  };
  Counts counts() const;
  std::map<std::string, DeploymentTally> deployments() const;
  std::vector<std::string> first_violations() const;

 private:
  const TallyOptions options_;
  mutable absl::Mutex mu_;
  Counts counts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DeploymentTally> deployments_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);  // the first few
};

// "DEADLINE_EXCEEDED" style code -> "deadline_exceeded" (the metrics label).
std::string CodeLabel(int grpc_code);

// Server counters (after − before) against the client's tallies, per
// deployment: exact where no request was cancelled or timed out by the
// client, bounded by those requests otherwise. Appends one line per
// deployment to `report` and returns the violations.
std::vector<std::string> CheckMetricsAgreement(const MetricsSnapshot& before,
                                               const MetricsSnapshot& after,
                                               const std::map<std::string, DeploymentTally>& client,
                                               std::vector<std::string>& report);

}  // namespace loopserve::soak
