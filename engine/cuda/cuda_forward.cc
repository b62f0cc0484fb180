#include "engine/cuda/cuda_forward.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_forward_active.h"
#include "kernels/common/check.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/plans/block_table_plan.h"
#include "kernels/cuda/plans/compaction_plan.h"

namespace loopserve {
namespace {

std::string TraceKey(ModelPart part, int layer, int loop) {
  return absl::StrCat(ModelPartName(part), ".", layer, ".", loop);
}

}  // namespace

absl::Status DeviceRowSet::Set(const std::vector<int32_t>& positions,
                               const std::vector<int32_t>& row_table, const int32_t* tables,
                               int32_t stride, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(positions.size());
  LOOPSERVE_RETURN_IF_ERROR(positions_.Reserve(n));
  LOOPSERVE_RETURN_IF_ERROR(row_table_.Reserve(n));
  LOOPSERVE_RETURN_IF_ERROR(positions_.CopyFromHost(positions.data(), n, stream));
  LOOPSERVE_RETURN_IF_ERROR(row_table_.CopyFromHost(row_table.data(), n, stream));
  rows_ = cuda::DeviceRows{n, positions_.data(), tables, row_table_.data(), stride};
  return absl::OkStatus();
}

CudaForward::CudaForward(std::shared_ptr<const LoadedModel> model, const DeviceModel* device,
                         const CudaContext& context)
    : model_(std::move(model)),
      config_(model_->config),
      device_(device),
      ctx_(context),
      flops_(config_),
      layer_(context),
      probe_k_(config_.num_coda_layers),
      probe_v_(config_.num_coda_layers) {}

absl::Status CudaForward::GatherActive(const std::vector<int>& rows, float* out) {
  const int64_t m = static_cast<int64_t>(rows.size());
  LOOPSERVE_RETURN_IF_ERROR(index_.Reserve(m));
  LOOPSERVE_RETURN_IF_ERROR(index_.CopyFromHost(rows.data(), m, ctx_.stream));
  CUDA_RETURN_IF_ERROR(
      cuda::GatherRows(x_.data(), index_.data(), m, config_.hidden_size, out, ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaForward::LogitsRowToHost(int64_t row, ForwardResult* result) {
  const int64_t vocab = config_.vocab_size;
  const size_t at = result->logits.size();
  result->logits.resize(at + vocab);
  LOOPSERVE_RETURN_IF_ERROR(
      logits_.CopyToHost(result->logits.data() + at, vocab, ctx_.stream, row * vocab));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaForward::Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                              ForwardTrace* trace) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t d_model = config_.hidden_size;
  for (int64_t j = 0; j < n; ++j) {
    const ForwardToken& tok = tokens[j];
    if (tok.token_id < 0 || tok.token_id >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", tok.token_id, " outside vocabulary [0, ", config_.vocab_size, ")"));
    }
    if (tok.block_table == nullptr || tok.position < 0) {
      return absl::InvalidArgumentError("forward token without a block table or position");
    }
    if (!tok.full_depth && tok.policy == nullptr) {
      return absl::InvalidArgumentError("early-exit token without an exit policy");
    }
    if (trace != nullptr && !tok.full_depth) {
      return absl::InvalidArgumentError("a traced forward runs every token at full depth");
    }
  }
  result->tokens.assign(n, TokenResult{});
  result->logits.clear();
  if (n == 0) return absl::OkStatus();

  // Block tables of the whole step, flattened once; rows name theirs.
  std::vector<const int32_t*> host_tables(n);
  std::vector<int32_t> positions(n), ids(n);
  for (int64_t j = 0; j < n; ++j) {
    host_tables[j] = tokens[j].block_table;
    positions[j] = tokens[j].position;
    ids[j] = tokens[j].token_id;
    result->tokens[j].flops_full = flops_.FullDepth(tokens[j].position);
  }
  const cuda::BlockTablePlan plan =
      cuda::BuildBlockTablePlan(host_tables.data(), positions.data(), n, ctx_.pool.block_size);
  table_stride_ = plan.stride;
  const int64_t table_count = static_cast<int64_t>(plan.tables.size());
  LOOPSERVE_RETURN_IF_ERROR(tables_.Reserve(table_count));
  LOOPSERVE_RETURN_IF_ERROR(tables_.CopyFromHost(plan.tables.data(), table_count, ctx_.stream));

  Active act;
  act.index.resize(n);
  std::iota(act.index.begin(), act.index.end(), 0);
  act.positions = positions;
  act.row_table = plan.row_table;
  act.trackers.resize(n);
  act.has_prev_logits.assign(n, 0);
  act.has_prev_hidden.assign(n, 0);
  act.prev_lse.assign(n, 0.0);
  bool any_kl = false, any_cosine = false;
  for (int64_t j = 0; j < n; ++j) {
    if (tokens[j].full_depth) continue;
    act.trackers[j].emplace(*tokens[j].policy, config_.num_loops);
    any_kl |= tokens[j].policy->criterion == ExitCriterion::kKl;
    any_cosine |= tokens[j].policy->criterion == ExitCriterion::kHiddenCosine;
  }
  // Zeroed so that rows without a previous boundary read defined memory
  // (their statistic is computed and ignored).
  if (any_kl) {
    LOOPSERVE_RETURN_IF_ERROR(prev_logits_.Reserve(n * config_.vocab_size));
    LOOPSERVE_RETURN_IF_ERROR(prev_logits_.Zero(ctx_.stream));
  }
  if (any_cosine) {
    LOOPSERVE_RETURN_IF_ERROR(prev_hidden_.Reserve(n * d_model));
    LOOPSERVE_RETURN_IF_ERROR(prev_hidden_.Zero(ctx_.stream));
  }
  any_kl_ = any_kl;
  if (trace != nullptr) {
    trace->hidden.assign(config_.num_loops, std::vector<float>(n * d_model));
    trace->logits.clear();
    trace->router.clear();
  }

  LOOPSERVE_RETURN_IF_ERROR(x_.Reserve(n * d_model));
  LOOPSERVE_RETURN_IF_ERROR(ids_.Reserve(n));
  LOOPSERVE_RETURN_IF_ERROR(ids_.CopyFromHost(ids.data(), n, ctx_.stream));
  CUDA_RETURN_IF_ERROR(cuda::Embedding(device_->embed_tokens.data, device_->embed_tokens.dtype,
                                       ids_.data(), n, d_model, x_.data(), ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(
      active_rows_.Set(act.positions, act.row_table, tables_.data(), table_stride_, ctx_.stream));
  for (int i = 0; i < config_.num_prelude_layers; ++i) {
    const std::string key = TraceKey(ModelPart::kPrelude, i, 0);
    std::vector<int32_t>* router = trace != nullptr ? &trace->router[key] : nullptr;
    LOOPSERVE_RETURN_IF_ERROR(layer_.Run(
        device_->prelude[i], CudaKvTarget{config_.LayerInstance(ModelPart::kPrelude, i, 0)},
        nullptr, active_rows_.rows(), x_.data(), router));
    if (router != nullptr && router->empty()) trace->router.erase(key);
  }
  const std::vector<int32_t> all_positions = act.positions, all_row_table = act.row_table;

  for (int loop = 0; loop < config_.num_loops && act.size() > 0; ++loop) {
    LOOPSERVE_RETURN_IF_ERROR(RunLoop(loop, act, trace));
    LOOPSERVE_RETURN_IF_ERROR(DecideAtBoundary(loop, tokens, act, result));
    if (loop == config_.num_loops - 1) {
      LOOPSERVE_RETURN_IF_ERROR(FinishFullDepth(tokens, act, result, trace));
    }
    LOOPSERVE_RETURN_IF_ERROR(Compact(act));
  }
  LOOPSERVE_CHECK_EQ(act.size(), 0) << "tokens left looping after the last loop";

  if (trace != nullptr && trace->loop_logits) {
    LOOPSERVE_RETURN_IF_ERROR(
        full_rows_.Set(all_positions, all_row_table, tables_.data(), table_stride_, ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(TraceLoopLogits(n, full_rows_, trace));
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
  for (int64_t j = 0; j < n; ++j) {
    TokenResult& r = result->tokens[j];
    r.flops_done = tokens[j].full_depth
                       ? r.flops_full
                       : flops_.Done(tokens[j].position, r.exit_loop + 1, r.exit_heads,
                                     r.gate_evals, r.propagate_fills);
  }
  return absl::OkStatus();
}

absl::Status CudaForward::RunLoop(int loop, Active& act, ForwardTrace* trace) {
  const int64_t d_model = config_.hidden_size;
  const int64_t m = act.size();
  for (int i = 0; i < config_.num_recurrent_layers; ++i) {
    const DeviceLayer& w = device_->recurrent[i];
    const float* modulation = nullptr;
    if (config_.iter_adaln_rank > 0) {
      LOOPSERVE_RETURN_IF_ERROR(modulation_.Reserve(m * 6 * d_model));
      LOOPSERVE_RETURN_IF_ERROR(layer_.Modulation(w, loop, x_.data(), m, modulation_.data()));
      modulation = modulation_.data();
    }
    const std::string key = TraceKey(ModelPart::kRecurrent, i, loop);
    std::vector<int32_t>* router = trace != nullptr ? &trace->router[key] : nullptr;
    LOOPSERVE_RETURN_IF_ERROR(
        layer_.Run(w, CudaKvTarget{config_.LayerInstance(ModelPart::kRecurrent, i, loop)},
                   modulation, active_rows_.rows(), x_.data(), router));
    if (router != nullptr && router->empty()) trace->router.erase(key);
  }
  if (trace != nullptr) {
    std::vector<float> host(m * d_model);
    LOOPSERVE_RETURN_IF_ERROR(x_.CopyToHost(host.data(), m * d_model, ctx_.stream));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
    for (int64_t a = 0; a < m; ++a) {
      std::copy(host.begin() + a * d_model, host.begin() + (a + 1) * d_model,
                trace->hidden[loop].begin() + int64_t{act.index[a]} * d_model);
    }
  }
  return absl::OkStatus();
}

absl::Status CudaForward::Compact(Active& act) {
  const cuda::CompactionPlan plan = cuda::BuildCompactionPlan(act.exits.data(), act.size());
  if (plan.identity()) return absl::OkStatus();
  const int64_t m = plan.new_size(), d_model = config_.hidden_size;
  if (m > 0) {
    LOOPSERVE_RETURN_IF_ERROR(x_alt_.Reserve(m * d_model));
    LOOPSERVE_RETURN_IF_ERROR(index_.Reserve(m));
    LOOPSERVE_RETURN_IF_ERROR(index_.CopyFromHost(plan.kept.data(), m, ctx_.stream));
    CUDA_RETURN_IF_ERROR(
        cuda::GatherRows(x_.data(), index_.data(), m, d_model, x_alt_.data(), ctx_.stream));
    std::swap(x_, x_alt_);
  }
  cuda::CompactRows(plan, act.index);
  cuda::CompactRows(plan, act.positions);
  cuda::CompactRows(plan, act.row_table);
  return active_rows_.Set(act.positions, act.row_table, tables_.data(), table_stride_, ctx_.stream);
}

absl::Status CudaForward::Head(const float* h, const DeviceRowSet& row_set, bool probe,
                               const std::vector<int>* logit_rows,
                               std::vector<std::vector<int32_t>>* router_trace) {
  const cuda::DeviceRows& rows = row_set.rows();
  const int64_t d_model = config_.hidden_size, n = rows.n, kv_dim = config_.KvDim();
  if (n == 0) return absl::OkStatus();
  LOOPSERVE_RETURN_IF_ERROR(head_x_.Reserve(n * d_model));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(head_x_.data(), h, sizeof(float) * n * d_model,
                                       cudaMemcpyDeviceToDevice, ctx_.stream));
  if (router_trace != nullptr) router_trace->assign(device_->coda.size(), {});
  for (size_t i = 0; i < device_->coda.size(); ++i) {
    CudaKvTarget target{config_.LayerInstance(ModelPart::kCoda, static_cast<int>(i), 0)};
    if (probe) {
      LOOPSERVE_RETURN_IF_ERROR(probe_k_[i].Reserve(n * kv_dim));
      LOOPSERVE_RETURN_IF_ERROR(probe_v_[i].Reserve(n * kv_dim));
      target.probe_k = probe_k_[i].data();
      target.probe_v = probe_v_[i].data();
    }
    LOOPSERVE_RETURN_IF_ERROR(layer_.Run(device_->coda[i], target, nullptr, rows, head_x_.data(),
                                         router_trace != nullptr ? &(*router_trace)[i] : nullptr));
  }
  const float* src = head_x_.data();
  int64_t m = n;
  if (logit_rows != nullptr) {
    m = static_cast<int64_t>(logit_rows->size());
    if (m == 0) return absl::OkStatus();
    LOOPSERVE_RETURN_IF_ERROR(picked_.Reserve(m * d_model));
    LOOPSERVE_RETURN_IF_ERROR(index_.Reserve(m));
    LOOPSERVE_RETURN_IF_ERROR(index_.CopyFromHost(logit_rows->data(), m, ctx_.stream));
    CUDA_RETURN_IF_ERROR(
        cuda::GatherRows(head_x_.data(), index_.data(), m, d_model, picked_.data(), ctx_.stream));
    src = picked_.data();
  }
  LOOPSERVE_RETURN_IF_ERROR(normed_.Reserve(m * d_model));
  LOOPSERVE_RETURN_IF_ERROR(logits_.Reserve(m * config_.vocab_size));
  CUDA_RETURN_IF_ERROR(cuda::RmsNorm(src, m, d_model, device_->final_norm,
                                     static_cast<float>(config_.rms_norm_eps), nullptr, nullptr, 0,
                                     normed_.data(), ctx_.stream));
  return layer_.Linear(device_->lm_head, normed_.data(), m, logits_.data());
}

absl::Status CudaForward::CommitProbe(const std::vector<int>& probe_rows,
                                      const std::vector<int32_t>& positions,
                                      const std::vector<int32_t>& row_table) {
  const int64_t m = static_cast<int64_t>(probe_rows.size()), kv_dim = config_.KvDim();
  if (m == 0 || device_->coda.empty()) return absl::OkStatus();
  LOOPSERVE_RETURN_IF_ERROR(fill_k_.Reserve(m * kv_dim));
  LOOPSERVE_RETURN_IF_ERROR(fill_v_.Reserve(m * kv_dim));
  LOOPSERVE_RETURN_IF_ERROR(index_.Reserve(m));
  LOOPSERVE_RETURN_IF_ERROR(index_.CopyFromHost(probe_rows.data(), m, ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(
      fill_rows_.Set(positions, row_table, tables_.data(), table_stride_, ctx_.stream));
  for (size_t i = 0; i < device_->coda.size(); ++i) {
    const int instance = config_.LayerInstance(ModelPart::kCoda, static_cast<int>(i), 0);
    CUDA_RETURN_IF_ERROR(cuda::GatherRows(probe_k_[i].data(), index_.data(), m, kv_dim,
                                          fill_k_.data(), ctx_.stream));
    CUDA_RETURN_IF_ERROR(cuda::GatherRows(probe_v_[i].data(), index_.data(), m, kv_dim,
                                          fill_v_.data(), ctx_.stream));
    CUDA_RETURN_IF_ERROR(cuda::WriteKv(ctx_.pool, instance, fill_rows_.rows(), fill_k_.data(),
                                       fill_v_.data(), ctx_.stream));
  }
  return absl::OkStatus();
}

absl::Status CudaForward::TraceLoopLogits(int64_t n, const DeviceRowSet& rows,
                                          ForwardTrace* trace) {
  const int64_t vocab = config_.vocab_size, d_model = config_.hidden_size;
  LOOPSERVE_RETURN_IF_ERROR(head_in_.Reserve(n * d_model));
  for (int loop = 0; loop + 1 < config_.num_loops; ++loop) {
    LOOPSERVE_RETURN_IF_ERROR(
        head_in_.CopyFromHost(trace->hidden[loop].data(), n * d_model, ctx_.stream));
    LOOPSERVE_RETURN_IF_ERROR(Head(head_in_.data(), rows, /*probe=*/true, nullptr, nullptr));
    trace->logits[loop].resize(n * vocab);
    LOOPSERVE_RETURN_IF_ERROR(
        logits_.CopyToHost(trace->logits[loop].data(), n * vocab, ctx_.stream));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
  }
  return absl::OkStatus();
}

}  // namespace loopserve
