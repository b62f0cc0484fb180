// The integration tests' model and server setup: a small random looped-MoE
// checkpoint written once per test binary, server configs over it, the
// expected outputs from an in-process Engine with the server's engine
// options, and gRPC stubs to a started server.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/request.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "loopserve/v1/loopserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve::testing {

inline constexpr int kLoops = 4;
inline constexpr int kVocab = 64;
inline constexpr int kContext = 1024;
inline constexpr int kBlockSize = 16;
inline constexpr int kMaxBatchTokens = 256;
inline constexpr int kThreads = 2;

nlohmann::json ModelConfigJson();

// Owns the checkpoint directory (written on construction).
class TestModel {
 public:
  explicit TestModel(const nlohmann::json& config = ModelConfigJson());
  const std::string& dir() const { return dir_.path(); }
  std::string Join(const std::string& name) const { return dir_.Join(name); }
  // The checkpoint's KV bytes per token.
  int64_t KvBytesPerToken() const;
  // `request` run alone on an engine built like the server's.
  GenerationResult Expected(const GenerationRequest& request,
                            int64_t kv_cache_bytes = int64_t{64} << 20) const;

 private:
  testutil::TempDir dir_;
  std::shared_ptr<const LoadedModel> model_;
};

// Writes `config` to `path`.
void WriteJson(const std::string& path, const nlohmann::json& config);
// The base server config (engine options as in Expected) with `deployments`.
nlohmann::json ServerConfigJson(const TestModel& model, const nlohmann::json& deployments);
// Starts loopserve-server with --config `config_path` on free ports; the
// server's stderr goes to `config_path`.log.
std::unique_ptr<ServerProcess> StartServer(const std::string& config_path);

std::unique_ptr<v1::LoopServe::Stub> LoopServeStub(const std::string& address);
std::unique_ptr<v1::Admin::Stub> AdminStub(const std::string& address);
std::unique_ptr<grpc::health::v1::Health::Stub> HealthStub(const std::string& address);

// Polls `done` every 50 ms for up to 20 s: true once it holds (for what
// the server does asynchronously: reloads, timeouts).
template <typename F>
bool Eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A GenerateRequest with token ids; greedy unless the test sets sampling.
v1::GenerateRequest IdsRequest(const std::string& deployment, const std::vector<int32_t>& ids,
                               int max_tokens);
// Deterministic prompt number `i` (distinct prompts of 3..10 tokens).
std::vector<int32_t> Prompt(int i);

// A byte-level BPE tokenizer.json: bytes 0..255, merges he=256 ll=257
// hell=258 hello=259 " w"=260, then <|bos|>=261 <|eos|>=262.
nlohmann::json TinyTokenizerJson();

std::vector<int32_t> TokenIds(const GenerationResult& r);
std::vector<int> Loops(const GenerationResult& r);  // exit_loop + 1
std::vector<int32_t> TokenIds(const google::protobuf::RepeatedPtrField<v1::GeneratedToken>& t);
std::vector<int> Loops(const google::protobuf::RepeatedPtrField<v1::GeneratedToken>& t);

}  // namespace loopserve::testing
