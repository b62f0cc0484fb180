// dump_exit_logits: loopserve's teacher-forced per-loop exit-head logits of
// one prompt, for the llama.cpp numerics cross-check
// (tests/peer/check_vs_llama_cpp.py). Writes z_t of every position at every
// loop boundary t as raw little-endian f32 [L, T, V] (full depth is t = L-1).
//
//   dump_exit_logits --model DIR --prompt_ids 1,2,3 --out z.f32
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "engine/model_weights.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(std::string, prompt_ids, "", "comma-separated token ids");
ABSL_FLAG(std::string, out, "", "output file: f32 [num_loops, tokens, vocab]");
ABSL_FLAG(int, threads, 1, "engine threads");

namespace loopserve {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dump_exit_logits: %s\n", message.c_str());
  return 1;
}

int Main() {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',')) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id))
      return Fail("bad --prompt_ids entry `" + std::string(part) + "`");
    ids.push_back(id);
  }
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(absl::GetFlag(FLAGS_model));
  if (!model.ok()) return Fail(model.status().ToString());
  EngineOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model, options);
  if (!engine.ok()) return Fail(engine.status().ToString());
  absl::StatusOr<ScoreResult> score = (*engine)->Score(ids);
  if (!score.ok()) return Fail(score.status().ToString());
  std::ofstream out(absl::GetFlag(FLAGS_out), std::ios::binary);
  for (const std::vector<float>& z : score->trace.logits) {
    out.write(reinterpret_cast<const char*>(z.data()),
              static_cast<std::streamsize>(z.size() * sizeof(float)));
  }
  if (!out.good()) return Fail("cannot write " + absl::GetFlag(FLAGS_out));
  std::printf("%d loops x %lld tokens x %lld logits -> %s\n", score->num_loops,
              static_cast<long long>(score->num_tokens), static_cast<long long>(score->vocab_size),
              absl::GetFlag(FLAGS_out).c_str());
  return 0;
}

}  // namespace
}  // namespace loopserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return loopserve::Main();
}
