// Early-exit policies: names, validation, JSON, per-criterion needs and the
// per-token decision. Every criterion-specific rule lives in a switch here.
#include "engine/exit_policy.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/common/check.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

constexpr std::array<std::pair<ExitCriterion, const char*>, 8> kCriterionNames = {{
    {ExitCriterion::kNever, "never"},
    {ExitCriterion::kMaxProb, "max_prob"},
    {ExitCriterion::kMargin, "margin"},
    {ExitCriterion::kEntropy, "entropy"},
    {ExitCriterion::kKl, "kl"},
    {ExitCriterion::kTop1Stable, "top1_stable"},
    {ExitCriterion::kHiddenCosine, "hidden_cosine"},
    {ExitCriterion::kGate, "gate"},
}};

constexpr std::array<std::pair<KvFill, const char*>, 2> kKvFillNames = {{
    {KvFill::kReuse, "reuse"},
    {KvFill::kPropagate, "propagate"},
}};

template <typename Enum, size_t N>
std::string JoinNames(const std::array<std::pair<Enum, const char*>, N>& names) {
  std::string out;
  for (const auto& [value, name] : names) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", "\"", name, "\"");
  }
  return out;
}

// Closed range [lo, hi] a criterion's threshold must lie in.
struct ThresholdRange {
  double lo;
  double hi;
  const char* why;
};

ThresholdRange RangeOf(ExitCriterion criterion) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  switch (criterion) {
    case ExitCriterion::kNever:
      return {-kInf, kInf, "unused"};
    case ExitCriterion::kMaxProb:
      return {0, 1, "a probability"};
    case ExitCriterion::kMargin:
      return {0, 1, "a difference of probabilities"};
    case ExitCriterion::kEntropy:
      return {0, kInf, "an entropy in nats"};
    case ExitCriterion::kKl:
      return {0, kInf, "a KL divergence in nats"};
    case ExitCriterion::kTop1Stable:
      return {0, kInf, "a streak length"};
    case ExitCriterion::kHiddenCosine:
      return {-1, 1, "a cosine"};
    case ExitCriterion::kGate:
      return {0, 1, "a cumulative exit probability"};
  }
  ABSL_INTERNAL_LOG(FATAL, absl::StrCat("unknown ExitCriterion ", static_cast<int>(criterion)));
}

// The JSON value's type, for error messages.
const char* JsonTypeName(const nlohmann::json& value) { return value.type_name(); }

absl::Status FieldError(absl::string_view field, absl::string_view expected,
                        const nlohmann::json& found) {
  return absl::InvalidArgumentError(absl::StrCat("exit policy field \"", field, "\": expected ",
                                                 expected, ", found ", found.dump(), " (",
                                                 JsonTypeName(found), ")"));
}

absl::StatusOr<int> IntField(absl::string_view field, const nlohmann::json& value) {
  if (!value.is_number_integer()) return FieldError(field, "an integer", value);
  const int64_t v = value.get<int64_t>();
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    return FieldError(field, "an integer in int range", value);
  }
  return static_cast<int>(v);
}

}  // namespace

const char* ExitCriterionName(ExitCriterion criterion) {
  for (const auto& [value, name] : kCriterionNames) {
    if (value == criterion) return name;
  }
  ABSL_INTERNAL_LOG(FATAL, absl::StrCat("unknown ExitCriterion ", static_cast<int>(criterion)));
}

absl::StatusOr<ExitCriterion> ParseExitCriterion(absl::string_view name) {
  for (const auto& [value, known] : kCriterionNames) {
    if (name == known) return value;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown exit criterion \"", name, "\"; expected one of ", JoinNames(kCriterionNames)));
}

const char* KvFillName(KvFill kv_fill) {
  for (const auto& [value, name] : kKvFillNames) {
    if (value == kv_fill) return name;
  }
  ABSL_INTERNAL_LOG(FATAL, absl::StrCat("unknown KvFill ", static_cast<int>(kv_fill)));
}

absl::StatusOr<KvFill> ParseKvFill(absl::string_view name) {
  for (const auto& [value, known] : kKvFillNames) {
    if (name == known) return value;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown kv_fill \"", name, "\"; expected one of ", JoinNames(kKvFillNames)));
}

int ResolvedMaxLoops(const ExitPolicy& policy, int num_loops) {
  return policy.max_loops == 0 ? num_loops : policy.max_loops;
}

