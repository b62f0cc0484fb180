#include "engine/cpu_backend.h"

#include "engine/kv_cache.h"

namespace loopserve {

CpuBackend::CpuBackend(const BackendContext& context)
    : forward_(context.model, context.kv->view(), context.pool) {}

}  // namespace loopserve
