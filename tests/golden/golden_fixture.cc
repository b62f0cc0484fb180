#include "tests/golden/golden_fixture.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve::testing {

std::string FixtureRoot() {
  const char* root = std::getenv("LOOPSERVE_FIXTURE_DIR");
  return root != nullptr ? root : "build/golden-fixtures";
}

absl::StatusOr<GoldenFixture> LoadGoldenFixture(const std::string& dir) {
  GoldenFixture fixture;
  fixture.dir = dir;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir + "/golden.safetensors");
  if (!file.ok()) return file.status();
  fixture.tensors = std::move(*file);
  std::ifstream in(dir + "/golden.json");
  if (!in) return absl::NotFoundError(absl::StrCat(dir, "/golden.json: cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json json = nlohmann::json::parse(text.str(), nullptr, false);
  if (json.is_discarded()) return absl::InvalidArgumentError(dir + "/golden.json: bad JSON");
  fixture.num_prompts = json.at("num_prompts").get<int>();
  for (const nlohmann::json& c : json.at("cases")) {
    GoldenCase gc;
    gc.name = c.at("name").get<std::string>();
    gc.prompt_index = c.at("prompt_index").get<int>();
    absl::StatusOr<ExitPolicy> policy = ExitPolicyFromJson(c.at("policy"));
    if (!policy.ok()) return policy.status();
    gc.policy = *policy;
    gc.max_tokens = c.at("max_tokens").get<int>();
    gc.tokens = c.at("tokens").get<std::vector<int32_t>>();
    gc.exit_loops = c.at("exit_loops").get<std::vector<int>>();
    gc.decode_flops_done = c.at("decode_flops_done").get<double>();
    gc.decode_flops_full = c.at("decode_flops_full").get<double>();
    fixture.cases.push_back(std::move(gc));
  }
  return fixture;
}

bool GoldenFixture::Has(int prompt, const std::string& suffix) const {
  return tensors->Find(absl::StrCat("prompt.", prompt, ".", suffix)) != nullptr;
}

std::vector<float> GoldenFixture::Floats(int prompt, const std::string& suffix) const {
  const TensorInfo* t = tensors->Find(absl::StrCat("prompt.", prompt, ".", suffix));
  if (t == nullptr || t->dtype != SafetensorsDType::kF32) return {};
  std::vector<float> out(static_cast<size_t>(t->NumElements()));
  std::memcpy(out.data(), t->data, out.size() * sizeof(float));
  return out;
}

std::vector<int32_t> GoldenFixture::Ints(int prompt, const std::string& suffix) const {
  const TensorInfo* t = tensors->Find(absl::StrCat("prompt.", prompt, ".", suffix));
  if (t == nullptr || t->dtype != SafetensorsDType::kI32) return {};
  std::vector<int32_t> out(static_cast<size_t>(t->NumElements()));
  std::memcpy(out.data(), t->data, out.size() * sizeof(int32_t));
  return out;
}

std::vector<int32_t> GoldenFixture::PromptIds(int prompt) const { return Ints(prompt, "ids"); }

}  // namespace loopserve::testing
