// What one forward step runs on and what it returns: a flat list of tokens
// (prefill chunks and decode tokens of many sequences) and, per token, the
// loop it exited at, its exit-head logits and its compute accounting.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/exit_policy.h"

namespace loopserve {

struct ForwardToken {
  int32_t token_id = 0;
  int32_t position = 0;
  const int32_t* block_table = nullptr;  // the sequence's blocks, covering `position`
  // Prompt tokens run all loops and write every layer instance's K/V. A
  // token that is not full depth runs under `policy` and must be its
  // sequence's only token in the batch, with every earlier position written.
  bool full_depth = true;
  // Replay of a token computed before its sequence was preempted: it leaves
  // at this loop (no exit checks), fills its skipped loops' K/V as its
  // policy does, and writes its coda K/V after every loop of the batch ran.
  // Chunks of such tokens may share a batch, unlike tokens under a policy.
  int forced_exit_loop = -1;
  bool wants_logits = false;  // return the exit-head logits (to sample from)
  const ExitPolicy* policy = nullptr;
};

struct TokenResult {
  int exit_loop = -1;     // 0-based loop whose boundary the token left at
  int logits_row = -1;    // row of ForwardResult::logits, or -1
  int exit_heads = 0;     // exit-head evaluations (exit checks + the exit)
  int gate_evals = 0;
  int propagate_fills = 0;
  double exit_statistic = 0;  // the criterion's value at the exit boundary
  double flops_done = 0;
  double flops_full = 0;
};

struct ForwardResult {
  std::vector<TokenResult> tokens;  // one per ForwardToken, same order
  std::vector<float> logits;        // (rows, V)
};

// Optional detail for scoring and golden tests; every token must be full depth.
struct ForwardTrace {
  bool loop_logits = false;  // fill `logits`: z_t of every token at every boundary
  std::vector<std::vector<float>> hidden;  // [L] of (n, D): h_t
  std::vector<std::vector<float>> logits;  // [L] of (n, V)
  // "part.layer.loop" -> (n, k) selected experts of every MoE layer instance.
  std::map<std::string, std::vector<int32_t>> router;
};

}  // namespace loopserve
