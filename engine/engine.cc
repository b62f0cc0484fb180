#include "engine/engine.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer.h"

namespace loopserve {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::shared_ptr<const LoadedModel> model,
                                                       const EngineOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("engine: no model");
  if (options.scheduler.max_batch_tokens < 1 || options.scheduler.max_num_seqs < 1) {
    return absl::InvalidArgumentError("engine: max_batch_tokens and max_num_seqs must be >= 1");
  }
  auto kv = KvCache::CreateWithBudget(model->config, options.kv_cache_bytes, options.block_size);
  if (!kv.ok()) return kv.status();
  std::unique_ptr<Engine> engine(new Engine(std::move(model), options, std::move(*kv)));
  BackendContext context{engine->model_, engine->kv_.get(), engine->pool_.get(),
                         options.cuda_f32_compute, options.cuda_kv_memory_fraction,
                         options.scheduler.max_batch_tokens};
  absl::StatusOr<BackendChoice> backend = MakeBackend(options.backend, context);
  if (!backend.ok()) return backend.status();
  engine->forward_ = std::move(backend->backend);
  engine->backend_fallback_reason_ = std::move(backend->fallback_reason);
  return engine;
}

Engine::Engine(std::shared_ptr<const LoadedModel> model, const EngineOptions& options,
               std::unique_ptr<KvCache> kv)
    : model_(std::move(model)), options_(options), kv_(std::move(kv)) {
  pool_ = std::make_unique<ThreadPool>(options.num_threads > 0 ? options.num_threads
                                                               : ThreadPool::DefaultThreads());
  scheduler_ = std::make_unique<Scheduler>(options.scheduler, &kv_->blocks());
}

absl::Status Engine::ValidateRequest(const GenerationRequest& request) const {
  const ModelConfig& config = model_->config;
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " = ", request.prompt[i],
                                                     " outside vocabulary [0, ", config.vocab_size,
                                                     ")"));
    }
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 1, got ", request.max_tokens));
  }
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (total > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", request.prompt.size(), " tokens) + max_tokens (", request.max_tokens,
        ") exceeds the model's context of ", config.max_position_embeddings));
  }
  const int64_t pool_tokens = int64_t{kv_->num_blocks()} * kv_->block_size();
  if (total > pool_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat("prompt + max_tokens = ", total,
                                                     " tokens exceeds the KV pool of ", pool_tokens,
                                                     " tokens"));
  }
  if (absl::Status s = ValidateSamplingParams(request.sampling); !s.ok()) return s;
  if (!request.stop_strings.empty()) {
    if (options_.tokenizer == nullptr) {
      return absl::FailedPreconditionError("stop strings need a tokenizer; use stop token ids");
    }
    if (static_cast<int>(request.stop_strings.size()) > kMaxStopStrings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "at most ", kMaxStopStrings, " stop strings, got ", request.stop_strings.size()));
    }
    for (size_t i = 0; i < request.stop_strings.size(); ++i) {
      const size_t n = request.stop_strings[i].size();
      if (n == 0 || n > kMaxStopStringBytes) {
        return absl::InvalidArgumentError(absl::StrCat("stop string ", i, " must be 1..",
                                                       kMaxStopStringBytes, " bytes, got ", n));
      }
    }
  }
  return ValidateExitPolicy(request.policy, config);
}

absl::StatusOr<int64_t> Engine::Add(GenerationRequest request) {
  while (sequences_.count(next_id_) != 0) ++next_id_;
  return AddWithId(std::move(request), next_id_++);
}

absl::StatusOr<int64_t> Engine::AddWithId(GenerationRequest request, int64_t id) {
  if (id <= 0 || sequences_.count(id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("engine: request id ", id, " is in use"));
  }
  if (absl::Status s = ValidateRequest(request); !s.ok()) return s;
  auto seq = std::make_unique<Sequence>(id, std::move(request));
  scheduler_->Add(seq.get());
  sequences_.emplace(id, std::move(seq));
  return id;
}

