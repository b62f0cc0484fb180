#include "engine/looped_forward.h"

#include <cstring>
#include <numeric>
#include <optional>

#include "kernels/common/check.h"
#include "absl/strings/str_cat.h"
#include "kernels/common/scalar_math.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/logit_stats.h"
#include "kernels/cpu/op_profile.h"

namespace loopserve {

struct LoopedForward::Active {
  std::vector<int> index;  // token index of each active row
  std::vector<int32_t> positions;
  std::vector<const int32_t*> tables;
  float* x = nullptr;  // (rows, D): the state of each active row
  std::vector<uint8_t> exits;  // per active row, at the current boundary
  // Per token (indexed by token), for the criteria that compare boundaries.
  std::vector<std::optional<ExitTracker>> trackers;
  std::vector<float> prev_logits;  // (n, V), kl only
  std::vector<double> prev_lse;
  std::vector<uint8_t> has_prev_logits;
  std::vector<float> prev_hidden;  // (n, D), hidden_cosine only
  std::vector<uint8_t> has_prev_hidden;
  // (n, D): h at the exit of each replayed token, for its coda after the
  // loops (its coda attends to earlier replayed tokens of the chunk, which
  // may leave later than it does).
  std::vector<float> replay_h;

  int64_t size() const { return static_cast<int64_t>(index.size()); }
  LayerRows rows() const { return LayerRows{size(), positions.data(), tables.data()}; }

  // Drops the rows that exited, keeping order, and compacts x with them.
  void Compact(int64_t d_model) {
    size_t kept = 0;
    for (size_t a = 0; a < index.size(); ++a) {
      if (exits[a]) continue;
      if (kept != a) {
        index[kept] = index[a];
        positions[kept] = positions[a];
        tables[kept] = tables[a];
        std::memmove(x + kept * d_model, x + a * d_model, sizeof(float) * d_model);
      }
      ++kept;
    }
    index.resize(kept);
    positions.resize(kept);
    tables.resize(kept);
  }
};

namespace {

std::string TraceKey(ModelPart part, int layer, int loop) {
  return absl::StrCat(ModelPartName(part), ".", layer, ".", loop);
}

// op_profile phase tags (static strings: the profiler keeps the pointer).
const char* LoopPhase(int loop) {
  static constexpr const char* kTags[] = {"loop 0", "loop 1", "loop 2", "loop 3",
                                          "loop 4", "loop 5", "loop 6", "loop 7"};
  return loop < 8 ? kTags[loop] : "loop 8+";
}

}  // namespace

LoopedForward::LoopedForward(std::shared_ptr<const LoadedModel> model, const PagedKvView& kv,
                             ThreadPool* pool)
    : model_(std::move(model)),
      config_(model_->config),
      weights_(model_->weights),
      kv_(kv),
      pool_(pool),
      flops_(config_),
      layers_(config_, kv, pool),
      head_(config_, weights_, kv, &layers_, pool) {}

int LoopedForward::AppendLogits(const float* row, ForwardResult* result) const {
  const int64_t vocab = config_.vocab_size;
  const int row_index = static_cast<int>(result->logits.size() / vocab);
  result->logits.insert(result->logits.end(), row, row + vocab);
  return row_index;
}

absl::Status LoopedForward::Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                                ForwardTrace* trace) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t d_model = config_.hidden_size;
  for (int64_t j = 0; j < n; ++j) {
    const ForwardToken& tok = tokens[j];
    if (tok.token_id < 0 || tok.token_id >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tok.token_id,
                                                     " outside vocabulary [0, ",
                                                     config_.vocab_size, ")"));
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

  Active act;
  act.index.resize(n);
  std::iota(act.index.begin(), act.index.end(), 0);
  act.positions.resize(n);
  act.tables.resize(n);
  std::vector<int32_t> ids(n);
  for (int64_t j = 0; j < n; ++j) {
    ids[j] = tokens[j].token_id;
    act.positions[j] = tokens[j].position;
    act.tables[j] = tokens[j].block_table;
    result->tokens[j].flops_full = flops_.FullDepth(tokens[j].position);
  }
  act.trackers.resize(n);
  bool any_replayed = false;
  for (int64_t j = 0; j < n; ++j) {
    if (tokens[j].forced_exit_loop < 0) continue;
    if (tokens[j].full_depth || tokens[j].forced_exit_loop >= config_.num_loops || trace) {
      return absl::InvalidArgumentError("replayed token: exit loop out of range or traced");
    }
    any_replayed = true;
  }
  if (any_replayed) act.replay_h.resize(n * d_model);
  bool any_kl = false, any_cosine = false;
  for (int64_t j = 0; j < n; ++j) {
    if (tokens[j].full_depth) continue;
    act.trackers[j].emplace(*tokens[j].policy, config_.num_loops);
    any_kl |= tokens[j].policy->criterion == ExitCriterion::kKl;
    any_cosine |= tokens[j].policy->criterion == ExitCriterion::kHiddenCosine;
  }
  if (any_kl) {
    act.prev_logits.resize(n * config_.vocab_size);
    act.prev_lse.assign(n, 0.0);
    act.has_prev_logits.assign(n, 0);
  }
  if (any_cosine) {
    act.prev_hidden.resize(n * d_model);
    act.has_prev_hidden.assign(n, 0);
  }
  if (trace != nullptr) {
    trace->hidden.assign(config_.num_loops, std::vector<float>(n * d_model));
    trace->logits.clear();
    trace->router.clear();
  }

  act.x = state_.Get(n * d_model);
  op_profile::Phase prelude_phase("prelude");
  EmbeddingLookup(weights_.embed_tokens, ids.data(), n, act.x);
  const LayerRows all = act.rows();
  for (int i = 0; i < config_.num_prelude_layers; ++i) {
    std::vector<int32_t>* router =
        trace != nullptr ? &trace->router[TraceKey(ModelPart::kPrelude, i, 0)] : nullptr;
    layers_.Run(weights_.prelude[i], KvTarget{config_.LayerInstance(ModelPart::kPrelude, i, 0)},
                nullptr, all, act.x, router);
    if (router != nullptr && router->empty()) trace->router.erase(TraceKey(ModelPart::kPrelude, i, 0));
  }
  // Keep the original rows for the traced coda probes after the loops.
  const std::vector<int32_t> all_positions = act.positions;
  const std::vector<const int32_t*> all_tables = act.tables;

  for (int loop = 0; loop < config_.num_loops && act.size() > 0; ++loop) {
    RunLoop(loop, act, trace);
    DecideAtBoundary(loop, tokens, act, result);
    if (loop == config_.num_loops - 1) FinishFullDepth(tokens, act, result, trace);
    act.Compact(d_model);
  }
  LOOPSERVE_CHECK_EQ(act.size(), 0) << "tokens left looping after the last loop";
  if (any_replayed) WriteReplayedCoda(tokens, act, result);

  if (trace != nullptr && trace->loop_logits) {
    TraceLoopLogits(n, LayerRows{n, all_positions.data(), all_tables.data()}, trace);
  }
  for (int64_t j = 0; j < n; ++j) {
    TokenResult& r = result->tokens[j];
    if (tokens[j].full_depth) {
      r.flops_done = r.flops_full;
    } else {
      r.flops_done = flops_.Done(tokens[j].position, r.exit_loop + 1, r.exit_heads,
                                 r.gate_evals, r.propagate_fills);
    }
  }
  return absl::OkStatus();
}

