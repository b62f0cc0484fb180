// loopserve_peer_driver: the loopserve side of the llama.cpp peer benchmark
// (bench/peer/run.sh). Times exactly what bench/peer/llama_driver.py times
// on the llama.cpp side, with the same prompts and thread count:
//   prefill: one sequence of --prompt_len tokens, first token sampled;
//   decode:  --batch sequences prefilled untimed, then --decode_steps timed
//            steps of one greedy token per sequence,
// optionally under an exit policy (--policy, --max_loops), reporting the
// fraction of loops run and compute_saved of the timed tokens. With --bytes
// (static full depth) it also counts the weight bytes one decode step must
// read: the looped model's unique bytes (each shared weight once per step,
// experts as the union the batch picked over all loops) against the
// unrolled model's (each loop's layer copy read again, as llama.cpp's
// unrolled GGUF must). One `RESULT {json}` line per timed run.
//
//   loopserve_peer_driver --model DIR --mode decode --batch 8 --threads 2
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model_weights.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(std::string, name, "", "model name for the RESULT line (default: the directory)");
ABSL_FLAG(std::string, mode, "decode", "prefill | decode");
ABSL_FLAG(int, threads, 2, "engine threads");
ABSL_FLAG(int, batch, 1, "sequences (decode)");
ABSL_FLAG(int, prompt_len, 64, "prompt tokens per sequence");
ABSL_FLAG(int, decode_steps, 32, "timed decode steps");
ABSL_FLAG(int, reps, 1, "timed runs");
ABSL_FLAG(int, warmup, 1,
          "untimed runs first (decode needs none: its untimed prefill already touches the "
          "weights and allocates)");
ABSL_FLAG(std::string, policy, "never", "exit criterion[:threshold]");
ABSL_FLAG(int, max_loops, 0, "policy max_loops (0 = the model's L)");
ABSL_FLAG(int, min_loops, 1, "policy min_loops");
ABSL_FLAG(bool, bytes, false, "decode at full depth: also count weight bytes per step");

