// The FFN half of a layer (MODEL_SPEC "SwiGLU" and "MoE(x)"): dense SwiGLU,
// or routed experts run on the rows grouped per expert plus shared experts.
#include <algorithm>
#include <cstring>

#include "engine/layer_forward.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/thread_pool.h"

namespace loopserve {
namespace {

// x (n, D) -> out (n, D) = down(silu(gate x) * up x), using a and b (n, I).
void SwiGlu(const SwiGluWeights& w, const float* x, int64_t n, float* a, float* b, float* out,
            ThreadPool* pool) {
  const int64_t width = w.gate.rows;
  const LinearTarget gate_up[] = {{w.gate, a}, {w.up, b}};
  LinearFused(x, n, gate_up, pool);
  SiluMul(a, b, n, width, a);
  Linear(a, n, w.down, out, pool);
}

// Up to this many rows per expert, the routed experts run one per thread
// (each expert's three GEMVs serial) instead of each GEMV being split over
// the threads: one fork-join per MoE layer instead of three per active
// expert. Decode-sized groups stream their weights at the same cost per
// expert, so whole experts balance well.
constexpr int32_t kExpertParallelMaxRows = 32;

// Larger (prefill) groups also run one expert per thread when no single
// expert holds more than this share of a thread's fair part of the rows:
// the claim-next-largest order then keeps the threads within one expert of
// each other, and each expert's GEMMs pack their own W once instead of
// three fork-joins (and two packings of every W block) per expert. A
// dominant expert (skewed routing) keeps the split GEMMs.
constexpr double kExpertParallelMaxShare = 0.5;

// Whether to run the routed experts one per thread.
bool ExpertPerThread(int threads, int64_t num_active, int32_t max_count, int64_t pairs) {
  if (threads <= 1 || num_active <= 1) return false;
  if (max_count <= kExpertParallelMaxRows) return true;
  return max_count <= kExpertParallelMaxShare * static_cast<double>(pairs) / threads;
}

}  // namespace

void LayerForward::Ffn(const LayerWeights& w, const float* x, int64_t n, float* out,
                       std::vector<int32_t>* router_trace) {
  const int64_t d_model = config_.hidden_size;
  if (w.ffn == FfnKind::kDense) {
    const int64_t width = config_.intermediate_size;
    SwiGlu(w.dense, x, n, ffn_a_.Get(n * width), ffn_b_.Get(n * width), out, pool_);
    return;
  }
  const int num_experts = config_.num_experts;
  const int k = config_.num_experts_per_tok;
  const int64_t width = config_.moe_intermediate_size;

  float* logits = router_logits_.Get(n * num_experts);
  Linear(x, n, w.moe.router, logits, pool_);
  expert_ids_.resize(static_cast<size_t>(n * k));
  expert_weights_.resize(static_cast<size_t>(n * k));
  RouteTopK(logits, n, num_experts, k,
            config_.router_score == RouterScore::kSoftmax ? RouterScoreKind::kSoftmax
                                                          : RouterScoreKind::kSigmoid,
            config_.norm_topk_prob, static_cast<float>(config_.routed_scaling_factor),
            expert_ids_.data(), expert_weights_.data());
  if (router_trace != nullptr) router_trace->assign(expert_ids_.begin(), expert_ids_.end());

  std::memset(out, 0, sizeof(float) * n * d_model);
  const ExpertGroups groups = GroupByExpert(expert_ids_.data(), n, k, num_experts);
  // Every routed (token, slot) pair gets its own rows of the scratch tensors,
  // at its group offset, so experts can run concurrently.
  const int64_t pairs = n * k;
  float* gathered = gathered_.Get(pairs * d_model);
  float* expert_out = expert_out_.Get(pairs * d_model);
  float* a = ffn_a_.Get(pairs * width);
  float* b = ffn_b_.Get(pairs * width);
  for (int64_t r = 0; r < pairs; ++r) {
    std::memcpy(gathered + r * d_model, x + int64_t{groups.token[r]} * d_model,
                sizeof(float) * d_model);
  }
  std::vector<int> active;  // routed experts with rows
  int32_t max_count = 0;
  for (int e = 0; e < num_experts; ++e) {
    const int32_t count = groups.offsets[e + 1] - groups.offsets[e];
    if (count == 0) continue;
    active.push_back(e);
    max_count = std::max(max_count, count);
  }
  auto run_expert = [&](int e, ThreadPool* pool) {
    const int64_t begin = groups.offsets[e];
    SwiGlu(w.moe.experts[e], gathered + begin * d_model, groups.offsets[e + 1] - begin,
           a + begin * width, b + begin * width, expert_out + begin * d_model, pool);
  };
  const int64_t num_active = static_cast<int64_t>(active.size());
  if (pool_ != nullptr && ExpertPerThread(pool_->num_threads(), num_active, max_count, pairs)) {
    op_profile::Scope profile("moe_experts(one per thread)");
    if (profile.active()) {
      for (int e : active) {
        const SwiGluWeights& sw = w.moe.experts[e];
        const double bytes =
            static_cast<double>(sw.gate.rows * sw.gate.cols) *
                (DTypeSize(sw.gate.dtype) + DTypeSize(sw.up.dtype)) +
            static_cast<double>(sw.down.rows * sw.down.cols) * DTypeSize(sw.down.dtype);
        const double rows = groups.offsets[e + 1] - groups.offsets[e];
        profile.Count(bytes, 2.0 * rows * (3.0 * width * d_model));
      }
    }
    // Largest groups first, each claimed by the next free thread.
    std::vector<int> by_size = active;
    std::stable_sort(by_size.begin(), by_size.end(), [&](int x, int y) {
      return groups.offsets[x + 1] - groups.offsets[x] > groups.offsets[y + 1] - groups.offsets[y];
    });
    pool_->ParallelForEach(num_active, [&](int64_t i) { run_expert(by_size[i], nullptr); });
  } else {
    for (int e : active) run_expert(e, pool_);
  }
  // Weighted sum in expert order whatever ran in parallel: the same float
  // additions in the same order as a serial loop.
  for (int e : active) {
    for (int32_t r = groups.offsets[e]; r < groups.offsets[e + 1]; ++r) {
      const int64_t token = groups.token[r];
      const float weight = expert_weights_[token * k + groups.slot[r]];
      const float* src = expert_out + int64_t{r} * d_model;
      float* dst = out + token * d_model;
      for (int64_t j = 0; j < d_model; ++j) dst[j] += weight * src[j];
    }
  }
  for (const SwiGluWeights& shared : w.moe.shared) {
    SwiGlu(shared, x, n, a, b, expert_out, pool_);
    for (int64_t i = 0; i < n * d_model; ++i) out[i] += expert_out[i];
  }
}

}  // namespace loopserve
