// Incremental detokenisation of a generated stream that never emits half a
// UTF-8 character, consistent with Tokenizer::Decode of the whole stream.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tokenizer.h"

namespace loopserve {

// Add returns only whole UTF-8 characters and holds back a trailing incomplete
// sequence (a token may end inside a character); Flush returns the rest. Bytes
// that can never form a character become U+FFFD as soon as that is certain.
// The chunks concatenate to exactly Tokenizer::Decode of all the ids.
class StreamingDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamingDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  std::string Add(int32_t id);
  std::string Flush();
  // Bytes held back, waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace loopserve
