// Tests engine/utf8 and engine/byte_level: replacement of ill-formed UTF-8 as
// Python's errors="replace" does, streaming-safe prefixes, the GPT-2 alphabet.
#include "engine/utf8.h"

#include <string>

#include "engine/byte_level.h"
#include "gtest/gtest.h"

namespace loopserve {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidTextIsUnchanged) {
  for (const std::string s : {"", "abc", "é", "日本", "👍🏽", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(IsValidUtf8(s)) << s;
    EXPECT_EQ(ToValidUtf8(s), s);
  }
}

TEST(Utf8Test, MaximalSubpartsBecomeOneReplacementEach) {
  // Expectations are Python's bytes.decode("utf-8", errors="replace").
  EXPECT_EQ(ToValidUtf8("\xE2\x82"), kFffd);                                  // truncated 3-byte
  EXPECT_EQ(ToValidUtf8("\xE2\x82x"), kFffd + "x");                           // broken 3-byte
  EXPECT_EQ(ToValidUtf8("\xF0\x9F\x98"), kFffd);                              // truncated 4-byte
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);              // surrogate
  EXPECT_EQ(ToValidUtf8("\xE0\x80\x80"), kFffd + kFffd + kFffd);              // overlong
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(ToValidUtf8("\xFF\xFE"), kFffd + kFffd);
  EXPECT_EQ(ToValidUtf8("\x80"
                        "abc"),
            kFffd + "abc");
  EXPECT_EQ(ToValidUtf8("\xC3\xA9\x80"), "é" + kFffd);
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));
}

TEST(Utf8Test, NonFinalHoldsBackOnlyAnIncompleteTail) {
  std::string out;
  EXPECT_EQ(AppendValidUtf8("ab\xF0\x9F\x98", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(AppendValidUtf8("a\xFF\xF0\x9F", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "a" + kFffd);
  out.clear();
  // A broken sequence is decided at once, not held back.
  EXPECT_EQ(AppendValidUtf8("\xF0\x9F"
                            "a",
                            /*final=*/false, &out),
            3u);
  EXPECT_EQ(out, kFffd + "a");
}

TEST(ByteLevelTest, AlphabetRoundTripsEveryByte) {
  EXPECT_EQ(ByteLevelChar(' '), "Ġ");
  EXPECT_EQ(ByteLevelChar('\n'), "Ċ");
  EXPECT_EQ(ByteLevelChar('a'), "a");
  EXPECT_EQ(ByteLevelChar(0xE9), "é");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(FromByteLevel(ToByteLevel(all), &back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(FromByteLevel(" ", &back));   // a raw space is not in the alphabet
  EXPECT_FALSE(FromByteLevel("日", &back));  // 3-byte characters never are
}

}  // namespace
}  // namespace loopserve
