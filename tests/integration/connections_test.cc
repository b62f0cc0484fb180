// Connection management against the real server (the config's
// `connections` block): a connection older than max_connection_age gets a
// GOAWAY, the stream still running on it finishes within the grace with all
// its tokens, the connection then closes, and the client's next call
// reconnects; a client that goes silent mid-stream (a TCP relay that stops
// forwarding, as a crashed host or a partition would) is found by the
// server's keepalive ping and its connection closed (this test fails with
// gRPC's default keepalive, checked by removing ApplyConnectionConfig's
// keepalive arguments).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
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

// A one-connection TCP relay on 127.0.0.1 between a client and the server.
// Once silenced it forwards nothing either way (what the server sends is
// read and dropped, so it never learns the bytes were not delivered, and
// its pings go unanswered) and watches for the server closing its side.
class SilenceableRelay {
 public:
  explicit SilenceableRelay(const std::string& server_address)
      : server_port_(std::stoi(server_address.substr(server_address.rfind(':') + 1))) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(0);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listen_fd_, 1);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    thread_ = std::thread([this] { Run(); });
  }
  ~SilenceableRelay() {
    stop_ = true;
    thread_.join();
    for (int fd : {listen_fd_, client_fd_, server_fd_}) {
      if (fd >= 0) close(fd);
    }
  }
  const std::string& address() const { return address_; }
  void Silence() { silenced_ = true; }
  bool server_closed() const { return server_closed_; }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }
  // Reads what is there; false when `from` closed.
  static bool Pass(int from, int to) {
    char buffer[16384];
    const ssize_t n = recv(from, buffer, sizeof(buffer), 0);
    if (n <= 0) return false;
    if (to >= 0) {
      for (ssize_t sent = 0; sent < n;) {
        const ssize_t m = send(to, buffer + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
        if (m <= 0) return false;
        sent += m;
      }
    }
    return true;
  }
  void Run() {
    pollfd accept_poll{listen_fd_, POLLIN, 0};
    while (!stop_ && poll(&accept_poll, 1, 50) <= 0) {
    }
    if (stop_) return;
    client_fd_ = accept(listen_fd_, nullptr, nullptr);
    server_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(server_port_);
    if (connect(server_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    while (!stop_) {
      const bool silent = silenced_;
      pollfd fds[2] = {{server_fd_, POLLIN, 0}, {silent ? -1 : client_fd_, POLLIN, 0}};
      if (poll(fds, 2, 50) <= 0) continue;
      if (fds[0].revents != 0 && !Pass(server_fd_, silent ? -1 : client_fd_)) {
        server_closed_ = true;
        return;
      }
      if (fds[1].revents != 0 && !Pass(client_fd_, server_fd_)) return;
    }
  }

  const int server_port_;
  int listen_fd_ = -1;
  int client_fd_ = -1;
  int server_fd_ = -1;
  std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> silenced_{false};
  std::atomic<bool> server_closed_{false};
  std::thread thread_;
};

TEST(ServerConnectionsTest, KeepaliveClosesTheConnectionOfAClientThatWentSilent) {
  TestModel model;
  nlohmann::json config =
      ServerConfigJson(model, nlohmann::json::array({{{"name", "default"}}}));
  config["connections"] = {{"keepalive_time_seconds", 10}, {"keepalive_timeout_seconds", 1}};
  WriteJson(model.Join("keepalive.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("keepalive.json"));
  ASSERT_NE(server, nullptr);

  SilenceableRelay relay(server->address());
  // A small receive window (no BDP growth, little read-ahead), so that the
  // server cannot finish the call into socket buffers before the silence.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto stub = v1::LoopServe::NewStub(
      grpc::CreateCustomChannel(relay.address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  // Far more output than that window: the call stays open on the server
  // while the client does not take it.
  v1::GenerateRequest big = IdsRequest("default", Prompt(3), 900);
  big.mutable_sampling()->set_logprobs(20);
  auto reader = stub->GenerateStream(&context, big);
  v1::GenerateStreamResponse message;
  ASSERT_TRUE(reader->Read(&message));

  relay.Silence();
  const auto silent_since = std::chrono::steady_clock::now();
  // A ping after 10 s without a word from the client, 1 s for its answer.
  const auto until = silent_since + std::chrono::seconds(40);
  while (!relay.server_closed() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - silent_since).count();
  EXPECT_TRUE(relay.server_closed()) << "the server kept the silent connection " << waited
                                     << " s; server log:\n"
                                     << server->Logs();
  EXPECT_GE(waited, 5.0) << "closed before any keepalive could have fired";
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  reader->Finish();

  // The server goes on serving.
  grpc::ClientContext after;
  after.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GenerateResponse response;
  EXPECT_TRUE(LoopServeStub(server->address())
                  ->Generate(&after, IdsRequest("default", Prompt(4), 4), &response)
                  .ok());
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
}

}  // namespace
}  // namespace loopserve::testing
