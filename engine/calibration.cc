#include "engine/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/common/check.h"

namespace loopserve {
namespace {

// The statistic `criterion` compares with τ at boundary t of position p, or
// NaN where it has none. For top1_stable and gate it is the running value
// (streak s_t, CDF F_t), supplied by the caller.
double CriterionValue(ExitCriterion criterion, const LoopRecord& r) {
  switch (criterion) {
    case ExitCriterion::kMaxProb:
      return r.stats.max_prob;
    case ExitCriterion::kMargin:
      return r.stats.margin;
    case ExitCriterion::kEntropy:
      return r.stats.entropy;
    case ExitCriterion::kKl:
      return r.kl;
    case ExitCriterion::kHiddenCosine:
      return r.hidden_cosine;
    default:
      return LoopRecord::kNone;
  }
}

// Pools the statistic of `criterion` over the unforced boundaries.
std::vector<double> PooledStatistic(absl::Span<const SequenceRecord> records,
                                    ExitCriterion criterion) {
  std::vector<double> values;
  for (const SequenceRecord& rec : records) {
    for (int64_t p = 0; p < rec.num_positions; ++p) {
      double survival = 1.0;
      for (int t = 0; t + 1 < rec.num_loops; ++t) {
        const LoopRecord& r = rec.At(p, t);
        double v = LoopRecord::kNone;
        if (criterion == ExitCriterion::kGate) {
          if (std::isnan(r.gate)) break;
          survival *= 1.0 - r.gate;
          v = 1.0 - survival;
        } else {
          v = CriterionValue(criterion, r);
        }
        if (!std::isnan(v)) values.push_back(v);
      }
    }
  }
  return values;
}

}  // namespace

PositionExit OfflineExit(const SequenceRecord& record, int64_t pos, const ExitPolicy& policy,
                         const ModelConfig& config, ExitTracker& tracker) {
  tracker.Reset();
  PositionExit out;
  for (int t = 0; t < tracker.max_loops(); ++t) {
    const LoopRecord& r = record.At(pos, t);
    BoundaryObservation obs;
    if (NeedsGateAt(policy, t)) {
      obs.gate = r.gate;
      ++out.gate_evals;
    }
    // LoopedForward keeps h_{t−1} at every boundary for hidden_cosine.
    if (policy.criterion == ExitCriterion::kHiddenCosine && t >= 1) {
      obs.hidden_cosine = r.hidden_cosine;
    }
    const bool head = NeedsExitHeadAt(policy, t);
    if (head) {
      obs.stats = r.stats;
      ++out.exit_heads;
      // KL exists only when z_{t−1} was computed too.
      if (policy.criterion == ExitCriterion::kKl && t >= 1 && NeedsExitHeadAt(policy, t - 1)) {
        obs.kl = r.kl;
      }
    }
    if (tracker.Observe(t, obs).exit) {
      if (!head) ++out.exit_heads;  // the head the token samples from
      out.exit_loop = t;
      if (policy.kv_fill == KvFill::kPropagate) {
        out.propagate_fills = config.num_recurrent_layers * (config.num_loops - 1 - t);
      }
      return out;
    }
  }
  LOOPSERVE_CHECK(false) << "ExitTracker did not stop at max_loops";
  return out;
}

PolicyEvaluation EvaluatePolicy(absl::Span<const SequenceRecord> records, const ExitPolicy& policy,
                                const ModelConfig& config) {
  const FlopModel flops(config);
  ExitTracker tracker(policy, config.num_loops);
  PolicyEvaluation e;
  e.policy = policy;
  double loops = 0, agree = 0, nll = 0, nll_full = 0;
  for (const SequenceRecord& rec : records) {
    const int last = rec.num_loops - 1;
    for (int64_t p = 0; p < rec.num_positions; ++p) {
      const PositionExit x = OfflineExit(rec, p, policy, config, tracker);
      const LoopRecord& at_exit = rec.At(p, x.exit_loop);
      const LoopRecord& full = rec.At(p, last);
      e.flops_done += flops.Done(p, x.exit_loop + 1, x.exit_heads, x.gate_evals, x.propagate_fills);
      e.flops_full += flops.FullDepth(p);
      loops += x.exit_loop + 1;
      agree += at_exit.stats.top1 == full.stats.top1 ? 1 : 0;
      nll -= at_exit.log_prob_next;
      nll_full -= full.log_prob_next;
      ++e.tokens;
    }
  }
  if (e.tokens == 0) return e;
  const double n = static_cast<double>(e.tokens);
  e.compute_saved = e.flops_full > 0 ? 1.0 - e.flops_done / e.flops_full : 0.0;
  e.mean_loops = loops / n;
  e.top1_agreement = agree / n;
  e.mean_nll = nll / n;
  e.mean_nll_full = nll_full / n;
  e.nll_increase = e.mean_nll_full != 0 ? (e.mean_nll - e.mean_nll_full) / e.mean_nll_full : 0.0;
  return e;
}

std::vector<double> ThresholdGrid(absl::Span<const SequenceRecord> records, ExitCriterion criterion,
                                  int count) {
  std::vector<double> grid;
  if (count < 1 || records.empty()) return grid;
  if (criterion == ExitCriterion::kNever) return grid;
  if (criterion == ExitCriterion::kTop1Stable) {
    const int num_loops = records.front().num_loops;
    for (int s = 1; s < num_loops && static_cast<int>(grid.size()) < count; ++s) {
      grid.push_back(s);
    }
    return grid;
  }
  std::vector<double> values = PooledStatistic(records, criterion);
  if (values.empty()) return grid;
  std::sort(values.begin(), values.end());
  const double top = static_cast<double>(values.size() - 1);
  for (int i = 0; i < count; ++i) {
    const double level = count == 1 ? 1.0 : static_cast<double>(i) / (count - 1);
    double v = values[static_cast<size_t>(std::llround(level * top))];
    // Keep τ inside the range ValidateExitPolicy accepts (float rounding of
    // entropies / cosines can step just outside it).
    if (criterion == ExitCriterion::kEntropy || criterion == ExitCriterion::kKl) {
      v = std::max(v, 0.0);
    } else if (criterion == ExitCriterion::kHiddenCosine) {
      v = std::clamp(v, -1.0, 1.0);
    } else {
      v = std::clamp(v, 0.0, 1.0);
    }
    if (grid.empty() || grid.back() != v) grid.push_back(v);
  }
  return grid;
}

absl::StatusOr<std::vector<PolicyEvaluation>> SweepPolicies(
    absl::Span<const SequenceRecord> records, const ModelConfig& config,
    const SweepOptions& options) {
  if (records.empty()) return absl::InvalidArgumentError("calibration sweep: no sequences");
  for (const SequenceRecord& rec : records) {
    if (rec.num_loops != config.num_loops) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration sweep: record has ", rec.num_loops, " loops, model ", config.num_loops));
    }
  }
  std::vector<PolicyEvaluation> out;
  for (ExitCriterion criterion : options.criteria) {
    if (criterion == ExitCriterion::kNever) {
      return absl::InvalidArgumentError(
          "calibration sweep: `never` is the static-depth baseline, always included; do not list "
          "it among the criteria");
    }
    const std::vector<double> grid =
        ThresholdGrid(records, criterion, options.thresholds_per_criterion);
    for (int min_loops : options.min_loops_grid) {
      if (min_loops > config.num_loops) continue;
      for (double tau : grid) {
        ExitPolicy policy;
        policy.criterion = criterion;
        policy.threshold = tau;
        policy.min_loops = min_loops;
        policy.kv_fill = options.kv_fill;
        if (absl::Status s = ValidateExitPolicy(policy, config); !s.ok()) {
          return absl::Status(s.code(), absl::StrCat("calibration sweep: ", s.message()));
        }
        out.push_back(EvaluatePolicy(records, policy, config));
      }
    }
  }
  for (int n = 1; n <= config.num_loops; ++n) {
    ExitPolicy policy;
    policy.criterion = ExitCriterion::kNever;
    policy.max_loops = n;
    policy.kv_fill = options.kv_fill;
    out.push_back(EvaluatePolicy(records, policy, config));
  }
  return out;
}

