// loopserve_engine_bench: prefill and decode tokens/s of loopserve::Engine on
// one checkpoint, the decode weight bandwidth those figures imply, and a
// STREAM-style copy/triad bandwidth measured in the same process with the
// same threads, so decode can be read as a fraction of what memory delivers.
// bench/torch_looped_moe.py times the same forward in PyTorch; bench/
// run_cpu_bench.sh runs both. Plain main, no gtest: one line per figure and a
// final `RESULT {json}` line for the script.
//
//   loopserve_engine_bench --model DIR --threads 2 --mode decode --batch 8
//       --prompt_len 16 --decode_steps 32 --policy never
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/weight_reuse.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model_weights.h"
#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/thread_pool.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(int, threads, 2, "engine threads (also used for the STREAM measurement)");
ABSL_FLAG(std::string, mode, "decode", "prefill | decode | stream | check");
ABSL_FLAG(int, batch, 1, "sequences");
ABSL_FLAG(int, prompt_len, 16, "prompt tokens per sequence");
ABSL_FLAG(int, decode_steps, 32, "timed decode steps (after every prompt is prefilled)");
ABSL_FLAG(std::string, policy, "never",
          "exit policy criterion[:threshold[:min_loops[:max_loops]]], e.g. max_prob:0.5 or "
          "never:0:1:2 (static depth 2)");
ABSL_FLAG(std::string, policies, "",
          "decode: comma-separated policies (syntax of --policy) run interleaved in one process, "
          "each repetition running every policy in turn; the first is the baseline of the "
          "speed-up column. Overrides --policy.");
ABSL_FLAG(int, reps, 3, "timed repetitions after one warm-up (the median is reported)");
ABSL_FLAG(int, max_batch_tokens, 4096, "scheduler token budget per step");
ABSL_FLAG(int, stream_mib, 512, "STREAM array size in MiB (each of 3 arrays; >= 4x L3)");
ABSL_FLAG(bool, bandwidth, true,
          "decode, policy never: also compute the weight bandwidth and run STREAM");
ABSL_FLAG(bool, profile, false,
          "decode/prefill: print a per-kernel wall-time breakdown of the timed part of the "
          "last repetition (adds a clock read per kernel call)");
ABSL_FLAG(bool, profile_phases, false,
          "with --profile: split the table by engine phase (prelude, loop t, exit check, kv "
          "fill, head)");
ABSL_FLAG(bool, trace_weights, false,
          "decode: record which weight tensors the kernels read in the last repetition and "
          "report bytes per step touched / distinct / missing an LRU of --cache_mib, for the "
          "looped model and its unrolled twin");
ABSL_FLAG(int, cache_mib, 32, "--trace_weights: LRU cache size (MiB); lscpu L3 by default");
ABSL_FLAG(std::string, dump_logits, "",
          "mode check: write z_{L-1} of the last position of prompt 0 (f32 raw) here");

