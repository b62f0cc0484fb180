// loopserve_cuda_bench: decode tokens/s at several batch sizes and prefill
// tokens/s of loopserve::Engine on the CUDA backend, with the achieved HBM
// bandwidth of decode (weight bytes a step must read / step time) and the
// TFLOP/s of prefill (FlopModel FLOPs / time). No gRPC, no gtest: one line
// per figure and a final `RESULT {json}` line for tools/gpu-check.sh.
//
//   loopserve_cuda_bench --model DIR --batches 1,16,64,256 --prompt_len 16
//       --decode_steps 32 --prefill_batch 16 --prefill_len 512
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/compute_accounting.h"
#include "engine/engine.h"
#include "engine/model_weights.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(std::string, backend, "cuda", "cuda | cpu (for a same-binary comparison)");
ABSL_FLAG(std::string, batches, "1,16,64,256", "decode batch sizes");
ABSL_FLAG(int, prompt_len, 16, "prompt tokens per decode sequence");
ABSL_FLAG(int, decode_steps, 32, "timed decode tokens per sequence");
ABSL_FLAG(int, prefill_batch, 16, "prefill sequences");
ABSL_FLAG(int, prefill_len, 512, "prefill tokens per sequence");
ABSL_FLAG(int64_t, kv_mib, 8192, "KV pool MiB (the device pool mirrors it)");

namespace loopserve {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<int32_t> Prompt(int len, int salt, int64_t vocab) {
  std::vector<int32_t> p(len);
  for (int i = 0; i < len; ++i) p[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 1) % vocab);
  return p;
}

absl::StatusOr<std::unique_ptr<Engine>> MakeEngine(std::shared_ptr<const LoadedModel> model,
                                                   int max_batch_tokens, int max_seqs) {
  EngineOptions options;
  options.backend = absl::GetFlag(FLAGS_backend);
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_mib) << 20;
  options.scheduler.max_batch_tokens = max_batch_tokens;
  options.scheduler.max_num_seqs = max_seqs;
  return Engine::Create(std::move(model), options);
}

// Bytes of weights one decode step reads: every non-expert weight once per
// layer instance it serves (recurrent layers once per loop), plus the
// experts a batch of `batch` tokens routes to, bounded by E (an upper bound
// on distinct experts: min(E, batch*k) per layer instance), plus the LM head.
double DecodeWeightBytes(const LoadedModel& m, int batch) {
  const ModelConfig& c = m.config;
  auto bytes = [](const MatrixView& v) { return double(v.rows) * v.cols * DTypeSize(v.dtype); };
  auto layer_bytes = [&](const LayerWeights& w, int uses) {
    double b =
        bytes(w.attn.q_proj) + bytes(w.attn.k_proj) + bytes(w.attn.v_proj) + bytes(w.attn.o_proj);
    if (w.ffn == FfnKind::kDense) {
      b += bytes(w.dense.gate) + bytes(w.dense.up) + bytes(w.dense.down);
    } else {
      b += bytes(w.moe.router);
      const int touched = std::min(c.num_experts, batch * c.num_experts_per_tok);
      const SwiGluWeights& e = w.moe.experts[0];
      b += touched * (bytes(e.gate) + bytes(e.up) + bytes(e.down));
      for (const SwiGluWeights& s : w.moe.shared) b += bytes(s.gate) + bytes(s.up) + bytes(s.down);
    }
    if (!w.adaln.down.empty()) b += bytes(w.adaln.down) + bytes(w.adaln.up);
    return b * uses;
  };
  double total = bytes(m.weights.lm_head);
  for (const LayerWeights& w : m.weights.prelude) total += layer_bytes(w, 1);
  for (const LayerWeights& w : m.weights.recurrent) total += layer_bytes(w, c.num_loops);
  for (const LayerWeights& w : m.weights.coda) total += layer_bytes(w, 1);
  return total;
}

