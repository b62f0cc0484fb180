#include "engine/kv_cache.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace loopserve {

void KvCache::FreeDeleter::operator()(float* p) const { std::free(p); }

int64_t KvCache::BytesPerToken(const ModelConfig& config) {
  return int64_t{config.NumLayerInstances()} * 2 * config.KvDim() *
         static_cast<int64_t>(sizeof(float));
}

int64_t KvCache::TotalBytes() const {
  return int64_t{num_blocks_} * view_.num_instances * 2 * view_.block_size * view_.kv_dim *
         static_cast<int64_t>(sizeof(float));
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config,
                                                         int num_blocks, int block_size) {
  if (num_blocks <= 0 || block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: num_blocks (", num_blocks,
                                                   ") and block_size (", block_size,
                                                   ") must be positive"));
  }
  const int64_t floats = int64_t{num_blocks} * config.NumLayerInstances() * 2 * block_size *
                         config.KvDim();
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  // 64-byte alignment keeps every K/V row start friendly to vector loads.
  const size_t rounded = (bytes + 63) / 64 * 64;
  float* raw = static_cast<float*>(std::aligned_alloc(64, rounded));
  if (raw == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache: cannot allocate ", bytes, " bytes for ", num_blocks, " blocks"));
  }
  std::memset(raw, 0, rounded);
  auto cache = std::unique_ptr<KvCache>(new KvCache());
  cache->storage_.reset(raw);
  cache->num_blocks_ = num_blocks;
  cache->view_.base = raw;
  cache->view_.num_instances = config.NumLayerInstances();
  cache->view_.block_size = block_size;
  cache->view_.kv_dim = static_cast<int>(config.KvDim());
  cache->blocks_ = std::make_unique<KvBlockManager>(num_blocks, block_size);
  return cache;
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::CreateWithBudget(const ModelConfig& config,
                                                                   int64_t bytes,
                                                                   int block_size) {
  const int64_t per_block = BytesPerToken(config) * block_size;
  const int64_t blocks = per_block > 0 ? bytes / per_block : 0;
  if (blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: budget of ", bytes,
                                                   " bytes is less than one block (", per_block,
                                                   " bytes)"));
  }
  return Create(config, static_cast<int>(std::min<int64_t>(blocks, 1 << 30)), block_size);
}

}  // namespace loopserve
