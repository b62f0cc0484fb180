// Paged-KV bookkeeping: which fixed-size blocks each sequence owns. No tensor
// memory lives here; the engine owns the pool and maps (block, offset) to it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loopserve {

// Reference-counted blocks [0, num_blocks) with a free list. Allocation is
// all-or-nothing and says "no" with a Status rather than failing hard, so the
// scheduler can answer by preempting.
class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  // n fresh blocks with ref count 1, or ResourceExhausted (nothing allocated).
  absl::StatusOr<std::vector<int32_t>> Allocate(int64_t n);
  // Drops one reference; the block returns to the free list at zero.
  void Free(int32_t block);
  // One more owner of an allocated block (sharing).
  void AddRef(int32_t block);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t NumFree() const { return static_cast<int32_t>(free_.size()); }
  int32_t NumUsed() const { return num_blocks() - NumFree(); }
  int32_t RefCount(int32_t block) const;

  // Free list without duplicates, and free ⇔ ref count 0. For tests and debug
  // builds; O(num_blocks).
  absl::Status CheckInvariants() const;

 private:
  std::vector<int32_t> ref_counts_;
  // Stack: the most recently freed block is reused first (still warm in cache).
  std::vector<int32_t> free_;
};

// The blocks of one sequence, in position order: token p lives in
// blocks[p / block_size] at offset p % block_size.
struct BlockTable {
  std::vector<int32_t> blocks;
  int64_t num_tokens = 0;
};

// What appending tokens to a sequence would take; computing it mutates
// nothing.
struct AppendPlan {
  int64_t new_tokens = 0;
  int64_t new_blocks = 0;  // blocks to allocate beyond the table's current ones
};

// Result of Fork: full blocks are shared; a partly filled last block cannot be
// (both sequences would write its free slots), so the child gets a fresh one
// and the engine must copy the parent's first `tokens` slots of `src` to `dst`.
struct BlockCopy {
  int32_t src = 0;
  int32_t dst = 0;
  int64_t tokens = 0;
};

// Block tables of all sequences over one BlockPool. Planning (PlanAppend,
// CanAppend) is separate from mutation (Append, Release, Fork) so a step that
// cannot get its blocks leaves every table as it was.
class KvBlockManager {
 public:
  KvBlockManager(int32_t num_blocks, int32_t block_size);

  int32_t block_size() const { return block_size_; }
  int64_t BlocksFor(int64_t num_tokens) const;

  // A sequence that has no table yet plans as an empty one.
  AppendPlan PlanAppend(int64_t seq_id, int64_t n_tokens) const;
  bool CanAppend(int64_t seq_id, int64_t n_tokens) const;
  // Allocates what PlanAppend says (creating the table on first use), or
  // ResourceExhausted naming the blocks needed and free, with nothing changed.
  // n_tokens < 0 is InvalidArgument.
  absl::Status Append(int64_t seq_id, int64_t n_tokens);
  // Drops the sequence's references to its blocks; NotFound if unknown.
  absl::Status Release(int64_t seq_id);
  // Creates `child` with the parent's tokens (see BlockCopy). Full blocks are
  // shared by ref count; they are never written again because appends only
  // fill the last block, so no copy-on-write is needed for them. NotFound for
  // an unknown parent, AlreadyExists for an existing child, ResourceExhausted
  // when the partial block cannot be allocated (nothing changed).
  absl::StatusOr<std::optional<BlockCopy>> Fork(int64_t parent, int64_t child);

  // nullptr when the sequence has no table.
  const BlockTable* Table(int64_t seq_id) const;
  // Physical slot block * block_size + offset of token `position` of a
  // sequence; the position must be below its num_tokens.
  int64_t SlotOf(int64_t seq_id, int64_t position) const;

  int64_t NumSequences() const { return static_cast<int64_t>(tables_.size()); }
  int32_t NumFreeBlocks() const { return pool_.NumFree(); }
  int32_t NumUsedBlocks() const { return pool_.NumUsed(); }
  const BlockPool& pool() const { return pool_; }

  // Every table holds exactly BlocksFor(num_tokens) blocks, each block's ref
  // count equals the number of tables holding it, plus the pool's invariants.
  absl::Status CheckInvariants() const;

 private:
  int32_t block_size_;
  BlockPool pool_;
  absl::flat_hash_map<int64_t, BlockTable> tables_;
};

}  // namespace loopserve
