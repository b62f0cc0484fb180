// Fuzzes encoding of arbitrary bytes with a fixed small valid tokenizer
// (engine/tokenizer): ids stay in the vocabulary, and decoding gives back
// the input with invalid UTF-8 replaced by U+FFFD (byte-level BPE is
// lossless; added tokens decode to their own text).
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "engine/utf8.h"
#include "tests/fuzz/fuzz_fixtures.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopserve;
  const Tokenizer& t = fuzz::SmallTokenizer();
  const absl::string_view text = fuzz::AsText(data, size);
  const std::vector<int32_t> ids = t.Encode(text, /*add_bos=*/false);
  for (int32_t id : ids) LOOPSERVE_CHECK(id >= 0 && id < t.vocab_size()) << id;
  LOOPSERVE_CHECK(t.Decode(ids) == ToValidUtf8(text)) << "round trip";

  const std::vector<int32_t> with_bos = t.Encode(text, /*add_bos=*/true);
  LOOPSERVE_CHECK(!with_bos.empty() && with_bos.front() == t.bos_id());
  LOOPSERVE_CHECK(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()) == ids);

  // The input bytes read as little-endian ids, in and out of the vocabulary.
  std::vector<int32_t> raw;
  for (size_t i = 0; i + 2 <= size; i += 2) {
    raw.push_back(static_cast<int16_t>(data[i] | (data[i + 1] << 8)));
  }
  const std::string decoded = t.Decode(raw);
  LOOPSERVE_CHECK(IsValidUtf8(decoded));
  return 0;
}
