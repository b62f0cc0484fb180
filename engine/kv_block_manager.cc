// Block pool and per-sequence block tables; every mutation first checks that
// it can complete, so failures leave the state untouched.
#include "engine/kv_block_manager.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/common/check.h"

namespace loopserve {

BlockPool::BlockPool(int32_t num_blocks) : ref_counts_(num_blocks, 0) {
  LOOPSERVE_CHECK(num_blocks >= 0) << "BlockPool: negative size";
  free_.reserve(num_blocks);
  // Reversed so that a fresh pool hands out 0, 1, 2, ... (readable in tests
  // and dumps).
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<std::vector<int32_t>> BlockPool::Allocate(int64_t n) {
  LOOPSERVE_CHECK(n >= 0) << "BlockPool: negative allocation";
  if (n > NumFree()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV block pool: need ", n, " blocks, ", NumFree(), " free of ", num_blocks()));
  }
  std::vector<int32_t> blocks(free_.end() - n, free_.end());
  std::reverse(blocks.begin(), blocks.end());
  free_.resize(free_.size() - n);
  for (int32_t b : blocks) ref_counts_[b] = 1;
  return blocks;
}

void BlockPool::Free(int32_t block) {
  LOOPSERVE_CHECK(RefCount(block) > 0)
      << absl::StrCat("KV block ", block, " freed while not in use");
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

void BlockPool::AddRef(int32_t block) {
  LOOPSERVE_CHECK(RefCount(block) > 0)
      << absl::StrCat("KV block ", block, " shared while not in use");
  ++ref_counts_[block];
}

int32_t BlockPool::RefCount(int32_t block) const {
  LOOPSERVE_CHECK(block >= 0 && block < num_blocks())
      << absl::StrCat("KV block ", block, " out of range");
  return ref_counts_[block];
}

absl::Status BlockPool::CheckInvariants() const {
  std::vector<bool> on_free_list(ref_counts_.size(), false);
  for (int32_t b : free_) {
    if (b < 0 || b >= num_blocks()) {
      return absl::InternalError(absl::StrCat("free list holds out-of-range block ", b));
    }
    if (on_free_list[b]) return absl::InternalError(absl::StrCat("block ", b, " freed twice"));
    on_free_list[b] = true;
  }
  for (int32_t b = 0; b < num_blocks(); ++b) {
    if (ref_counts_[b] < 0) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref count ", ref_counts_[b]));
    }
    if (on_free_list[b] != (ref_counts_[b] == 0)) {
      return absl::InternalError(absl::StrCat("block ", b, " has ref count ", ref_counts_[b],
                                              " but is ", on_free_list[b] ? "" : "not ",
                                              "on the free list"));
    }
  }
  return absl::OkStatus();
}

KvBlockManager::KvBlockManager(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size), pool_(num_blocks) {
  LOOPSERVE_CHECK(block_size > 0) << "KvBlockManager: block_size must be positive";
}

int64_t KvBlockManager::BlocksFor(int64_t num_tokens) const {
  return (num_tokens + block_size_ - 1) / block_size_;
}

AppendPlan KvBlockManager::PlanAppend(int64_t seq_id, int64_t n_tokens) const {
  LOOPSERVE_CHECK(n_tokens >= 0) << "KvBlockManager: negative token count";
  const BlockTable* table = Table(seq_id);
  const int64_t have_tokens = table == nullptr ? 0 : table->num_tokens;
  const int64_t have_blocks = table == nullptr ? 0 : static_cast<int64_t>(table->blocks.size());
  return AppendPlan{.new_tokens = n_tokens,
                    .new_blocks = BlocksFor(have_tokens + n_tokens) - have_blocks};
}

bool KvBlockManager::CanAppend(int64_t seq_id, int64_t n_tokens) const {
  return PlanAppend(seq_id, n_tokens).new_blocks <= pool_.NumFree();
}

absl::Status KvBlockManager::Append(int64_t seq_id, int64_t n_tokens) {
  if (n_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV append for sequence ", seq_id, ": negative token count ", n_tokens));
  }
  const AppendPlan plan = PlanAppend(seq_id, n_tokens);
  absl::StatusOr<std::vector<int32_t>> blocks = pool_.Allocate(plan.new_blocks);
  if (!blocks.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV append of ", n_tokens, " tokens to sequence ", seq_id, " needs ",
                     plan.new_blocks, " new blocks, ", pool_.NumFree(), " free"));
  }
  BlockTable& table = tables_[seq_id];
  table.blocks.insert(table.blocks.end(), blocks->begin(), blocks->end());
  table.num_tokens += n_tokens;
  return absl::OkStatus();
}

