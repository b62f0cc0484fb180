#include "engine/calibration_record.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/common/scalar_math.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"

namespace loopserve {

absl::StatusOr<SequenceRecord> RecordSequence(const LoadedModel& model, const ScoreResult& score,
                                              absl::Span<const int32_t> ids) {
  const ModelConfig& config = model.config;
  const int num_loops = score.num_loops;
  const int64_t n = score.num_tokens;
  const int64_t vocab = score.vocab_size;
  const int64_t d_model = config.hidden_size;
  if (n != static_cast<int64_t>(ids.size()) || n < 2) {
    return absl::InvalidArgumentError(absl::StrCat("calibration record: score has ", n,
                                                   " tokens, ids ", ids.size(),
                                                   " (expected equal and >= 2)"));
  }
  if (num_loops != config.num_loops || vocab != config.vocab_size ||
      score.trace.logits.size() != static_cast<size_t>(num_loops) ||
      score.trace.hidden.size() != static_cast<size_t>(num_loops)) {
    return absl::InvalidArgumentError(
        "calibration record: score trace does not match the model (loops, vocab or missing "
        "per-loop logits/hidden states)");
  }
  for (int t = 0; t < num_loops; ++t) {
    if (score.trace.logits[t].size() != static_cast<size_t>(n * vocab) ||
        score.trace.hidden[t].size() != static_cast<size_t>(n * d_model)) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration record: trace of loop ", t, " has the wrong size"));
    }
  }
  SequenceRecord record;
  record.num_loops = num_loops;
  record.num_positions = n - 1;
  record.loops.resize(static_cast<size_t>(record.num_positions * num_loops));
  std::vector<float> normed(static_cast<size_t>(d_model));
  const float eps = static_cast<float>(config.rms_norm_eps);
  for (int64_t p = 0; p < record.num_positions; ++p) {
    const int32_t next = ids[p + 1];
    if (next < 0 || next >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("calibration record: token id ", next,
                                                     " at position ", p + 1,
                                                     " outside the vocabulary [0, ", vocab, ")"));
    }
    for (int t = 0; t < num_loops; ++t) {
      LoopRecord& r = record.loops[p * num_loops + t];
      const float* z = score.trace.logits[t].data() + p * vocab;
      const float* h = score.trace.hidden[t].data() + p * d_model;
      r.stats = ComputeLogitStats(z, vocab);
      r.log_prob_next = static_cast<double>(z[next]) - r.stats.log_sum_exp;
      if (t > 0) {
        const LoopRecord& prev = record.loops[p * num_loops + t - 1];
        const float* z_prev = score.trace.logits[t - 1].data() + p * vocab;
        r.kl = KlDivergence(z, r.stats.log_sum_exp, z_prev, prev.stats.log_sum_exp, vocab);
        r.hidden_cosine =
            CosineSimilarity(h, score.trace.hidden[t - 1].data() + p * d_model, d_model);
      }
      if (config.exit_gate) {
        // As LoopedForward computes λ_t: final RMSNorm, one-row Linear, sigmoid.
        RmsNorm(h, 1, d_model, model.weights.final_norm, eps, normed.data());
        float logit = 0;
        Linear(normed.data(), 1, model.weights.exit_gate, &logit, nullptr);
        r.gate = Sigmoid(logit + model.weights.exit_gate_bias.At(0));
      }
    }
  }
  return record;
}

}  // namespace loopserve