namespace loopserve {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Same prompts as bench/torch_looped_moe.py (prompt_ids).
std::vector<int32_t> PromptIds(int b, int len, int64_t vocab) {
  std::vector<int32_t> ids(len);
  for (int p = 0; p < len; ++p) {
    ids[p] = static_cast<int32_t>((1 + 7919LL * p + 104729LL * b) % vocab);
  }
  return ids;
}

// criterion[:threshold[:min_loops[:max_loops]]]
absl::StatusOr<ExitPolicy> ParsePolicy(const std::string& spec) {
  ExitPolicy policy;
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  absl::StatusOr<ExitCriterion> criterion = ParseExitCriterion(parts[0]);
  if (!criterion.ok()) return criterion.status();
  policy.criterion = *criterion;
  if (parts.size() > 1 && !absl::SimpleAtod(parts[1], &policy.threshold)) {
    return absl::InvalidArgumentError(absl::StrCat("--policy: bad threshold `", parts[1], "`"));
  }
  if ((parts.size() > 2 && !absl::SimpleAtoi(parts[2], &policy.min_loops)) ||
      (parts.size() > 3 && !absl::SimpleAtoi(parts[3], &policy.max_loops)) || parts.size() > 4) {
    return absl::InvalidArgumentError(absl::StrCat("--policy: bad spec `", spec, "`"));
  }
  return policy;
}

// --- STREAM-style bandwidth ---------------------------------------------------
// copy: c = a (2 arrays moved); triad: a = b + s*c (3 arrays moved). Bytes
// follow STREAM's convention (no write-allocate traffic). Best of 5.
struct StreamResult {
  double copy_gbs = 0;
  double triad_gbs = 0;
};

StreamResult MeasureStream(ThreadPool& pool, int64_t mib) {
  const int64_t n = mib * (int64_t{1} << 20) / static_cast<int64_t>(sizeof(float));
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  const int64_t chunk = (n + pool.num_threads() - 1) / pool.num_threads();
  pool.ParallelFor(n, chunk, [&](int64_t lo, int64_t hi) {  // first touch by the workers
    for (int64_t i = lo; i < hi; ++i) a[i] = 1.0f, b[i] = 2.0f, c[i] = 0.0f;
  });
  const double bytes = static_cast<double>(n) * sizeof(float);
  StreamResult best;
  float expect = 1.0f;  // a[i] after each triad: 2 + 3 * (previous a)
  for (int rep = 0; rep < 5; ++rep) {
    expect = 2.0f + 3.0f * expect;
    auto t0 = Clock::now();
    pool.ParallelFor(n, chunk, [&](int64_t lo, int64_t hi) {
      std::copy(a.get() + lo, a.get() + hi, c.get() + lo);
    });
    auto t1 = Clock::now();
    pool.ParallelFor(n, chunk, [&](int64_t lo, int64_t hi) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = c.get();
      for (int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    });
    auto t2 = Clock::now();
    best.copy_gbs = std::max(best.copy_gbs, 2 * bytes / Seconds(t0, t1) / 1e9);
    best.triad_gbs = std::max(best.triad_gbs, 3 * bytes / Seconds(t1, t2) / 1e9);
  }
  if (a[n / 2] != expect) {
    std::fprintf(stderr, "stream: wrong result %g, expected %g\n", a[n / 2], expect);
  }
  return best;
}

// --- decode weight traffic ----------------------------------------------------
int64_t Bytes(const MatrixView& m) { return m.rows * m.cols * DTypeSize(m.dtype); }
int64_t Bytes(const VectorView& v) { return v.size * DTypeSize(v.dtype); }
int64_t Bytes(const SwiGluWeights& w) { return Bytes(w.gate) + Bytes(w.up) + Bytes(w.down); }

// Weight bytes one decode step reads: for every layer instance run, its
// attention and norms, and a dense FFN or the router, the shared experts and
// only the DISTINCT routed experts the batch's tokens picked at that instance;
// plus the batch's embedding rows, the final norm and the LM head.
// `touched` counts a recurrent weight once per loop that reads it; `unique`
// counts every weight byte once per step (the floor on DRAM traffic).
struct StepBytes {
  double touched = 0;
  double unique = 0;
};

StepBytes DecodeStepBytes(const LoadedModel& model, const std::vector<ScoreResult>& scores,
                          int64_t position) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  StepBytes out;
  out.touched = out.unique = static_cast<double>(scores.size()) * c.hidden_size *
                                 DTypeSize(w.embed_tokens.dtype) +
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
      out.touched += fixed * loops;
      out.unique += fixed;
      if (lw.ffn != FfnKind::kMoe) continue;
      std::set<int32_t> union_over_loops;
      for (int t = 0; t < loops; ++t) {
        const std::string key = absl::StrCat(ModelPartName(part), ".", i, ".", t);
        std::set<int32_t> distinct;
        for (const ScoreResult& s : scores) {
          const std::vector<int32_t>& sel = s.trace.router.at(key);
          for (int j = 0; j < c.num_experts_per_tok; ++j) {
            distinct.insert(sel[position * c.num_experts_per_tok + j]);
          }
        }
        out.touched += static_cast<double>(distinct.size()) * Bytes(lw.moe.experts[0]);
        union_over_loops.insert(distinct.begin(), distinct.end());
      }
      out.unique += static_cast<double>(union_over_loops.size()) * Bytes(lw.moe.experts[0]);
    }
  }
  return out;
}

// --- timed runs -----------------------------------------------------------------
struct DecodeRun {
  double seconds = 0;
  int64_t tokens = 0;
  int64_t loops_run = 0;   // over the timed tokens
  int64_t loops_full = 0;
  double flops_done = 0;  // over the timed (decode) tokens, exit checks included
  double flops_full = 0;
  std::vector<std::vector<int32_t>> sequences;  // prompt + generated, per request
  std::vector<std::vector<op_profile::WeightRead>> weight_reads;  // per timed step
};