absl::Status ValidateExitPolicy(const ExitPolicy& policy, const ModelConfig& config) {
  const int num_loops = config.num_loops;
  if (num_loops < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("exit policy: model num_loops must be >= 1, found ", num_loops));
  }
  if (policy.max_loops < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("exit policy max_loops: expected 0 (= num_loops) or in [1, ", num_loops,
                     "], found ", policy.max_loops));
  }
  const int max_loops = ResolvedMaxLoops(policy, num_loops);
  if (max_loops > num_loops) {
    return absl::InvalidArgumentError(absl::StrCat("exit policy max_loops: expected <= num_loops (",
                                                   num_loops, "), found ", max_loops));
  }
  if (policy.min_loops < 1 || policy.min_loops > max_loops) {
    return absl::InvalidArgumentError(absl::StrCat("exit policy min_loops: expected in [1, ",
                                                   max_loops, "] (max_loops), found ",
                                                   policy.min_loops));
  }
  const char* name = ExitCriterionName(policy.criterion);  // Also rejects bad enum values.
  if (policy.criterion == ExitCriterion::kGate && !config.exit_gate) {
    return absl::InvalidArgumentError(
        "exit policy criterion \"gate\" needs a model with an exit gate (config exit_gate = "
        "false)");
  }
  const ThresholdRange range = RangeOf(policy.criterion);
  if (!std::isfinite(policy.threshold) || policy.threshold < range.lo ||
      policy.threshold > range.hi) {
    std::string expected = "a finite number";
    if (std::isfinite(range.lo) && std::isfinite(range.hi)) {
      expected = absl::StrCat("in [", range.lo, ", ", range.hi, "]");
    } else if (std::isfinite(range.lo)) {
      expected = absl::StrCat(">= ", range.lo);
    }
    return absl::InvalidArgumentError(absl::StrCat("exit policy threshold for \"", name, "\" (",
                                                   range.why, "): expected ", expected, ", found ",
                                                   policy.threshold));
  }
  KvFillName(policy.kv_fill);  // Rejects bad enum values.
  return absl::OkStatus();
}

nlohmann::json ExitPolicyToJson(const ExitPolicy& policy) {
  return nlohmann::json{{"criterion", ExitCriterionName(policy.criterion)},
                        {"threshold", policy.threshold},
                        {"min_loops", policy.min_loops},
                        {"max_loops", policy.max_loops},
                        {"kv_fill", KvFillName(policy.kv_fill)}};
}

absl::StatusOr<ExitPolicy> ExitPolicyFromJson(const nlohmann::json& json,
                                              const ExitPolicy& defaults) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("exit policy: expected a JSON object, found ", JsonTypeName(json)));
  }
  ExitPolicy policy = defaults;
  for (const auto& [key, value] : json.items()) {
    if (key == "criterion") {
      if (!value.is_string()) return FieldError(key, "a string", value);
      absl::StatusOr<ExitCriterion> criterion = ParseExitCriterion(value.get<std::string>());
      if (!criterion.ok()) return criterion.status();
      policy.criterion = *criterion;
    } else if (key == "threshold") {
      if (!value.is_number()) return FieldError(key, "a number", value);
      policy.threshold = value.get<double>();
    } else if (key == "min_loops") {
      absl::StatusOr<int> v = IntField(key, value);
      if (!v.ok()) return v.status();
      policy.min_loops = *v;
    } else if (key == "max_loops") {
      absl::StatusOr<int> v = IntField(key, value);
      if (!v.ok()) return v.status();
      policy.max_loops = *v;
    } else if (key == "kv_fill") {
      if (!value.is_string()) return FieldError(key, "a string", value);
      absl::StatusOr<KvFill> kv_fill = ParseKvFill(value.get<std::string>());
      if (!kv_fill.ok()) return kv_fill.status();
      policy.kv_fill = *kv_fill;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("exit policy: unknown field \"", key,
                       "\"; expected criterion, threshold, min_loops, max_loops, kv_fill"));
    }
  }
  return policy;
}

bool NeedsExitHeadAt(const ExitPolicy& policy, int t) {
  switch (policy.criterion) {
    case ExitCriterion::kNever:
    case ExitCriterion::kHiddenCosine:
    case ExitCriterion::kGate:
      return false;
    case ExitCriterion::kMaxProb:
    case ExitCriterion::kMargin:
    case ExitCriterion::kEntropy:
      return t >= policy.min_loops - 1;
    case ExitCriterion::kKl:
      return t >= std::max(0, policy.min_loops - 2);
    case ExitCriterion::kTop1Stable:
      return t >= 0;
  }
  ABSL_INTERNAL_LOG(FATAL,
                    absl::StrCat("unknown ExitCriterion ", static_cast<int>(policy.criterion)));
}

