#include "engine/bpe_model.h"

#include <algorithm>
#include <queue>
#include <utility>

namespace loopserve {

BpeModel::BpeModel(std::array<int32_t, 256> byte_ids, absl::flat_hash_map<uint64_t, Merge> merges,
                   absl::flat_hash_map<std::string, int32_t> whole_words)
    : byte_ids_(byte_ids), merges_(std::move(merges)), whole_words_(std::move(whole_words)) {}

void BpeModel::Encode(absl::Span<const absl::string_view> pieces, std::vector<int32_t>* ids) const {
  // Pieces go in chunks: one shared lock per chunk, then the chunk's misses
  // are inserted, so a word repeated later in a long text is merged once.
  constexpr size_t kChunk = 256;
  std::vector<CacheMiss> misses;
  for (size_t begin = 0; begin < pieces.size(); begin += kChunk) {
    const size_t end = std::min(pieces.size(), begin + kChunk);
    misses.clear();
    {
      absl::ReaderMutexLock lock(&cache_mutex_);
      for (size_t i = begin; i < end; ++i) EncodePiece(pieces[i], ids, &misses);
    }
    if (misses.empty()) continue;
    absl::MutexLock lock(&cache_mutex_);
    for (const CacheMiss& m : misses) {
      if (cache_.size() >= kMaxCacheEntries) break;
      cache_.try_emplace(m.piece, ids->begin() + static_cast<std::ptrdiff_t>(m.first),
                         ids->begin() + static_cast<std::ptrdiff_t>(m.last));
    }
  }
}

void BpeModel::EncodePiece(absl::string_view piece, std::vector<int32_t>* ids,
                           std::vector<CacheMiss>* misses) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    ids->push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (!whole_words_.empty()) {
    auto it = whole_words_.find(piece);
    if (it != whole_words_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (piece.size() <= kMaxCachedPieceBytes) {
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
    const size_t first = ids->size();
    MergePiece(piece, ids);
    misses->push_back({piece, first, ids->size()});
    return;
  }
  MergePiece(piece, ids);
}

// Symbols form a linked list over the piece's bytes; candidate merges sit in a
// min-heap by (rank, position). A popped candidate is stale if either symbol
// was merged away since it was pushed; O(n log n) in the piece length, so long
// runs (whitespace, digits) stay cheap.
void BpeModel::MergePiece(absl::string_view piece, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t left_id;
    int32_t right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos, symbols[pos].id, symbols[next].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    if (left.id != c.left_id || left.next < 0) continue;  // stale
    Symbol& right = symbols[left.next];
    if (right.id != c.right_id) continue;  // stale
    left.id = merges_.find(PairKey(c.left_id, c.right_id))->second.merged_id;
    right.id = -1;  // dead
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = c.pos;
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace loopserve
