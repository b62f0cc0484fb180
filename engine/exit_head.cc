#include "engine/exit_head.h"

#include <cstring>

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"

namespace loopserve {

ExitHead::ExitHead(const ModelConfig& config, const ModelWeights& weights,
                   const PagedKvView& kv, LayerForward* layers, ThreadPool* pool)
    : config_(config),
      weights_(weights),
      kv_(kv),
      layers_(layers),
      pool_(pool),
      probe_k_(weights.coda.size()),
      probe_v_(weights.coda.size()) {}

void ExitHead::FinalNorm(const float* h, int64_t n, float* out) const {
  RmsNorm(h, n, config_.hidden_size, weights_.final_norm,
          static_cast<float>(config_.rms_norm_eps), out);
}

void ExitHead::Run(const float* h, const LayerRows& rows, bool probe,
                   const std::vector<int>* logit_rows, float* logits,
                   std::vector<std::vector<int32_t>>* router_trace) {
  const int64_t d_model = config_.hidden_size;
  const int64_t n = rows.n;
  if (n == 0) return;
  float* x = x_.Get(n * d_model);
  std::memcpy(x, h, sizeof(float) * n * d_model);
  if (router_trace != nullptr) router_trace->assign(weights_.coda.size(), {});
  for (size_t i = 0; i < weights_.coda.size(); ++i) {
    KvTarget target{config_.LayerInstance(ModelPart::kCoda, static_cast<int>(i), 0)};
    if (probe) {
      probe_k_[i].resize(static_cast<size_t>(n * config_.KvDim()));
      probe_v_[i].resize(static_cast<size_t>(n * config_.KvDim()));
      target.probe_k = probe_k_[i].data();
      target.probe_v = probe_v_[i].data();
    }
    layers_->Run(weights_.coda[i], target, nullptr, rows, x,
                 router_trace != nullptr ? &(*router_trace)[i] : nullptr);
  }
  const float* src = x;
  int64_t m = n;
  if (logit_rows != nullptr) {
    m = static_cast<int64_t>(logit_rows->size());
    if (m == 0) return;
    float* picked = picked_.Get(m * d_model);
    for (int64_t r = 0; r < m; ++r) {
      std::memcpy(picked + r * d_model, x + int64_t{(*logit_rows)[r]} * d_model,
                  sizeof(float) * d_model);
    }
    src = picked;
  }
  float* normed = normed_.Get(m * d_model);
  FinalNorm(src, m, normed);
  Linear(normed, m, weights_.lm_head, logits, pool_);
}

void ExitHead::CommitProbe(int64_t row, const LayerRows& rows) {
  const int64_t kv_dim = config_.KvDim();
  for (size_t i = 0; i < weights_.coda.size(); ++i) {
    const int instance = config_.LayerInstance(ModelPart::kCoda, static_cast<int>(i), 0);
    std::memcpy(kv_.RowAt(rows.block_tables[row], instance, 0, rows.positions[row]),
                probe_k_[i].data() + row * kv_dim, sizeof(float) * kv_dim);
    std::memcpy(kv_.RowAt(rows.block_tables[row], instance, 1, rows.positions[row]),
                probe_v_[i].data() + row * kv_dim, sizeof(float) * kv_dim);
  }
}

}  // namespace loopserve