absl::StatusOr<DecodeRun> RunDecode(Engine& engine, int batch, int prompt_len, int steps,
                                    const ExitPolicy& policy, bool profile, bool trace_weights) {
  const ModelConfig& c = engine.config();
  std::map<int64_t, int> slot;
  DecodeRun run;
  run.sequences.resize(batch);
  for (int b = 0; b < batch; ++b) {
    GenerationRequest req;
    req.prompt = PromptIds(b, prompt_len, c.vocab_size);
    req.max_tokens = steps + 1;
    req.policy = policy;
    run.sequences[b] = req.prompt;
    absl::StatusOr<int64_t> id = engine.Add(std::move(req));
    if (!id.ok()) return id.status();
    slot[*id] = b;
  }
  std::map<int64_t, Usage> usage_at_start, usage_now;
  auto collect = [&](const std::vector<SequenceUpdate>& updates, bool timed) {
    for (const SequenceUpdate& u : updates) {
      (timed ? usage_now : usage_at_start)[u.id] = u.usage;
      for (const GeneratedToken& t : u.new_tokens) {
        run.sequences[slot.at(u.id)].push_back(t.token);
        if (!timed) continue;
        run.tokens += 1;
        run.loops_run += t.exit_loop + 1;
        run.loops_full += c.num_loops;
      }
    }
  };
  auto all_started = [&] {
    for (const auto& s : run.sequences) {
      if (static_cast<int>(s.size()) <= prompt_len) return false;
    }
    return true;
  };
  while (!all_started()) {  // prefill: untimed
    absl::StatusOr<std::vector<SequenceUpdate>> u = engine.Step();
    if (!u.ok()) return u.status();
    collect(*u, false);
  }
  if (profile) op_profile::Reset();
  op_profile::SetEnabled(profile);
  op_profile::TakeWeightReads();
  op_profile::SetTraceWeights(trace_weights);
  const auto t0 = Clock::now();
  while (engine.HasWork()) {
    absl::StatusOr<std::vector<SequenceUpdate>> u = engine.Step();
    if (!u.ok()) return u.status();
    collect(*u, true);
    if (trace_weights) run.weight_reads.push_back(op_profile::TakeWeightReads());
  }
  run.seconds = Seconds(t0, Clock::now());
  op_profile::SetEnabled(false);
  op_profile::SetTraceWeights(false);
  for (const auto& [id, end] : usage_now) {
    const auto start = usage_at_start.find(id);
    run.flops_done += end.flops_done;
    run.flops_full += end.flops_full;
    if (start != usage_at_start.end()) {
      run.flops_done -= start->second.flops_done;
      run.flops_full -= start->second.flops_full;
    }
  }
  return run;
}

struct PrefillRun {
  double seconds = 0;
  double cpu_seconds = 0;  // of the whole process (both threads), spin-waits included
  double flops = 0;        // MODEL_SPEC accounting of every prompt token (full depth)
};

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

absl::StatusOr<PrefillRun> RunPrefill(Engine& engine, int batch, int prompt_len, bool profile) {
  if (profile) op_profile::Reset();
  op_profile::SetEnabled(profile);
  std::vector<GenerationRequest> reqs(batch);
  for (int b = 0; b < batch; ++b) {
    reqs[b].prompt = PromptIds(b, prompt_len, engine.config().vocab_size);
    reqs[b].max_tokens = 1;
  }
  const double cpu0 = ProcessCpuSeconds();
  const auto t0 = Clock::now();
  absl::StatusOr<std::vector<GenerationResult>> r = engine.Generate(std::move(reqs));
  PrefillRun run;
  run.seconds = Seconds(t0, Clock::now());
  run.cpu_seconds = ProcessCpuSeconds() - cpu0;
  op_profile::SetEnabled(false);
  if (!r.ok()) return r.status();
  for (const GenerationResult& g : *r) run.flops += g.usage.flops_done;
  // The accounting charges every token an LM head; a prefill computes it
  // for the last position of each prompt only (nothing samples the others).
  const ModelConfig& c = engine.config();
  run.flops -= 2.0 * c.vocab_size * c.hidden_size * batch * (prompt_len - 1);
  return run;
}