absl::Status Decode(std::shared_ptr<const LoadedModel> model, int batch, std::string* json) {
  const int steps = absl::GetFlag(FLAGS_decode_steps), plen = absl::GetFlag(FLAGS_prompt_len);
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeEngine(model, 1 << 16, batch);
  if (!engine.ok()) return engine.status();
  for (int b = 0; b < batch; ++b) {
    GenerationRequest r;
    r.prompt = Prompt(plen, b, model->config.vocab_size);
    r.max_tokens = steps + 1;
    if (absl::StatusOr<int64_t> id = (*engine)->Add(std::move(r)); !id.ok()) return id.status();
  }
  // The first step prefills every prompt and samples each one's first token.
  if (absl::StatusOr<std::vector<SequenceUpdate>> u = (*engine)->Step(); !u.ok()) return u.status();
  int64_t tokens = 0;
  const auto start = Clock::now();
  while ((*engine)->HasWork()) {
    absl::StatusOr<std::vector<SequenceUpdate>> u = (*engine)->Step();
    if (!u.ok()) return u.status();
    for (const SequenceUpdate& s : *u) tokens += static_cast<int64_t>(s.new_tokens.size());
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double step_s = seconds / steps;
  const double gbps = DecodeWeightBytes(*model, batch) / step_s / 1e9;
  std::printf("decode batch %4d: %10.1f tokens/s  %8.3f ms/step  weights %7.1f GB/s\n", batch,
              tokens / seconds, 1e3 * step_s, gbps);
  *json = absl::StrCat("{\"batch\":", batch, ",\"tokens_per_s\":", tokens / seconds,
                       ",\"ms_per_step\":", 1e3 * step_s, ",\"weight_gb_per_s\":", gbps, "}");
  return absl::OkStatus();
}

absl::Status Prefill(std::shared_ptr<const LoadedModel> model, std::string* json) {
  const int batch = absl::GetFlag(FLAGS_prefill_batch), len = absl::GetFlag(FLAGS_prefill_len);
  absl::StatusOr<std::unique_ptr<Engine>> engine = MakeEngine(model, batch * len, batch);
  if (!engine.ok()) return engine.status();
  std::vector<GenerationRequest> warm(1);
  warm[0].prompt = Prompt(len, 999, model->config.vocab_size);
  warm[0].max_tokens = 1;
  if (auto r = (*engine)->Generate(warm); !r.ok()) return r.status();
  std::vector<GenerationRequest> requests(batch);
  for (int b = 0; b < batch; ++b) {
    requests[b].prompt = Prompt(len, b, model->config.vocab_size);
    requests[b].max_tokens = 1;
  }
  const auto start = Clock::now();
  if (auto r = (*engine)->Generate(requests); !r.ok()) return r.status();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const FlopModel flops(model->config);
  double total_flops = 0;
  for (int p = 0; p < len; ++p) total_flops += batch * flops.FullDepth(p);
  const double tokens = double(batch) * len;
  std::printf("prefill %d x %d: %10.1f tokens/s  %7.2f TFLOP/s\n", batch, len, tokens / seconds,
              total_flops / seconds / 1e12);
  *json =
      absl::StrCat("{\"batch\":", batch, ",\"len\":", len, ",\"tokens_per_s\":", tokens / seconds,
                   ",\"tflop_per_s\":", total_flops / seconds / 1e12, "}");
  return absl::OkStatus();
}

int Main() {
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(absl::GetFlag(FLAGS_model));
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  std::printf("model %s: %.1fM parameters, %.2f GB weights, backend %s\n",
              absl::GetFlag(FLAGS_model).c_str(), CountParameters((*model)->weights) / 1e6,
              WeightBytes((*model)->weights) / 1e9, absl::GetFlag(FLAGS_backend).c_str());
  std::vector<std::string> decode_json;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int batch = 0;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1) {
      std::fprintf(stderr, "bad --batches entry\n");
      return 1;
    }
    std::string json;
    if (absl::Status s = Decode(*model, batch, &json); !s.ok()) {
      std::fprintf(stderr, "decode batch %d: %s\n", batch, s.ToString().c_str());
      return 1;
    }
    decode_json.push_back(json);
  }
  std::string prefill_json;
  if (absl::Status s = Prefill(*model, &prefill_json); !s.ok()) {
    std::fprintf(stderr, "prefill: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("RESULT {\"backend\":\"%s\",\"decode\":[%s],\"prefill\":%s}\n",
              absl::GetFlag(FLAGS_backend).c_str(), absl::StrJoin(decode_json, ",").c_str(),
              prefill_json.c_str());
  return 0;
}

}  // namespace
}  // namespace loopserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return loopserve::Main();
}
