#include "server/server.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "nlohmann/json.hpp"
#include "server/log.h"

namespace loopserve {
namespace {

constexpr char kLoopServeService[] = "loopserve.v1.LoopServe";

std::string ModelName(const std::string& dir) {
  std::filesystem::path p(dir);
  if (!p.has_filename()) p = p.parent_path();  // "models/demo/"
  return p.filename().string();
}

// "host:0" with the port gRPC chose.
std::string BoundAddress(const std::string& requested, int port) {
  const size_t colon = requested.rfind(':');
  const std::string host = colon == std::string::npos ? requested : requested.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

absl::Status AddDeployments(const ServerConfig& config, const ModelConfig& model,
                            const std::map<std::string, ExitPolicy>& named,
                            DeploymentRegistry& registry) {
  if (config.deployments.empty()) {
    Deployment d;
    d.name = "default";
    return registry.Add(std::move(d));
  }
  for (size_t i = 0; i < config.deployments.size(); ++i) {
    absl::StatusOr<Deployment> d = DeploymentFromJson(config.deployments[i], model, named);
    if (!d.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("server config: deployments[", i, "]: ", d.status().message()));
    }
    if (absl::Status s = registry.Add(*std::move(d)); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("server config: deployments[", i, "]: ", s.message()));
    }
  }
  return absl::OkStatus();
}

// Plaintext or open access is fine on loopback; anywhere else say so.
void WarnAboutExposure(const ServerConfig& config) {
  if (!IsLoopbackAddress(config.listen_address)) {
    if (!config.tls.enabled()) {
      LogWarning(
          "TLS is off on a non-loopback address: requests and API keys travel in "
          "plaintext (set `tls` in the config)",
          {{"listen_address", config.listen_address}});
    }
    if (config.api_keys.empty()) {
      LogWarning(
          "no API keys configured on a non-loopback address: anyone who can reach it "
          "may generate and call Admin (set `api_keys` in the config)",
          {{"listen_address", config.listen_address}});
    }
  }
  if (!config.metrics_address.empty() && !IsLoopbackAddress(config.metrics_address)) {
    LogWarning(
        "the metrics endpoint (no TLS, no authentication) listens on a non-loopback "
        "address",
        {{"metrics_address", config.metrics_address}});
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config) {
  if (absl::Status s = ValidateServerConfig(config); !s.ok()) return s;
  std::unique_ptr<Server> server(new Server(config));
  if (absl::Status s = server->Init(); !s.ok()) return s;
  return server;
}

absl::Status Server::Init() {
  // TLS files first: a bad certificate fails in milliseconds, before the
  // model load, and like every load error before any port is bound.
  int64_t tls_not_after = 0;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials;
  if (config_.tls.enabled() && config_.tls.reload_interval_seconds > 0) {
    absl::StatusOr<std::unique_ptr<TlsReloader>> reloader = TlsReloader::Start(config_.tls);
    if (!reloader.ok()) return reloader.status();
    tls_reloader_ = *std::move(reloader);
    credentials = tls_reloader_->credentials();
    tls_not_after = tls_reloader_->not_after_unix_seconds();
  } else {
    credentials = MakeServerCredentials(config_.tls, &tls_not_after);
  }
  if (!credentials.ok()) return credentials.status();
  access_ = std::make_unique<AccessControl>(config_.api_keys);

  absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(config_.model_dir);
  if (!model.ok()) return model.status();
  const ModelConfig& mc = (*model)->config;
  for (const std::string& field : mc.unknown_fields) {
    LogWarning("config.json: unknown field ignored", {{"field", field}});
  }
  const std::filesystem::path tokenizer_path =
      std::filesystem::path(config_.model_dir) / "tokenizer.json";
  if (std::filesystem::exists(tokenizer_path)) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(tokenizer_path.string());
    if (!tokenizer.ok()) return tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    if (tokenizer_->vocab_size() > mc.vocab_size) {
      LogWarning(
          "tokenizer.json has more tokens than the model's vocabulary; prompts using them "
          "will be refused",
          {{"tokenizer_vocab", tokenizer_->vocab_size()}, {"model_vocab", mc.vocab_size}});
    }
  } else {
    LogInfo("no tokenizer.json in the model directory: token-id requests only");
  }
  absl::StatusOr<std::map<std::string, ExitPolicy>> named =
      LoadNamedPolicies(config_.model_dir, mc);
  if (!named.ok()) return named.status();

  registry_ = std::make_unique<DeploymentRegistry>(mc);
  if (absl::Status s = AddDeployments(config_, mc, *named, *registry_); !s.ok()) return s;
  std::string default_deployment = config_.default_deployment;
  if (default_deployment.empty()) default_deployment = registry_->List().front().name;
  if (!registry_->Get(default_deployment).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server config: field `default_deployment`: no deployment `", default_deployment, "`"));
  }

  EngineOptions eo;
  eo.num_threads = config_.num_threads;
  eo.block_size = config_.block_size;
  eo.kv_cache_bytes = config_.kv_cache_bytes;
  eo.scheduler.max_batch_tokens = config_.max_batch_tokens;
  eo.scheduler.max_num_seqs = config_.max_num_seqs;
  eo.tokenizer = tokenizer_.get();
  eo.backend = config_.backend;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model, eo);
  if (!engine.ok()) return engine.status();
  // `auto` without a usable GPU runs on CPU; say why once, at start-up.
  if (!(*engine)->backend_fallback_reason().empty()) {
    LogWarning((*engine)->backend_fallback_reason(), {{"requested_backend", config_.backend}});
  }
  const std::string backend((*engine)->backend_name());

