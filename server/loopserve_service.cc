#include "server/loopserve_service.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "engine/kv_cache.h"
#include "nlohmann/json.hpp"
#include "server/call_auth.h"
#include "server/generate_reactors.h"
#include "server/proto_convert.h"

namespace loopserve {
namespace {

constexpr char kNoTokenizer[] =
    "the model has no tokenizer.json: this server works with token ids only";

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// config.json of the model as compact JSON (empty when unreadable).
std::string ConfigJson(const std::string& model_dir) {
  std::ifstream in(std::filesystem::path(model_dir) / "config.json");
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str()).dump();
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

// A GenerateStream refused before it started: finishes at once.
class RefusedStream final : public grpc::ServerWriteReactor<v1::GenerateStreamResponse> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// Admits a generation call and parks its lease for the GenerateCall the
// reactor creates (it holds the key's concurrency slot until the RPC ends).
absl::Status AdmitGeneration(ServingState& state, grpc::CallbackServerContext* context,
                             const v1::GenerateRequest& request, std::string_view method) {
  const std::string deployment =
      request.deployment().empty() ? state.default_deployment : request.deployment();
  absl::StatusOr<CallLease> lease =
      AdmitCall(state, context, CallKind::kGenerate, deployment, method);
  if (!lease.ok()) return lease.status();
  if (state.access != nullptr && state.access->enabled()) {
    state.leases.Put(context, *std::move(lease));
  }
  return absl::OkStatus();
}

// Admits a call that reads model or tokenizer information.
absl::Status AdmitInfo(ServingState& state, grpc::CallbackServerContext* context,
                       std::string_view method) {
  return AdmitCall(state, context, CallKind::kInfo, "", method).status();
}

}  // namespace

grpc::ServerUnaryReactor* LoopServeService::Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request,
                                                     v1::GenerateResponse* response) {
  if (absl::Status s = AdmitGeneration(*state_, context, *request, "Generate"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  return StartGenerate(state_, context, request, response);
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* LoopServeService::GenerateStream(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  if (absl::Status s = AdmitGeneration(*state_, context, *request, "GenerateStream"); !s.ok()) {
    return new RefusedStream(RefusalStatus(context, s));
  }
  return StartGenerateStream(state_, context, request);
}

grpc::ServerUnaryReactor* LoopServeService::Tokenize(grpc::CallbackServerContext* context,
                                                     const v1::TokenizeRequest* request,
                                                     v1::TokenizeResponse* response) {
  if (absl::Status s = AdmitInfo(*state_, context, "Tokenize"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  if (state_->tokenizer == nullptr) {
    return Done(context, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, kNoTokenizer));
  }
  const std::vector<int32_t> ids =
      state_->tokenizer->Encode(request->text(), /*add_bos=*/request->add_special_tokens());
  response->mutable_ids()->Add(ids.begin(), ids.end());
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* LoopServeService::Detokenize(grpc::CallbackServerContext* context,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  if (absl::Status s = AdmitInfo(*state_, context, "Detokenize"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  if (state_->tokenizer == nullptr) {
    return Done(context, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, kNoTokenizer));
  }
  const int64_t vocab = state_->model->config.vocab_size;
  for (int i = 0; i < request->ids_size(); ++i) {
    if (request->ids(i) < 0 || request->ids(i) >= vocab) {
      return Done(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        absl::StrCat("ids[", i, "] = ", request->ids(i),
                                                     " outside vocabulary [0, ", vocab, ")")));
    }
  }
  absl::StatusOr<std::string> text =
      state_->tokenizer->Decode(std::vector<int32_t>(request->ids().begin(), request->ids().end()));
  if (!text.ok()) return Done(context, ToGrpcStatus(text.status()));
  response->set_text(*text);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* LoopServeService::ListDeployments(
    grpc::CallbackServerContext* context, const v1::ListDeploymentsRequest* /*request*/,
    v1::ListDeploymentsResponse* response) {
  if (absl::Status s = AdmitInfo(*state_, context, "ListDeployments"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  for (const Deployment& d : state_->registry->List()) ToProto(d, response->add_deployments());
  response->set_default_deployment(state_->default_deployment);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* LoopServeService::ModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::ModelInfoRequest* /*request*/,
                                                      v1::ModelInfoResponse* response) {
  if (absl::Status s = AdmitInfo(*state_, context, "ModelInfo"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  const LoadedModel& model = *state_->model;
  const ModelConfig& c = model.config;
  response->set_model_dir(model.dir);
  response->set_config_json(ConfigJson(model.dir));
  response->set_num_loops(c.num_loops);
  response->set_num_prelude_layers(c.num_prelude_layers);
  response->set_num_recurrent_layers(c.num_recurrent_layers);
  response->set_num_coda_layers(c.num_coda_layers);
  response->set_num_experts(c.num_experts);
  response->set_num_experts_per_tok(c.num_experts_per_tok);
  response->set_vocab_size(c.vocab_size);
  response->set_parameters(CountParameters(model.weights));
  response->set_weight_bytes(WeightBytes(model.weights));
  response->set_kv_bytes_per_token(KvCache::BytesPerToken(c));
  // Fixed after the engine is created, so reading from a gRPC thread is safe.
  const KvCache& kv = state_->loop->engine().kv_cache();
  response->set_kv_blocks_total(kv.num_blocks());
  response->set_kv_block_size(kv.block_size());
  response->set_has_tokenizer(state_->tokenizer != nullptr);
  response->set_backend(state_->backend);
  return Done(context, grpc::Status::OK);
}

}  // namespace loopserve
