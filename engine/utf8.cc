#include "engine/utf8.h"

#include <cstdint>

namespace loopserve {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// For a lead byte: how many continuation bytes follow, and the allowed range of
// the first one (the rest are always 80..BF). Returns false for bytes that can
// never start a sequence (continuations, C0, C1, F5..FF).
bool LeadByte(uint8_t c, int* need, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    *need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    *need = 2;
    if (c == 0xE0) *lo = 0xA0;  // no overlongs
    if (c == 0xED) *hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    *need = 3;
    if (c == 0xF0) *lo = 0x90;  // no overlongs
    if (c == 0xF4) *hi = 0x8F;  // ≤ U+10FFFF
  } else {
    return false;
  }
  return true;
}

}  // namespace

size_t AppendValidUtf8(absl::string_view bytes, bool final, std::string* out) {
  const size_t n = bytes.size();
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  out->reserve(out->size() + n);
  size_t i = 0;
  while (i < n) {
    // ASCII runs are the common case.
    size_t run = i;
    while (run < n && s[run] < 0x80) ++run;
    if (run > i) {
      out->append(bytes.data() + i, run - i);
      i = run;
      continue;
    }
    int need;
    uint8_t lo, hi;
    if (!LeadByte(s[i], &need, &lo, &hi)) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    int j = 1;
    bool bad = false;
    for (; j <= need && i + j < n; ++j) {
      const uint8_t c = s[i + j];
      if (c < (j == 1 ? lo : 0x80) || c > (j == 1 ? hi : 0xBF)) {
        bad = true;
        break;
      }
    }
    if (!bad && j > need) {
      out->append(bytes.data() + i, need + 1);
      i += need + 1;
    } else if (bad) {
      out->append(kReplacement);  // the valid prefix [i, i+j) is one subpart
      i += j;
    } else if (!final) {
      return i;  // incomplete at the end: wait for more bytes
    } else {
      out->append(kReplacement);
      i = n;
    }
  }
  return n;
}

std::string ToValidUtf8(absl::string_view bytes) {
  std::string out;
  AppendValidUtf8(bytes, /*final=*/true, &out);
  return out;
}

bool IsValidUtf8(absl::string_view bytes) {
  const size_t n = bytes.size();
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    int need;
    uint8_t lo, hi;
    if (!LeadByte(s[i], &need, &lo, &hi) || i + need >= n) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (int j = 2; j <= need; ++j) {
      if (s[i + j] < 0x80 || s[i + j] > 0xBF) return false;
    }
    i += need + 1;
  }
  return true;
}

}  // namespace loopserve