std::vector<size_t> ParetoFront(absl::Span<const PolicyEvaluation> evals, ExitCriterion criterion) {
  std::vector<size_t> front;
  for (size_t i = 0; i < evals.size(); ++i) {
    if (evals[i].policy.criterion != criterion) continue;
    bool dominated = false;
    for (size_t j = 0; j < evals.size() && !dominated; ++j) {
      if (j == i || evals[j].policy.criterion != criterion) continue;
      const PolicyEvaluation& a = evals[j];
      const PolicyEvaluation& b = evals[i];
      const bool no_worse = a.compute_saved >= b.compute_saved && a.nll_increase <= b.nll_increase;
      const bool better = a.compute_saved > b.compute_saved || a.nll_increase < b.nll_increase;
      // Identical points: keep the first only.
      dominated = no_worse && (better || j < i);
    }
    if (!dominated) front.push_back(i);
  }
  std::sort(front.begin(), front.end(),
            [&](size_t a, size_t b) { return evals[a].compute_saved < evals[b].compute_saved; });
  return front;
}

bool MeetsTarget(const PolicyEvaluation& e, const QualityTarget& target) {
  switch (target.kind) {
    case QualityTarget::Kind::kMaxNllIncrease:
      return e.nll_increase <= target.value;
    case QualityTarget::Kind::kMinAgreement:
      return e.top1_agreement >= target.value;
  }
  return false;
}

std::optional<size_t> SelectCheapest(absl::Span<const PolicyEvaluation> evals,
                                     const QualityTarget& target) {
  std::optional<size_t> best;
  for (size_t i = 0; i < evals.size(); ++i) {
    if (!MeetsTarget(evals[i], target)) continue;
    if (!best.has_value()) {
      best = i;
      continue;
    }
    const PolicyEvaluation& a = evals[i];
    const PolicyEvaluation& b = evals[*best];
    // Ties: smaller NLL increase, then static depth (no exit checks, the
    // simplest policy to serve), then the earlier point.
    const bool tie = a.compute_saved == b.compute_saved;
    if (a.compute_saved > b.compute_saved || (tie && a.nll_increase < b.nll_increase) ||
        (tie && a.nll_increase == b.nll_increase && IsStaticDepth(a) && !IsStaticDepth(b))) {
      best = i;
    }
  }
  return best;
}

}  // namespace loopserve
