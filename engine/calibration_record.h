// Exit statistics of every (position, loop boundary) of a teacher-forced
// full-depth Score pass, recorded once so that a calibration sweep can
// evaluate any exit policy offline without running the model again
// (MODEL_SPEC "Early exit"): what each criterion compares with its
// threshold, and the log-probability of the reference next token at z_t.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/engine.h"
#include "engine/model_weights.h"
#include "kernels/cpu/logit_stats.h"

namespace loopserve {

// One position at one loop boundary t. The types are those the engine feeds
// to ExitTracker (float LogitStats, double kl / cosine / gate), so offline
// decisions compare exactly the same numbers.
struct LoopRecord {
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  LogitStats stats;              // of z_t
  double kl = kNone;             // KL(softmax z_t ‖ softmax z_{t−1}), t ≥ 1
  double hidden_cosine = kNone;  // cos(h_t, h_{t−1}), t ≥ 1
  double gate = kNone;           // λ_t, models with an exit gate only
  double log_prob_next = 0;      // log softmax(z_t)[token at position + 1]
};

// One scored sequence: positions 0 .. num_positions−1 are the tokens that
// have a next token to predict (num_positions = ids.size() − 1); position p
// is also the absolute position used by compute accounting.
struct SequenceRecord {
  int num_loops = 0;
  int64_t num_positions = 0;
  std::vector<LoopRecord> loops;  // (num_positions, num_loops), row-major

  const LoopRecord& At(int64_t pos, int t) const { return loops[pos * num_loops + t]; }
};

// Records `score` (Engine::Score of `ids`, which must hold ≥ 2 tokens).
// InvalidArgument when the trace does not match `ids` or the model.
absl::StatusOr<SequenceRecord> RecordSequence(const LoadedModel& model, const ScoreResult& score,
                                              absl::Span<const int32_t> ids);

}  // namespace loopserve
