// The GPT-2 byte-level alphabet: each of the 256 bytes is written as one
// printable Unicode character in BPE vocabularies (space -> 'Ġ', '\n' -> 'Ċ').
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace loopserve {

// The UTF-8 spelling of the character that stands for byte `b`.
const std::string& ByteLevelChar(uint8_t b);

// `bytes` spelled in the byte-level alphabet.
std::string ToByteLevel(absl::string_view bytes);

// Inverse of ToByteLevel: false if `symbols` is not valid UTF-8 or holds a
// character outside the alphabet.
bool FromByteLevel(absl::string_view symbols, std::string* bytes);

}  // namespace loopserve
