#include "engine/scheduler.h"

#include <algorithm>

#include "kernels/common/check.h"

namespace loopserve {

Scheduler::Scheduler(const SchedulerOptions& options, KvBlockManager* blocks)
    : options_(options), blocks_(blocks) {}

void Scheduler::Add(Sequence* seq) { waiting_.push_back(seq); }

void Scheduler::Remove(Sequence* seq) {
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
  if (blocks_->Table(seq->id) != nullptr) blocks_->Release(seq->id).IgnoreError();
}

void Scheduler::Preempt(Sequence* seq) {
  // Recompute: drop its K/V. On return the prompt runs full depth, each
  // generated token is replayed to the loop it exited at, and the last
  // (never computed) token decodes under the policy, so the sequence
  // continues exactly as if it had not been preempted.
  running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
  if (blocks_->Table(seq->id) != nullptr) blocks_->Release(seq->id).IgnoreError();
  seq->num_computed = 0;
  seq->full_depth_end = std::max(seq->usage.prompt_tokens, seq->num_tokens() - 1);
  waiting_.push_front(seq);
  ++num_preemptions_;
}

bool Scheduler::ScheduleDecode(Sequence* seq, int64_t& budget,
                               std::vector<ScheduledChunk>& out) {
  if (budget < 1) return false;
  while (!blocks_->CanAppend(seq->id, 1)) {
    // Preempt the newest running sequence that is not already in this step.
    Sequence* victim = running_.back();
    Preempt(victim);
    if (victim == seq) return false;
  }
  LOOPSERVE_CHECK_OK(blocks_->Append(seq->id, 1));
  out.push_back({seq, seq->num_computed, 1});
  budget -= 1;
  return true;
}

bool Scheduler::SchedulePrefill(Sequence* seq, int64_t& budget,
                                std::vector<ScheduledChunk>& out) {
  int64_t length = std::min<int64_t>(seq->prefill_pending(), budget);
  // Shrink the chunk to what the pool can hold now (the free slots of the
  // sequence's last block plus whole free blocks); never preempt running
  // decodes for a new prompt.
  const BlockTable* table = blocks_->Table(seq->id);
  const int64_t block_size = blocks_->block_size();
  const int64_t slack =
      table == nullptr ? 0 : static_cast<int64_t>(table->blocks.size()) * block_size -
                                 table->num_tokens;
  length = std::min<int64_t>(length, slack + int64_t{blocks_->NumFreeBlocks()} * block_size);
  if (length <= 0) return false;
  LOOPSERVE_CHECK(blocks_->CanAppend(seq->id, length)) << "prefill chunk of " << length;
  LOOPSERVE_CHECK_OK(blocks_->Append(seq->id, length));
  out.push_back({seq, seq->num_computed, length});
  budget -= length;
  return true;
}

std::vector<ScheduledChunk> Scheduler::Schedule() {
  std::vector<ScheduledChunk> out;
  int64_t budget = options_.max_batch_tokens;
  const int64_t preemptions_before = num_preemptions_;
  // Running sequences: decodes, or the rest of a prompt being chunked.
  const std::vector<Sequence*> running = running_;
  for (Sequence* seq : running) {
    if (std::find(running_.begin(), running_.end(), seq) == running_.end()) continue;
    if (static_cast<int64_t>(out.size()) >= options_.max_num_seqs) break;
    if (seq->decoding()) {
      ScheduleDecode(seq, budget, out);
    } else {
      SchedulePrefill(seq, budget, out);
    }
  }
  // Admit waiting sequences in order while budget and blocks last. Not after
  // a preemption in this step (unless nothing else runs): the victim, now at
  // the front, would take back the blocks just freed and recompute tokens
  // that the next decode needing a block throws away again.
  const bool preempted = num_preemptions_ != preemptions_before;
  while (!(preempted && !out.empty()) && !waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(out.size()) < options_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    if (!SchedulePrefill(seq, budget, out)) break;
    waiting_.pop_front();
    running_.push_back(seq);
  }
  return out;
}

}  // namespace loopserve
