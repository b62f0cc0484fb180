// `loopserve-cli score`: teacher-forced scoring at full depth. For every
// position: the log-probability of the next token at each loop boundary,
// and the loop the policy would have exited at on these statistics.
#include <cmath>
#include <cstdio>

#include "absl/flags/flag.h"
#include "kernels/cpu/logit_stats.h"
#include "tools/cli/cli_common.h"

namespace loopserve::cli {
namespace {

// Offline exit loop of one position from its full-depth per-loop logits.
// (A served token would see exited neighbours' K/V; scoring keeps every
// position at full depth, so this is the teacher-forced estimate.)
int OfflineExitLoop(const ScoreResult& score, const ExitPolicy& policy, int64_t pos) {
  const int64_t vocab = score.vocab_size;
  const int64_t n = score.num_tokens;
  ExitTracker tracker(policy, score.num_loops);
  const int64_t d_model =
      static_cast<int64_t>(score.trace.hidden[0].size()) / std::max<int64_t>(1, n);
  for (int t = 0; t < score.num_loops; ++t) {
    BoundaryObservation obs;
    const float* z = score.trace.logits[t].data() + pos * vocab;
    obs.stats = ComputeLogitStats(z, vocab);
    if (t > 0) {
      const float* prev = score.trace.logits[t - 1].data() + pos * vocab;
      const LogitStats prev_stats = ComputeLogitStats(prev, vocab);
      obs.kl = KlDivergence(z, obs.stats->log_sum_exp, prev, prev_stats.log_sum_exp, vocab);
      obs.hidden_cosine = CosineSimilarity(score.trace.hidden[t].data() + pos * d_model,
                                           score.trace.hidden[t - 1].data() + pos * d_model,
                                           d_model);
    }
    if (policy.criterion == ExitCriterion::kGate) return -1;  // needs the gate; not offline
    if (tracker.Observe(t, obs).exit) return t;
  }
  return score.num_loops - 1;
}

}  // namespace

int RunScore() {
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
  absl::StatusOr<std::vector<int32_t>> ids = PromptFromFlags(tokenizer->get());
  absl::StatusOr<ExitPolicy> policy = PolicyFromFlags((*engine)->config());
  for (const absl::Status& s : {ids.status(), policy.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  absl::StatusOr<ScoreResult> score = (*engine)->Score(*ids);
  if (!score.ok()) {
    std::fprintf(stderr, "error: %s\n", score.status().ToString().c_str());
    return 1;
  }
  const int64_t vocab = score->vocab_size;
  std::printf("%-5s %-8s", "pos", "next");
  for (int t = 0; t < score->num_loops; ++t) std::printf("  loop%-2d lp", t + 1);
  std::printf("  exit\n");
  double nll_full = 0, nll_policy = 0;
  for (int64_t p = 0; p + 1 < score->num_tokens; ++p) {
    const int32_t next = (*ids)[p + 1];
    std::printf("%-5lld %-8d", static_cast<long long>(p), next);
    std::vector<double> lp(score->num_loops);
    for (int t = 0; t < score->num_loops; ++t) {
      const float* z = score->trace.logits[t].data() + p * vocab;
      lp[t] = z[next] - ComputeLogitStats(z, vocab).log_sum_exp;
      std::printf("  %10.4f", lp[t]);
    }
    const int exit = OfflineExitLoop(*score, *policy, p);
    std::printf("  %d\n", exit + 1);
    nll_full -= lp[score->num_loops - 1];
    nll_policy -= lp[exit < 0 ? score->num_loops - 1 : exit];
  }
  const double count = static_cast<double>(std::max<int64_t>(1, score->num_tokens - 1));
  std::printf("mean NLL: full depth %.4f, at the policy's exits %.4f\n", nll_full / count,
              nll_policy / count);
  return 0;
}

}  // namespace loopserve::cli
