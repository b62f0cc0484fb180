// The fixed parts the fuzz targets run against (a small model config, a small
// valid byte-level BPE tokenizer) and the check that turns a violated
// property into a crash libFuzzer records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "kernels/common/check.h"

namespace loopserve::fuzz {

// A looped-MoE config shaped like the integration tests' model (L = 4
// loops, exit gate on so every criterion validates), vocab 300 so the
// tokenizer's ids (0..262) are all inside it.
const ModelConfig& SmallModelConfig();

// ByteLevel BPE: bytes 0..255, merges he ll hell hello " w" (256..260),
// then <|bos|> = 261 and <|eos|> = 262 (tests/unit/testing/tokenizer_json.h).
const std::string& SmallTokenizerJsonText();
const Tokenizer& SmallTokenizer();

inline absl::string_view AsText(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace loopserve::fuzz

// Every fuzz target is a C function libFuzzer (or tests/fuzz/replay_main.cc)
// calls once per input.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