void LoopedForward::RunLoop(int loop, Active& act, ForwardTrace* trace) {
  op_profile::Phase phase(LoopPhase(loop));
  const int64_t d_model = config_.hidden_size;
  const int64_t m = act.size();
  const LayerRows rows = act.rows();
  for (int i = 0; i < config_.num_recurrent_layers; ++i) {
    const LayerWeights& w = weights_.recurrent[i];
    const float* modulation = nullptr;
    if (config_.iter_adaln_rank > 0) {
      float* mod = modulation_.Get(m * 6 * d_model);
      layers_.Modulation(w.adaln, loop, act.x, m, mod);
      modulation = mod;
    }
    const std::string key = TraceKey(ModelPart::kRecurrent, i, loop);
    std::vector<int32_t>* router = trace != nullptr ? &trace->router[key] : nullptr;
    layers_.Run(w, KvTarget{config_.LayerInstance(ModelPart::kRecurrent, i, loop)}, modulation,
                rows, act.x, router);
    if (router != nullptr && router->empty()) trace->router.erase(key);
  }
  if (trace != nullptr) {
    for (int64_t a = 0; a < m; ++a) {
      std::memcpy(trace->hidden[loop].data() + act.index[a] * d_model, act.x + a * d_model,
                  sizeof(float) * d_model);
    }
  }
}