absl::Status Engine::SetPolicy(int64_t id, const ExitPolicy& policy) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", id));
  if (absl::Status s = ValidateExitPolicy(policy, model_->config); !s.ok()) return s;
  it->second->request.policy = policy;
  return absl::OkStatus();
}

bool Engine::Cancel(int64_t id) {
  if (sequences_.count(id) == 0) return false;
  cancelled_.push_back(id);
  return true;
}

void Engine::Finish(Sequence& seq, FinishReason reason) {
  seq.finished = true;
  seq.finish_reason = reason;
  scheduler_->Remove(&seq);
}

void Engine::AccountToken(Sequence& seq, const TokenResult& r, bool full_depth) {
  seq.usage.loops_executed += full_depth ? model_->config.num_loops : r.exit_loop + 1;
  seq.usage.loops_full += model_->config.num_loops;
  seq.usage.flops_done += r.flops_done;
  seq.usage.flops_full += r.flops_full;
}

bool Engine::AppendSample(Sequence& seq, const float* logits, int exit_loop,
                          SequenceUpdate& update) {
  const SampledToken s = seq.sampler.Sample(logits, model_->config.vocab_size);
  GeneratedToken token{s.token, exit_loop, s.logprob, s.top_logprobs};
  seq.tokens.push_back(s.token);
  seq.generated.push_back(token);
  seq.usage.completion_tokens += 1;
  update.new_tokens.push_back(std::move(token));
  const auto& stops = seq.request.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), s.token) != stops.end()) {
    Finish(seq, FinishReason::kStop);
    return true;
  }
  if (HitsStopString(seq, s.token)) {
    Finish(seq, FinishReason::kStop);
    return true;
  }
  if (static_cast<int>(seq.generated.size()) >= seq.request.max_tokens) {
    Finish(seq, FinishReason::kLength);
    return true;
  }
  return false;
}

bool Engine::HitsStopString(Sequence& seq, int32_t token) const {
  if (seq.request.stop_strings.empty() || options_.tokenizer == nullptr) return false;
  const std::string bytes = options_.tokenizer->TokenBytes(token);
  if (bytes.empty()) return false;
  seq.generated_bytes += bytes;
  const std::string& text = seq.generated_bytes;
  for (const std::string& stop : seq.request.stop_strings) {
    // Only an occurrence that ends inside this token's bytes is new.
    const size_t window = bytes.size() + stop.size() - 1;
    const size_t from = text.size() > window ? text.size() - window : 0;
    if (text.find(stop, from) != std::string::npos) return true;
  }
  return false;
}

absl::StatusOr<std::vector<SequenceUpdate>> Engine::Step() {
  std::vector<SequenceUpdate> updates;
  for (int64_t id : cancelled_) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) continue;
    Finish(*it->second, FinishReason::kCancelled);
    updates.push_back({id, {}, true, FinishReason::kCancelled, it->second->usage});
    sequences_.erase(it);
  }
  cancelled_.clear();

  const std::vector<ScheduledChunk> chunks = scheduler_->Schedule();
  if (chunks.empty()) {
    if (!sequences_.empty() && updates.empty()) {
      return absl::InternalError("engine: sequences waiting but none could be scheduled");
    }
    return updates;
  }
  std::vector<ForwardToken> batch;
  for (const ScheduledChunk& chunk : chunks) {
    Sequence& seq = *chunk.seq;
    const int32_t* table = kv_->blocks().Table(seq.id)->blocks.data();
    for (int64_t p = chunk.start; p < chunk.start + chunk.length; ++p) {
      ForwardToken tok;
      tok.token_id = seq.tokens[p];
      tok.position = static_cast<int32_t>(p);
      tok.block_table = table;
      tok.full_depth = p < seq.full_depth_end;
      if (tok.full_depth) {
        tok.forced_exit_loop = seq.ReplayExitLoop(p);
        tok.full_depth = tok.forced_exit_loop < 0;
      }
      tok.wants_logits = p == seq.num_tokens() - 1;
      tok.policy = &seq.request.policy;
      batch.push_back(tok);
    }
  }
  last_batch_tokens_ = static_cast<int64_t>(batch.size());
  ForwardResult result;
  if (absl::Status s = forward_->Run(batch, &result); !s.ok()) return s;

  size_t offset = 0;
  for (const ScheduledChunk& chunk : chunks) {
    Sequence& seq = *chunk.seq;
    SequenceUpdate update;
    update.id = seq.id;
    for (int64_t i = 0; i < chunk.length; ++i) {
      AccountToken(seq, result.tokens[offset + i], batch[offset + i].full_depth);
    }
    seq.num_computed += chunk.length;
    const TokenResult& last = result.tokens[offset + chunk.length - 1];
    offset += chunk.length;
    if (last.logits_row >= 0) {
      const float* logits =
          result.logits.data() + int64_t{last.logits_row} * model_->config.vocab_size;
      AppendSample(seq, logits, last.exit_loop, update);
    }
    update.finished = seq.finished;
    update.finish_reason = seq.finish_reason;
    update.usage = seq.usage;
    updates.push_back(std::move(update));
  }
  for (auto it = sequences_.begin(); it != sequences_.end();) {
    it = it->second->finished ? sequences_.erase(it) : std::next(it);
  }
  return updates;
}

