// Tests engine/scheduler with a real KvBlockManager and hand-made Sequences,
// driven the way the engine drives it (run the chunks, sample when a
// sequence's last token ran, remove finished ones): decode-first order, the
// token and sequence budgets, chunked prefill, preemption of the newest
// running sequence, and the block tables covering what was scheduled.
#include "engine/scheduler.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace loopserve {
namespace {

std::unique_ptr<Sequence> MakeSeq(int64_t id, int prompt_len, int max_tokens = 4) {
  GenerationRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back(i % 7);
  r.max_tokens = max_tokens;
  return std::make_unique<Sequence>(id, std::move(r));
}

// Runs one scheduled step the way Engine::Step does, after checking what was
// scheduled: chunks start at num_computed, stay inside the sequence, fit the
// budgets, and the block tables cover num_computed + scheduled tokens.
class Driver {
 public:
  Driver(SchedulerOptions options, int32_t num_blocks, int32_t block_size)
      : options_(options), blocks_(num_blocks, block_size), scheduler_(options, &blocks_) {}

  Sequence* Add(int prompt_len, int max_tokens = 4) {
    seqs_.push_back(MakeSeq(next_id_++, prompt_len, max_tokens));
    scheduler_.Add(seqs_.back().get());
    return seqs_.back().get();
  }

  // Schedules and checks; does not run.
  std::vector<ScheduledChunk> ScheduleAndCheck() {
    std::vector<ScheduledChunk> chunks = scheduler_.Schedule();
    int64_t tokens = 0;
    std::set<Sequence*> seen;
    for (const ScheduledChunk& c : chunks) {
      EXPECT_NE(c.seq, nullptr);
      EXPECT_TRUE(seen.insert(c.seq).second) << "sequence " << c.seq->id << " scheduled twice";
      EXPECT_FALSE(c.seq->finished) << c.seq->id;
      EXPECT_GE(c.length, 1);
      EXPECT_EQ(c.start, c.seq->num_computed) << c.seq->id;
      EXPECT_LE(c.start + c.length, c.seq->num_tokens()) << c.seq->id;
      const BlockTable* table = blocks_.Table(c.seq->id);
      EXPECT_NE(table, nullptr) << c.seq->id;
      if (table != nullptr) {
        EXPECT_EQ(table->num_tokens, c.start + c.length) << c.seq->id;
      }
      tokens += c.length;
    }
    EXPECT_LE(tokens, options_.max_batch_tokens);
    EXPECT_LE(static_cast<int64_t>(chunks.size()), options_.max_num_seqs);
    // Sequences not in this step hold exactly the K/V they computed (none
    // when waiting after a preemption).
    for (const auto& s : seqs_) {
      if (s->finished || seen.count(s.get()) > 0) continue;
      const BlockTable* table = blocks_.Table(s->id);
      const int64_t held = table != nullptr ? table->num_tokens : 0;
      EXPECT_EQ(held, s->num_computed) << s->id;
    }
    absl::Status inv = blocks_.CheckInvariants();
    EXPECT_TRUE(inv.ok()) << inv;
    return chunks;
  }

  // What the engine does after the forward: account, sample, finish.
  void Run(const std::vector<ScheduledChunk>& chunks) {
    for (const ScheduledChunk& c : chunks) {
      for (int64_t p = c.start; p < c.start + c.length; ++p) ++computed_[c.seq->id][p];
      c.seq->num_computed += c.length;
      if (c.seq->num_computed == c.seq->num_tokens()) {
        c.seq->tokens.push_back(static_cast<int32_t>(c.seq->num_tokens() % 5));
        c.seq->generated.push_back({});
        if (static_cast<int>(c.seq->generated.size()) >= c.seq->request.max_tokens) {
          c.seq->finished = true;
          scheduler_.Remove(c.seq);
        }
      }
    }
  }

  bool AllFinished() const {
    return std::all_of(seqs_.begin(), seqs_.end(), [](const auto& s) { return s->finished; });
  }

