// What the server needs from a tokenizer: text prompts, Tokenize/Detokenize,
// token text in responses and text stop sequences. No implementation ships
// yet (the tokenizer is its own work item); without one the server answers
// text requests with FAILED_PRECONDITION. A tokenizer plugs in by
// implementing this interface and being handed to the Server.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loopserve {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  virtual absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text,
                                                      bool add_special_tokens) const = 0;
  virtual absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const = 0;
};

}  // namespace loopserve
