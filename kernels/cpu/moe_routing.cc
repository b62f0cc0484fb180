// MoE routing: per-token scores and top-k, then a counting sort of the
// (token, slot) pairs by expert so each expert runs one GEMM over its rows.
#include "kernels/cpu/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/common/check.h"

namespace loopserve {

// logits (n, E) -> expert_ids (n, k), weights (n, k)
void RouteTopK(const float* logits, int64_t n, int num_experts, int k, RouterScoreKind score,
               bool norm_topk_prob, float routed_scaling_factor, int32_t* expert_ids,
               float* weights) {
  LOOPSERVE_CHECK(k >= 1 && k <= num_experts) << "k=" << k << " E=" << num_experts;
  std::vector<float> s(static_cast<size_t>(num_experts));
  std::vector<int32_t> order(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * num_experts;
    if (score == RouterScoreKind::kSoftmax) {
      const float mx = *std::max_element(l, l + num_experts);
      double sum = 0;
      for (int e = 0; e < num_experts; ++e) {
        s[e] = std::exp(l[e] - mx);
        sum += s[e];
      }
      for (int e = 0; e < num_experts; ++e) s[e] = static_cast<float>(s[e] / sum);
    } else {
      for (int e = 0; e < num_experts; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
    }
    // Descending score, ties to the lower expert index (a strict total order).
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    double total = 0;
    for (int j = 0; j < k; ++j) total += s[order[j]];
    const double norm = norm_topk_prob && total > 0 ? 1.0 / total : 1.0;
    for (int j = 0; j < k; ++j) {
      expert_ids[t * k + j] = order[j];
      weights[t * k + j] =
          static_cast<float>(static_cast<double>(s[order[j]]) * norm * routed_scaling_factor);
    }
  }
}

// expert_ids (n, k) -> groups (a stable counting sort by expert)
ExpertGroups GroupByExpert(const int32_t* expert_ids, int64_t n, int k, int num_experts) {
  ExpertGroups g;
  g.offsets.assign(static_cast<size_t>(num_experts) + 1, 0);
  const int64_t total = n * k;
  for (int64_t i = 0; i < total; ++i) {
    LOOPSERVE_CHECK(expert_ids[i] >= 0 && expert_ids[i] < num_experts) << expert_ids[i];
    ++g.offsets[expert_ids[i] + 1];
  }
  for (int e = 0; e < num_experts; ++e) g.offsets[e + 1] += g.offsets[e];
  g.token.resize(static_cast<size_t>(total));
  g.slot.resize(static_cast<size_t>(total));
  std::vector<int32_t> cursor(g.offsets.begin(), g.offsets.end() - 1);
  // Visiting pairs in token order keeps tokens ascending within an expert.
  for (int64_t t = 0; t < n; ++t) {
    for (int j = 0; j < k; ++j) {
      const int32_t pos = cursor[expert_ids[t * k + j]]++;
      g.token[pos] = static_cast<int32_t>(t);
      g.slot[pos] = j;
    }
  }
  return g;
}

}  // namespace loopserve
