// MoE router: scores, top-k (ties to the lower expert index) and the
// combine weights of MODEL_SPEC "MoE(x)", plus the per-expert grouping plan
// the expert GEMMs run on.
#pragma once

#include <cstdint>
#include <vector>

namespace loopserve {

enum class RouterScoreKind : uint8_t { kSoftmax, kSigmoid };

// logits (n, E) -> expert_ids (n, k), weights (n, k): selected experts in
// descending score order and their weights, already multiplied by
// routed_scaling_factor (and renormalised first when norm_topk_prob).
void RouteTopK(const float* logits, int64_t n, int num_experts, int k, RouterScoreKind score,
               bool norm_topk_prob, float routed_scaling_factor, int32_t* expert_ids,
               float* weights);

// Tokens grouped per expert: rows [offsets[e], offsets[e+1]) of `token` and
// `slot` are the (token index, k-slot) pairs routed to expert e, tokens in
// ascending order.
struct ExpertGroups {
  std::vector<int32_t> offsets;  // E + 1
  std::vector<int32_t> token;
  std::vector<int32_t> slot;
};
ExpertGroups GroupByExpert(const int32_t* expert_ids, int64_t n, int k, int num_experts);

}  // namespace loopserve
