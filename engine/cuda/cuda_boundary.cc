// CudaForward at a loop boundary: exit statistics on the device, decisions
// on the host (ExitTracker, shared with the CPU engine), then the exiting
// tokens' coda K/V, logits and kv_fill. Mirrors LoopedForward.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_forward.h"
#include "engine/cuda/cuda_forward_active.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/logit_stats.h"
#include "kernels/cuda/paged_attention.h"

namespace loopserve {

absl::Status CudaForward::GateValues(const Active& act, const std::vector<int>& rows,
                                     std::vector<float>* gates) {
  (void)act;
  const int64_t m = static_cast<int64_t>(rows.size()), d_model = config_.hidden_size;
  gates->assign(m, 0.0f);
  if (m == 0) return absl::OkStatus();
  LOOPSERVE_RETURN_IF_ERROR(scratch_.Reserve(m * d_model));
  LOOPSERVE_RETURN_IF_ERROR(normed_.Reserve(m * d_model));
  LOOPSERVE_RETURN_IF_ERROR(gate_.Reserve(m));
  LOOPSERVE_RETURN_IF_ERROR(GatherActive(rows, scratch_.data()));
  // λ = sigmoid(gate · norm(h) + b), norm = the final RMSNorm.
  CUDA_RETURN_IF_ERROR(cuda::RmsNorm(scratch_.data(), m, d_model, device_->final_norm,
                                     static_cast<float>(config_.rms_norm_eps), nullptr, nullptr, 0,
                                     normed_.data(), ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(layer_.Linear(device_->exit_gate, normed_.data(), m, gate_.data()));
  CUDA_RETURN_IF_ERROR(cuda::SigmoidBias(gate_.data(), m, device_->exit_gate_bias, ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(gate_.CopyToHost(gates->data(), m, ctx_.stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaForward::HiddenCosines(const std::vector<int>& rows,
                                        const std::vector<int32_t>& tokens,
                                        std::vector<double>* cosines) {
  const int64_t m = static_cast<int64_t>(rows.size()), d_model = config_.hidden_size;
  cosines->assign(m, 0.0);
  if (m == 0) return absl::OkStatus();
  LOOPSERVE_RETURN_IF_ERROR(scratch_.Reserve(m * d_model));
  LOOPSERVE_RETURN_IF_ERROR(cosine_.Reserve(m));
  LOOPSERVE_RETURN_IF_ERROR(GatherActive(rows, scratch_.data()));
  LOOPSERVE_RETURN_IF_ERROR(tokens_dev_.Reserve(m));
  LOOPSERVE_RETURN_IF_ERROR(tokens_dev_.CopyFromHost(tokens.data(), m, ctx_.stream));
  CUDA_RETURN_IF_ERROR(cuda::CosineRows(scratch_.data(), prev_hidden_.data(), tokens_dev_.data(), m,
                                        d_model, cosine_.data(), ctx_.stream));
  // h_t becomes h_{t-1} of the next boundary.
  CUDA_RETURN_IF_ERROR(cuda::ScatterRows(scratch_.data(), tokens_dev_.data(), m, d_model,
                                         prev_hidden_.data(), ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(cosine_.CopyToHost(cosines->data(), m, ctx_.stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaForward::DecideAtBoundary(int loop, absl::Span<const ForwardToken> tokens,
                                           Active& act, ForwardResult* result) {
  const int64_t d_model = config_.hidden_size, vocab = config_.vocab_size;
  const int64_t m = act.size();
  act.exits.assign(m, 0);
  // Device statistics that do not need the exit head, batched.
  std::vector<int> gate_rows, cosine_rows;
  std::vector<int32_t> cosine_tokens;
  for (int64_t a = 0; a < m; ++a) {
    const int j = act.index[a];
    if (tokens[j].full_depth) continue;
    if (NeedsGateAt(*tokens[j].policy, loop)) gate_rows.push_back(static_cast<int>(a));
    if (tokens[j].policy->criterion == ExitCriterion::kHiddenCosine) {
      cosine_rows.push_back(static_cast<int>(a));
      cosine_tokens.push_back(j);
    }
  }
  std::vector<float> gates;
  std::vector<double> cosines;
  LOOPSERVE_RETURN_IF_ERROR(GateValues(act, gate_rows, &gates));
  LOOPSERVE_RETURN_IF_ERROR(HiddenCosines(cosine_rows, cosine_tokens, &cosines));

  std::vector<int> head_rows;
  std::vector<BoundaryObservation> observations(m);
  std::vector<uint8_t> pending(m, 0);
  size_t next_gate = 0, next_cosine = 0;
  for (int64_t a = 0; a < m; ++a) {
    const int j = act.index[a];
    if (tokens[j].full_depth) continue;  // decided in FinishFullDepth
    const ExitPolicy& policy = *tokens[j].policy;
    BoundaryObservation& obs = observations[a];
    TokenResult& r = result->tokens[j];
    if (next_gate < gate_rows.size() && gate_rows[next_gate] == a) {
      obs.gate = gates[next_gate++];
      ++r.gate_evals;
    }
    if (next_cosine < cosine_rows.size() && cosine_rows[next_cosine] == a) {
      if (act.has_prev_hidden[j]) obs.hidden_cosine = cosines[next_cosine];
      act.has_prev_hidden[j] = 1;
      ++next_cosine;
    }
    if (NeedsExitHeadAt(policy, loop)) {
      pending[a] = 1;
      head_rows.push_back(static_cast<int>(a));
      continue;
    }
    const ExitDecision decision = act.trackers[j]->Observe(loop, obs);
    if (decision.exit) {
      act.exits[a] = 1;
      r.exit_statistic = decision.statistic;
      head_rows.push_back(static_cast<int>(a));
    }
  }
  if (head_rows.empty()) return absl::OkStatus();

  // One probe of the exit head over every row that needs z_t.
  const int64_t hn = static_cast<int64_t>(head_rows.size());
  std::vector<int32_t> positions(hn), row_table(hn), head_tokens(hn);
  for (int64_t h = 0; h < hn; ++h) {
    positions[h] = act.positions[head_rows[h]];
    row_table[h] = act.row_table[head_rows[h]];
    head_tokens[h] = act.index[head_rows[h]];
  }
  LOOPSERVE_RETURN_IF_ERROR(head_in_.Reserve(hn * d_model));
  LOOPSERVE_RETURN_IF_ERROR(GatherActive(head_rows, head_in_.data()));
  LOOPSERVE_RETURN_IF_ERROR(
      head_rows_.Set(positions, row_table, tables_.data(), table_stride_, ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(Head(head_in_.data(), head_rows_, /*probe=*/true, nullptr, nullptr));

  // Statistics of z_t on the device; KL against z_{t-1} before it is replaced.
  std::vector<RowExitStats> stats(hn);
  std::vector<double> kl(hn, 0.0);
  LOOPSERVE_RETURN_IF_ERROR(stats_.Reserve(hn));
  CUDA_RETURN_IF_ERROR(cuda::LogitRowStats(logits_.data(), hn, vocab, stats_.data(), ctx_.stream));
  if (any_kl_) {
    const int64_t n = static_cast<int64_t>(act.prev_lse.size());
    LOOPSERVE_RETURN_IF_ERROR(prev_lse_.Reserve(n));
    LOOPSERVE_RETURN_IF_ERROR(prev_lse_.CopyFromHost(act.prev_lse.data(), n, ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(tokens_dev_.Reserve(hn));
    LOOPSERVE_RETURN_IF_ERROR(tokens_dev_.CopyFromHost(head_tokens.data(), hn, ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(kl_.Reserve(hn));
    CUDA_RETURN_IF_ERROR(cuda::KlRows(logits_.data(), stats_.data(), prev_logits_.data(),
                                      prev_lse_.data(), tokens_dev_.data(), hn, vocab, kl_.data(),
                                      ctx_.stream));
    CUDA_RETURN_IF_ERROR(cuda::ScatterRows(logits_.data(), tokens_dev_.data(), hn, vocab,
                                           prev_logits_.data(), ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(kl_.CopyToHost(kl.data(), hn, ctx_.stream));
  }
  LOOPSERVE_RETURN_IF_ERROR(stats_.CopyToHost(stats.data(), hn, ctx_.stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));

  std::vector<int> exiting;  // indices into head_rows
  std::vector<int32_t> exit_positions, exit_row_table;
  for (int64_t h = 0; h < hn; ++h) {
    const int a = head_rows[h];
    const int j = act.index[a];
    TokenResult& r = result->tokens[j];
    ++r.exit_heads;
    if (pending[a]) {
      BoundaryObservation& obs = observations[a];
      const RowExitStats& st = stats[h];
      obs.stats = LogitStats{st.top1, st.max_prob, st.margin, st.entropy, st.log_sum_exp};
      if (tokens[j].policy->criterion == ExitCriterion::kKl) {
        if (act.has_prev_logits[j]) obs.kl = kl[h];
        act.prev_lse[j] = st.log_sum_exp;
        act.has_prev_logits[j] = 1;
      }
      const ExitDecision decision = act.trackers[j]->Observe(loop, obs);
      act.exits[a] = decision.exit ? 1 : 0;
      if (decision.exit) r.exit_statistic = decision.statistic;
    }
    if (!act.exits[a]) continue;
    exiting.push_back(static_cast<int>(h));
    exit_positions.push_back(positions[h]);
    exit_row_table.push_back(row_table[h]);
    r.exit_loop = loop;
    if (tokens[j].wants_logits) {
      r.logits_row = static_cast<int>(result->logits.size() / vocab);
      LOOPSERVE_RETURN_IF_ERROR(LogitsRowToHost(h, result));
    }
  }
  LOOPSERVE_RETURN_IF_ERROR(CommitProbe(exiting, exit_positions, exit_row_table));

  // kv_fill for the loops the exiting tokens skip, batched per mode.
  if (loop + 1 >= config_.num_loops || exiting.empty()) return absl::OkStatus();
  for (KvFill mode : {KvFill::kReuse, KvFill::kPropagate}) {
    std::vector<int> fill;  // indices into head_rows
    std::vector<int32_t> fill_pos, fill_rt;
    for (int h : exiting) {
      const int j = act.index[head_rows[h]];
      if (tokens[j].policy->kv_fill != mode) continue;
      fill.push_back(h);
      fill_pos.push_back(positions[h]);
      fill_rt.push_back(row_table[h]);
      if (mode == KvFill::kPropagate) {
        result->tokens[j].propagate_fills =
            config_.num_recurrent_layers * (config_.num_loops - 1 - loop);
      }
    }
    if (fill.empty()) continue;
    const int64_t f = static_cast<int64_t>(fill.size());
    LOOPSERVE_RETURN_IF_ERROR(scratch_.Reserve(f * d_model));
    LOOPSERVE_RETURN_IF_ERROR(index_.Reserve(f));
    LOOPSERVE_RETURN_IF_ERROR(index_.CopyFromHost(fill.data(), f, ctx_.stream));
    CUDA_RETURN_IF_ERROR(
        cuda::GatherRows(head_in_.data(), index_.data(), f, d_model, scratch_.data(), ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(
        fill_rows_.Set(fill_pos, fill_rt, tables_.data(), table_stride_, ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(FillSkippedLoops(loop, scratch_.data(), fill_rows_, mode));
  }
  return absl::OkStatus();
}

absl::Status CudaForward::FillSkippedLoops(int exit_loop, const float* h,
                                           const DeviceRowSet& row_set, KvFill mode) {
  const cuda::DeviceRows& rows = row_set.rows();
  const int64_t kv_dim = config_.KvDim(), d_model = config_.hidden_size;
  for (int i = 0; i < config_.num_recurrent_layers; ++i) {
    const int from = config_.LayerInstance(ModelPart::kRecurrent, i, exit_loop);
    for (int loop = exit_loop + 1; loop < config_.num_loops; ++loop) {
      const int to = config_.LayerInstance(ModelPart::kRecurrent, i, loop);
      if (mode == KvFill::kReuse) {
        CUDA_RETURN_IF_ERROR(cuda::CopyKvInstance(ctx_.pool, from, to, rows, ctx_.stream));
        continue;
      }
      // propagate: K/V of instance (i, loop) from h_e as every layer's input.
      const float* modulation = nullptr;
      if (config_.iter_adaln_rank > 0) {
        LOOPSERVE_RETURN_IF_ERROR(modulation_.Reserve(rows.n * 6 * d_model));
        LOOPSERVE_RETURN_IF_ERROR(
            layer_.Modulation(device_->recurrent[i], loop, h, rows.n, modulation_.data()));
        modulation = modulation_.data();
      }
      LOOPSERVE_RETURN_IF_ERROR(fill_k_.Reserve(rows.n * kv_dim));
      LOOPSERVE_RETURN_IF_ERROR(fill_v_.Reserve(rows.n * kv_dim));
      LOOPSERVE_RETURN_IF_ERROR(layer_.KeyValue(device_->recurrent[i], modulation, rows, h,
                                                fill_k_.data(), fill_v_.data()));
      CUDA_RETURN_IF_ERROR(
          cuda::WriteKv(ctx_.pool, to, rows, fill_k_.data(), fill_v_.data(), ctx_.stream));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaForward::FinishFullDepth(absl::Span<const ForwardToken> tokens, Active& act,
                                          ForwardResult* result, ForwardTrace* trace) {
  const int64_t d_model = config_.hidden_size, vocab = config_.vocab_size;
  const int last = config_.num_loops - 1;
  std::vector<int> rows_full;
  for (int64_t a = 0; a < act.size(); ++a) {
    if (tokens[act.index[a]].full_depth) rows_full.push_back(static_cast<int>(a));
  }
  if (rows_full.empty()) return absl::OkStatus();
  const int64_t fn = static_cast<int64_t>(rows_full.size());
  std::vector<int32_t> positions(fn), row_table(fn);
  std::vector<int> logit_rows;
  const bool all_logits = trace != nullptr && trace->loop_logits;
  for (int64_t f = 0; f < fn; ++f) {
    const int a = rows_full[f];
    positions[f] = act.positions[a];
    row_table[f] = act.row_table[a];
    if (all_logits || tokens[act.index[a]].wants_logits) logit_rows.push_back(static_cast<int>(f));
    act.exits[a] = 1;
    result->tokens[act.index[a]].exit_loop = last;
    result->tokens[act.index[a]].exit_heads = 1;  // the coda ran
  }
  LOOPSERVE_RETURN_IF_ERROR(head_in_.Reserve(fn * d_model));
  LOOPSERVE_RETURN_IF_ERROR(GatherActive(rows_full, head_in_.data()));
  LOOPSERVE_RETURN_IF_ERROR(
      full_rows_.Set(positions, row_table, tables_.data(), table_stride_, ctx_.stream));
  std::vector<std::vector<int32_t>> coda_router;
  // Write mode: the coda K/V of every prompt token are final here.
  LOOPSERVE_RETURN_IF_ERROR(Head(head_in_.data(), full_rows_, /*probe=*/false, &logit_rows,
                                 trace != nullptr ? &coda_router : nullptr));
  if (trace != nullptr) {
    trace->logits.assign(all_logits ? config_.num_loops : 0, std::vector<float>());
    for (size_t i = 0; i < coda_router.size(); ++i) {
      if (!coda_router[i].empty()) {
        trace->router[absl::StrCat("coda.", i, ".0")] = coda_router[i];
      }
    }
  }
  const int64_t lr = static_cast<int64_t>(logit_rows.size());
  std::vector<float> host_logits;
  if (all_logits && lr > 0) {
    host_logits.resize(lr * vocab);
    LOOPSERVE_RETURN_IF_ERROR(logits_.CopyToHost(host_logits.data(), lr * vocab, ctx_.stream));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
    trace->logits[last].resize(act.index.size() * vocab);
  }
  for (int64_t l = 0; l < lr; ++l) {
    const int j = act.index[rows_full[logit_rows[l]]];
    if (tokens[j].wants_logits) {
      result->tokens[j].logits_row = static_cast<int>(result->logits.size() / vocab);
      LOOPSERVE_RETURN_IF_ERROR(LogitsRowToHost(l, result));
    }
    if (all_logits) {
      std::copy(host_logits.begin() + l * vocab, host_logits.begin() + (l + 1) * vocab,
                trace->logits[last].begin() + int64_t{j} * vocab);
    }
  }
  return absl::OkStatus();
}

}  // namespace loopserve
