#include "engine/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace loopserve {
namespace {

pcre2_code* Code(void* p) { return static_cast<pcre2_code*>(p); }

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

// Length of the UTF-8 character starting with byte `c`.
size_t CharLength(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  return 4;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(const std::string& pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, /*ccontext=*/nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(
        absl::StrCat("pre-tokenizer regex does not compile at offset ", offset, ": ",
                     reinterpret_cast<const char*>(message), " (pattern: ", pattern, ")"));
  }
  const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<RegexSplitter>(new RegexSplitter(code, jit));
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(Code(code_)); }

void RegexSplitter::Split(absl::string_view text, std::vector<absl::string_view>* pieces) const {
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> match(
      pcre2_match_data_create_from_pattern(Code(code_), nullptr));
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0;  // first byte not yet in a piece
  size_t pos = 0;
  while (pos < text.size()) {
    // The caller guarantees valid UTF-8, so PCRE2 need not re-check the whole
    // subject on every call (that would make splitting quadratic).
    int rc = jit_ ? pcre2_jit_match(Code(code_), subject, text.size(), pos, 0, match.get(), nullptr)
                  : -1;
    if (!jit_ || rc < PCRE2_ERROR_NOMATCH) {  // no JIT, or a JIT limit: the interpreter
      rc = pcre2_match(Code(code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, match.get(),
                       nullptr);
    }
    if (rc < 0) break;  // no further match (or a match limit): the rest is one gap
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const size_t start = ovector[0], end = ovector[1];
    if (start > gap_start) pieces->push_back(text.substr(gap_start, start - gap_start));
    if (end > start) {
      pieces->push_back(text.substr(start, end - start));
      gap_start = pos = end;
    } else {
      if (start >= text.size()) break;
      gap_start = start;
      pos = start + CharLength(static_cast<unsigned char>(text[start]));
    }
  }
  if (gap_start < text.size()) pieces->push_back(text.substr(gap_start));
}

}  // namespace loopserve
