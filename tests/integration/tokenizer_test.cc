// Text over gRPC with a tokenizer.json in the model directory: Tokenize /
// Detokenize, text prompts (with BOS; EOS stops generation), per-token text
// that concatenates to the response text, single-token stop strings, and
// ModelInfo.has_tokenizer. A model with a 266-token vocabulary so every id
// of the byte-level tokenizer is a model token.
#include "engine/tokenizer.h"

#include <chrono>

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
  // A stop string of one token becomes a stop id (server_units_test checks
  // the mapping); longer ones are refused.
  {
    v1::GenerateRequest stop = request;
    stop.add_stop("hello");
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, stop, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    stop.add_stop("hello world");
    grpc::ClientContext context2;
    EXPECT_EQ(stub->Generate(&context2, stop, &response).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0) << server->Logs();
}

}  // namespace
}  // namespace loopserve::testing
