// The pre-tokenizer: splits text into the pieces BPE runs on, by a regex
// (PCRE2, UTF + Unicode properties, JIT-compiled when available). Matches and
// the gaps between them both become pieces, as Hugging Face's Split
// "Isolated" does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loopserve {

// The GPT-2 pattern that HF's ByteLevel pre-tokenizer applies with use_regex.
inline constexpr char kGpt2SplitPattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class RegexSplitter {
 public:
  // InvalidArgument naming the offset if PCRE2 cannot compile `pattern`.
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(const std::string& pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends the pieces of `text` (valid UTF-8) to `pieces`; they tile `text`.
  // Thread-safe.
  void Split(absl::string_view text, std::vector<absl::string_view>* pieces) const;

  bool jit() const { return jit_; }

 private:
  RegexSplitter(void* code, bool jit) : code_(code), jit_(jit) {}
  void* code_;  // pcre2_code_8*; kept out of the header so pcre2.h stays private
  bool jit_;
};

}  // namespace loopserve
