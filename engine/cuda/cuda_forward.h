// The looped-MoE forward step with per-token early exit on a CUDA device:
// the contract and structure of engine/looped_forward (prelude, loop by
// loop over still-active tokens with compaction, exit check at each
// boundary, coda + head, kv_fill), with activations resident on the device.
// Exit statistics are computed on the device; only per-token numbers, and
// the logits rows a caller samples from, come back to the host.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/compute_accounting.h"
#include "engine/cuda/cuda_layer.h"
#include "engine/cuda/device_model.h"
#include "engine/exit_policy.h"
#include "engine/forward_batch.h"
#include "kernels/common/scalar_math.h"

namespace loopserve {

// Row positions and block-table indices of a row set, on the device.
class DeviceRowSet {
 public:
  absl::Status Set(const std::vector<int32_t>& positions, const std::vector<int32_t>& row_table,
                   const int32_t* tables, int32_t stride, cudaStream_t stream);
  const cuda::DeviceRows& rows() const { return rows_; }

 private:
  cuda::DeviceBuffer<int32_t> positions_, row_table_;
  cuda::DeviceRows rows_;
};

class CudaForward {
 public:
  CudaForward(std::shared_ptr<const LoadedModel> model, const DeviceModel* device,
              const CudaContext& context);

  absl::Status Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                   ForwardTrace* trace);

 private:
  struct Active;  // host bookkeeping of the rows still looping

  absl::Status RunLoop(int loop, Active& act, ForwardTrace* trace);
  absl::Status DecideAtBoundary(int loop, absl::Span<const ForwardToken> tokens, Active& act,
                                ForwardResult* result);
  absl::Status GateValues(const Active& act, const std::vector<int>& rows,
                          std::vector<float>* gates);
  // cos(h_t, h_{t-1}) of the active rows `rows` (tokens `tokens`); h_t is
  // kept as the tokens' previous hidden state.
  absl::Status HiddenCosines(const std::vector<int>& rows, const std::vector<int32_t>& tokens,
                             std::vector<double>* cosines);
  absl::Status FillSkippedLoops(int exit_loop, const float* h, const DeviceRowSet& rows,
                                KvFill mode);
  absl::Status FinishFullDepth(absl::Span<const ForwardToken> tokens, Active& act,
                               ForwardResult* result, ForwardTrace* trace);
  absl::Status Compact(Active& act);
  // The exit head (coda + final norm + LM head) of h (n, D); logits of the
  // rows in logit_rows (null = all) into logits_. probe: coda K/V kept in
  // probe_k_/probe_v_ instead of written.
  absl::Status Head(const float* h, const DeviceRowSet& rows, bool probe,
                    const std::vector<int>* logit_rows,
                    std::vector<std::vector<int32_t>>* router_trace);
  // Writes the coda K/V of the last probe's rows `probe_rows` (whose
  // positions and block-table indices are given) into the pool.
  absl::Status CommitProbe(const std::vector<int>& probe_rows,
                           const std::vector<int32_t>& positions,
                           const std::vector<int32_t>& row_table);
  // out (rows, D) = the state rows `rows` of the active batch.
  absl::Status GatherActive(const std::vector<int>& rows, float* out);
  absl::Status LogitsRowToHost(int64_t row, ForwardResult* result);
  absl::Status TraceLoopLogits(int64_t n, const DeviceRowSet& rows, ForwardTrace* trace);

  std::shared_ptr<const LoadedModel> model_;
  const ModelConfig& config_;
  const DeviceModel* device_;
  CudaContext ctx_;
  FlopModel flops_;
  CudaLayer layer_;
  cuda::DeviceBuffer<int32_t> tables_, ids_, index_, tokens_dev_;
  cuda::DeviceBuffer<float> x_, x_alt_, modulation_, head_in_, head_x_, picked_, normed_, logits_,
      prev_logits_, prev_hidden_, scratch_, gate_, fill_k_, fill_v_;
  cuda::DeviceBuffer<double> prev_lse_, kl_, cosine_;
  cuda::DeviceBuffer<RowExitStats> stats_;
  std::vector<cuda::DeviceBuffer<float>> probe_k_, probe_v_;
  DeviceRowSet active_rows_, head_rows_, fill_rows_, full_rows_;
  int32_t table_stride_ = 0;
  bool any_kl_ = false;  // this step has kl tokens (prev_logits_ in use)
};

}  // namespace loopserve
