// Connection management against the real server (the config's
// `connections` block): a connection older than max_connection_age gets a
// GOAWAY, the stream still running on it finishes within the grace with all
// its tokens, the connection then closes, and the client's next call
// reconnects.
#include <chrono>
#include <thread>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

TEST(ServerConnectionsTest, AnOldConnectionFinishesItsCallsThenCloses) {
  TestModel model;
  nlohmann::json config =
      ServerConfigJson(model, nlohmann::json::array({{{"name", "default"}}}));
  config["connections"] = {{"max_connection_age_seconds", 1},
                           {"max_connection_age_grace_seconds", 60}};
  WriteJson(model.Join("age.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("age.json"));
  ASSERT_NE(server, nullptr);

  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::LoopServe::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->GenerateStream(&context, IdsRequest("default", Prompt(5), 200));
  v1::GenerateStreamResponse message;
  ASSERT_TRUE(reader->Read(&message));
  int tokens = message.tokens_size();
  // Past the connection's age (1 s, gRPC adds up to 10% jitter): the server
  // has sent its GOAWAY while this stream still had output to deliver.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  while (reader->Read(&message)) tokens += message.tokens_size();
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(tokens, 200);

  // Its last call done, the old connection closes; the channel notices.
  EXPECT_TRUE(Eventually([&] { return channel->GetState(false) != GRPC_CHANNEL_READY; }));
  // The next call opens a new connection.
  grpc::ClientContext again;
  again.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GenerateResponse response;
  s = stub->Generate(&again, IdsRequest("default", Prompt(6), 4), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
}

}  // namespace
}  // namespace loopserve::testing