absl::Status KvBlockManager::Release(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("KV release: unknown sequence ", seq_id));
  }
  for (int32_t b : it->second.blocks) pool_.Free(b);
  tables_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<BlockCopy>> KvBlockManager::Fork(int64_t parent, int64_t child) {
  const BlockTable* from = Table(parent);
  if (from == nullptr) {
    return absl::NotFoundError(absl::StrCat("KV fork: unknown parent sequence ", parent));
  }
  if (tables_.contains(child)) {
    return absl::AlreadyExistsError(
        absl::StrCat("KV fork of ", parent, ": child sequence ", child, " exists"));
  }
  const int64_t partial_tokens = from->num_tokens % block_size_;
  const int64_t full_blocks = from->num_tokens / block_size_;
  std::optional<BlockCopy> copy;
  BlockTable table;
  table.num_tokens = from->num_tokens;
  if (partial_tokens > 0) {
    absl::StatusOr<std::vector<int32_t>> fresh = pool_.Allocate(1);
    if (!fresh.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("KV fork of ", parent, " into ", child,
                       " needs 1 block for its partial last block, ", pool_.NumFree(), " free"));
    }
    copy = BlockCopy{.src = from->blocks.back(), .dst = fresh->front(), .tokens = partial_tokens};
  }
  table.blocks.assign(from->blocks.begin(), from->blocks.begin() + full_blocks);
  for (int32_t b : table.blocks) pool_.AddRef(b);
  if (copy.has_value()) table.blocks.push_back(copy->dst);
  // Inserting may rehash and move `*from`; it is not used past this point.
  tables_.emplace(child, std::move(table));
  return copy;
}

const BlockTable* KvBlockManager::Table(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? nullptr : &it->second;
}

int64_t KvBlockManager::SlotOf(int64_t seq_id, int64_t position) const {
  const BlockTable* table = Table(seq_id);
  LOOPSERVE_CHECK(table != nullptr) << absl::StrCat("KV slot of unknown sequence ", seq_id);
  LOOPSERVE_CHECK(position >= 0 && position < table->num_tokens)
      << absl::StrCat("KV slot of position ", position, " of sequence ", seq_id, " with ",
                      table->num_tokens, " tokens");
  return int64_t{table->blocks[position / block_size_]} * block_size_ + position % block_size_;
}

absl::Status KvBlockManager::CheckInvariants() const {
  if (absl::Status pool_ok = pool_.CheckInvariants(); !pool_ok.ok()) return pool_ok;
  std::vector<int32_t> refs(pool_.num_blocks(), 0);
  for (const auto& [seq_id, table] : tables_) {
    if (static_cast<int64_t>(table.blocks.size()) != BlocksFor(table.num_tokens)) {
      return absl::InternalError(absl::StrCat("sequence ", seq_id, " has ", table.num_tokens,
                                              " tokens in ", table.blocks.size(),
                                              " blocks; expected ", BlocksFor(table.num_tokens)));
    }
    for (int32_t b : table.blocks) {
      if (b < 0 || b >= pool_.num_blocks()) {
        return absl::InternalError(absl::StrCat("sequence ", seq_id, " holds bad block ", b));
      }
      ++refs[b];
    }
  }
  for (int32_t b = 0; b < pool_.num_blocks(); ++b) {
    if (refs[b] != pool_.RefCount(b)) {
      return absl::InternalError(absl::StrCat("block ", b, " is held by ", refs[b],
                                              " tables but has ref count ", pool_.RefCount(b)));
    }
  }
  return absl::OkStatus();
}

}  // namespace loopserve
