// Device scratch a CUDA forward step needs for a batch of `rows` tokens,
// per buffer and in total, so the backend can reserve it once (and check it
// against free memory) instead of growing buffers mid-step. Plain C++.
#pragma once

#include <cstdint>

namespace loopserve::cuda {

struct ForwardDims {
  int64_t hidden = 0;     // D
  int64_t q_dim = 0;      // H * d
  int64_t kv_dim = 0;     // Hkv * d
  int64_t ffn_width = 0;  // max(intermediate_size, moe_intermediate_size)
  int num_experts = 0;    // 0 when no layer is MoE
  int top_k = 0;
  int64_t vocab = 0;
  int adaln_rank = 0;  // 0 = no IterAdaLN
  int coda_layers = 0;
  bool weights_16bit = false;  // GEMM inputs need a 16-bit copy
};

// Float counts of the buffers (the largest size each reaches for `rows`).
struct ForwardWorkspace {
  int64_t state = 0;         // x and its compaction double buffer: 2 * rows * D
  int64_t attention = 0;     // norm + q + attn + k + v
  int64_t ffn = 0;           // delta, hidden, gate/up (rows*k*width x2), gathered, expert out
  int64_t router = 0;        // logits rows*E + weights rows*k
  int64_t adaln = 0;         // rows*r + modulation rows*6D
  int64_t head = 0;          // head in/x/picked/normed + logits rows*V + coda probe K/V
  int64_t gemm_input16 = 0;  // 16-bit elements: the widest GEMM input

  int64_t float_count() const { return state + attention + ffn + router + adaln + head; }
  int64_t bytes() const { return float_count() * 4 + gemm_input16 * 2; }
};

ForwardWorkspace ComputeForwardWorkspace(const ForwardDims& dims, int64_t rows);

}  // namespace loopserve::cuda
