#include "engine/cuda/device_model.h"

#include <map>

#include "kernels/common/scalar_math.h"

namespace loopserve {

// Uploads views, remembering host pointers so aliased tensors (a tied LM
// head) are stored once.
class DeviceModel::Uploader {
 public:
  Uploader(DeviceModel* model, bool f32_compute, cudaStream_t stream)
      : model_(model), f32_(f32_compute), stream_(stream) {}

  absl::StatusOr<cuda::DeviceMatrix> Matrix(const MatrixView& view) {
    if (view.empty()) return cuda::DeviceMatrix{};
    const DType dtype = f32_ ? DType::kF32 : view.dtype;
    absl::StatusOr<const void*> data = Upload(view.data, view.dtype, view.rows * view.cols, dtype);
    if (!data.ok()) return data.status();
    return cuda::DeviceMatrix{dtype, view.rows, view.cols, *data};
  }
  // Vectors (norms, biases) and the IterAdaLN embedding are always f32.
  absl::StatusOr<const float*> Vector(const void* data, DType dtype, int64_t count) {
    if (data == nullptr) return nullptr;
    absl::StatusOr<const void*> p = Upload(data, dtype, count, DType::kF32);
    if (!p.ok()) return p.status();
    return static_cast<const float*>(*p);
  }
  // Waits for the copies: host staging buffers die with the Uploader.
  absl::Status Finish() {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<const void*> Upload(const void* host, DType from, int64_t count, DType to) {
    const auto key = std::make_pair(host, to);
    if (auto it = uploaded_.find(key); it != uploaded_.end()) return it->second;
    const int64_t bytes = count * DTypeSize(to);
    absl::StatusOr<cuda::DeviceBuffer<uint8_t>> buffer =
        cuda::DeviceBuffer<uint8_t>::Allocate(bytes);
    if (!buffer.ok()) return buffer.status();
    const uint8_t* src = static_cast<const uint8_t*>(host);
    if (from != to) {  // widen to f32 on the host (16-bit -> f32 is exact)
      std::vector<float>& wide = staging_.emplace_back(static_cast<size_t>(count));
      const uint16_t* h16 = static_cast<const uint16_t*>(host);
      for (int64_t i = 0; i < count; ++i) {
        wide[i] = from == DType::kBF16 ? Bf16ToF32(h16[i]) : F16ToF32(h16[i]);
      }
      src = reinterpret_cast<const uint8_t*>(wide.data());
    }
    if (absl::Status s = buffer->CopyFromHost(src, bytes, stream_); !s.ok()) return s;
    const void* device = buffer->data();
    model_->bytes_ += bytes;
    model_->storage_.push_back(*std::move(buffer));
    uploaded_[key] = device;
    return device;
  }

  DeviceModel* model_;
  bool f32_;
  cudaStream_t stream_;
  std::map<std::pair<const void*, DType>, const void*> uploaded_;
  std::vector<std::vector<float>> staging_;
};

namespace {

#define ASSIGN_OR_RETURN_UPLOAD(lhs, expr)    \
  do {                                        \
    auto result = (expr);                     \
    if (!result.ok()) return result.status(); \
    lhs = *result;                            \
  } while (0)

template <typename Up>
absl::Status UploadSwiGlu(Up& up, const SwiGluWeights& w, DeviceSwiGlu* out) {
  ASSIGN_OR_RETURN_UPLOAD(out->gate, up.Matrix(w.gate));
  ASSIGN_OR_RETURN_UPLOAD(out->up, up.Matrix(w.up));
  ASSIGN_OR_RETURN_UPLOAD(out->down, up.Matrix(w.down));
  return absl::OkStatus();
}

template <typename Up>
absl::Status UploadLayer(Up& up, const LayerWeights& w, DeviceLayer* out) {
  ASSIGN_OR_RETURN_UPLOAD(
      out->input_layernorm,
      up.Vector(w.input_layernorm.data, w.input_layernorm.dtype, w.input_layernorm.size));
  ASSIGN_OR_RETURN_UPLOAD(out->q_proj, up.Matrix(w.attn.q_proj));
  ASSIGN_OR_RETURN_UPLOAD(out->k_proj, up.Matrix(w.attn.k_proj));
  ASSIGN_OR_RETURN_UPLOAD(out->v_proj, up.Matrix(w.attn.v_proj));
  ASSIGN_OR_RETURN_UPLOAD(out->o_proj, up.Matrix(w.attn.o_proj));
  ASSIGN_OR_RETURN_UPLOAD(out->q_norm,
                          up.Vector(w.attn.q_norm.data, w.attn.q_norm.dtype, w.attn.q_norm.size));
  ASSIGN_OR_RETURN_UPLOAD(out->k_norm,
                          up.Vector(w.attn.k_norm.data, w.attn.k_norm.dtype, w.attn.k_norm.size));
  ASSIGN_OR_RETURN_UPLOAD(
      out->post_attention_layernorm,
      up.Vector(w.post_attention_layernorm.data, w.post_attention_layernorm.dtype,
                w.post_attention_layernorm.size));
  out->ffn = w.ffn;
  if (w.ffn == FfnKind::kDense) {
    if (absl::Status s = UploadSwiGlu(up, w.dense, &out->dense); !s.ok()) return s;
  } else {
    ASSIGN_OR_RETURN_UPLOAD(out->router, up.Matrix(w.moe.router));
    out->experts.resize(w.moe.experts.size());
    for (size_t e = 0; e < w.moe.experts.size(); ++e) {
      if (absl::Status s = UploadSwiGlu(up, w.moe.experts[e], &out->experts[e]); !s.ok()) return s;
    }
    out->shared.resize(w.moe.shared.size());
    for (size_t e = 0; e < w.moe.shared.size(); ++e) {
      if (absl::Status s = UploadSwiGlu(up, w.moe.shared[e], &out->shared[e]); !s.ok()) return s;
    }
  }
  if (!w.adaln.down.empty()) {
    ASSIGN_OR_RETURN_UPLOAD(out->adaln_down, up.Matrix(w.adaln.down));
    ASSIGN_OR_RETURN_UPLOAD(out->adaln_up, up.Matrix(w.adaln.up));
    const MatrixView& e = w.adaln.iter_embed;
    ASSIGN_OR_RETURN_UPLOAD(out->iter_embed, up.Vector(e.data, e.dtype, e.rows * e.cols));
    ASSIGN_OR_RETURN_UPLOAD(
        out->adaln_up_bias,
        up.Vector(w.adaln.up_bias.data, w.adaln.up_bias.dtype, w.adaln.up_bias.size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceModel>> DeviceModel::Upload(const ModelConfig& config,
                                                                 const ModelWeights& weights,
                                                                 bool f32_compute,
                                                                 cudaStream_t stream) {
  std::unique_ptr<DeviceModel> model(new DeviceModel());
  Uploader up(model.get(), f32_compute, stream);
  // The embedding keeps its dtype unless f32_compute: the lookup kernel
  // widens rows itself, and a tied LM head shares this copy.
  ASSIGN_OR_RETURN_UPLOAD(model->embed_tokens, up.Matrix(weights.embed_tokens));
  const std::pair<const std::vector<LayerWeights>*, std::vector<DeviceLayer>*> parts[] = {
      {&weights.prelude, &model->prelude},
      {&weights.recurrent, &model->recurrent},
      {&weights.coda, &model->coda}};
  for (const auto& [host, device] : parts) {
    device->resize(host->size());
    for (size_t i = 0; i < host->size(); ++i) {
      if (absl::Status s = UploadLayer(up, (*host)[i], &(*device)[i]); !s.ok()) return s;
    }
  }
  ASSIGN_OR_RETURN_UPLOAD(
      model->final_norm,
      up.Vector(weights.final_norm.data, weights.final_norm.dtype, weights.final_norm.size));
  ASSIGN_OR_RETURN_UPLOAD(model->lm_head, up.Matrix(weights.lm_head));
  if (config.exit_gate) {
    ASSIGN_OR_RETURN_UPLOAD(model->exit_gate, up.Matrix(weights.exit_gate));
    ASSIGN_OR_RETURN_UPLOAD(model->exit_gate_bias,
                            up.Vector(weights.exit_gate_bias.data, weights.exit_gate_bias.dtype,
                                      weights.exit_gate_bias.size));
  }
  if (absl::Status s = up.Finish(); !s.ok()) return s;
  return model;
}

const std::vector<DeviceLayer>& DeviceModel::Layers(ModelPart part) const {
  switch (part) {
    case ModelPart::kPrelude:
      return prelude;
    case ModelPart::kRecurrent:
      return recurrent;
    case ModelPart::kCoda:
      break;
  }
  return coda;
}

}  // namespace loopserve
