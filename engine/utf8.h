// UTF-8 validation with U+FFFD replacement, byte-exact with Python's
// bytes.decode("utf-8", errors="replace") (one U+FFFD per maximal ill-formed
// subpart, as the Unicode standard recommends), usable on a growing stream.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace loopserve {

// Appends `bytes` to `out` as valid UTF-8, each ill-formed subpart replaced by
// U+FFFD. With `final` false, a trailing incomplete (but so far valid) sequence
// is left unconsumed; returns how many bytes of `bytes` were consumed. The
// decision for every consumed byte never depends on bytes after it, so decoding
// a stream chunk by chunk gives the same text as decoding it whole.
size_t AppendValidUtf8(absl::string_view bytes, bool final, std::string* out);

// `bytes` with every ill-formed subpart replaced by U+FFFD.
std::string ToValidUtf8(absl::string_view bytes);

// True if `bytes` is well-formed UTF-8 (no surrogates, no overlongs, ≤ U+10FFFF).
bool IsValidUtf8(absl::string_view bytes);

}  // namespace loopserve
