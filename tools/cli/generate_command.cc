// `loopserve-cli generate`: runs requests through the engine and prints each
// generated token with the loop it exited at, plus compute saved.
#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/cli/cli_common.h"

ABSL_FLAG(int, max_tokens, 16, "tokens to generate per sequence");
ABSL_FLAG(float, temperature, 0.0f, "sampling temperature (0 = greedy)");
ABSL_FLAG(int, top_k, 0, "top-k sampling (0 = off)");
ABSL_FLAG(float, top_p, 1.0f, "nucleus sampling threshold (1 = off)");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(int, logprobs, 0, "top alternatives to print per token");
ABSL_FLAG(int, num_sequences, 1, "copies of the prompt generated as one batch");
ABSL_FLAG(std::string, stop_ids, "", "token ids that end a sequence");

namespace loopserve::cli {

int RunGenerate() {
  absl::StatusOr<std::unique_ptr<Engine>> engine = LoadEngine();
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer();
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "error: %s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  const Tokenizer* tok = tokenizer->get();
  absl::StatusOr<std::vector<int32_t>> prompt = PromptFromFlags(tok);
  absl::StatusOr<ExitPolicy> policy = PolicyFromFlags((*engine)->config());
  for (const absl::Status& s : {prompt.status(), policy.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  GenerationRequest request;
  request.prompt = *prompt;
  request.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  request.policy = *policy;
  request.sampling.temperature = absl::GetFlag(FLAGS_temperature);
  request.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  request.sampling.top_p = absl::GetFlag(FLAGS_top_p);
  request.sampling.seed = absl::GetFlag(FLAGS_seed);
  request.sampling.logprobs = absl::GetFlag(FLAGS_logprobs);
  if (tok != nullptr && tok->eos_id() >= 0) request.stop_token_ids.push_back(tok->eos_id());
  if (!absl::GetFlag(FLAGS_stop_ids).empty()) {
    absl::StatusOr<std::vector<int32_t>> stops = ParseIds(absl::GetFlag(FLAGS_stop_ids));
    if (!stops.ok()) {
      std::fprintf(stderr, "error: --stop_ids: %s\n", stops.status().ToString().c_str());
      return 1;
    }
    request.stop_token_ids.insert(request.stop_token_ids.end(), stops->begin(), stops->end());
  }
  std::vector<GenerationRequest> requests(std::max(1, absl::GetFlag(FLAGS_num_sequences)),
                                          request);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<GenerationResult>> results = (*engine)->Generate(requests);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!results.ok()) {
    std::fprintf(stderr, "error: %s\n", results.status().ToString().c_str());
    return 1;
  }
  Usage total;
  for (const GenerationResult& r : *results) {
    total.Add(r.usage);
    std::printf("sequence %lld: finish=%s\n", static_cast<long long>(r.id),
                FinishReasonName(r.finish_reason));
    std::printf("  %-6s %-8s %-5s %-9s %s\n", "step", "token", "loops", "logprob",
                tok != nullptr ? "text" : "");
    for (size_t i = 0; i < r.tokens.size(); ++i) {
      const GeneratedToken& t = r.tokens[i];
      std::printf("  %-6zu %-8d %-5d %-9.4f", i, t.token, t.exit_loop + 1, t.logprob);
      if (tok != nullptr) {
        std::printf(" %-12s", absl::StrCat("\"", tok->TokenBytes(t.token), "\"").c_str());
      }
      for (const auto& [id, lp] : t.top_logprobs) std::printf("  %d:%.3f", id, lp);
      std::printf("\n");
    }
    if (tok != nullptr) {
      std::vector<int32_t> ids;
      for (const GeneratedToken& t : r.tokens) ids.push_back(t.token);
      std::printf("  text: %s%s\n", absl::GetFlag(FLAGS_prompt).c_str(), tok->Decode(ids).c_str());
    }
    std::printf("  tokens: %s\n",
                absl::StrJoin(r.tokens, " ", [](std::string* out, const GeneratedToken& t) {
                  out->append(std::to_string(t.token));
                }).c_str());
  }
  std::printf("loops executed %lld of %lld at full depth; compute_saved %.1f%% "
              "(exit checks included); %lld tokens in %.3f s\n",
              static_cast<long long>(total.loops_executed),
              static_cast<long long>(total.loops_full), 100.0 * total.ComputeSaved(),
              static_cast<long long>(total.completion_tokens), seconds);
  return 0;
}

}  // namespace loopserve::cli