  // Steps until every sequence finished; false if a step scheduled nothing
  // while work remained or it took too long.
  bool RunToCompletion(int max_steps = 100000) {
    for (int step = 0; step < max_steps; ++step) {
      if (AllFinished()) return true;
      std::vector<ScheduledChunk> chunks = ScheduleAndCheck();
      if (chunks.empty()) {
        std::string state;
        for (const auto& s : seqs_) {
          const BlockTable* t = blocks_.Table(s->id);
          state += absl::StrCat("\n  seq ", s->id, ": tokens ", s->num_tokens(), " computed ",
                                s->num_computed, " full_depth_end ", s->full_depth_end,
                                s->finished ? " finished" : "", " blocks ",
                                t != nullptr ? static_cast<int64_t>(t->blocks.size()) : 0);
        }
        ADD_FAILURE() << "nothing scheduled with " << scheduler_.num_running() << " running, "
                      << scheduler_.num_waiting() << " waiting, " << blocks_.NumFreeBlocks()
                      << " free blocks" << state;
        return false;
      }
      Run(chunks);
    }
    return AllFinished();
  }

  // Times position p of sequence id ran.
  int TimesComputed(int64_t id, int64_t p) {
    auto it = computed_[id].find(p);
    return it == computed_[id].end() ? 0 : it->second;
  }

  SchedulerOptions options_;
  KvBlockManager blocks_;
  Scheduler scheduler_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
  std::map<int64_t, std::map<int64_t, int>> computed_;
  int64_t next_id_ = 1;
};

TEST(Scheduler, EmptyWhenNothingQueued) {
  Driver d({8, 4}, 4, 4);
  EXPECT_TRUE(d.ScheduleAndCheck().empty());
}

TEST(Scheduler, ChunksAPromptUnderTheTokenBudget) {
  Driver d({4, 8}, 16, 2);
  Sequence* a = d.Add(10, 1);
  std::vector<int64_t> lengths;
  while (!a->finished) {
    std::vector<ScheduledChunk> chunks = d.ScheduleAndCheck();
    ASSERT_EQ(chunks.size(), 1u);
    lengths.push_back(chunks[0].length);
    d.Run(chunks);
  }
  EXPECT_EQ(lengths, (std::vector<int64_t>{4, 4, 2}));
  for (int p = 0; p < 10; ++p) {
    EXPECT_EQ(d.TimesComputed(a->id, p), 1) << p;
  }
  EXPECT_EQ(d.blocks_.NumUsedBlocks(), 0) << "finished sequence keeps its blocks";
}

TEST(Scheduler, DecodesComeBeforePrefillsAndPromptsFillTheRest) {
  Driver d({5, 8}, 64, 4);
  Sequence* a = d.Add(2, 10);
  Sequence* b = d.Add(2, 10);
  Sequence* c = d.Add(1, 10);
  // Step 1: all three prompts (5 tokens) fit.
  std::vector<ScheduledChunk> chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 3u);
  d.Run(chunks);
  ASSERT_TRUE(a->decoding() && b->decoding() && c->decoding());
  // A long prompt arrives: the three decodes go first, the prompt gets the
  // remaining 2 tokens of the budget.
  Sequence* e = d.Add(9, 1);
  chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].seq, a);
  EXPECT_EQ(chunks[1].seq, b);
  EXPECT_EQ(chunks[2].seq, c);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(chunks[i].length, 1);
  }
  EXPECT_EQ(chunks[3].seq, e);
  EXPECT_EQ(chunks[3].start, 0);
  EXPECT_EQ(chunks[3].length, 2);
  d.Run(chunks);
  // Next step: decodes first again, then the rest of the prompt.
  chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[3].seq, e);
  EXPECT_EQ(chunks[3].start, 2);
  EXPECT_EQ(chunks[3].length, 2);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(chunks[i].seq->decoding());
  }
  d.Run(chunks);
  ASSERT_TRUE(d.RunToCompletion());
  for (int p = 0; p < 9; ++p) {
    EXPECT_EQ(d.TimesComputed(e->id, p), 1) << p;
  }
}

TEST(Scheduler, MaxNumSeqsCapsTheStep) {
  Driver d({100, 2}, 64, 4);
  for (int i = 0; i < 5; ++i) d.Add(3, 2);
  std::vector<ScheduledChunk> chunks = d.ScheduleAndCheck();
  EXPECT_EQ(chunks.size(), 2u);
  EXPECT_EQ(d.scheduler_.num_running(), 2);
  EXPECT_EQ(d.scheduler_.num_waiting(), 3);
  d.Run(chunks);
  chunks = d.ScheduleAndCheck();
  EXPECT_EQ(chunks.size(), 2u);  // the two decodes; no room for a third sequence
  EXPECT_EQ(d.scheduler_.num_waiting(), 3);
  d.Run(chunks);
  ASSERT_TRUE(d.RunToCompletion());
}

