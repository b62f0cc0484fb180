// Sampling: one pass for greedy and plain temperature sampling; a partial sort
// of the candidates only when top-k or top-p truncates the distribution.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/common/check.h"

namespace loopserve {
namespace {

// Descending by logit, ties to the lower id: a total order, so every sort and
// selection below is deterministic whatever the standard library.
struct ByLogitDesc {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

// Indices of the n largest logits, in ByLogitDesc order, in O(V·n) with no
// allocation beyond n (n ≤ kMaxLogprobs).
std::vector<int32_t> TopIds(const float* logits, int64_t vocab, int n) {
  std::vector<int32_t> top;
  top.reserve(n + 1);
  const ByLogitDesc before{logits};
  for (int64_t i = 0; i < vocab; ++i) {
    const auto id = static_cast<int32_t>(i);
    if (static_cast<int>(top.size()) == n && !before(id, top.back())) continue;
    top.insert(std::upper_bound(top.begin(), top.end(), id, before), id);
    if (static_cast<int>(top.size()) > n) top.pop_back();
  }
  return top;
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  if (!std::isfinite(params.temperature) || params.temperature < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling temperature: expected a finite number >= 0, found ", params.temperature));
  }
  if (params.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling top_k: expected >= 0 (0 = off), found ", params.top_k));
  }
  if (!(params.top_p > 0 && params.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling top_p: expected in (0, 1], found ", params.top_p));
  }
  if (params.logprobs < 0 || params.logprobs > kMaxLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat("sampling logprobs: expected in [0, ",
                                                   kMaxLogprobs, "], found ", params.logprobs));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  const absl::Status valid = ValidateSamplingParams(params_);
  LOOPSERVE_CHECK(valid.ok()) << valid.ToString();
}

double Sampler::NextUniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

SampledToken Sampler::Sample(const float* logits, int64_t vocab) {
  LOOPSERVE_CHECK(vocab >= 1) << "Sampler: empty vocabulary";
  int32_t argmax = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[argmax]) argmax = static_cast<int32_t>(i);
  }
  const float max_logit = logits[argmax];

  SampledToken out;
  const bool truncated = (params_.top_k > 0 && params_.top_k < vocab) || params_.top_p < 1;
  if (params_.temperature == 0) {
    out.token = argmax;
  } else if (truncated) {
    out.token = SampleTruncated(logits, vocab, max_logit);
  } else {
    out.token = SampleFull(logits, vocab, max_logit);
  }

  // Model logprobs: log softmax at temperature 1, whatever was sampled.
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max_logit));
  const double lse = static_cast<double>(max_logit) + std::log(sum);
  out.logprob = static_cast<float>(logits[out.token] - lse);
  if (params_.logprobs > 0) {
    const int n = static_cast<int>(std::min<int64_t>(params_.logprobs, vocab));
    for (int32_t id : TopIds(logits, vocab, n)) {
      out.top_logprobs.emplace_back(id, static_cast<float>(logits[id] - lse));
    }
  }
  return out;
}

int32_t Sampler::SampleFull(const float* logits, int64_t vocab, float max_logit) {
  const float inv_t = 1.0f / params_.temperature;
  weights_.resize(vocab);
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    weights_[i] = std::exp((logits[i] - max_logit) * inv_t);
    total += weights_[i];
  }
  // The running sum repeats the total's additions in the same order, so it
  // reaches `total` > target exactly; the fallback is for NaN logits only.
  const double target = NextUniform() * total;
  double cum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    cum += weights_[i];
    if (cum > target) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

int32_t Sampler::SampleTruncated(const float* logits, int64_t vocab, float max_logit) {
  const float inv_t = 1.0f / params_.temperature;
  auto weight = [&](int32_t id) { return std::exp((logits[id] - max_logit) * inv_t); };
  const ByLogitDesc before{logits};
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  const bool has_top_k = params_.top_k > 0 && params_.top_k < vocab;
  const int64_t k = has_top_k ? params_.top_k : vocab;

  // Candidate mass: the top-k set is sorted in full (k is small in practice)
  // so that its sum has one defined order; without top-k, all of V.
  double mass = 0;
  int64_t sorted = 0;
  if (has_top_k) {
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), before);
    sorted = k;
    for (int64_t j = 0; j < k; ++j) mass += weight(order_[j]);
  } else {
    for (int64_t i = 0; i < vocab; ++i) mass += weight(static_cast<int32_t>(i));
  }

  // Nucleus: the smallest sorted prefix whose mass reaches top_p of the
  // candidates' (at least one token). The prefix is sorted lazily in growing
  // chunks because it is usually far smaller than V.
  int64_t keep = k;  // top_k only: the whole sorted top-k set.
  double kept_mass = mass;
  if (params_.top_p < 1) {
    const double goal = static_cast<double>(params_.top_p) * mass;
    double cum = 0;
    int64_t n = 0;
    bool reached = false;
    for (int64_t m = std::min<int64_t>(k, 64); !reached; m = std::min(k, m * 4)) {
      if (m > sorted) {
        std::partial_sort(order_.begin() + sorted, order_.begin() + m, order_.begin() + k, before);
        sorted = m;
      }
      for (; n < m && !reached; ++n) {
        cum += weight(order_[n]);
        reached = cum >= goal;
      }
      if (m == k) break;
    }
    keep = n;  // All k when rounding kept `cum` just below `goal`.
    kept_mass = cum;
  }

  const double target = NextUniform() * kept_mass;
  double cum = 0;
  for (int64_t j = 0; j < keep; ++j) {
    cum += weight(order_[j]);
    if (cum > target) return order_[j];
  }
  return order_[0];
}

}  // namespace loopserve
