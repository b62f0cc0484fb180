#include "kernels/cuda/plans/workspace.h"

#include <algorithm>

namespace loopserve::cuda {

ForwardWorkspace ComputeForwardWorkspace(const ForwardDims& d, int64_t rows) {
  ForwardWorkspace w;
  // Routed MoE runs rows*k (token, expert) pairs; dense runs rows.
  const int64_t pairs = d.num_experts > 0 ? rows * d.top_k : 0;
  const int64_t ffn_rows = std::max(rows, pairs);
  w.state = 2 * rows * d.hidden;
  w.attention = rows * (d.hidden + 2 * d.q_dim + 2 * d.kv_dim);
  w.ffn = 2 * rows * d.hidden + 2 * ffn_rows * d.ffn_width + 2 * pairs * d.hidden +
          (d.num_experts > 0 ? rows * d.hidden : 0);  // shared-expert output
  w.router = d.num_experts > 0 ? rows * d.num_experts + pairs : 0;
  w.adaln = d.adaln_rank > 0 ? rows * (d.adaln_rank + 6 * d.hidden) : 0;
  w.head = 4 * rows * d.hidden + rows * d.vocab + 2 * int64_t{d.coda_layers} * rows * d.kv_dim;
  if (d.weights_16bit) {
    w.gemm_input16 = ffn_rows * std::max({d.hidden, d.q_dim, d.ffn_width});
  }
  return w;
}

}  // namespace loopserve::cuda
