#include "tests/unit/testing/tokenizer_json.h"

#include "engine/byte_level.h"

namespace loopserve::testutil {

nlohmann::json ByteLevelTokenizerJson(
    const std::vector<std::pair<std::string, std::string>>& merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(static_cast<uint8_t>(b))] = b;
  nlohmann::json merge_list = nlohmann::json::array();
  int next = 256;
  for (const auto& [l, r] : merges) {
    const std::string left = ToByteLevel(l), right = ToByteLevel(r);
    if (!vocab.contains(left + right)) vocab[left + right] = next++;
    merge_list.push_back(left + " " + right);
  }
  nlohmann::json added = nlohmann::json::array();
  for (const char* name : {"<|bos|>", "<|eos|>"}) {
    added.push_back({{"id", next}, {"content", name}, {"special", true}});
    vocab[name] = next++;
  }
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

}  // namespace loopserve::testutil
