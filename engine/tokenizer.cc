#include "engine/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/utf8.h"

namespace loopserve {
namespace {

// Conventional names, in the order tried.
constexpr const char* kBosNames[] = {"<|bos|>", "<|begin_of_text|>", "<s>", "<bos>"};
constexpr const char* kEosNames[] = {"<|eos|>", "<|endoftext|>", "<|end_of_text|>", "</s>",
                                     "<eos>"};

template <size_t N>
int32_t FindAdded(const std::vector<AddedToken>& added, const char* const (&names)[N]) {
  for (const char* name : names) {
    for (const AddedToken& a : added) {
      if (a.content == name) return a.id;
    }
  }
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("tokenizer file ", path, " cannot be opened"));
  std::ostringstream text;
  text << file.rdbuf();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = FromJson(text.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(absl::string_view json_text) {
  absl::StatusOr<TokenizerSpec> spec = ParseTokenizerJson(json_text);
  if (!spec.ok()) return spec.status();
  std::unique_ptr<RegexSplitter> splitter;
  if (spec->split_pattern.has_value()) {
    absl::StatusOr<std::unique_ptr<RegexSplitter>> s = RegexSplitter::Create(*spec->split_pattern);
    if (!s.ok()) return s.status();
    splitter = *std::move(s);
  }
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer(*std::move(spec)));
  tokenizer->splitter_ = std::move(splitter);
  return tokenizer;
}

Tokenizer::Tokenizer(TokenizerSpec spec)
    : token_bytes_(std::move(spec.token_bytes)), added_tokens_(std::move(spec.added_tokens)) {
  std::array<int32_t, 256> byte_ids{};
  absl::flat_hash_map<std::string, int32_t> byte_to_id;  // vocab by raw bytes
  for (size_t id = 0; id < token_bytes_.size(); ++id) {
    if (!token_bytes_[id].empty()) byte_to_id.try_emplace(token_bytes_[id], id);
  }
  for (int b = 0; b < 256; ++b) byte_ids[b] = byte_to_id.at(std::string(1, static_cast<char>(b)));
  absl::flat_hash_map<uint64_t, BpeModel::Merge> merges;
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const BpeMerge& m = spec.merges[rank];
    merges.try_emplace(BpeModel::PairKey(m.left, m.right),
                       BpeModel::Merge{static_cast<int32_t>(rank), m.merged});
  }
  if (!spec.ignore_merges) byte_to_id.clear();
  bpe_ = std::make_unique<BpeModel>(byte_ids, std::move(merges), std::move(byte_to_id));

  std::stable_sort(
      added_tokens_.begin(), added_tokens_.end(),
      [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (const AddedToken& a : added_tokens_) {
    added_first_byte_[static_cast<uint8_t>(a.content[0])] = true;
  }
  bos_id_ = FindAdded(added_tokens_, kBosNames);
  eos_id_ = FindAdded(added_tokens_, kEosNames);
}

const AddedToken* Tokenizer::AddedTokenAt(absl::string_view text, size_t pos) const {
  if (!added_first_byte_[static_cast<uint8_t>(text[pos])]) return nullptr;
  for (const AddedToken& a : added_tokens_) {  // longest first
    if (text.substr(pos, a.content.size()) == a.content) return &a;
  }
  return nullptr;
}

void Tokenizer::EncodeOrdinary(absl::string_view segment, std::vector<int32_t>* ids,
                               std::vector<absl::string_view>* pieces) const {
  if (segment.empty()) return;
  pieces->clear();
  if (splitter_ == nullptr) {
    pieces->push_back(segment);
  } else {
    splitter_->Split(segment, pieces);
  }
  bpe_->Encode(*pieces, ids);
}

std::vector<int32_t> Tokenizer::Encode(absl::string_view text, bool add_bos) const {
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = ToValidUtf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  std::vector<absl::string_view> pieces;
  size_t segment_start = 0;
  if (!added_tokens_.empty()) {
    for (size_t pos = 0; pos < text.size();) {
      if (!added_first_byte_[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      const AddedToken* added = AddedTokenAt(text, pos);
      if (added == nullptr) {
        ++pos;
        continue;
      }
      EncodeOrdinary(text.substr(segment_start, pos - segment_start), &ids, &pieces);
      ids.push_back(added->id);
      pos += added->content.size();
      segment_start = pos;
    }
  }
  EncodeOrdinary(text.substr(segment_start), &ids, &pieces);
  return ids;
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= token_bytes_.size()) return "";
  return token_bytes_[id];
}

bool Tokenizer::is_special(int32_t id) const {
  for (const AddedToken& a : added_tokens_) {
    if (a.id == id) return a.special;
  }
  return false;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id >= 0 && static_cast<size_t>(id) < token_bytes_.size()) bytes += token_bytes_[id];
  }
  return ToValidUtf8(bytes);
}

}  // namespace loopserve
