// The paged KV pool: one preallocated f32 buffer holding K and V of every
// layer instance (prelude, recurrent (layer, loop), coda) per block, plus the
// block bookkeeping that hands blocks to sequences.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/kv_block_manager.h"
#include "engine/model_config.h"
#include "kernels/cpu/paged_attention.h"

namespace loopserve {

class KvCache {
 public:
  // Allocates num_blocks blocks of block_size token slots each.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const ModelConfig& config,
                                                         int num_blocks, int block_size);
  // Sizes the pool to hold at most `bytes` (at least one block).
  static absl::StatusOr<std::unique_ptr<KvCache>> CreateWithBudget(const ModelConfig& config,
                                                                   int64_t bytes,
                                                                   int block_size);

  const PagedKvView& view() const { return view_; }
  KvBlockManager& blocks() { return *blocks_; }
  const KvBlockManager& blocks() const { return *blocks_; }
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return view_.block_size; }

  // K and V of every layer instance for one token.
  static int64_t BytesPerToken(const ModelConfig& config);
  int64_t TotalBytes() const;

 private:
  KvCache() = default;

  struct FreeDeleter {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, FreeDeleter> storage_;
  PagedKvView view_;
  int num_blocks_ = 0;
  std::unique_ptr<KvBlockManager> blocks_;
};

}  // namespace loopserve
