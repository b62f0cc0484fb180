// loopserve-server: loads a looped-MoE checkpoint and serves it over gRPC.
//   loopserve-server --config deploy/config.example.json
//   loopserve-server --model models/demo --listen 127.0.0.1:0 --metrics_listen 127.0.0.1:0
//   loopserve-server --health_check 127.0.0.1:50051   (exit 0 when SERVING)
//   loopserve-server --new_api_key                    (a random key and its sha256)
//   loopserve-server --hash_api_key < key.txt         (sha256 of the key on stdin)
// Flags override the config file. SIGTERM/SIGINT drain gracefully, exit 0.
// SIGHUP rereads the config file and applies its `api_keys` (revoke, add,
// rotate keys without a restart); other fields need a restart.
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "server/api_keys.h"
#include "server/log.h"
#include "server/server.h"

ABSL_FLAG(std::string, config, "", "server config JSON (see deploy/config.example.json)");
ABSL_FLAG(std::optional<std::string>, model, std::nullopt, "model directory (config: model_dir)");
ABSL_FLAG(std::optional<std::string>, listen, std::nullopt,
          "gRPC address host:port; port 0 picks a free one (config: listen_address)");
ABSL_FLAG(std::optional<std::string>, metrics_listen, std::nullopt,
          "Prometheus exposer host:port, empty = off (config: metrics_address)");
ABSL_FLAG(std::optional<std::string>, backend, std::nullopt, "cpu | cuda | auto (config: backend)");
ABSL_FLAG(std::optional<int>, threads, std::nullopt, "CPU threads, 0 = all (config: num_threads)");
ABSL_FLAG(std::optional<int64_t>, kv_cache_bytes, std::nullopt, "KV pool size in bytes");
ABSL_FLAG(std::optional<int>, block_size, std::nullopt, "KV block size in tokens");
ABSL_FLAG(std::optional<int>, max_batch_tokens, std::nullopt, "tokens per engine step");
ABSL_FLAG(std::optional<int>, max_num_seqs, std::nullopt, "sequences per engine step");
ABSL_FLAG(std::optional<int>, max_queued_requests, std::nullopt,
          "requests waiting for the engine before RESOURCE_EXHAUSTED");
ABSL_FLAG(std::optional<double>, drain_grace_seconds, std::nullopt,
          "on SIGTERM, how long in-flight requests may finish before being cancelled");
ABSL_FLAG(std::optional<std::string>, default_deployment, std::nullopt,
          "deployment of requests that name none");
ABSL_FLAG(std::string, health_check, "",
          "client mode: query grpc.health.v1 at this address, print the status, exit 0 iff "
          "SERVING");
ABSL_FLAG(bool, hash_api_key, false,
          "print the SHA-256 (hex) of the API key read from stdin (one line), for `api_keys` in "
          "the config; reading stdin keeps the key out of the shell history");
ABSL_FLAG(bool, new_api_key, false, "print a new random API key and its SHA-256, then exit");

namespace {

template <typename T, typename F>
void Override(const absl::Flag<std::optional<F>>& flag, T& field) {
  if (std::optional<F> v = absl::GetFlag(flag); v.has_value()) field = *v;
}

absl::StatusOr<loopserve::ServerConfig> ConfigFromFlags() {
  loopserve::ServerConfig config;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    absl::StatusOr<loopserve::ServerConfig> loaded = loopserve::LoadServerConfig(path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  Override(FLAGS_model, config.model_dir);
  Override(FLAGS_listen, config.listen_address);
  Override(FLAGS_metrics_listen, config.metrics_address);
  Override(FLAGS_backend, config.backend);
  Override(FLAGS_threads, config.num_threads);
  Override(FLAGS_kv_cache_bytes, config.kv_cache_bytes);
  Override(FLAGS_block_size, config.block_size);
  Override(FLAGS_max_batch_tokens, config.max_batch_tokens);
  Override(FLAGS_max_num_seqs, config.max_num_seqs);
  Override(FLAGS_max_queued_requests, config.max_queued_requests);
  Override(FLAGS_drain_grace_seconds, config.drain_grace_seconds);
  Override(FLAGS_default_deployment, config.default_deployment);
  if (absl::Status s = loopserve::ValidateServerConfig(config); !s.ok()) return s;
  return config;
}

int HealthCheck(const std::string& address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "health check of %s failed: %s\n", address.c_str(),
                 status.error_message().c_str());
    return 2;
  }
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  std::printf("%s\n", name.c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int HashApiKey() {
  std::string key;
  std::getline(std::cin, key);
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
  if (key.empty()) {
    std::fprintf(stderr, "--hash_api_key: expected the key on stdin\n");
    return 2;
  }
  std::printf("%s\n", loopserve::Sha256Hex(key).c_str());
  return 0;
}

int NewApiKey() {
  unsigned char bytes[32];  // 256 bits from OpenSSL's CSPRNG
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    std::fprintf(stderr, "--new_api_key: no randomness from OpenSSL\n");
    return 1;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "lsk_";
  for (unsigned char b : bytes) {
    key.push_back(kHex[b >> 4]);
    key.push_back(kHex[b & 0xf]);
  }
  std::printf("key:    %s\nsha256: %s\n", key.c_str(), loopserve::Sha256Hex(key).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "loopserve-server --config FILE | --model DIR [--listen HOST:PORT] [flags]");
  absl::ParseCommandLine(argc, argv);
  if (const std::string addr = absl::GetFlag(FLAGS_health_check); !addr.empty()) {
    return HealthCheck(addr);
  }
  if (absl::GetFlag(FLAGS_hash_api_key)) return HashApiKey();
  if (absl::GetFlag(FLAGS_new_api_key)) return NewApiKey();

  // Signals go to sigwait below, never to a gRPC or engine thread: block
  // them before any thread starts (threads inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<loopserve::ServerConfig> config = ConfigFromFlags();
  if (!config.ok()) {
    loopserve::LogError("bad configuration", {{"error", std::string(config.status().message())}});
    return 2;
  }
  absl::StatusOr<std::unique_ptr<loopserve::Server>> server = loopserve::Server::Start(*config);
  if (!server.ok()) {
    loopserve::LogError("cannot start the server",
                        {{"error", std::string(server.status().message())}});
    return 1;
  }
  const std::string metrics = (*server)->metrics_address();
  std::printf("loopserve listening on %s (metrics on %s)\n", (*server)->address().c_str(),
              metrics.empty() ? "off" : metrics.c_str());
  std::fflush(stdout);

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    // Logs and counts its own outcome; a refused reload keeps the old keys.
    (void)(*server)->ReloadApiKeys(absl::GetFlag(FLAGS_config));
  }
  loopserve::LogInfo("signal received; shutting down",
                     {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Shutdown();
  // Drained, gRPC stopped, logs written: exit without running destructors.
  // Tearing down the metrics exposer (civetweb) and gRPC's globals adds about
  // two seconds and has nothing left to flush.
  std::fflush(nullptr);
  std::_Exit(0);
}
