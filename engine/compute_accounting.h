// FLOP accounting of MODEL_SPEC "Compute accounting": what a token's
// full-depth forward costs and what an early-exited one actually did,
// exit checks (exit heads, gate evaluations, propagate fills) included.
// Only matrix products and attention count; norms and elementwise ops are
// noise at these sizes and every backend agrees to leave them out.
#pragma once

#include <cstdint>

#include "engine/model_config.h"

namespace loopserve {

class FlopModel {
 public:
  explicit FlopModel(const ModelConfig& config);

  // One layer of `part` for a token that attends `num_keys` positions.
  double Layer(ModelPart part, int64_t num_keys) const;
  // All layers of a part (one pass; the recurrent block is one loop).
  double Part(ModelPart part, int64_t num_keys) const;
  // Coda layers + final norm + LM head: one exit-head evaluation.
  double ExitHead(int64_t num_keys) const;
  double GateEval() const { return 2.0 * config_.hidden_size; }
  // K/V projections (and IterAdaLN modulation) of one recurrent layer
  // instance filled by kv_fill = propagate.
  double PropagateFill() const;
  // Full-depth forward of the token at position `pos` (pos + 1 keys).
  double FullDepth(int64_t pos) const;
  // One exited forward: prelude, `loops_run` loops, `exit_heads` exit-head
  // evaluations, `gate_evals` gate evaluations, `propagate_fills` filled
  // recurrent instances.
  double Done(int64_t pos, int loops_run, int exit_heads, int gate_evals,
              int propagate_fills) const;

 private:
  ModelConfig config_;
};

}  // namespace loopserve
