#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/cuda/cuda_forward.h"
#include "engine/cuda/device_model.h"
#include "engine/kv_cache.h"
#include "kernels/cuda/cublas_handle.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/plans/workspace.h"
#include "kernels/cuda/stream.h"

namespace loopserve {
namespace {

cuda::ForwardDims ForwardDimsOf(const ModelConfig& c, const BackendContext& context) {
  cuda::ForwardDims d;
  d.hidden = c.hidden_size;
  d.q_dim = c.QDim();
  d.kv_dim = c.KvDim();
  d.ffn_width = std::max(c.intermediate_size, c.moe_intermediate_size);
  const bool any_moe = c.recurrent_ffn == FfnKind::kMoe ||
                       (c.num_prelude_layers > 0 && c.prelude_ffn == FfnKind::kMoe) ||
                       (c.num_coda_layers > 0 && c.coda_ffn == FfnKind::kMoe);
  d.num_experts = any_moe ? c.num_experts : 0;
  d.top_k = c.num_experts_per_tok;
  d.vocab = c.vocab_size;
  d.adaln_rank = c.iter_adaln_rank;
  d.coda_layers = c.num_coda_layers;
  d.weights_16bit = !context.cuda_f32_compute;
  return d;
}

class CudaBackend final : public ForwardBackend {
 public:
  std::string_view name() const override { return "cuda"; }
  absl::Status Run(absl::Span<const ForwardToken> tokens, ForwardResult* result,
                   ForwardTrace* trace) override {
    // Replayed tokens (after a preemption) are not implemented on the GPU
    // yet: they run full depth, as the CPU engine did before replay, so a
    // preempted early-exit request may drift from its unpreempted output.
    bool replayed = false;
    for (const ForwardToken& t : tokens) replayed |= t.forced_exit_loop >= 0;
    if (!replayed) return forward_->Run(tokens, result, trace);
    std::vector<ForwardToken> full(tokens.begin(), tokens.end());
    for (ForwardToken& t : full) {
      if (t.forced_exit_loop < 0) continue;
      t.forced_exit_loop = -1;
      t.full_depth = true;
    }
    return forward_->Run(full, result, trace);
  }

  // Members are destroyed in reverse: the forward and its buffers first,
  // then the pool, weights, cuBLAS handle and stream.
  cuda::Stream stream_;
  cuda::CublasHandle blas_;
  std::unique_ptr<DeviceModel> weights_;
  cuda::DeviceBuffer<float> kv_pool_;
  std::unique_ptr<CudaForward> forward_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(const BackendContext& context) {
  const ModelConfig& config = context.model->config;
  auto backend = std::make_unique<CudaBackend>();
  absl::StatusOr<cuda::Stream> stream = cuda::Stream::Create();
  if (!stream.ok()) return stream.status();
  backend->stream_ = *std::move(stream);
  absl::StatusOr<cuda::CublasHandle> blas = cuda::CublasHandle::Create(backend->stream_.get());
  if (!blas.ok()) return blas.status();
  backend->blas_ = *std::move(blas);
  absl::StatusOr<std::unique_ptr<DeviceModel>> weights = DeviceModel::Upload(
      config, context.model->weights, context.cuda_f32_compute, backend->stream_.get());
  if (!weights.ok()) return weights.status();
  backend->weights_ = *std::move(weights);

  // The device pool mirrors the host pool's blocks: the engine's block
  // manager hands out block ids for both.
  const PagedKvView& host = context.kv->view();
  const int64_t pool_floats =
      int64_t{context.kv->num_blocks()} * host.num_instances * 2 * host.block_size * host.kv_dim;
  const cuda::ForwardWorkspace workspace =
      cuda::ComputeForwardWorkspace(ForwardDimsOf(config, context), context.max_batch_tokens);
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double budget = context.cuda_kv_memory_fraction * static_cast<double>(free_bytes);
  const double needed =
      static_cast<double>(pool_floats) * sizeof(float) + static_cast<double>(workspace.bytes());
  if (needed > budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cuda backend: KV pool of %d blocks (%.1f MiB) plus a %d-token step workspace "
        "(%.1f MiB) exceed %.0f%% of the %.1f MiB free on the device after the weights; lower "
        "kv_cache_bytes or max_batch_tokens",
        context.kv->num_blocks(), pool_floats * 4.0 / (1 << 20), context.max_batch_tokens,
        workspace.bytes() / double(1 << 20), 100 * context.cuda_kv_memory_fraction,
        free_bytes / double(1 << 20)));
  }
  absl::StatusOr<cuda::DeviceBuffer<float>> pool = cuda::DeviceBuffer<float>::Allocate(pool_floats);
  if (!pool.ok()) return pool.status();
  backend->kv_pool_ = *std::move(pool);
  // Zeroed so a read of a never-written slot is defined (it is masked out
  // by causality, but sanitizers and NaN checks stay quiet).
  LOOPSERVE_RETURN_IF_ERROR(backend->kv_pool_.Zero(backend->stream_.get()));

  CudaContext ctx;
  ctx.config = &config;
  ctx.stream = backend->stream_.get();
  ctx.blas = backend->blas_.get();
  ctx.pool = cuda::DeviceKvPool{backend->kv_pool_.data(), host.num_instances, host.block_size,
                                host.kv_dim};
  backend->forward_ = std::make_unique<CudaForward>(context.model, backend->weights_.get(), ctx);
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(backend->stream_.get()));
  return std::unique_ptr<ForwardBackend>(std::move(backend));
}

}  // namespace loopserve
