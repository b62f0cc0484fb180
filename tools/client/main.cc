// loopserve-client: talk to a running loopserve-server.
//   loopserve-client generate --target 127.0.0.1:50051 --prompt "In the beginning"
//   loopserve-client health   --target 127.0.0.1:50051     (exit 0 when SERVING)
// Against a TLS server: --tls_ca ca.pem (and --tls_cert/--tls_key for mTLS);
// with API keys: LOOPSERVE_API_KEY=<key> in the environment (or --api_key,
// which other users can see in the process list).
// `generate` streams the completion and prints every token with the number
// of loops it ran, then the usage with compute saved.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "loopserve/v1/loopserve.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "server address");
ABSL_FLAG(std::string, prompt, "", "prompt text (the model needs a tokenizer)");
ABSL_FLAG(std::string, prompt_ids, "", "prompt token ids, comma-separated");
ABSL_FLAG(std::string, deployment, "", "deployment (empty = the server's default)");
ABSL_FLAG(int, max_tokens, 32, "tokens to generate");
ABSL_FLAG(float, temperature, 0.0f, "sampling temperature (0 = greedy)");
ABSL_FLAG(double, timeout, 60.0, "deadline in seconds");
ABSL_FLAG(bool, quiet, false, "print only the completion text");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle to verify the server: turns TLS on");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mTLS; with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "name to verify in the server certificate when it differs from --target's host");
ABSL_FLAG(std::string, api_key, "",
          "API key sent as `authorization: Bearer <key>` (default: $LOOPSERVE_API_KEY)");

namespace {

bool ReadFile(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

// Plaintext without --tls_ca; TLS (and mTLS with a client certificate) with it.
std::shared_ptr<grpc::Channel> MakeChannel() {
  const std::string target = absl::GetFlag(FLAGS_target);
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  if (ca.empty()) return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions options;
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  if (!ReadFile(ca, options.pem_root_certs) ||
      (!cert.empty() && !ReadFile(cert, options.pem_cert_chain)) ||
      (!key.empty() && !ReadFile(key, options.pem_private_key))) {
    std::fprintf(stderr, "cannot read --tls_ca / --tls_cert / --tls_key\n");
    std::exit(2);
  }
  grpc::ChannelArguments args;
  if (const std::string name = absl::GetFlag(FLAGS_tls_server_name); !name.empty()) {
    args.SetSslTargetNameOverride(name);
  }
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

std::string ApiKey() {
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    if (const char* env = std::getenv("LOOPSERVE_API_KEY"); env != nullptr) key = env;
  }
  return key;
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (const std::string key = ApiKey(); !key.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + key);
  }
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(
                        static_cast<int64_t>(absl::GetFlag(FLAGS_timeout) * 1000)));
  return ctx;
}

int Health(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(Context().get(), request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "health: %s\n", status.error_message().c_str());
    return 1;
  }
  const bool serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::printf("%s\n", serving ? "SERVING" : "NOT_SERVING");
  return serving ? 0 : 1;
}

int Generate(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = loopserve::v1::LoopServe::NewStub(channel);
  loopserve::v1::GenerateRequest request;
  request.set_deployment(absl::GetFlag(FLAGS_deployment));
  if (!absl::GetFlag(FLAGS_prompt).empty()) {
    request.set_text(absl::GetFlag(FLAGS_prompt));
  } else {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',',
                                                 absl::SkipEmpty())) {
      int32_t id = 0;
      if (!absl::SimpleAtoi(part, &id)) {
        std::fprintf(stderr, "not a token id: %s\n", std::string(part).c_str());
        return 2;
      }
      request.mutable_token_ids()->add_ids(id);
    }
  }
  request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  request.mutable_sampling()->set_temperature(absl::GetFlag(FLAGS_temperature));
  const bool quiet = absl::GetFlag(FLAGS_quiet);

  auto ctx = Context();
  auto reader = stub->GenerateStream(ctx.get(), request);
  loopserve::v1::GenerateStreamResponse message;
  std::string text;
  loopserve::v1::Usage usage;
  loopserve::v1::FinishReason finish = loopserve::v1::FINISH_REASON_UNSPECIFIED;
  if (!quiet) std::printf("%-6s %-7s %-6s %s\n", "token", "loops", "logprob", "text");
  while (reader->Read(&message)) {
    for (const loopserve::v1::GeneratedToken& t : message.tokens()) {
      text += t.text();
      if (!quiet) {
        std::printf("%-6d %-7d %-6.2f \"%s\"\n", t.token_id(), t.loops(), t.logprob(),
                    t.text().c_str());
      }
    }
    if (message.has_usage()) usage = message.usage();
    if (message.finish_reason() != loopserve::v1::FINISH_REASON_UNSPECIFIED) {
      finish = message.finish_reason();
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::fprintf(stderr, "error %d: %s\n", static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    const auto& trailers = ctx->GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      std::fprintf(stderr, "retry after %s ms\n",
                   std::string(it->second.data(), it->second.size()).c_str());
    }
    return 1;
  }
  if (quiet) {
    std::printf("%s\n", text.c_str());
    return 0;
  }
  std::printf("\ncompletion: %s%s\n", absl::GetFlag(FLAGS_prompt).c_str(), text.c_str());
  std::printf("finish: %s; %lld prompt + %lld generated tokens; loops %lld of %lld; "
              "compute_saved %.1f%%\n",
              loopserve::v1::FinishReason_Name(finish).c_str(),
              static_cast<long long>(usage.prompt_tokens()),
              static_cast<long long>(usage.completion_tokens()),
              static_cast<long long>(usage.loops_executed()),
              static_cast<long long>(usage.loops_full_depth()), 100.0 * usage.compute_saved());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: %s <generate|health> [--target ADDR] [flags]\n", argv[0]);
    return 2;
  }
  const std::string command = argv[1];
  std::vector<char*> args{argv[0]};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  auto channel = MakeChannel();
  if (command == "health") return Health(channel);
  if (command == "generate") return Generate(channel);
  std::fprintf(stderr, "unknown command %s (generate | health)\n", command.c_str());
  return 2;
}
