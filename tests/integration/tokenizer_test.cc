// Text over gRPC with a tokenizer.json in the model directory: Tokenize /
// Detokenize, text prompts (with BOS; EOS stops generation), per-token text
// that concatenates to the response text, multi-token stop strings, and
// ModelInfo.has_tokenizer. A model with a 266-token vocabulary so every id
// of the byte-level tokenizer is a model token.
#include "engine/tokenizer.h"

#include <chrono>
#include <filesystem>

#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

TEST(TokenizerServingTest, TextInTextOut) {
  nlohmann::json config = ModelConfigJson();
  config["vocab_size"] = 266;
  TestModel model(config);
  WriteJson(model.Join("tokenizer.json"), TinyTokenizerJson());
  WriteJson(model.Join("server.json"),
            ServerConfigJson(model, nlohmann::json::array({{{"name", "default"}}})));
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("server.json"));
  ASSERT_NE(server, nullptr);
  auto stub = LoopServeStub(server->address());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromJson(TinyTokenizerJson().dump());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  {
    grpc::ClientContext context;
    v1::ModelInfoResponse info;
    ASSERT_TRUE(stub->ModelInfo(&context, {}, &info).ok());
    EXPECT_TRUE(info.has_tokenizer());
  }
  {
    grpc::ClientContext context;
    v1::TokenizeRequest request;
    request.set_text("hello world");
    request.set_add_special_tokens(true);
    v1::TokenizeResponse response;
    ASSERT_TRUE(stub->Tokenize(&context, request, &response).ok());
    EXPECT_THAT(response.ids(), ::testing::ElementsAre(261, 259, 260, 'o', 'r', 'l', 'd'));
  }
  {
    grpc::ClientContext context;
    v1::DetokenizeRequest request;
    for (int id : {259, 260, int{'o'}}) request.add_ids(id);
    v1::DetokenizeResponse response;
    ASSERT_TRUE(stub->Detokenize(&context, request, &response).ok());
    EXPECT_EQ(response.text(), "hello wo");
    request.add_ids(999);
    grpc::ClientContext context2;
    EXPECT_EQ(stub->Detokenize(&context2, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  // A text prompt runs as BOS + its ids, and stops at EOS.
  GenerationRequest engine_request;
  engine_request.prompt = (*tokenizer)->Encode("hello world", /*add_bos=*/true);
  engine_request.max_tokens = 24;
  engine_request.stop_token_ids = {(*tokenizer)->eos_id()};
  const GenerationResult expected = model.Expected(engine_request);
  v1::GenerateRequest request;
  request.set_text("hello world");
  request.set_max_tokens(24);
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    ASSERT_TRUE(stub->Generate(&context, request, &response).ok());
    EXPECT_EQ(TokenIds(response.tokens()), TokenIds(expected));
    EXPECT_EQ(response.text(), (*tokenizer)->Decode(TokenIds(expected)));
    std::string joined;
    for (const v1::GeneratedToken& t : response.tokens()) joined += t.text();
    EXPECT_EQ(joined, response.text());
    EXPECT_EQ(response.usage().prompt_tokens(), static_cast<int64_t>(engine_request.prompt.size()));
  }
  {
    grpc::ClientContext context;
    auto reader = stub->GenerateStream(&context, request);
    v1::GenerateStreamResponse msg;
    std::string joined;
    std::vector<int32_t> ids;
    while (reader->Read(&msg)) {
      for (const v1::GeneratedToken& t : msg.tokens()) {
        joined += t.text();
        ids.push_back(t.token_id());
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(ids, TokenIds(expected));
    EXPECT_EQ(joined, (*tokenizer)->Decode(TokenIds(expected)));
  }
  // Stop strings are text now (StopStringsOnTheDemoModel checks matching).
  {
    v1::GenerateRequest stop = request;
    stop.add_stop("hello world");
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, stop, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0) << server->Logs();
}

// A stop string spanning a token boundary, taken from the middle of the
// demo model's greedy completion: generation ends with the token that
// completes its first occurrence and the text stops right before it, unary
// and streamed alike (no part of the stop string is ever streamed).
TEST(TokenizerServingTest, StopStringsOnTheDemoModel) {
  const std::string model_dir = std::string(LOOPSERVE_SOURCE_DIR) + "/models/kjv-demo";
  if (!std::filesystem::exists(model_dir + "/tokenizer.json")) GTEST_SKIP() << "no demo model";
  testutil::TempDir dir;
  nlohmann::json config = {{"listen_address", "127.0.0.1:0"},
                           {"metrics_address", "127.0.0.1:0"},
                           {"model_dir", model_dir},
                           {"num_threads", kThreads},
                           {"kv_cache_bytes", int64_t{32} << 20},
                           {"deployments", nlohmann::json::array({{{"name", "default"}}})}};
  WriteJson(dir.Join("server.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(dir.Join("server.json"));
  ASSERT_NE(server, nullptr);
  auto stub = LoopServeStub(server->address());

  v1::GenerateRequest request;
  request.set_text("And God said unto Moses,");
  request.set_max_tokens(24);
  v1::GenerateResponse full;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Generate(&context, request, &full).ok());
  }
  ASSERT_GE(full.tokens_size(), 8);
  // The last character of a middle token and the two after it.
  std::vector<size_t> ends;  // text offset where each token's text ends
  size_t offset = 0;
  for (const v1::GeneratedToken& t : full.tokens()) ends.push_back(offset += t.text().size());
  const size_t at = ends[full.tokens_size() / 2] - 1;
  ASSERT_LE(at + 3, full.text().size());
  const std::string stop = full.text().substr(at, 3);
  const size_t match = full.text().find(stop);
  int want_tokens = 0;
  while (ends[want_tokens] < match + stop.size()) ++want_tokens;
  ++want_tokens;  // the token that completes the stop string is returned
  const std::string want_text = full.text().substr(0, match);

  v1::GenerateRequest with_stop = request;
  with_stop.add_stop(stop);
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    ASSERT_TRUE(stub->Generate(&context, with_stop, &response).ok());
    EXPECT_EQ(response.tokens_size(), want_tokens) << "stop `" << stop << "` in " << full.text();
    EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_STOP);
    EXPECT_EQ(response.text(), want_text);
  }
  {
    grpc::ClientContext context;
    auto reader = stub->GenerateStream(&context, with_stop);
    v1::GenerateStreamResponse msg;
    std::string joined;
    v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
    while (reader->Read(&msg)) {
      for (const v1::GeneratedToken& t : msg.tokens()) joined += t.text();
      if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) finish = msg.finish_reason();
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(joined, want_text);
    EXPECT_EQ(finish, v1::FINISH_REASON_STOP);
  }
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0) << server->Logs();
}

}  // namespace
}  // namespace loopserve::testing
