// Test utility: a small byte-level BPE tokenizer.json written inline, shared by
// the tokenizer unit tests and the server's text integration tests.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace loopserve::testutil {

// Ids 0..255 are the bytes; then one id per new merged token in `merges`
// order (a merge whose result is already in the vocabulary adds no id); then
// <|bos|> and <|eos|>. GPT-2 style ByteLevel pre-tokenizer with its regex.
nlohmann::json ByteLevelTokenizerJson(
    const std::vector<std::pair<std::string, std::string>>& merges);

}  // namespace loopserve::testutil