namespace loopserve {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// bench/engine_bench.cc's prompts, also bench/peer/llama_driver.py's.
std::vector<int32_t> PromptIds(int b, int len, int64_t vocab) {
  std::vector<int32_t> ids(len);
  for (int p = 0; p < len; ++p) {
    ids[p] = static_cast<int32_t>((1 + 7919LL * p + 104729LL * b) % vocab);
  }
  return ids;
}

absl::StatusOr<ExitPolicy> PolicyFromFlags(const ModelConfig& config) {
  ExitPolicy policy;
  const std::vector<std::string> parts =
      absl::StrSplit(absl::GetFlag(FLAGS_policy), absl::MaxSplits(':', 1));
  absl::StatusOr<ExitCriterion> criterion = ParseExitCriterion(parts[0]);
  if (!criterion.ok()) return criterion.status();
  policy.criterion = *criterion;
  if (parts.size() > 1 && !absl::SimpleAtod(parts[1], &policy.threshold)) {
    return absl::InvalidArgumentError(absl::StrCat("--policy: bad threshold `", parts[1], "`"));
  }
  policy.min_loops = absl::GetFlag(FLAGS_min_loops);
  policy.max_loops = absl::GetFlag(FLAGS_max_loops);
  if (absl::Status s = ValidateExitPolicy(policy, config); !s.ok()) return s;
  return policy;
}

// --- timed runs -------------------------------------------------------------
struct DecodeRun {
  double seconds = 0;
  int64_t tokens = 0;
  int64_t loops_run = 0;
  int64_t loops_full = 0;
  double flops_done = 0;  // of the timed tokens (cumulative usage after - before)
  double flops_full = 0;
  std::vector<std::vector<int32_t>> sequences;  // prompt + generated
};

absl::StatusOr<DecodeRun> RunDecode(Engine& engine, int batch, int prompt_len, int steps,
                                    const ExitPolicy& policy) {
  const ModelConfig& c = engine.config();
  DecodeRun run;
  run.sequences.resize(batch);
  std::map<int64_t, int> slot;
  std::map<int64_t, Usage> usage_at_start;
  for (int b = 0; b < batch; ++b) {
    GenerationRequest req;
    req.prompt = PromptIds(b, prompt_len, c.vocab_size);
    req.max_tokens = steps + 1;  // the first comes from the (untimed) prefill
    req.policy = policy;
    run.sequences[b] = req.prompt;
    absl::StatusOr<int64_t> id = engine.Add(std::move(req));
    if (!id.ok()) return id.status();
    slot[*id] = b;
  }
  auto collect = [&](const std::vector<SequenceUpdate>& updates, bool timed) {
    for (const SequenceUpdate& u : updates) {
      for (const GeneratedToken& t : u.new_tokens) {
        run.sequences[slot.at(u.id)].push_back(t.token);
        if (!timed) continue;
        run.tokens += 1;
        run.loops_run += t.exit_loop + 1;
        run.loops_full += c.num_loops;
      }
      if (!timed) {
        usage_at_start[u.id] = u.usage;
      } else if (u.finished) {
        run.flops_done += u.usage.flops_done - usage_at_start[u.id].flops_done;
        run.flops_full += u.usage.flops_full - usage_at_start[u.id].flops_full;
      }
    }
  };
  auto all_started = [&] {
    for (const auto& s : run.sequences) {
      if (static_cast<int>(s.size()) <= prompt_len) return false;
    }
    return true;
  };
  while (!all_started()) {
    absl::StatusOr<std::vector<SequenceUpdate>> u = engine.Step();
    if (!u.ok()) return u.status();
    collect(*u, false);
  }
  const auto t0 = Clock::now();
  while (engine.HasWork()) {
    absl::StatusOr<std::vector<SequenceUpdate>> u = engine.Step();
    if (!u.ok()) return u.status();
    collect(*u, true);
  }
  run.seconds = Seconds(t0, Clock::now());
  return run;
}

absl::StatusOr<double> RunPrefill(Engine& engine, int prompt_len) {
  std::vector<GenerationRequest> reqs(1);
  reqs[0].prompt = PromptIds(0, prompt_len, engine.config().vocab_size);
  reqs[0].max_tokens = 1;
  const auto t0 = Clock::now();
  absl::StatusOr<std::vector<GenerationResult>> r = engine.Generate(std::move(reqs));
  const double seconds = Seconds(t0, Clock::now());
  if (!r.ok()) return r.status();
  return seconds;
}

// --- weight bytes of a decode step ------------------------------------------
int64_t Bytes(const MatrixView& m) { return m.rows * m.cols * DTypeSize(m.dtype); }
int64_t Bytes(const VectorView& v) { return v.size * DTypeSize(v.dtype); }
int64_t Bytes(const SwiGluWeights& w) { return Bytes(w.gate) + Bytes(w.up) + Bytes(w.down); }

struct StepBytes {
  double unrolled = 0;  // every layer instance reads its weights (llama.cpp's GGUF)
  double unique = 0;    // every weight byte once per step (loopserve's floor)
};

// The decode step at `position` of every sequence, routed as Score routed it
// (Score runs the same full-depth math the static-depth decode ran).
StepBytes DecodeStepBytes(const LoadedModel& model, const std::vector<ScoreResult>& scores,
                          int64_t position) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  StepBytes out;
  out.unrolled = out.unique =
      static_cast<double>(scores.size()) * c.hidden_size * DTypeSize(w.embed_tokens.dtype) +
      Bytes(w.final_norm) + Bytes(w.lm_head);
  for (ModelPart part : {ModelPart::kPrelude, ModelPart::kRecurrent, ModelPart::kCoda}) {
    const std::vector<LayerWeights>& layers = w.Layers(part);
    const int loops = part == ModelPart::kRecurrent ? c.num_loops : 1;
    for (size_t i = 0; i < layers.size(); ++i) {
      const LayerWeights& lw = layers[i];
      const AttentionWeights& a = lw.attn;
      double fixed = Bytes(lw.input_layernorm) + Bytes(lw.post_attention_layernorm) +
                     Bytes(a.q_proj) + Bytes(a.k_proj) + Bytes(a.v_proj) + Bytes(a.o_proj) +
                     Bytes(a.q_norm) + Bytes(a.k_norm);
      if (lw.ffn == FfnKind::kDense) {
        fixed += Bytes(lw.dense);
      } else {
        fixed += Bytes(lw.moe.router);
        for (const SwiGluWeights& s : lw.moe.shared) fixed += Bytes(s);
      }
      out.unrolled += fixed * loops;
      out.unique += fixed;
      if (lw.ffn != FfnKind::kMoe) continue;
      std::set<int32_t> over_loops;
      for (int t = 0; t < loops; ++t) {
        const std::string key = absl::StrCat(ModelPartName(part), ".", i, ".", t);
        std::set<int32_t> this_loop;
        for (const ScoreResult& s : scores) {
          const std::vector<int32_t>& sel = s.trace.router.at(key);
          for (int j = 0; j < c.num_experts_per_tok; ++j) {
            this_loop.insert(sel[position * c.num_experts_per_tok + j]);
          }
        }
        out.unrolled += static_cast<double>(this_loop.size()) * Bytes(lw.moe.experts[0]);
        over_loops.insert(this_loop.begin(), this_loop.end());
      }
      out.unique += static_cast<double>(over_loops.size()) * Bytes(lw.moe.experts[0]);
    }
  }
  return out;
}

