#include "tests/integration/test_model.h"

#include <fstream>

#include "engine/kv_cache.h"
#include "engine/model_weights.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/unit/testing/tokenizer_json.h"

namespace loopserve::testing {

nlohmann::json ModelConfigJson() {
  return {{"model_type", "looped_moe"},
          {"vocab_size", kVocab},
          {"hidden_size", 32},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"head_dim", 8},
          {"max_position_embeddings", kContext},
          {"num_prelude_layers", 1},
          {"num_recurrent_layers", 2},
          {"num_coda_layers", 1},
          {"num_loops", kLoops},
          {"intermediate_size", 48},
          {"num_experts", 4},
          {"num_experts_per_tok", 2},
          {"moe_intermediate_size", 16},
          {"num_shared_experts", 1},
          {"iter_adaln_rank", 4}};
}

TestModel::TestModel(const nlohmann::json& config) {
  absl::Status s = testutil::WriteRandomCheckpoint(dir_.path(), config, 23, DType::kF32);
  if (!s.ok()) {
    ADD_FAILURE() << s;
    return;
  }
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir_.path());
  if (!model.ok()) {
    ADD_FAILURE() << model.status();
    return;
  }
  model_ = *model;
}

int64_t TestModel::KvBytesPerToken() const { return KvCache::BytesPerToken(model_->config); }

GenerationResult TestModel::Expected(const GenerationRequest& request,
                                     int64_t kv_cache_bytes) const {
  EngineOptions options;
  options.num_threads = kThreads;
  options.block_size = kBlockSize;
  options.kv_cache_bytes = kv_cache_bytes;
  options.scheduler.max_batch_tokens = kMaxBatchTokens;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model_, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  absl::StatusOr<std::vector<GenerationResult>> results = (*engine)->Generate({request});
  EXPECT_TRUE(results.ok()) << results.status();
  if (!results.ok() || results->empty()) return {};
  return results->front();
}

void WriteJson(const std::string& path, const nlohmann::json& config) {
  std::ofstream out(path);
  out << config.dump(2);
}

nlohmann::json ServerConfigJson(const TestModel& model, const nlohmann::json& deployments) {
  return {{"listen_address", "127.0.0.1:0"},
          {"metrics_address", "127.0.0.1:0"},
          {"model_dir", model.dir()},
          {"backend", "cpu"},
          {"num_threads", kThreads},
          {"kv_cache_bytes", int64_t{64} << 20},
          {"block_size", kBlockSize},
          {"max_batch_tokens", kMaxBatchTokens},
          {"max_num_seqs", 64},
          {"max_queued_requests", 256},
          {"drain_grace_seconds", 10},
          {"deployments", deployments}};
}

std::unique_ptr<ServerProcess> StartServer(const std::string& config_path) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      LOOPSERVE_SERVER_BINARY, {"--config=" + config_path}, config_path + ".log");
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

namespace {
std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}
}  // namespace

std::unique_ptr<v1::LoopServe::Stub> LoopServeStub(const std::string& address) {
  return v1::LoopServe::NewStub(Channel(address));
}
std::unique_ptr<v1::Admin::Stub> AdminStub(const std::string& address) {
  return v1::Admin::NewStub(Channel(address));
}
std::unique_ptr<grpc::health::v1::Health::Stub> HealthStub(const std::string& address) {
  return grpc::health::v1::Health::NewStub(Channel(address));
}

v1::GenerateRequest IdsRequest(const std::string& deployment, const std::vector<int32_t>& ids,
                               int max_tokens) {
  v1::GenerateRequest r;
  r.set_deployment(deployment);
  r.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  r.set_max_tokens(max_tokens);
  return r;
}

std::vector<int32_t> Prompt(int i) {
  std::vector<int32_t> ids;
  const int n = 3 + i % 8;
  for (int j = 0; j < n; ++j) ids.push_back((i * 7 + j * 13 + 1) % kVocab);
  return ids;
}

// Bytes 0..255, merges he=256 ll=257 hell=258 hello=259 " w"=260, then
// <|bos|>=261 <|eos|>=262 (as tests/unit/engine/tokenizer_test.cc).
nlohmann::json TinyTokenizerJson() {
  return testutil::ByteLevelTokenizerJson(
      {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}});
}

std::vector<int32_t> TokenIds(const GenerationResult& r) {
  std::vector<int32_t> out;
  for (const GeneratedToken& t : r.tokens) out.push_back(t.token);
  return out;
}
std::vector<int> Loops(const GenerationResult& r) {
  std::vector<int> out;
  for (const GeneratedToken& t : r.tokens) out.push_back(t.exit_loop + 1);
  return out;
}
std::vector<int32_t> TokenIds(const google::protobuf::RepeatedPtrField<v1::GeneratedToken>& t) {
  std::vector<int32_t> out;
  for (const v1::GeneratedToken& x : t) out.push_back(x.token_id());
  return out;
}
std::vector<int> Loops(const google::protobuf::RepeatedPtrField<v1::GeneratedToken>& t) {
  std::vector<int> out;
  for (const v1::GeneratedToken& x : t) out.push_back(x.loops());
  return out;
}

}  // namespace loopserve::testing