bool NeedsGateAt(const ExitPolicy& policy, int t) {
  return policy.criterion == ExitCriterion::kGate && t >= 0;
}

bool NeedsHiddenAt(const ExitPolicy& policy, int t) {
  return policy.criterion == ExitCriterion::kHiddenCosine && t >= std::max(0, policy.min_loops - 2);
}

ExitTracker::ExitTracker(const ExitPolicy& policy, int num_loops)
    : policy_(policy), max_loops_(ResolvedMaxLoops(policy, num_loops)) {
  LOOPSERVE_CHECK(1 <= policy_.min_loops && policy_.min_loops <= max_loops_ &&
                  max_loops_ <= num_loops)
      << absl::StrCat("ExitTracker: invalid loop bounds min_loops=", policy_.min_loops,
                      " max_loops=", max_loops_, " L=", num_loops);
}

void ExitTracker::Reset() {
  next_t_ = 0;
  exited_ = false;
  prev_top1_ = -1;
  streak_ = 0;
  survival_ = 1.0;
}

ExitDecision ExitTracker::Observe(int t, const BoundaryObservation& obs) {
  LOOPSERVE_CHECK(!exited_) << "ExitTracker::Observe after the token exited";
  LOOPSERVE_CHECK(t == next_t_ && t < max_loops_)
      << absl::StrCat("ExitTracker: observed boundary ", t, ", expected ", next_t_, " (max_loops ",
                      max_loops_, ")");
  ++next_t_;

  // Running state, kept whenever its input is present so that a boundary
  // before min_loops−1 still feeds the comparison at the next one.
  if (obs.stats.has_value()) {
    streak_ = (prev_top1_ >= 0 && obs.stats->top1 == prev_top1_) ? streak_ + 1 : 0;
    prev_top1_ = obs.stats->top1;
  } else {
    streak_ = 0;
    prev_top1_ = -1;
  }
  if (obs.gate.has_value()) survival_ *= 1.0 - *obs.gate;

  const bool may_exit = t >= policy_.min_loops - 1;
  const double tau = policy_.threshold;
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  ExitDecision decision;
  decision.statistic = kNaN;
  bool holds = false;
  switch (policy_.criterion) {
    case ExitCriterion::kNever:
      break;
    case ExitCriterion::kMaxProb:
    case ExitCriterion::kMargin:
    case ExitCriterion::kEntropy:
      LOOPSERVE_CHECK(!may_exit || obs.stats.has_value())
          << absl::StrCat(ExitCriterionName(policy_.criterion), " needs the exit head at t=", t);
      if (obs.stats.has_value()) {
        if (policy_.criterion == ExitCriterion::kMaxProb) {
          decision.statistic = obs.stats->max_prob;
          holds = decision.statistic >= tau;
        } else if (policy_.criterion == ExitCriterion::kMargin) {
          decision.statistic = obs.stats->margin;
          holds = decision.statistic >= tau;
        } else {
          decision.statistic = obs.stats->entropy;
          holds = decision.statistic <= tau;
        }
      }
      break;
    case ExitCriterion::kKl:
      LOOPSERVE_CHECK(!may_exit || t == 0 || obs.kl.has_value())
          << absl::StrCat("kl needs KL(z_t || z_{t-1}) at t=", t);
      if (t >= 1 && obs.kl.has_value()) {
        decision.statistic = *obs.kl;
        holds = decision.statistic <= tau;
      }
      break;
    case ExitCriterion::kTop1Stable:
      LOOPSERVE_CHECK(obs.stats.has_value())
          << absl::StrCat("top1_stable needs the exit head at t=", t);
      decision.statistic = streak_;
      holds = decision.statistic >= tau;
      break;
    case ExitCriterion::kHiddenCosine:
      LOOPSERVE_CHECK(!may_exit || t == 0 || obs.hidden_cosine.has_value())
          << absl::StrCat("hidden_cosine needs cos(h_t, h_{t-1}) at t=", t);
      if (t >= 1 && obs.hidden_cosine.has_value()) {
        decision.statistic = *obs.hidden_cosine;
        holds = decision.statistic >= tau;
      }
      break;
    case ExitCriterion::kGate:
      LOOPSERVE_CHECK(obs.gate.has_value()) << absl::StrCat("gate needs lambda_t at t=", t);
      decision.statistic = 1.0 - survival_;
      holds = decision.statistic >= tau;
      break;
  }
  const bool last = t == max_loops_ - 1;
  decision.exit = (may_exit && holds) || last;
  decision.forced = decision.exit && !(may_exit && holds);
  exited_ = decision.exit;
  return decision;
}

}  // namespace loopserve
