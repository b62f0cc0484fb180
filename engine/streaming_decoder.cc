#include "engine/streaming_decoder.h"

#include "engine/utf8.h"

namespace loopserve {

std::string StreamingDecoder::Add(int32_t id) {
  pending_ += tokenizer_.TokenBytes(id);
  std::string out;
  pending_.erase(0, AppendValidUtf8(pending_, /*final=*/false, &out));
  return out;
}

std::string StreamingDecoder::Flush() {
  std::string out;
  AppendValidUtf8(pending_, /*final=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace loopserve
