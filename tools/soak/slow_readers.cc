#include "tools/soak/slow_readers.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace loopserve::soak {
namespace {

// Request indices of the slow readers, apart from the planned ones.
constexpr int64_t kFirstSlowIndex = 1'000'000'000;

}  // namespace

SlowReaders::SlowReaders(const std::string& target, const SoakClient& client,
                         const std::string& deployment, int template_index, int count) {
  grpc::ChannelArguments args;
  // A 1 KiB receive window and no BDP probing (which would grow it): the
  // server can send little before its writes wait for us.
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // A channel of its own, not shared with the load (one connection).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_ = v1::LoopServe::NewStub(channel_);
  for (int i = 0; i < count; ++i) {
    auto r = std::make_unique<Reader>();
    r->spec.index = kFirstSlowIndex + i;
    r->spec.deployment = deployment;
    r->spec.template_index = template_index;
    r->spec.stream = true;
    // The last one is abandoned: CANCELLED (or OK had it ended) is expected.
    r->spec.kind = i + 1 == count ? RequestKind::kCancelStream : RequestKind::kStream;
    v1::GenerateRequest request = client.ValidRequest(r->spec);
    request.mutable_sampling()->set_logprobs(20);
    r->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(2));
    r->reader = stub_->GenerateStream(&r->ctx, request);
    readers_.push_back(std::move(r));
  }
}

std::vector<std::string> SlowReaders::request_ids() const {
  std::vector<std::string> ids;
  for (const auto& r : readers_) ids.push_back(absl::StrCat("soak-", r->spec.index));
  return ids;
}

std::vector<Outcome> SlowReaders::Finish() {
  std::vector<Outcome> outcomes;
  for (size_t i = 0; i < readers_.size(); ++i) {
    Reader& r = *readers_[i];
    Outcome out;
    out.spec = r.spec;
    if (i + 1 == readers_.size()) r.ctx.TryCancel();
    v1::GenerateStreamResponse message;
    bool saw_last = false;
    while (r.reader->Read(&message)) {
      for (const v1::GeneratedToken& t : message.tokens()) {
        out.tokens.push_back(t.token_id());
        if (t.top_logprobs_size() != 20 && out.shape_error.empty()) {
          out.shape_error = absl::StrCat("token with ", t.top_logprobs_size(), " logprobs, not 20");
        }
      }
      if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        saw_last = true;
        out.finish_reason = message.finish_reason();
        ReadUsage(message.usage(), out);
      }
    }
    const grpc::Status s = r.reader->Finish();
    out.code = s.error_code();
    out.message = s.error_message();
    if (s.ok() && out.shape_error.empty() &&
        (!saw_last || out.usage_completion_tokens != static_cast<int64_t>(out.tokens.size()))) {
      out.shape_error = "slow stream: missing last message or usage mismatch";
    }
    outcomes.push_back(std::move(out));
  }
  return outcomes;
}

}  // namespace loopserve::soak