// The op_profile table of the last timed run, per `unit` (a decode step or
// the whole prefill) and as a share of `seconds`, the run's wall time.
void PrintProfile(const char* unit, int64_t units, double seconds) {
  std::printf("per-kernel wall time (engine thread; pool.wait_for_workers is inside the "
              "kernels above it):\n");
  std::printf("  %-48s %8s %10s %7s %9s %7s %8s\n", "kernel [W rows x cols]", "calls", "ms",
              "share", "W MB", "GB/s", "GFLOP/s");
  double kernels = 0, bytes = 0, flops = 0;
  for (const op_profile::Entry& e : op_profile::Snapshot()) {
    // Nested scopes (the pool's wait inside a kernel) are not counted twice.
    if (e.name.find("pool.") == std::string::npos) kernels += e.seconds;
    bytes += e.weight_bytes;
    flops += e.flops;
    std::printf("  %-48s %8.1f %10.3f %6.1f%%", e.name.c_str(),
                static_cast<double>(e.calls) / units, e.seconds * 1e3 / units,
                100 * e.seconds / seconds);
    if (e.weight_bytes > 0 || e.flops > 0) {
      std::printf(" %9.2f %7.1f %8.1f", e.weight_bytes / units / 1e6,
                  e.weight_bytes / e.seconds / 1e9, e.flops / e.seconds / 1e9);
    }
    std::printf("\n");
  }
  std::printf("  %-48s %8s %10.3f %6.1f%%\n", "(outside the kernels)", "",
              (seconds - kernels) * 1e3 / units, 100 * (seconds - kernels) / seconds);
  std::printf("  %-48s %8s %10.3f %6.1f%% %9.2f %7.1f %8.1f\n", "(whole step)", "",
              seconds * 1e3 / units, 100.0, bytes / units / 1e6, bytes / seconds / 1e9,
              flops / seconds / 1e9);
  std::printf("  (per %s; %lld %ss, %.3f ms in all)\n", unit, static_cast<long long>(units),
              unit, seconds * 1e3);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

int Main() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int prompt_len = absl::GetFlag(FLAGS_prompt_len);
  const int steps = absl::GetFlag(FLAGS_decode_steps);
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  const bool profile = absl::GetFlag(FLAGS_profile);
  std::filesystem::path model_path(dir);
  if (model_path.filename().empty()) model_path = model_path.parent_path();
  const std::string name = model_path.filename().string();

  if (mode == "stream") {
    ThreadPool pool(threads);
    const StreamResult s = MeasureStream(pool, absl::GetFlag(FLAGS_stream_mib));
    std::printf("stream (%d threads, 3 x %d MiB): copy %.1f GB/s, triad %.1f GB/s\n", threads,
                absl::GetFlag(FLAGS_stream_mib), s.copy_gbs, s.triad_gbs);
    std::printf("RESULT {\"side\":\"stream\",\"threads\":%d,\"copy_gbs\":%.2f,"
                "\"triad_gbs\":%.2f}\n",
                threads, s.copy_gbs, s.triad_gbs);
    return 0;
  }

  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir);
  if (!model.ok()) return Fail(model.status());
  const ModelConfig& c = (*model)->config;

  EngineOptions options;
  options.num_threads = threads;
  options.scheduler.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  options.scheduler.max_num_seqs = std::max(64, batch);
  const int64_t tokens_needed = int64_t{batch} * (prompt_len + steps + 2 + options.block_size);
  options.kv_cache_bytes =
      std::max<int64_t>(int64_t{16} << 20, 2 * tokens_needed * KvCache::BytesPerToken(c));
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model, options);
  if (!engine.ok()) return Fail(engine.status());
  Engine& eng = **engine;
  std::printf("model %s: %.1fM parameters, %.0f MB weights; %d threads\n", dir.c_str(),
              CountParameters((*model)->weights) / 1e6, WeightBytes((*model)->weights) / 1e6,
              threads);

  if (mode == "check") {
    absl::StatusOr<ScoreResult> s = eng.Score(PromptIds(0, prompt_len, c.vocab_size));
    if (!s.ok()) return Fail(s.status());
    const float* row = s->trace.logits[c.num_loops - 1].data() + (prompt_len - 1) * c.vocab_size;
    std::ofstream f(absl::GetFlag(FLAGS_dump_logits), std::ios::binary);
    f.write(reinterpret_cast<const char*>(row), c.vocab_size * sizeof(float));
    std::printf("wrote z_%d of position %d (%lld logits) to %s\n", c.num_loops - 1,
                prompt_len - 1, static_cast<long long>(c.vocab_size),
                absl::GetFlag(FLAGS_dump_logits).c_str());
    return f.good() ? 0 : 1;
  }

  op_profile::SetPhases(absl::GetFlag(FLAGS_profile_phases));
  if (mode == "prefill") {
    std::vector<double> tps, gflops, gflops_cpu;
    for (int r = 0; r <= reps; ++r) {
      absl::StatusOr<PrefillRun> run = RunPrefill(eng, batch, prompt_len, profile && r == reps);
      if (!run.ok()) return Fail(run.status());
      if (r > 0) {
        tps.push_back(double{1.0} * batch * prompt_len / run->seconds);
        gflops.push_back(run->flops / run->seconds / 1e9);
        gflops_cpu.push_back(run->flops / run->cpu_seconds / 1e9);
      }
      if (profile && r == reps) PrintProfile("prefill", 1, run->seconds);
    }
    const double med = Median(tps);
    std::printf("prefill batch %d x %d tokens: %.1f tok/s, %.1f GFLOP/s wall, %.1f GFLOP per "
                "process CPU-second (median of %d)\n",
                batch, prompt_len, med, Median(gflops), Median(gflops_cpu), reps);
    std::printf("RESULT {\"side\":\"engine\",\"model\":\"%s\",\"mode\":\"prefill\",\"batch\":%d,"
                "\"prompt_len\":%d,\"threads\":%d,\"tok_s\":%.2f,\"gflops\":%.2f,"
                "\"gflops_per_cpu_s\":%.2f}\n",
                name.c_str(), batch, prompt_len, threads, med, Median(gflops),
                Median(gflops_cpu));
    return 0;
  }
  if (mode != "decode") return Fail(absl::InvalidArgumentError("--mode: " + mode));

  std::vector<std::string> specs = {absl::GetFlag(FLAGS_policy)};
  if (!absl::GetFlag(FLAGS_policies).empty()) {
    specs = absl::StrSplit(absl::GetFlag(FLAGS_policies), ',');
  }
  struct Cell {
    std::string spec;
    ExitPolicy policy;
    std::vector<double> tps, step_s, loop_frac, saved;
    DecodeRun last;
  };
  std::vector<Cell> cells;
  for (const std::string& spec : specs) {
    absl::StatusOr<ExitPolicy> p = ParsePolicy(spec);
    if (!p.ok()) return Fail(p.status());
    if (absl::Status v = ValidateExitPolicy(*p, c); !v.ok()) return Fail(v);
    cells.push_back(Cell{spec, *p, {}, {}, {}, {}, {}});
  }
  const bool trace_weights = absl::GetFlag(FLAGS_trace_weights);
  // Interleaved: every repetition runs every policy, so drift in the
  // machine's speed hits all of them alike. Repetition 0 is a warm-up.
  for (int r = 0; r <= reps; ++r) {
    for (Cell& cell : cells) {
      const bool last_rep = r == reps;
      absl::StatusOr<DecodeRun> run = RunDecode(eng, batch, prompt_len, steps, cell.policy,
                                                profile && last_rep, trace_weights && last_rep);
      if (!run.ok()) return Fail(run.status());
      if (profile && last_rep) {
        std::printf("policy %s:\n", cell.spec.c_str());
        PrintProfile("step", steps, run->seconds);
      }
      if (r == 0) continue;
      cell.tps.push_back(run->tokens / run->seconds);
      cell.step_s.push_back(run->seconds / steps);
      cell.loop_frac.push_back(static_cast<double>(run->loops_run) / run->loops_full);
      cell.saved.push_back(run->flops_full > 0 ? 1 - run->flops_done / run->flops_full : 0);
      cell.last = std::move(*run);
    }
  }
  for (const Cell& cell : cells) {
    const double med = Median(cell.tps);
    const double lo = *std::min_element(cell.tps.begin(), cell.tps.end());
    const double hi = *std::max_element(cell.tps.begin(), cell.tps.end());
    std::printf("decode batch %d (prompt %d, %d steps, policy %s): %.1f tok/s [%.1f..%.1f], "
                "%.2f ms/step, loops run %.1f%% of full depth, compute_saved %.3f, x%.2f vs %s "
                "(median of %d)\n",
                batch, prompt_len, steps, cell.spec.c_str(), med, lo, hi,
                Median(cell.step_s) * 1e3, 100 * Median(cell.loop_frac), Median(cell.saved),
                med / Median(cells[0].tps), cells[0].spec.c_str(), reps);
  }
  if (trace_weights) {
    const double cache = static_cast<double>(absl::GetFlag(FLAGS_cache_mib)) * (1 << 20);
    for (const Cell& cell : cells) {
      const WeightTraffic t = AnalyzeWeightReads(cell.last.weight_reads, cache);
      std::printf("weights per step, policy %s (batch %d): kernels read %.1f MB; distinct %.1f "
                  "MB looped vs %.1f MB unrolled; missing a %d MiB LRU: %.1f MB looped vs %.1f "
                  "MB unrolled (per token: %.1f vs %.1f MB)\n",
                  cell.spec.c_str(), batch, t.touched / 1e6, t.unique_looped / 1e6,
                  t.touched / 1e6, absl::GetFlag(FLAGS_cache_mib), t.lru_miss_looped / 1e6,
                  t.lru_miss_unrolled / 1e6, t.lru_miss_looped / batch / 1e6,
                  t.lru_miss_unrolled / batch / 1e6);
    }
  }

  // Bandwidth: only at static full depth, where the full-depth routing of
  // Score is exactly the routing the decode ran.
  const Cell& first = cells[0];
  const double med = Median(first.tps);
  const double med_step = Median(first.step_s);
  double touched_gbs = 0, unique_gbs = 0, copy = 0, triad = 0;
  if (first.policy.criterion == ExitCriterion::kNever &&
      ResolvedMaxLoops(first.policy, c.num_loops) == c.num_loops &&
      absl::GetFlag(FLAGS_bandwidth)) {
    std::vector<ScoreResult> scores;
    for (const auto& seq : first.last.sequences) {
      absl::StatusOr<ScoreResult> sc =
          eng.Score(std::vector<int32_t>(seq.begin(), seq.begin() + prompt_len + steps));
      if (!sc.ok()) return Fail(sc.status());
      scores.push_back(std::move(*sc));
    }
    StepBytes total;
    for (int j = 0; j < steps; ++j) {
      const StepBytes b = DecodeStepBytes(**model, scores, prompt_len + j);
      total.touched += b.touched;
      total.unique += b.unique;
    }
    touched_gbs = total.touched / steps / med_step / 1e9;
    unique_gbs = total.unique / steps / med_step / 1e9;
    const StreamResult st = MeasureStream(eng.thread_pool(), absl::GetFlag(FLAGS_stream_mib));
    copy = st.copy_gbs;
    triad = st.triad_gbs;
    std::printf("decode weights per step: %.1f MB touched (recurrent weights once per loop), "
                "%.1f MB unique -> %.1f / %.1f GB/s\n",
                total.touched / steps / 1e6, total.unique / steps / 1e6, touched_gbs, unique_gbs);
    std::printf("stream in-process: copy %.1f GB/s, triad %.1f GB/s -> decode touched = %.2f "
                "of triad, unique = %.2f of triad\n",
                copy, triad, touched_gbs / triad, unique_gbs / triad);
  }
  for (const Cell& cell : cells) {
    std::printf("RESULT {\"side\":\"engine\",\"model\":\"%s\",\"mode\":\"decode\","
                "\"batch\":%d,\"prompt_len\":%d,\"threads\":%d,\"policy\":\"%s\","
                "\"tok_s\":%.2f,\"ms_per_step\":%.3f,\"loops_frac\":%.4f,"
                "\"compute_saved\":%.4f,\"speedup\":%.3f,\"touched_gbs\":%.2f,"
                "\"unique_gbs\":%.2f,\"copy_gbs\":%.2f,\"triad_gbs\":%.2f}\n",
                name.c_str(), batch, prompt_len, threads, cell.spec.c_str(), Median(cell.tps),
                Median(cell.step_s) * 1e3, Median(cell.loop_frac), Median(cell.saved),
                Median(cell.tps) / med, &cell == &first ? touched_gbs : 0,
                &cell == &first ? unique_gbs : 0, copy, triad);
  }
  return 0;
}

}  // namespace
}  // namespace loopserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return loopserve::Main();
}
