// Early-exit policies (MODEL_SPEC "Early exit"): which criterion stops a token
// at a loop boundary, what each criterion needs computed, and the per-token
// tracker that makes the decision.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model_config.h"
#include "kernels/cpu/logit_stats.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

enum class ExitCriterion : uint8_t {
  kNever,
  kMaxProb,
  kMargin,
  kEntropy,
  kKl,
  kTop1Stable,
  kHiddenCosine,
  kGate,
};

// How K/V of recurrent instances (i, t > e) of a token that exited at loop e
// are filled (MODEL_SPEC "KV of exited tokens").
enum class KvFill : uint8_t { kReuse, kPropagate };

// "never" | "max_prob" | "margin" | "entropy" | "kl" | "top1_stable" |
// "hidden_cosine" | "gate".
const char* ExitCriterionName(ExitCriterion criterion);
absl::StatusOr<ExitCriterion> ParseExitCriterion(absl::string_view name);
// "reuse" | "propagate".
const char* KvFillName(KvFill kv_fill);
absl::StatusOr<KvFill> ParseKvFill(absl::string_view name);

struct ExitPolicy {
  ExitCriterion criterion = ExitCriterion::kNever;
  double threshold = 0;  // τ; its meaning depends on the criterion.
  int min_loops = 1;
  int max_loops = 0;  // 0 = L (the model's num_loops).
  KvFill kv_fill = KvFill::kReuse;

  friend bool operator==(const ExitPolicy&, const ExitPolicy&) = default;
};

// max_loops with 0 resolved to `num_loops`.
int ResolvedMaxLoops(const ExitPolicy& policy, int num_loops);

// InvalidArgument naming the field when the policy cannot run on `config`:
// 1 ≤ min_loops ≤ max_loops ≤ L, a finite threshold in the criterion's range,
// gate only with config.exit_gate.
absl::Status ValidateExitPolicy(const ExitPolicy& policy, const ModelConfig& config);

// {"criterion": "max_prob", "threshold": 0.9, "min_loops": 1, "max_loops": 0,
//  "kv_fill": "reuse"}.
nlohmann::json ExitPolicyToJson(const ExitPolicy& policy);
// Fields absent from `json` keep their value in `defaults` (so a request can
// override only the threshold of its deployment's policy). Unknown fields,
// wrong types and unknown names are InvalidArgument naming the field. The
// result is not validated against a model: call ValidateExitPolicy.
absl::StatusOr<ExitPolicy> ExitPolicyFromJson(const nlohmann::json& json,
                                              const ExitPolicy& defaults = {});

// Which boundaries t (0-based) must compute a statistic before the token may
// exit there, beyond the exit head of the exit boundary itself (which the
// engine always computes to sample from). Used by the step loop and by
// compute accounting, so the two cannot disagree.
//   exit head z_t: max_prob/margin/entropy at t ≥ min_loops−1; kl at
//   t ≥ max(0, min_loops−2) (it compares with t−1); top1_stable at every t
//   (the streak starts at t = 0).
bool NeedsExitHeadAt(const ExitPolicy& policy, int t);
//   gate λ_t: gate at every t (F_t accumulates from t = 0).
bool NeedsGateAt(const ExitPolicy& policy, int t);
//   hidden state h_t kept for cos(h_t, h_{t−1}): hidden_cosine at
//   t ≥ max(0, min_loops−2).
bool NeedsHiddenAt(const ExitPolicy& policy, int t);

// What the engine computed for one token at loop boundary t. Which fields are
// set follows the Needs*At functions above.
struct BoundaryObservation {
  std::optional<LogitStats> stats;      // of z_t
  std::optional<double> kl;             // KL(softmax z_t ‖ softmax z_{t−1}), t ≥ 1
  std::optional<double> hidden_cosine;  // cos(h_t, h_{t−1}), t ≥ 1
  std::optional<double> gate;           // λ_t
};

struct ExitDecision {
  bool exit = false;
  // True when the token stops only because t = max_loops−1.
  bool forced = false;
  // The value compared with τ at this boundary (s_t for top1_stable, F_t for
  // gate); NaN when the criterion has no value here (never, or kl /
  // hidden_cosine at t = 0 or before their inputs exist).
  double statistic = 0;
};

// Per-token decision state: the top-1 streak s_t and the gate survival
// Π(1−λ_s). One instance per token in flight; Reset() before reuse.
class ExitTracker {
 public:
  // `num_loops` is the model's L, used to resolve max_loops = 0. The policy
  // must have passed ValidateExitPolicy.
  ExitTracker(const ExitPolicy& policy, int num_loops);

  void Reset();

  // Boundaries must be observed in order t = 0, 1, ... and not after an exit;
  // a missing observation the criterion needs is a programmer error.
  ExitDecision Observe(int t, const BoundaryObservation& obs);

  int max_loops() const { return max_loops_; }
  bool exited() const { return exited_; }
  int top1_streak() const { return streak_; }
  double gate_cdf() const { return 1.0 - survival_; }  // F_t after the last Observe

 private:
  ExitPolicy policy_;
  int max_loops_;
  int next_t_ = 0;
  bool exited_ = false;
  int32_t prev_top1_ = -1;  // -1: no z_{t−1} seen
  int streak_ = 0;          // s_t
  double survival_ = 1.0;   // Π_{s≤t}(1−λ_s)
};

}  // namespace loopserve
