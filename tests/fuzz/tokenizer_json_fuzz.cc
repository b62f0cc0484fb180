// Fuzzes tokenizer.json loading (engine/tokenizer_json, engine/tokenizer):
// any text. A tokenizer that loads must then encode and decode a fixed mixed
// text (ASCII, multi-byte UTF-8, invalid bytes) without crashing and return
// only ids inside its vocabulary.
#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz_fixtures.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopserve;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromJson(fuzz::AsText(data, size));
  if (!tokenizer.ok()) {
    LOOPSERVE_CHECK(!tokenizer.status().message().empty());
    return 0;
  }
  const Tokenizer& t = **tokenizer;
  static const std::string kText =
      "hello world, 123 <|bos|>x<|eos|> caf\xc3\xa9 \xe2\x82\xac \xff\xfe end\n\t  ";
  for (bool add_bos : {false, true}) {
    const std::vector<int32_t> ids = t.Encode(kText, add_bos);
    for (int32_t id : ids) LOOPSERVE_CHECK(id >= 0 && id < t.vocab_size()) << id;
    (void)t.Decode(ids);
  }
  // Every id (and a few outside the vocabulary) decodes without a crash.
  std::vector<int32_t> all;
  const int32_t limit = static_cast<int32_t>(std::min<int64_t>(t.vocab_size(), 4096));
  for (int32_t id = -2; id < limit + 2; ++id) all.push_back(id);
  (void)t.Decode(all);
  return 0;
}
