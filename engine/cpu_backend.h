// The CPU backend: the looped forward of engine/looped_forward.h on the
// host KV pool and thread pool, behind the ForwardBackend interface.
#pragma once

#include <memory>

#include "engine/forward_backend.h"
#include "engine/looped_forward.h"

namespace loopserve {

class CpuBackend final : public ForwardBackend {
 public:
  explicit CpuBackend(const BackendContext& context);

  std::string_view name() const override { return "cpu"; }
  absl::Status Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                   ForwardTrace* trace) override {
    return forward_.Run(tokens, result, trace);
  }

 private:
  LoopedForward forward_;
};

}  // namespace loopserve
