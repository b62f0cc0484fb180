#include "engine/byte_level.h"

#include <array>

namespace loopserve {
namespace {

struct ByteLevelTable {
  std::array<std::string, 256> spelling;
  std::array<int16_t, 512> byte_of_codepoint;  // -1 where not in the alphabet

  ByteLevelTable() {
    byte_of_codepoint.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the other 68 bytes map to
    // U+0100.. in byte order.
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const int cp = printable(b) ? b : next++;
      byte_of_codepoint[cp] = static_cast<int16_t>(b);
      std::string& s = spelling[b];
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
    }
  }
};

const ByteLevelTable& Table() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

}  // namespace

const std::string& ByteLevelChar(uint8_t b) { return Table().spelling[b]; }

std::string ToByteLevel(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += ByteLevelChar(static_cast<uint8_t>(c));
  return out;
}

bool FromByteLevel(absl::string_view symbols, std::string* bytes) {
  const ByteLevelTable& t = Table();
  bytes->clear();
  for (size_t i = 0; i < symbols.size();) {
    const auto c0 = static_cast<uint8_t>(symbols[i]);
    int cp;
    if (c0 < 0x80) {
      cp = c0;
      i += 1;
    } else if ((c0 & 0xE0) == 0xC0 && i + 1 < symbols.size() &&
               (static_cast<uint8_t>(symbols[i + 1]) & 0xC0) == 0x80) {
      cp = ((c0 & 0x1F) << 6) | (static_cast<uint8_t>(symbols[i + 1]) & 0x3F);
      if (cp < 0x80) return false;  // overlong
      i += 2;
    } else {
      return false;  // every alphabet character is 1 or 2 UTF-8 bytes
    }
    if (cp >= static_cast<int>(t.byte_of_codepoint.size()) || t.byte_of_codepoint[cp] < 0) {
      return false;
    }
    bytes->push_back(static_cast<char>(t.byte_of_codepoint[cp]));
  }
  return true;
}

}  // namespace loopserve
