// Streaming clients that never read: their streams are opened on a channel
// with a tiny HTTP/2 flow-control window and left unread for the whole load,
// so the server's writes stall. The engine must go on serving everyone else
// and the server must not buffer without bound; at the end every stream is
// read out and must equal its reference, except one that is abandoned
// (cancelled unread) to check the server lets go of it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "loopserve/v1/loopserve.grpc.pb.h"
#include "tools/soak/soak_client.h"

namespace loopserve::soak {

class SlowReaders {
 public:
  // Opens `count` streams of template `template_index` on `deployment`
  // (with 20 logprobs per token so that the replies outgrow the window).
  SlowReaders(const std::string& target, const SoakClient& client, const std::string& deployment,
              int template_index, int count);
  // The request ids of the streams, e.g. to find them in the server's log.
  std::vector<std::string> request_ids() const;
  // Reads every stream but the last to its end; cancels the last unread.
  std::vector<Outcome> Finish();

 private:
  struct Reader {
    RequestSpec spec;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader;
  };
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LoopServe::Stub> stub_;
  std::vector<std::unique_ptr<Reader>> readers_;
};

}  // namespace loopserve::soak