  if (!config_.metrics_address.empty()) {
    absl::StatusOr<std::unique_ptr<ServerMetrics>> metrics =
        ServerMetrics::Create(config_.metrics_address, ModelName(config_.model_dir), mc.num_loops);
    if (!metrics.ok()) return metrics.status();
    metrics_ = *std::move(metrics);
    // Request series are labelled only with configured deployments, so a
    // client typing names cannot create unbounded series.
    std::vector<std::string> names;
    for (const Deployment& d : registry_->List()) names.push_back(d.name);
    metrics_->SetKnownDeployments(names);
  }
  EngineLoopOptions lo;
  lo.max_queued_requests = config_.max_queued_requests;
  loop_ = std::make_unique<EngineLoop>(*std::move(engine), lo);
  if (metrics_ != nullptr) {
    ServerMetrics* metrics = metrics_.get();
    loop_->SetStepObserver([metrics](const StepStats& stats) { metrics->ObserveStep(stats); });
    metrics->SetTlsCertificateExpiry(tls_not_after);
    if (tls_reloader_ != nullptr) {
      tls_reloader_->SetObserver([metrics](const TlsReloader::Outcome& outcome) {
        metrics->RecordTlsReload(outcome.installed);
        metrics->SetTlsCertificateExpiry(outcome.not_after_unix_seconds);
      });
    }
  }

  state_.model = *model;
  state_.registry = registry_.get();
  state_.loop = loop_.get();
  state_.metrics = metrics_.get();
  state_.tokenizer = tokenizer_.get();
  state_.default_deployment = default_deployment;
  state_.backend = backend;
  state_.limits = config_.limits;
  state_.access = access_.get();
  {
    // Scan at a tenth of the timeout (at most once a second): a stalled
    // stream ends within 1.1x the configured time.
    const std::chrono::milliseconds timeout(
        int64_t{config_.limits.stream_write_timeout_seconds} * 1000);
    stall_watchdog_ = std::make_unique<StreamStallWatchdog>(
        timeout, std::clamp(timeout / 10, std::chrono::milliseconds(50),
                            std::chrono::milliseconds(1000)));
    state_.stall_watchdog = stall_watchdog_.get();
  }
  loopserve_service_ = std::make_unique<LoopServeService>(&state_);
  admin_service_ = std::make_unique<AdminService>(
      &state_, [this](double grace, std::function<void(int64_t)> done) {
        DrainAsync(grace, std::move(done));
      });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.listen_address, *credentials, &port);
  // Larger requests end RESOURCE_EXHAUSTED in gRPC, before any handler.
  builder.SetMaxReceiveMessageSize(config_.limits.max_receive_message_bytes);
  ApplyConnectionConfig(config_.connections, builder);
  builder.RegisterService(loopserve_service_.get());
  builder.RegisterService(admin_service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "server config: field `listen_address`: cannot listen on ", config_.listen_address));
  }
  address_ = BoundAddress(config_.listen_address, port);
  SetServing(true);
  WarnAboutExposure(config_);
  std::vector<std::string> key_names;
  for (const ApiKeyConfig& k : config_.api_keys) key_names.push_back(k.name);

  std::vector<std::string> names;
  for (const Deployment& d : registry_->List()) names.push_back(d.name);
  LogInfo("server started", {{"address", address_},
                             {"metrics_address", metrics_address()},
                             {"model_dir", config_.model_dir},
                             {"backend", backend},
                             {"tokenizer", tokenizer_ != nullptr},
                             {"deployments", names},
                             {"default_deployment", default_deployment},
                             {"tls", config_.tls.enabled()},
                             {"mtls", config_.tls.mutual()},
                             {"api_keys", key_names},
                             {"kv_blocks_total", loop_->engine().kv_cache().num_blocks()},
                             {"kv_block_size", loop_->engine().kv_cache().block_size()}});
  return absl::OkStatus();
}