absl::StatusOr<StepBytes> MeanStepBytes(Engine& engine, const DecodeRun& run, int prompt_len,
                                        int steps) {
  std::vector<ScoreResult> scores;
  for (const std::vector<int32_t>& seq : run.sequences) {
    absl::StatusOr<ScoreResult> s =
        engine.Score(std::vector<int32_t>(seq.begin(), seq.begin() + prompt_len + steps));
    if (!s.ok()) return s.status();
    scores.push_back(std::move(*s));
  }
  StepBytes mean;
  for (int j = 0; j < steps; ++j) {
    const StepBytes b = DecodeStepBytes(engine.model(), scores, prompt_len + j);
    mean.unrolled += b.unrolled / steps;
    mean.unique += b.unique / steps;
  }
  return mean;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "loopserve_peer_driver: %s\n", s.ToString().c_str());
  return 1;
}

int Main() {
  const std::string mode = absl::GetFlag(FLAGS_mode);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = mode == "prefill" ? 1 : absl::GetFlag(FLAGS_batch);
  const int prompt_len = absl::GetFlag(FLAGS_prompt_len);
  const int steps = absl::GetFlag(FLAGS_decode_steps);
  if (mode != "prefill" && mode != "decode") {
    return Fail(absl::InvalidArgumentError("--mode: " + mode));
  }
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(absl::GetFlag(FLAGS_model));
  if (!model.ok()) return Fail(model.status());
  const ModelConfig& c = (*model)->config;
  absl::StatusOr<ExitPolicy> policy = PolicyFromFlags(c);
  if (!policy.ok()) return Fail(policy.status());
  const bool full_depth = policy->criterion == ExitCriterion::kNever &&
                          ResolvedMaxLoops(*policy, c.num_loops) == c.num_loops;

  EngineOptions options;
  options.num_threads = threads;
  // A 512-token prompt is one prefill chunk, as llama.cpp's n_ubatch = 512.
  options.scheduler.max_batch_tokens = std::max(512, batch);
  options.scheduler.max_num_seqs = std::max(64, batch);
  const int64_t tokens = int64_t{batch} * (prompt_len + steps + 2 + options.block_size);
  options.kv_cache_bytes =
      std::max<int64_t>(int64_t{16} << 20, 2 * tokens * KvCache::BytesPerToken(c));
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model, options);
  if (!engine.ok()) return Fail(engine.status());

  std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) name = absl::GetFlag(FLAGS_model);
  const std::string policy_name = full_depth ? "full"
                                             : absl::StrCat(absl::GetFlag(FLAGS_policy), "/max",
                                                            ResolvedMaxLoops(*policy, c.num_loops));
  const std::string head =
      absl::StrCat("RESULT {\"side\":\"loopserve\",\"model\":\"", name, "\",\"mode\":\"", mode,
                   "\",\"batch\":", batch, ",\"prompt_len\":", prompt_len, ",\"threads\":", threads,
                   ",\"policy\":\"", policy_name, "\"");
  const int warmup = std::max(0, absl::GetFlag(FLAGS_warmup));
  const int runs = warmup + std::max(1, absl::GetFlag(FLAGS_reps));
  for (int r = 0; r < runs; ++r) {  // r < warmup: page faults, allocations
    if (mode == "prefill") {
      absl::StatusOr<double> sec = RunPrefill(**engine, prompt_len);
      if (!sec.ok()) return Fail(sec.status());
      if (r >= warmup) std::printf("%s,\"tok_s\":%.3f}\n", head.c_str(), prompt_len / *sec);
      std::fflush(stdout);
      continue;
    }
    absl::StatusOr<DecodeRun> run = RunDecode(**engine, batch, prompt_len, steps, *policy);
    if (!run.ok()) return Fail(run.status());
    if (r < warmup) continue;
    std::string extra;
    if (absl::GetFlag(FLAGS_bytes) && full_depth && r == runs - 1) {
      absl::StatusOr<StepBytes> b = MeanStepBytes(**engine, *run, prompt_len, steps);
      if (!b.ok()) return Fail(b.status());
      extra = absl::StrCat(",\"bytes_per_step_unique\":", b->unique,
                           ",\"bytes_per_step_unrolled\":", b->unrolled);
    }
    const double saved = run->flops_full > 0 ? 1.0 - run->flops_done / run->flops_full : 0.0;
    std::printf(
        "%s,\"tok_s\":%.3f,\"ms_per_step\":%.4f,\"loops_frac\":%.4f,"
        "\"compute_saved\":%.4f%s}\n",
        head.c_str(), run->tokens / run->seconds, 1e3 * run->seconds / steps,
        static_cast<double>(run->loops_run) / run->loops_full, saved, extra.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace loopserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return loopserve::Main();
}