void LoopedForward::DecideAtBoundary(int loop, absl::Span<const ForwardToken> tokens,
                                     Active& act, ForwardResult* result) {
  op_profile::Phase phase("exit check");
  const int64_t d_model = config_.hidden_size;
  const int64_t vocab = config_.vocab_size;
  const int64_t m = act.size();
  act.exits.assign(m, 0);
  // Rows that run the exit head at this boundary, and whether each one
  // still waits for its statistics to decide.
  std::vector<int> head_rows;
  std::vector<BoundaryObservation> observations(m);
  std::vector<uint8_t> pending(m, 0);
  std::vector<int> replayed;  // rows replaying their first exit here
  float* normed = nullptr;
  for (int64_t a = 0; a < m; ++a) {
    const int j = act.index[a];
    if (tokens[j].full_depth) continue;  // decided in FinishFullDepth
    if (tokens[j].forced_exit_loop >= 0) {
      if (tokens[j].forced_exit_loop == loop) replayed.push_back(static_cast<int>(a));
      continue;
    }
    const ExitPolicy& policy = *tokens[j].policy;
    const float* h = act.x + a * d_model;
    BoundaryObservation& obs = observations[a];
    TokenResult& r = result->tokens[j];
    if (NeedsGateAt(policy, loop)) {
      if (normed == nullptr) normed = normed_.Get(d_model);
      head_.FinalNorm(h, 1, normed);
      float logit = 0;
      Linear(normed, 1, weights_.exit_gate, &logit, nullptr);
      obs.gate = Sigmoid(logit + weights_.exit_gate_bias.At(0));
      ++r.gate_evals;
    }
    if (policy.criterion == ExitCriterion::kHiddenCosine) {
      float* prev = act.prev_hidden.data() + int64_t{j} * d_model;
      if (act.has_prev_hidden[j]) obs.hidden_cosine = CosineSimilarity(h, prev, d_model);
      std::memcpy(prev, h, sizeof(float) * d_model);
      act.has_prev_hidden[j] = 1;
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
  if (!replayed.empty()) ExitReplayed(loop, tokens, replayed, act, result);
  if (head_rows.empty()) return;

  // One probe of the exit head over every row that needs z_t.
  const int64_t hn = static_cast<int64_t>(head_rows.size());
  float* head_in = head_in_.Get(hn * d_model);
  std::vector<int32_t> positions(hn);
  std::vector<const int32_t*> tables(hn);
  for (int64_t h = 0; h < hn; ++h) {
    const int a = head_rows[h];
    std::memcpy(head_in + h * d_model, act.x + a * d_model, sizeof(float) * d_model);
    positions[h] = act.positions[a];
    tables[h] = act.tables[a];
  }
  const LayerRows rows{hn, positions.data(), tables.data()};
  float* logits = head_logits_.Get(hn * vocab);
  head_.Run(head_in, rows, /*probe=*/true, nullptr, logits, nullptr);

  std::vector<int> exiting;  // indices into head_rows
  for (int64_t h = 0; h < hn; ++h) {
    const int a = head_rows[h];
    const int j = act.index[a];
    TokenResult& r = result->tokens[j];
    ++r.exit_heads;
    const float* z = logits + h * vocab;
    if (pending[a]) {
      BoundaryObservation& obs = observations[a];
      const LogitStats stats = ComputeLogitStats(z, vocab);
      obs.stats = stats;
      if (tokens[j].policy->criterion == ExitCriterion::kKl) {
        float* prev = act.prev_logits.data() + int64_t{j} * vocab;
        if (act.has_prev_logits[j]) {
          obs.kl = KlDivergence(z, stats.log_sum_exp, prev, act.prev_lse[j], vocab);
        }
        std::memcpy(prev, z, sizeof(float) * vocab);
        act.prev_lse[j] = stats.log_sum_exp;
        act.has_prev_logits[j] = 1;
      }
      const ExitDecision decision = act.trackers[j]->Observe(loop, obs);
      act.exits[a] = decision.exit ? 1 : 0;
      if (decision.exit) r.exit_statistic = decision.statistic;
    }
    if (!act.exits[a]) continue;
    exiting.push_back(static_cast<int>(h));
    head_.CommitProbe(h, rows);
    r.exit_loop = loop;
    if (tokens[j].wants_logits) r.logits_row = AppendLogits(z, result);
  }

  std::vector<ExitingRow> fills;
  for (int h : exiting) {
    fills.push_back({act.index[head_rows[h]], positions[h], tables[h],
                     head_in + int64_t{h} * d_model});
  }
  FillForExits(loop, tokens, fills, result);
}

void LoopedForward::FillForExits(int loop, absl::Span<const ForwardToken> tokens,
                                 const std::vector<ExitingRow>& rows, ForwardResult* result) {
  // kv_fill for the loops the exiting tokens skip, batched per mode.
  if (loop + 1 >= config_.num_loops || rows.empty()) return;
  const int64_t d_model = config_.hidden_size;
  for (KvFill mode : {KvFill::kReuse, KvFill::kPropagate}) {
    std::vector<int32_t> fill_pos;
    std::vector<const int32_t*> fill_tables;
    std::vector<float> fill_h;
    for (const ExitingRow& row : rows) {
      if (tokens[row.token].policy->kv_fill != mode) continue;
      fill_pos.push_back(row.position);
      fill_tables.push_back(row.table);
      fill_h.insert(fill_h.end(), row.h, row.h + d_model);
      if (mode == KvFill::kPropagate) {
        result->tokens[row.token].propagate_fills =
            config_.num_recurrent_layers * (config_.num_loops - 1 - loop);
      }
    }
    if (fill_pos.empty()) continue;
    const LayerRows fill_rows{static_cast<int64_t>(fill_pos.size()), fill_pos.data(),
                              fill_tables.data()};
    FillSkippedLoops(loop, fill_h.data(), fill_rows, mode);
  }
}

void LoopedForward::ExitReplayed(int loop, absl::Span<const ForwardToken> tokens,
                                 const std::vector<int>& rows, Active& act,
                                 ForwardResult* result) {
  const int64_t d_model = config_.hidden_size;
  std::vector<ExitingRow> fills;
  for (int a : rows) {
    const int j = act.index[a];
    const float* h = act.x + int64_t{a} * d_model;
    act.exits[a] = 1;
    result->tokens[j].exit_loop = loop;
    std::memcpy(act.replay_h.data() + int64_t{j} * d_model, h, sizeof(float) * d_model);
    fills.push_back({j, act.positions[a], act.tables[a], h});
  }
  FillForExits(loop, tokens, fills, result);
}

void LoopedForward::WriteReplayedCoda(absl::Span<const ForwardToken> tokens, Active& act,
                                      ForwardResult* result) {
  op_profile::Phase phase("head");
  const int64_t d_model = config_.hidden_size;
  std::vector<int> replayed;
  for (int j = 0; j < static_cast<int>(tokens.size()); ++j) {
    if (tokens[j].forced_exit_loop >= 0) replayed.push_back(j);
  }
  const int64_t rn = static_cast<int64_t>(replayed.size());
  float* head_in = head_in_.Get(rn * d_model);
  std::vector<int32_t> positions(rn);
  std::vector<const int32_t*> tables(rn);
  for (int64_t r = 0; r < rn; ++r) {
    const int j = replayed[r];
    std::memcpy(head_in + r * d_model, act.replay_h.data() + int64_t{j} * d_model,
                sizeof(float) * d_model);
    positions[r] = tokens[j].position;
    tables[r] = tokens[j].block_table;
    result->tokens[j].exit_heads = 1;  // the coda ran; no exit checks
  }
  // Write mode, all rows at once: like a prompt chunk's coda after its
  // last loop. No logits: a replayed token is never sampled from again.
  const std::vector<int> no_logits;
  head_.Run(head_in, LayerRows{rn, positions.data(), tables.data()}, /*probe=*/false,
            &no_logits, head_logits_.Get(config_.vocab_size), nullptr);
}

void LoopedForward::FillSkippedLoops(int exit_loop, const float* h, const LayerRows& rows,
                                     KvFill mode) {
  op_profile::Phase phase("kv fill");
  const int64_t kv_dim = config_.KvDim();
  const int64_t d_model = config_.hidden_size;
  for (int i = 0; i < config_.num_recurrent_layers; ++i) {
    const int from = config_.LayerInstance(ModelPart::kRecurrent, i, exit_loop);
    for (int loop = exit_loop + 1; loop < config_.num_loops; ++loop) {
      const int to = config_.LayerInstance(ModelPart::kRecurrent, i, loop);
      if (mode == KvFill::kReuse) {
        for (int64_t r = 0; r < rows.n; ++r) {
          for (int kv = 0; kv < 2; ++kv) {
            std::memcpy(kv_.RowAt(rows.block_tables[r], to, kv, rows.positions[r]),
                        kv_.RowAt(rows.block_tables[r], from, kv, rows.positions[r]),
                        sizeof(float) * kv_dim);
          }
        }
        continue;
      }
      // propagate: K/V of instance (i, loop) from h_e as every layer's input.
      const float* modulation = nullptr;
      if (config_.iter_adaln_rank > 0) {
        float* mod = modulation_.Get(rows.n * 6 * d_model);
        layers_.Modulation(weights_.recurrent[i].adaln, loop, h, rows.n, mod);
        modulation = mod;
      }
      float* k = fill_k_.Get(rows.n * kv_dim);
      float* v = fill_v_.Get(rows.n * kv_dim);
      layers_.KeyValue(weights_.recurrent[i], modulation, rows, h, k, v);
      for (int64_t r = 0; r < rows.n; ++r) {
        std::memcpy(kv_.RowAt(rows.block_tables[r], to, 0, rows.positions[r]), k + r * kv_dim,
                    sizeof(float) * kv_dim);
        std::memcpy(kv_.RowAt(rows.block_tables[r], to, 1, rows.positions[r]), v + r * kv_dim,
                    sizeof(float) * kv_dim);
      }
    }
  }
}

void LoopedForward::FinishFullDepth(absl::Span<const ForwardToken> tokens, Active& act,
                                    ForwardResult* result, ForwardTrace* trace) {
  op_profile::Phase phase("head");
  const int64_t d_model = config_.hidden_size;
  const int64_t vocab = config_.vocab_size;
  const int last = config_.num_loops - 1;
  std::vector<int> rows_full;
  for (int64_t a = 0; a < act.size(); ++a) {
    if (tokens[act.index[a]].full_depth) rows_full.push_back(static_cast<int>(a));
  }
  if (rows_full.empty()) return;
  const int64_t fn = static_cast<int64_t>(rows_full.size());
  float* head_in = head_in_.Get(fn * d_model);
  std::vector<int32_t> positions(fn);
  std::vector<const int32_t*> tables(fn);
  std::vector<int> logit_rows;
  const bool all_logits = trace != nullptr && trace->loop_logits;
  for (int64_t f = 0; f < fn; ++f) {
    const int a = rows_full[f];
    std::memcpy(head_in + f * d_model, act.x + a * d_model, sizeof(float) * d_model);
    positions[f] = act.positions[a];
    tables[f] = act.tables[a];
    if (all_logits || tokens[act.index[a]].wants_logits) logit_rows.push_back(static_cast<int>(f));
    act.exits[a] = 1;
  }
  const LayerRows rows{fn, positions.data(), tables.data()};
  float* logits = head_logits_.Get(std::max<int64_t>(1, static_cast<int64_t>(logit_rows.size())) *
                                   vocab);
  std::vector<std::vector<int32_t>> coda_router;
  // Write mode: the coda K/V of every prompt token are final here, and all of
  // a chunk's rows are written before any of them attends.
  head_.Run(head_in, rows, /*probe=*/false, &logit_rows, logits,
            trace != nullptr ? &coda_router : nullptr);
  if (trace != nullptr) {
    trace->logits.assign(all_logits ? config_.num_loops : 0, std::vector<float>());
    for (size_t i = 0; i < coda_router.size(); ++i) {
      if (!coda_router[i].empty()) {
        trace->router[TraceKey(ModelPart::kCoda, static_cast<int>(i), 0)] = coda_router[i];
      }
    }
  }
  for (int64_t f = 0; f < fn; ++f) {
    TokenResult& r = result->tokens[act.index[rows_full[f]]];
    r.exit_loop = last;
  }
  for (size_t l = 0; l < logit_rows.size(); ++l) {
    const int j = act.index[rows_full[logit_rows[l]]];
    const float* z = logits + static_cast<int64_t>(l) * vocab;
    result->tokens[j].exit_heads = 1;
    if (tokens[j].wants_logits) result->tokens[j].logits_row = AppendLogits(z, result);
    if (all_logits) {
      trace->logits[last].resize(act.index.size() * vocab);
      std::memcpy(trace->logits[last].data() + int64_t{j} * vocab, z, sizeof(float) * vocab);
    }
  }
  for (int64_t f = 0; f < fn; ++f) {
    if (result->tokens[act.index[rows_full[f]]].exit_heads == 0) {
      result->tokens[act.index[rows_full[f]]].exit_heads = 1;  // the coda ran
    }
  }
}

void LoopedForward::TraceLoopLogits(int64_t n, const LayerRows& rows, ForwardTrace* trace) {
  const int64_t vocab = config_.vocab_size;
  for (int loop = 0; loop + 1 < config_.num_loops; ++loop) {
    trace->logits[loop].resize(n * vocab);
    // Probe: previous positions' coda K/V are their final ones (written at
    // the last boundary), the token's own comes from h_t.
    head_.Run(trace->hidden[loop].data(), rows, /*probe=*/true, nullptr,
              trace->logits[loop].data(), nullptr);
  }
}

}  // namespace loopserve