absl::StatusOr<std::vector<GenerationResult>> Engine::Generate(
    std::vector<GenerationRequest> requests) {
  std::vector<GenerationResult> results(requests.size());
  // All or nothing: a bad request must not leave the good ones before it
  // queued, to run unseen inside a later call.
  for (size_t i = 0; i < requests.size(); ++i) {
    if (absl::Status s = ValidateRequest(requests[i]); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("request ", i, ": ", s.message()));
    }
  }
  std::map<int64_t, size_t> slot;
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::StatusOr<int64_t> id = Add(std::move(requests[i]));
    if (!id.ok()) return id.status();
    results[i].id = *id;
    slot[*id] = i;
  }
  while (HasWork()) {
    absl::StatusOr<std::vector<SequenceUpdate>> updates = Step();
    if (!updates.ok()) return updates.status();
    for (SequenceUpdate& u : *updates) {
      auto it = slot.find(u.id);
      if (it == slot.end()) continue;
      GenerationResult& r = results[it->second];
      for (GeneratedToken& t : u.new_tokens) r.tokens.push_back(std::move(t));
      r.usage = u.usage;
      if (u.finished) r.finish_reason = u.finish_reason;
    }
  }
  return results;
}

absl::StatusOr<ScoreResult> Engine::Score(const std::vector<int32_t>& ids) {
  if (ids.empty()) return absl::InvalidArgumentError("score: no tokens");
  if (static_cast<int64_t>(ids.size()) > model_->config.max_position_embeddings) {
    return absl::InvalidArgumentError("score: longer than the model's context");
  }
  const int64_t seq_id = -next_id_++;  // outside the ids of generation requests
  if (absl::Status s = kv_->blocks().Append(seq_id, static_cast<int64_t>(ids.size())); !s.ok()) {
    return s;
  }
  const int32_t* table = kv_->blocks().Table(seq_id)->blocks.data();
  std::vector<ForwardToken> batch(ids.size());
  for (size_t p = 0; p < ids.size(); ++p) {
    batch[p].token_id = ids[p];
    batch[p].position = static_cast<int32_t>(p);
    batch[p].block_table = table;
  }
  ScoreResult score;
  score.num_loops = model_->config.num_loops;
  score.num_tokens = static_cast<int64_t>(ids.size());
  score.vocab_size = model_->config.vocab_size;
  score.trace.loop_logits = true;
  ForwardResult result;
  absl::Status s = forward_->Run(batch, &result, &score.trace);
  kv_->blocks().Release(seq_id).IgnoreError();
  if (!s.ok()) return s;
  return score;
}

}  // namespace loopserve
