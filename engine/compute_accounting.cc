#include "engine/compute_accounting.h"

namespace loopserve {

FlopModel::FlopModel(const ModelConfig& config) : config_(config) {}

double FlopModel::Layer(ModelPart part, int64_t num_keys) const {
  const double d_model = static_cast<double>(config_.hidden_size);
  const double q_dim = static_cast<double>(config_.QDim());
  const double kv_dim = static_cast<double>(config_.KvDim());
  double flops = 2.0 * d_model * (q_dim + 2.0 * kv_dim) + 2.0 * q_dim * d_model;
  flops += 4.0 * q_dim * static_cast<double>(num_keys);  // q·k and p·v
  if (config_.Ffn(part) == FfnKind::kDense) {
    flops += 6.0 * d_model * static_cast<double>(config_.intermediate_size);
  } else {
    flops += 2.0 * d_model * config_.num_experts;
    flops += 6.0 * d_model * static_cast<double>(config_.moe_intermediate_size) *
             (config_.num_experts_per_tok + config_.num_shared_experts);
  }
  if (part == ModelPart::kRecurrent && config_.iter_adaln_rank > 0) {
    const double r = config_.iter_adaln_rank;
    flops += 2.0 * d_model * r + 2.0 * r * 6.0 * d_model;
  }
  return flops;
}

double FlopModel::Part(ModelPart part, int64_t num_keys) const {
  return config_.NumLayers(part) * Layer(part, num_keys);
}

double FlopModel::ExitHead(int64_t num_keys) const {
  return Part(ModelPart::kCoda, num_keys) +
         2.0 * static_cast<double>(config_.hidden_size) * static_cast<double>(config_.vocab_size);
}

double FlopModel::PropagateFill() const {
  const double d_model = static_cast<double>(config_.hidden_size);
  double flops = 2.0 * d_model * 2.0 * static_cast<double>(config_.KvDim());
  if (config_.iter_adaln_rank > 0) {
    const double r = config_.iter_adaln_rank;
    flops += 2.0 * d_model * r + 2.0 * r * 6.0 * d_model;
  }
  return flops;
}

double FlopModel::FullDepth(int64_t pos) const {
  const int64_t keys = pos + 1;
  return Part(ModelPart::kPrelude, keys) +
         config_.num_loops * Part(ModelPart::kRecurrent, keys) + ExitHead(keys);
}

double FlopModel::Done(int64_t pos, int loops_run, int exit_heads, int gate_evals,
                       int propagate_fills) const {
  const int64_t keys = pos + 1;
  return Part(ModelPart::kPrelude, keys) + loops_run * Part(ModelPart::kRecurrent, keys) +
         exit_heads * ExitHead(keys) + gate_evals * GateEval() + propagate_fills * PropagateFill();
}

}  // namespace loopserve
