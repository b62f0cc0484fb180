// The permutation that groups a batch's (token, k-slot) routing choices by
// expert, so each expert runs one contiguous GEMM, and its inverse, so the
// combine reads each token's k expert outputs back in slot order. Plain C++:
// built on the host from the router's choices, unit-tested on the CPU.
#pragma once

#include <cstdint>
#include <vector>

namespace loopserve::cuda {

struct ExpertPlan {
  int num_experts = 0;
  int top_k = 0;
  // Rows [offsets[e], offsets[e+1]) of the permuted order go to expert e;
  // within a group tokens are ascending (ties in top-k go to the lower
  // expert index before this plan sees them).
  std::vector<int32_t> offsets;  // E + 1
  std::vector<int32_t> token;    // (n*k) source token of each permuted row
  std::vector<int32_t> slot;     // (n*k) k-slot of each permuted row
  // inverse[t*k + j] = permuted row holding token t's j-th choice.
  std::vector<int32_t> inverse;  // (n*k)

  int64_t rows() const { return static_cast<int64_t>(token.size()); }
  int32_t GroupSize(int e) const { return offsets[e + 1] - offsets[e]; }
};

// expert_ids (n, k), each in [0, E). A counting sort: O(n*k + E).
// Out-of-range ids are a programmer error (the router produced them).
ExpertPlan BuildExpertPlan(const int32_t* expert_ids, int64_t n, int k, int num_experts);

}  // namespace loopserve::cuda
