// Tests engine/tokenizer and engine/streaming_decoder on small tokenizers
// written inline: merges by rank, added tokens, both pre-tokenizer shapes,
// errors naming the field, streaming across split characters. Parity with the
// Python reference on a trained tokenizer: tests/tokenizer/.
#include "engine/tokenizer.h"

#include <string>
#include <thread>
#include <vector>

#include "engine/byte_level.h"
#include "engine/streaming_decoder.h"
#include "engine/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/tokenizer_json.h"

namespace loopserve {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

json MakeTokenizerJson(const std::vector<std::pair<std::string, std::string>>& merges) {
  return testutil::ByteLevelTokenizerJson(merges);
}

std::unique_ptr<Tokenizer> MustLoad(const json& j) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(j.dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"\xC3", "\xA9"}};

TEST(TokenizerTest, MergesByRank) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson(kMerges));
  ASSERT_NE(t, nullptr);
  // ids: he=256 ll=257 hell=258 hello=259 " w"=260 é=261 bos=262 eos=263
  EXPECT_EQ(t->vocab_size(), 264);
  EXPECT_EQ(t->bos_id(), 262);
  EXPECT_EQ(t->eos_id(), 263);
  EXPECT_THAT(t->Encode("hello world", false), ElementsAre(259, 260, 'o', 'r', 'l', 'd'));
  EXPECT_THAT(t->Encode("hello", true), ElementsAre(262, 259));
  EXPECT_THAT(t->Encode("é", false), ElementsAre(261));
  EXPECT_THAT(t->Encode("", false), ElementsAre());
  EXPECT_EQ(t->Decode(t->Encode("hello world é", false)), "hello world é");
  EXPECT_EQ(t->TokenBytes(259), "hello");
  EXPECT_EQ(t->TokenBytes(9999), "");
}

TEST(TokenizerTest, SpecialTokensAreMatchedLiterallyBeforeTheRegex) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson(kMerges));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("hello<|eos|>hello", false), ElementsAre(259, 263, 259));
  EXPECT_THAT(t->Encode("<|bos|><|eos|>", false), ElementsAre(262, 263));
  EXPECT_THAT(t->Encode("<|eos", false), ElementsAre('<', '|', 'e', 'o', 's'));
  EXPECT_EQ(t->Decode({262, 259, 263}), "<|bos|>hello<|eos|>");
  EXPECT_TRUE(t->is_special(263));
  EXPECT_FALSE(t->is_special(259));
}

TEST(TokenizerTest, InvalidUtf8InputIsReplacedFirst) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson(kMerges));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Decode(t->Encode("a\xFF"
                                "b",
                                false)),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(TokenizerTest, LongPiecesMergeInLinearishTime) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson({{"a", "a"}, {"aa", "aa"}}));
  ASSERT_NE(t, nullptr);
  const std::string text(200000, 'a');
  const std::vector<int32_t> ids = t->Encode(text, false);
  EXPECT_EQ(ids.size(), 50000u);
  EXPECT_EQ(t->Decode(ids), text);
  EXPECT_THAT(t->Encode("aaaaa", false), ElementsAre(257, 'a'));
}

TEST(TokenizerTest, SequenceSplitShapeWithIgnoreMerges) {
  json j = MakeTokenizerJson(kMerges);
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", R"(\p{N}{1,3}|\p{L}+|\s+|[^\s\p{L}\p{N}]+)"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  j["model"]["ignore_merges"] = true;
  j["model"]["vocab"]["hlo"] = 300;  // unreachable by merges, but a whole word
  std::unique_ptr<Tokenizer> t = MustLoad(j);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("12345 hlo", false), ElementsAre('1', '2', '3', '4', '5', ' ', 300));
}

