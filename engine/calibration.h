// Offline evaluation of exit policies on recorded full-depth statistics
// (engine/calibration_record.h): the exit loop ExitTracker picks for every
// position given exactly the observations the engine would compute
// (NeedsExitHeadAt / NeedsGateAt), its compute accounting (FlopModel, exit
// checks included), and quality against full depth; threshold sweeps over
// many policies, their Pareto fronts and the cheapest one meeting a target.
//
// Teacher-forced: every earlier position is at full depth, as in
// Engine::Score. In served generation, earlier tokens that exited have
// reuse/propagate K/V for the loops they skipped, so later tokens' statistics
// can differ (docs/exit-policies.md "Calibration").
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/calibration_record.h"
#include "engine/compute_accounting.h"
#include "engine/exit_policy.h"
#include "engine/model_config.h"

namespace loopserve {

// What one position did under a policy; the counts are those LoopedForward
// reports in TokenResult.
struct PositionExit {
  int exit_loop = 0;  // 0-based boundary
  int exit_heads = 0;
  int gate_evals = 0;
  int propagate_fills = 0;
};

// Runs `tracker` (built for `policy`; Reset here) over the boundaries of
// position `pos`, observing what the engine observes there.
PositionExit OfflineExit(const SequenceRecord& record, int64_t pos, const ExitPolicy& policy,
                         const ModelConfig& config, ExitTracker& tracker);

struct PolicyEvaluation {
  ExitPolicy policy;
  int64_t tokens = 0;
  double flops_done = 0;
  double flops_full = 0;
  double compute_saved = 0;   // 1 − Σ done / Σ full (negative when checks cost more)
  double mean_loops = 0;      // loops run per token
  double top1_agreement = 0;  // argmax z_exit == argmax z_{L−1}
  double mean_nll = 0;        // of the reference next token, at the exit
  double mean_nll_full = 0;   // the same at full depth
  double nll_increase = 0;    // (mean_nll − mean_nll_full) / mean_nll_full
};

// `policy` must pass ValidateExitPolicy(policy, config).
PolicyEvaluation EvaluatePolicy(absl::Span<const SequenceRecord> records, const ExitPolicy& policy,
                                const ModelConfig& config);

struct SweepOptions {
  std::vector<ExitCriterion> criteria;
  int thresholds_per_criterion = 20;
  std::vector<int> min_loops_grid = {1, 2};
  KvFill kv_fill = KvFill::kReuse;
};

// Up to `count` distinct thresholds for `criterion`: quantiles (evenly
// spaced levels, both extremes included) of the statistic the criterion
// compares with τ, over the boundaries t ≤ L−2 where a decision is not
// forced; for top1_stable the streak lengths 1 .. L−1. Empty when the
// statistic never occurs (e.g. L = 1).
std::vector<double> ThresholdGrid(absl::Span<const SequenceRecord> records, ExitCriterion criterion,
                                  int count);

// Every criterion × threshold × min_loops (min_loops > L skipped), then the
// static-depth baseline: criterion never, max_loops = 1 .. L (the last one
// is full depth). InvalidArgument for criteria the model cannot run (gate
// without an exit gate), `never` in the list, or an empty record set.
absl::StatusOr<std::vector<PolicyEvaluation>> SweepPolicies(
    absl::Span<const SequenceRecord> records, const ModelConfig& config,
    const SweepOptions& options);

// True when the point is static depth (criterion never).
inline bool IsStaticDepth(const PolicyEvaluation& e) {
  return e.policy.criterion == ExitCriterion::kNever;
}

// Indices of the points of `evals` with `criterion` that no other point of
// that criterion dominates (at least as much saved and at most as much NLL
// increase, better in one), sorted by compute saved ascending.
std::vector<size_t> ParetoFront(absl::Span<const PolicyEvaluation> evals, ExitCriterion criterion);

struct QualityTarget {
  enum class Kind : uint8_t { kMaxNllIncrease, kMinAgreement };
  Kind kind = Kind::kMaxNllIncrease;
  double value = 0.01;  // relative NLL increase (0.01 = 1%) or agreement share
};

bool MeetsTarget(const PolicyEvaluation& e, const QualityTarget& target);

// The point meeting `target` that saves the most compute (ties: smaller NLL
// increase, then static depth, then earlier index); nullopt when none does.
std::optional<size_t> SelectCheapest(absl::Span<const PolicyEvaluation> evals,
                                     const QualityTarget& target);

}  // namespace loopserve
