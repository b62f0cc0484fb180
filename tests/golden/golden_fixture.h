// Reads one golden fixture written by tests/reference/make_fixtures.py: the
// checkpoint directory, golden.safetensors (per-prompt exit logits, hidden
// states, router choices) and golden.json (greedy continuations per policy).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/exit_policy.h"
#include "engine/safetensors.h"

namespace loopserve::testing {

struct GoldenCase {
  std::string name;
  int prompt_index = 0;
  ExitPolicy policy;
  int max_tokens = 0;
  std::vector<int32_t> tokens;
  std::vector<int> exit_loops;
  double decode_flops_done = 0;
  double decode_flops_full = 0;
};

struct GoldenFixture {
  std::string dir;
  std::unique_ptr<SafetensorsFile> tensors;
  std::vector<GoldenCase> cases;
  int num_prompts = 0;

  std::vector<int32_t> PromptIds(int prompt) const;
  // Tensor `prompt.{j}.{suffix}` as floats (F32) or ints (I32); empty if absent.
  std::vector<float> Floats(int prompt, const std::string& suffix) const;
  std::vector<int32_t> Ints(int prompt, const std::string& suffix) const;
  bool Has(int prompt, const std::string& suffix) const;
};

// The fixture directory root from $LOOPSERVE_FIXTURE_DIR.
std::string FixtureRoot();
absl::StatusOr<GoldenFixture> LoadGoldenFixture(const std::string& dir);

}  // namespace loopserve::testing
