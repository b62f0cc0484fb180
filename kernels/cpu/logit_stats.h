// Exit statistics of one exit-head output (MODEL_SPEC "Early exit"), in one
// pass over the vocabulary plus helpers comparing two boundaries.
#pragma once

#include <cstdint>

namespace loopserve {

struct LogitStats {
  int32_t top1 = 0;        // argmax (ties: lower index)
  float max_prob = 0;      // p1
  float margin = 0;        // p1 - p2
  float entropy = 0;       // nats
  double log_sum_exp = 0;  // of the raw logits
};

// logits (V) -> stats. Computed in double where it matters (entropy).
LogitStats ComputeLogitStats(const float* logits, int64_t vocab);

// KL(softmax(p) ‖ softmax(q)) in nats given each side's log-sum-exp.
double KlDivergence(const float* p_logits, double p_lse, const float* q_logits, double q_lse,
                    int64_t vocab);

// cos(a, b) over n elements (double accumulation); 0 when either is zero.
double CosineSimilarity(const float* a, const float* b, int64_t n);

}  // namespace loopserve