TEST(Scheduler, PrefillShrinksToTheFreeBlocksWithoutPreempting) {
  // 3 blocks of 2: a running decode holds one; a 5-token prompt gets what is
  // left and nobody is preempted for it.
  Driver d({16, 8}, 3, 2);
  Sequence* a = d.Add(1, 2);
  d.Run(d.ScheduleAndCheck());
  Sequence* b = d.Add(5, 1);
  std::vector<ScheduledChunk> chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].seq, a);
  EXPECT_EQ(chunks[1].seq, b);
  // a's decode fits a's first block; b's 5 tokens would need 3 blocks, so
  // its chunk shrinks to exactly what the 2 free blocks hold: 4 tokens.
  EXPECT_EQ(chunks[1].length, 4);
  EXPECT_EQ(d.blocks_.NumFreeBlocks(), 0);
  EXPECT_EQ(d.scheduler_.num_preemptions(), 0);
}

TEST(Scheduler, DecodePreemptsTheNewestRunningSequence) {
  // 4 blocks of 2 tokens; three 2-token prompts take 3 blocks. Each request
  // fits the pool alone (2 + 6 = 8 tokens), as the engine requires.
  Driver d({16, 8}, 4, 2);
  Sequence* a = d.Add(2, 6);
  Sequence* b = d.Add(2, 6);
  Sequence* c = d.Add(2, 6);
  d.Run(d.ScheduleAndCheck());
  ASSERT_EQ(d.blocks_.NumFreeBlocks(), 1);
  Sequence* late = d.Add(1, 1);  // queued behind; must stay behind c
  // a's decode takes the last block; b's decode needs one: c (newest) goes.
  std::vector<ScheduledChunk> chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].seq, a);
  EXPECT_EQ(chunks[1].seq, b);
  EXPECT_EQ(d.scheduler_.num_preemptions(), 1);
  EXPECT_EQ(d.blocks_.Table(c->id), nullptr) << "preempted sequence keeps blocks";
  EXPECT_EQ(c->num_computed, 0);
  EXPECT_EQ(c->num_tokens(), 3);
  // The prompt is recomputed as a prefill (generated tokens would be
  // replayed to their exit loops); the last token then decodes alone.
  EXPECT_EQ(c->full_depth_end, 2);
  EXPECT_EQ(c->prefill_pending(), 2);
  EXPECT_FALSE(c->decoding());
  EXPECT_EQ(d.scheduler_.num_running(), 2);
  EXPECT_EQ(d.scheduler_.num_waiting(), 2);
  d.Run(chunks);
  // Freeing a's blocks lets the front of the waiting queue in: c, not `late`.
  a->finished = true;
  d.scheduler_.Remove(a);
  chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].seq, b);
  EXPECT_EQ(chunks[1].seq, c);
  EXPECT_EQ(chunks[1].start, 0);
  EXPECT_EQ(chunks[1].length, 2) << "the replay chunk stops before the last token";
  EXPECT_EQ(chunks[2].seq, late) << "admitted behind c, in order";
  d.Run(chunks);
  EXPECT_TRUE(c->decoding());
  ASSERT_TRUE(d.RunToCompletion());
  EXPECT_TRUE(late->finished);
  EXPECT_EQ(d.blocks_.NumUsedBlocks(), 0);
}

TEST(Scheduler, TheNewestSequencePreemptsItself) {
  // 3 blocks of 2. a's 3-token prompt leaves a free slot in its second block;
  // b's 2-token prompt fills the third. Next step a's decode fits, b's needs
  // a block and b is the newest: b preempts itself and a keeps its blocks.
  Driver d({16, 8}, 3, 2);
  Sequence* a = d.Add(3, 3);
  Sequence* b = d.Add(2, 4);
  d.Run(d.ScheduleAndCheck());
  ASSERT_EQ(d.blocks_.NumFreeBlocks(), 0);
  std::vector<ScheduledChunk> chunks = d.ScheduleAndCheck();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].seq, a);
  EXPECT_EQ(d.scheduler_.num_preemptions(), 1);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_EQ(d.blocks_.Table(b->id), nullptr);
  EXPECT_EQ(d.blocks_.Table(a->id)->num_tokens, 4);
  EXPECT_EQ(d.scheduler_.num_running(), 1);
  EXPECT_EQ(d.scheduler_.num_waiting(), 1);
  d.Run(chunks);
  ASSERT_TRUE(d.RunToCompletion());
}

