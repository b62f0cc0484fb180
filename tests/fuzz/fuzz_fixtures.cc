#include "tests/fuzz/fuzz_fixtures.h"

#include <memory>

#include "nlohmann/json.hpp"
#include "tests/unit/testing/tokenizer_json.h"

namespace loopserve::fuzz {

const ModelConfig& SmallModelConfig() {
  static const ModelConfig* const config = [] {
    const nlohmann::json json = {{"model_type", "looped_moe"},
                                 {"vocab_size", 300},
                                 {"hidden_size", 32},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"head_dim", 8},
                                 {"max_position_embeddings", 1024},
                                 {"num_prelude_layers", 1},
                                 {"num_recurrent_layers", 2},
                                 {"num_coda_layers", 1},
                                 {"num_loops", 4},
                                 {"intermediate_size", 48},
                                 {"num_experts", 4},
                                 {"num_experts_per_tok", 2},
                                 {"moe_intermediate_size", 16},
                                 {"num_shared_experts", 1},
                                 {"iter_adaln_rank", 4},
                                 {"exit_gate", true}};
    absl::StatusOr<ModelConfig> parsed = ParseModelConfig(json.dump(), "fuzz fixture");
    LOOPSERVE_CHECK_OK(parsed.status());
    return new ModelConfig(*std::move(parsed));
  }();
  return *config;
}

const std::string& SmallTokenizerJsonText() {
  static const std::string* const text = new std::string(
      testutil::ByteLevelTokenizerJson({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"},
                                        {" ", "w"}})
          .dump());
  return *text;
}

const Tokenizer& SmallTokenizer() {
  static const Tokenizer* const tokenizer = [] {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(SmallTokenizerJsonText());
    LOOPSERVE_CHECK_OK(t.status());
    return t->release();
  }();
  return *tokenizer;
}

}  // namespace loopserve::fuzz
