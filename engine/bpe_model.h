// Byte-level BPE: turns one pre-tokenized piece (raw bytes) into token ids by
// applying merges lowest rank first, leftmost first among equal ranks.
// Repeated pieces are served from a bounded, thread-safe cache.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace loopserve {

class BpeModel {
 public:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };

  // byte_ids[b]: the token of the single byte b. merges: (left id, right id)
  // -> rank and merged id. whole_words (may be empty): pieces that are
  // themselves tokens, used as-is without merging (HF's ignore_merges).
  BpeModel(std::array<int32_t, 256> byte_ids, absl::flat_hash_map<uint64_t, Merge> merges,
           absl::flat_hash_map<std::string, int32_t> whole_words);

  // Appends the tokens of each piece, in order, to `ids`. Thread-safe; takes
  // the cache lock once per call, not once per piece.
  void Encode(absl::Span<const absl::string_view> pieces, std::vector<int32_t>* ids) const;

  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

 private:
  struct CacheMiss {
    absl::string_view piece;
    size_t first;  // its ids are ids[first, last)
    size_t last;
  };
  // Appends the tokens of one piece; cache misses are recorded in `misses`
  // for insertion after the read lock is released.
  void EncodePiece(absl::string_view piece, std::vector<int32_t>* ids,
                   std::vector<CacheMiss>* misses) const ABSL_SHARED_LOCKS_REQUIRED(cache_mutex_);
  void MergePiece(absl::string_view piece, std::vector<int32_t>* ids) const;

  static constexpr size_t kMaxCacheEntries = 1 << 17;
  static constexpr size_t kMaxCachedPieceBytes = 64;

  std::array<int32_t, 256> byte_ids_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  absl::flat_hash_map<std::string, int32_t> whole_words_;
  mutable absl::Mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace loopserve
