// Text <-> token ids for a byte-level BPE tokenizer loaded from a Hugging Face
// tokenizer.json (GPT-2 / Llama-3 style). Streaming decode: streaming_decoder.h.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/bpe_model.h"
#include "engine/pretokenizer.h"
#include "engine/tokenizer_json.h"

namespace loopserve {

class Tokenizer {
 public:
  // NotFound if the file is missing; InvalidArgument naming the field for an
  // unsupported or malformed tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& tokenizer_json_path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(absl::string_view json_text);

  // Added/special tokens in `text` are matched literally first (leftmost,
  // longest); the rest is pre-tokenized by the regex and BPE-merged. Invalid
  // UTF-8 in `text` is replaced by U+FFFD first. add_bos prepends bos_id()
  // when the tokenizer has one. The tokenizer's post_processor is not applied:
  // callers choose BOS explicitly. Thread-safe.
  std::vector<int32_t> Encode(absl::string_view text, bool add_bos) const;

  // Token bytes joined, then ill-formed UTF-8 replaced by U+FFFD (as Python's
  // errors="replace"). Special tokens decode to their text; ids outside the
  // vocabulary decode to nothing.
  std::string Decode(const std::vector<int32_t>& ids) const;

  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }  // -1 when none
  int64_t vocab_size() const { return static_cast<int64_t>(token_bytes_.size()); }
  // Raw bytes of one token (may be part of a UTF-8 character); empty if unknown.
  std::string TokenBytes(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const { return added_tokens_; }
  bool is_special(int32_t id) const;

 private:
  explicit Tokenizer(TokenizerSpec spec);
  // Appends the ids of `segment`, which holds no added token.
  void EncodeOrdinary(absl::string_view segment, std::vector<int32_t>* ids,
                      std::vector<absl::string_view>* pieces) const;
  // The added token starting at text[pos], longest first; nullptr if none.
  const AddedToken* AddedTokenAt(absl::string_view text, size_t pos) const;

  std::vector<std::string> token_bytes_;
  std::vector<AddedToken> added_tokens_;  // longest content first
  std::array<bool, 256> added_first_byte_{};
  std::unique_ptr<RegexSplitter> splitter_;  // null: the pre-tokenizer does not split
  std::unique_ptr<BpeModel> bpe_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

}  // namespace loopserve
