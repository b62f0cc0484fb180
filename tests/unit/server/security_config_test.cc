// The server config's security and limits blocks: `tls`, `api_keys`,
// `limits` parsing with field-naming errors, and loopback detection (which
// decides the start-up warnings).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/server_config.h"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

TEST(SecurityConfigTest, ParsesTlsKeysAndLimits) {
  const nlohmann::json json = {
      {"tls",
       {{"cert_file", "s.pem"},
        {"key_file", "s.key"},
        {"client_ca_file", "ca.pem"},
        {"reload_interval_seconds", 300}}},
      {"api_keys",
       {{{"name", "a"}, {"sha256", Sha256Hex("x")}, {"deployments", {"*"}}, {"admin", true}}}},
      {"limits",
       {{"max_context_tokens", 512},
        {"max_stop_sequences", 4},
        {"max_stop_sequence_bytes", 32},
        {"max_stop_token_ids", 8},
        {"max_logprobs", 5},
        {"max_receive_message_bytes", 65536}}}};
  absl::StatusOr<ServerConfig> c = ServerConfigFromJson(json);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tls.enabled());
  EXPECT_TRUE(c->tls.mutual());
  EXPECT_EQ(c->tls.key_file, "s.key");
  EXPECT_EQ(c->tls.reload_interval_seconds, 300);
  ASSERT_EQ(c->api_keys.size(), 1u);
  EXPECT_TRUE(c->api_keys[0].admin);
  EXPECT_EQ(c->limits.max_context_tokens, 512);
  EXPECT_EQ(c->limits.max_stop_sequences, 4);
  EXPECT_EQ(c->limits.max_stop_sequence_bytes, 32);
  EXPECT_EQ(c->limits.max_stop_token_ids, 8);
  EXPECT_EQ(c->limits.max_logprobs, 5);
  EXPECT_EQ(c->limits.max_receive_message_bytes, 65536);
}

TEST(SecurityConfigTest, DefaultsAreOpenPlaintextWithEngineCaps) {
  absl::StatusOr<ServerConfig> c = ServerConfigFromJson(nlohmann::json::object());
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->tls.enabled());
  EXPECT_TRUE(c->api_keys.empty());
  EXPECT_EQ(c->limits.max_stop_sequences, kMaxStopStrings);
  EXPECT_EQ(c->limits.max_logprobs, kMaxLogprobs);
  EXPECT_EQ(c->limits.max_receive_message_bytes, 4 << 20);
  EXPECT_EQ(c->metrics_address, "127.0.0.1:9464");  // metrics stay on loopback by default
}

TEST(SecurityConfigTest, ConnectionsBlockParsesWithKeepaliveOnByDefault) {
  absl::StatusOr<ServerConfig> c = ServerConfigFromJson(nlohmann::json::object());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->connections.keepalive_time_seconds, 60);
  EXPECT_EQ(c->connections.keepalive_timeout_seconds, 20);
  EXPECT_EQ(c->connections.max_connection_age_seconds, 0);
  c = ServerConfigFromJson({{"connections",
                             {{"keepalive_time_seconds", 30},
                              {"keepalive_timeout_seconds", 5},
                              {"max_connection_age_seconds", 600},
                              {"max_connection_age_grace_seconds", 120}}}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->connections.keepalive_time_seconds, 30);
  EXPECT_EQ(c->connections.keepalive_timeout_seconds, 5);
  EXPECT_EQ(c->connections.max_connection_age_seconds, 600);
  EXPECT_EQ(c->connections.max_connection_age_grace_seconds, 120);
}

TEST(SecurityConfigTest, BadBlocksNameTheField) {
  struct Bad {
    nlohmann::json json;
    std::string message;
  };
  const std::string h = Sha256Hex("x");
  for (const Bad& bad : std::vector<Bad>{
           {{{"tls", {{"cert_file", "c"}}}}, "cert_file and key_file go together"},
           {{{"tls", {{"client_ca_file", "c"}}}}, "tls.client_ca_file"},
           {{{"tls", {{"certfile", "c"}}}}, "tls.certfile`: unknown field"},
           {{{"tls", "on"}}, "`tls`"},
           {{{"tls", {{"cert_file", "c"}, {"key_file", "k"}, {"reload_interval_seconds", -1}}}},
            "tls.reload_interval_seconds"},
           {{{"tls", {{"cert_file", "c"}, {"key_file", "k"}, {"reload_interval_seconds", 1.5}}}},
            "tls.reload_interval_seconds"},
           {{{"tls", {{"cert_file", "c"}, {"key_file", "k"}, {"reload_interval_seconds", 86401}}}},
            "tls.reload_interval_seconds"},
           {{{"tls", {{"reload_interval_seconds", 60}}}}, "needs cert_file and key_file"},
           {{{"connections", {{"keepalive_time_seconds", 5}}}},
            "connections.keepalive_time_seconds`: must be >= 10"},
           {{{"connections", {{"keepalive_timeout_seconds", 0}}}},
            "connections.keepalive_timeout_seconds"},
           {{{"connections", {{"max_connection_age_seconds", -1}}}},
            "connections.max_connection_age_seconds"},
           {{{"connections", {{"max_connection_age_seconds", 2.5}}}},
            "connections.max_connection_age_seconds"},
           {{{"connections", {{"max_age", 60}}}}, "connections.max_age`: unknown field"},
           {{{"connections", 60}}, "`connections`: expected an object"},
           {{{"api_keys", {{"name", "a"}}}}, "api_keys"},
           {{{"api_keys",
              {{{"name", "a"}, {"sha256", h}, {"deployments", {"*"}}},
               {{"name", "a"}, {"sha256", Sha256Hex("y")}, {"deployments", {"*"}}}}}},
            "duplicate name"},
           {{{"api_keys", {{{"name", "a"}, {"key", "secret"}, {"deployments", {"*"}}}}}},
            "plaintext keys are not accepted"},
           {{{"limits", {{"max_logprobs", 21}}}}, "limits.max_logprobs"},
           {{{"limits", {{"max_stop_sequences", 17}}}}, "limits.max_stop_sequences"},
           {{{"limits", {{"max_stop_sequence_bytes", 0}}}}, "limits.max_stop_sequence_bytes"},
           {{{"limits", {{"max_receive_message_bytes", 10}}}}, "limits.max_receive_message_bytes"},
           {{{"limits", {{"max_context_tokens", -1}}}}, "limits.max_context_tokens"},
           {{{"limits", {{"max_prompt", 5}}}}, "limits.max_prompt`: unknown field"},
       }) {
    absl::StatusOr<ServerConfig> c = ServerConfigFromJson(bad.json);
    ASSERT_FALSE(c.ok()) << bad.json.dump();
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr(bad.message)) << bad.json.dump();
  }
}

TEST(SecurityConfigTest, LoopbackAddresses) {
  for (const char* a : {"127.0.0.1:50051", "127.1.2.3:0", "localhost:80", "[::1]:50051",
                        "ipv4:127.0.0.1:1", "ipv6:[::1]:1"}) {
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  }
  for (const char* a : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:1", "example.com:443",
                        "128.0.0.1:1", "localhost.evil.com:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
  }
}

}  // namespace
}  // namespace loopserve