TEST(TokenizerTest, ConcurrentEncodesAgree) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson(kMerges));
  ASSERT_NE(t, nullptr);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "hello world " + std::to_string(i) + " é ";
  const std::vector<int32_t> expected = t->Encode(text, false);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { got[i] = t->Encode(text, false); });
  for (std::thread& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

TEST(TokenizerTest, ErrorsNameTheField) {
  struct Error {
    std::string message() const { return m; }
    std::string m;
  };
  auto error = [](const json& j) {
    return Error{std::string(Tokenizer::FromJson(j.dump()).status().message())};
  };
  json j = MakeTokenizerJson(kMerges);
  j["model"]["type"] = "WordPiece";
  EXPECT_THAT(error(j).message(), HasSubstr("model.type: \"WordPiece\" is not supported"));
  j = MakeTokenizerJson(kMerges);
  j["model"].erase("vocab");
  EXPECT_THAT(error(j).message(), HasSubstr("model.vocab"));
  j = MakeTokenizerJson(kMerges);
  j["model"].erase("merges");
  EXPECT_THAT(error(j).message(), HasSubstr("model.merges: missing"));
  j = MakeTokenizerJson(kMerges);
  j["model"]["merges"].push_back("nospace");
  EXPECT_THAT(error(j).message(), HasSubstr("model.merges[6]: \"nospace\" is not two tokens"));
  j = MakeTokenizerJson(kMerges);
  j["model"]["merges"].push_back("q z");
  EXPECT_THAT(error(j).message(), HasSubstr("model.merges[6]: merged \"qz\" is not in"));
  j = MakeTokenizerJson(kMerges);
  j["model"]["vocab"].erase(ByteLevelChar(0));
  EXPECT_THAT(error(j).message(), HasSubstr("lacks the byte-level token"));
  j = MakeTokenizerJson(kMerges);
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_THAT(error(j).message(), HasSubstr("normalizer: \"NFC\" is not supported"));
  j = MakeTokenizerJson(kMerges);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_THAT(error(j).message(), HasSubstr("pre_tokenizer.type"));
  j = MakeTokenizerJson(kMerges);
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", "(("}}}},
                          {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  EXPECT_THAT(error(j).message(), HasSubstr("regex does not compile"));
  j = MakeTokenizerJson(kMerges);
  j["added_tokens"][0]["lstrip"] = true;
  EXPECT_THAT(error(j).message(), HasSubstr("added_tokens[0].lstrip"));
  EXPECT_EQ(Tokenizer::FromJson("{not json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tokenizer::Load("/nonexistent/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(StreamingDecoderTest, HoldsBackSplitCharacters) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson(kMerges));
  ASSERT_NE(t, nullptr);
  // "😀" is F0 9F 98 80: four byte tokens, each alone half a character.
  StreamingDecoder d(*t);
  EXPECT_EQ(d.Add('a'), "a");
  EXPECT_EQ(d.Add(0xF0), "");
  EXPECT_EQ(d.Add(0x9F), "");
  EXPECT_EQ(d.Add(0x98), "");
  EXPECT_EQ(d.pending_bytes(), 3u);
  EXPECT_EQ(d.Add(0x80), "😀");
  EXPECT_EQ(d.Add(0xC3), "");
  EXPECT_EQ(d.Add('x'), "\xEF\xBF\xBDx");  // broken at once, consistent with Decode
  EXPECT_EQ(d.Add(0xE6), "");
  EXPECT_EQ(d.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(t->Decode({'a', 0xF0, 0x9F, 0x98, 0x80, 0xC3, 'x', 0xE6}),
            "a😀\xEF\xBF\xBDx\xEF\xBF\xBD");
}

TEST(StreamingDecoderTest, EveryByteSplitOfMixedTextMatchesDecode) {
  std::unique_ptr<Tokenizer> t = MustLoad(MakeTokenizerJson(kMerges));
  ASSERT_NE(t, nullptr);
  const std::string text = "héllo 日本 👨‍👩‍👧 🇯🇵 e\xCC\x81 \xF0\x9F";
  std::vector<int32_t> ids;
  for (char c : text) ids.push_back(static_cast<uint8_t>(c));
  StreamingDecoder d(*t);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string chunk = d.Add(id);
    EXPECT_TRUE(IsValidUtf8(chunk));
    streamed += chunk;
  }
  streamed += d.Flush();
  EXPECT_EQ(streamed, t->Decode(ids));
}

}  // namespace
}  // namespace loopserve
