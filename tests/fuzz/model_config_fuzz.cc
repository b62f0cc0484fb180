// Fuzzes config.json parsing and validation (engine/model_config): any text.
// An accepted config must be internally consistent enough for the engine to
// size its layers and KV instances without overflow or out-of-range parts.
#include <string>

#include "engine/model_config.h"
#include "tests/fuzz/fuzz_fixtures.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopserve;
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(std::string(fuzz::AsText(data, size)), "fuzz/config.json");
  if (!config.ok()) {
    LOOPSERVE_CHECK(!config.status().message().empty());
    return 0;
  }
  LOOPSERVE_CHECK(config->vocab_size > 0 && config->hidden_size > 0);
  LOOPSERVE_CHECK(config->num_attention_heads > 0 && config->num_key_value_heads > 0);
  LOOPSERVE_CHECK(config->num_loops > 0);
  int instances = 0;
  for (ModelPart part : {ModelPart::kPrelude, ModelPart::kRecurrent, ModelPart::kCoda}) {
    LOOPSERVE_CHECK_GE(config->NumLayers(part), 0) << ModelPartName(part);
    const int loops = part == ModelPart::kRecurrent ? config->num_loops : 1;
    instances += config->NumLayers(part) * loops;
    (void)config->Ffn(part);
  }
  LOOPSERVE_CHECK_EQ(instances, config->NumLayerInstances());
  (void)config->QDim();
  (void)config->KvDim();
  return 0;
}
