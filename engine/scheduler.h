// Picks the tokens of each engine step under a token budget: every running
// decode first (one token each, FCFS), then chunks of waiting prompts.
// Capacity comes from the KV block manager; when a decode cannot get a block
// the newest running sequence is preempted (its blocks freed, recomputed
// later), so no request is ever lost.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/kv_block_manager.h"
#include "engine/sequence.h"

namespace loopserve {

struct SchedulerOptions {
  int max_batch_tokens = 512;  // tokens per step (decodes + prefill chunks)
  int max_num_seqs = 64;       // sequences per step
};

// A contiguous run of one sequence's tokens in this step.
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t start = 0;  // first position
  int64_t length = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, KvBlockManager* blocks);

  void Add(Sequence* seq);     // joins the waiting queue
  void Remove(Sequence* seq);  // finished or cancelled: frees its blocks
  // Chooses this step's chunks and appends their K/V slots to the block
  // tables. Empty when there is nothing to run.
  std::vector<ScheduledChunk> Schedule();

  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }

 private:
  bool ScheduleDecode(Sequence* seq, int64_t& budget, std::vector<ScheduledChunk>& out);
  bool SchedulePrefill(Sequence* seq, int64_t& budget, std::vector<ScheduledChunk>& out);
  void Preempt(Sequence* seq);

  SchedulerOptions options_;
  KvBlockManager* blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order
  int64_t num_preemptions_ = 0;
};

}  // namespace loopserve