absl::Status Server::ReloadApiKeys(const std::string& config_path) {
  LogInfo("reloading API keys", {{"config", config_path}});
  absl::StatusOr<AccessControl::ReloadSummary> summary;
  if (config_path.empty()) {
    summary = absl::FailedPreconditionError(
        "the server was started without --config; there is no file to reload");
  } else if (absl::StatusOr<ServerConfig> config = LoadServerConfig(config_path); !config.ok()) {
    summary = config.status();
  } else {
    summary = access_->ReplaceKeys(config->api_keys);
  }
  if (metrics_ != nullptr) metrics_->RecordConfigReload(summary.ok());
  if (!summary.ok()) {
    LogError("config reload refused; the running API keys stay",
             {{"error", std::string(summary.status().message())}});
    return summary.status();
  }
  LogInfo("config reloaded: API keys replaced",
          {{"added", summary->added},
           {"removed", summary->removed},
           {"changed", summary->changed},
           {"unchanged", summary->unchanged}});
  return absl::OkStatus();
}

std::string Server::metrics_address() const {
  return metrics_ != nullptr ? metrics_->address() : "";
}

void Server::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kLoopServeService, serving);
}

int64_t Server::Drain(double grace_seconds) {
  absl::MutexLock lock(&drain_mu_);
  state_.draining.store(true);
  SetServing(false);
  LogInfo("draining", {{"grace_seconds", grace_seconds}, {"in_flight", loop_->in_flight()}});
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(grace_seconds));
  while (loop_->in_flight() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int64_t cancelled = loop_->in_flight();
  loop_->Drain(std::chrono::milliseconds(0));  // cancels what is left, waits for it
  LogInfo("drained", {{"cancelled", cancelled}});
  return cancelled;
}

void Server::DrainAsync(double grace_seconds, std::function<void(int64_t)> done) {
  absl::MutexLock lock(&threads_mu_);
  drain_threads_.emplace_back(
      [this, grace_seconds, done = std::move(done)] { done(Drain(grace_seconds)); });
}

void Server::Shutdown() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&threads_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  Drain(config_.drain_grace_seconds);
  {
    absl::MutexLock lock(&threads_mu_);
    threads.swap(drain_threads_);
  }
  for (std::thread& t : threads) t.join();
  threads.clear();
  // The engine is idle, but replies it finished may still be on their way
  // (a stream's last write, a unary Finish): give those calls a second, then
  // cancel what is left (health Watch streams, clients that do not read).
  // Shutdown(now) cut such replies (the soak, tools/soak, saw UNAVAILABLE on
  // streams that had completed); it does not wait for idle connections.
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  {
    absl::MutexLock lock(&threads_mu_);
    threads.swap(drain_threads_);  // an Admin.Drain that raced with the shutdown
  }
  for (std::thread& t : threads) {
    if (t.joinable()) t.join();
  }
  // gRPC accepts no more handshakes: the private copies of the TLS files
  // (a private key among them) can go now, since main() exits without
  // running destructors.
  tls_reloader_.reset();
  LogInfo("server stopped");
}

Server::~Server() {
  if (grpc_server_ != nullptr) Shutdown();
  // The reloader outlives metrics_ (it must outlive gRPC): unhook it first.
  if (tls_reloader_ != nullptr) tls_reloader_->SetObserver(nullptr);
}

}  // namespace loopserve
