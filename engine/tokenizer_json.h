// Reads a Hugging Face tokenizer.json holding a byte-level BPE model into
// plain data; every unsupported or malformed part is an error naming its field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loopserve {

struct AddedToken {
  int32_t id = 0;
  std::string content;  // matched literally in the input, before pre-tokenizing
  bool special = false;
};

struct BpeMerge {
  int32_t left = 0;
  int32_t right = 0;
  int32_t merged = 0;
};

struct TokenizerSpec {
  // Raw bytes of every id in [0, vocab size); empty for an unused id.
  std::vector<std::string> token_bytes;
  std::vector<BpeMerge> merges;  // by rank
  std::vector<AddedToken> added_tokens;
  // Pre-tokenizer regex; nullopt when the pre-tokenizer does not split.
  std::optional<std::string> split_pattern;
  bool ignore_merges = false;
};

// Accepts model.type "BPE" (byte-level vocab, merges as "a b" strings or
// [a, b] pairs), normalizer null, and pre_tokenizer ByteLevel (use_regex: the
// GPT-2 pattern) or a Sequence of Split (Regex pattern, Isolated) and
// ByteLevel, as HF writes for GPT-2- and Llama-3-style tokenizers.
absl::StatusOr<TokenizerSpec> ParseTokenizerJson(absl::string_view json_text);

}  // namespace loopserve