TEST(Scheduler, RemoveFreesBlocksOfRunningAndDropsWaiting) {
  Driver d({4, 8}, 8, 2);
  Sequence* a = d.Add(3, 4);
  Sequence* b = d.Add(3, 4);
  d.Run(d.ScheduleAndCheck());  // a: 3 tokens (2 blocks), b: 1 (the budget's rest)
  ASSERT_EQ(d.scheduler_.num_running(), 2);
  ASSERT_NE(d.blocks_.Table(b->id), nullptr);
  EXPECT_EQ(d.blocks_.Table(b->id)->num_tokens, 1);
  const int32_t used_by_a = static_cast<int32_t>(d.blocks_.Table(a->id)->blocks.size());
  const int32_t used = d.blocks_.NumUsedBlocks();
  d.scheduler_.Remove(a);
  a->finished = true;
  EXPECT_EQ(d.blocks_.Table(a->id), nullptr);
  EXPECT_EQ(d.blocks_.NumUsedBlocks(), used - used_by_a);
  EXPECT_EQ(d.scheduler_.num_running(), 1);
  Sequence* c = d.Add(2, 1);
  EXPECT_EQ(d.scheduler_.num_waiting(), 1);
  d.scheduler_.Remove(c);
  c->finished = true;
  EXPECT_EQ(d.scheduler_.num_waiting(), 0);
  ASSERT_TRUE(d.RunToCompletion());
  EXPECT_EQ(d.blocks_.NumUsedBlocks(), 0);
}

// Random mixes of prompts, budgets and pool sizes: every step passes the
// Driver's checks, every sequence finishes, and without preemption every
// position runs exactly once.
TEST(Scheduler, RandomWorkloadsKeepInvariantsAndLoseNothing) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 400; ++trial) {
    const int block_size = 1 + static_cast<int>(rng() % 4);
    const int num_blocks = 2 + static_cast<int>(rng() % 12);
    const int pool_tokens = num_blocks * block_size;
    SchedulerOptions options;
    options.max_batch_tokens = 1 + static_cast<int>(rng() % 12);
    options.max_num_seqs = 1 + static_cast<int>(rng() % 5);
    SCOPED_TRACE(absl::StrCat("trial ", trial, ": ", num_blocks, " blocks of ", block_size,
                              ", budget ", options.max_batch_tokens, ", seqs ",
                              options.max_num_seqs));
    Driver d(options, num_blocks, block_size);
    const int n = 1 + static_cast<int>(rng() % 7);
    for (int i = 0; i < n; ++i) {
      // As the engine validates: prompt + max_tokens fits the pool.
      const int total = 2 + static_cast<int>(rng() % std::max(1, pool_tokens - 1));
      const int prompt = 1 + static_cast<int>(rng() % (total - 1));
      d.Add(prompt, total - prompt);
    }
    ASSERT_TRUE(d.RunToCompletion());
    EXPECT_EQ(d.blocks_.NumUsedBlocks(), 0);
    EXPECT_EQ(d.scheduler_.num_running(), 0);
    EXPECT_EQ(d.scheduler_.num_waiting(), 0);
    for (const auto& s : d.seqs_) {
      EXPECT_EQ(static_cast<int>(s->generated.size()), s->request.max_tokens);
      // Every token but the last sampled one ran, at least once; exactly once
      // when nothing was preempted.
      for (int64_t p = 0; p + 1 < s->num_tokens(); ++p) {
        const int times = d.TimesComputed(s->id, p);
        EXPECT_GE(times, 1) << s->id << "@" << p;
        if (d.scheduler_.num_preemptions() == 0) {
          EXPECT_EQ(times, 1) << s->id << "@" << p;
        }
      }
    }
  }
}

}  // namespace
}  // namespace loopserve
