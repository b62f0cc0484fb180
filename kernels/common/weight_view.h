// Non-owning views of weight tensors as the kernels consume them: a dtype tag
// plus a pointer into (usually mmap'd) checkpoint memory. Kernels never own
// weights; the engine's loader does.
#pragma once

#include <cstdint>

namespace loopserve {

// Storage types a checkpoint may use (MODEL_SPEC.md "Files").
enum class DType : uint8_t { kF32, kF16, kBF16 };

inline int DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType t);

// A row-major matrix [rows, cols] as stored in the checkpoint: for a linear
// layer, rows = out_features and cols = in_features (PyTorch layout), so
// y = W x reads one contiguous row per output.
struct MatrixView {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  // Element (r, c) widened to f32; for tests and cold paths only.
  float At(int64_t r, int64_t c) const;
};

// A vector [n] (norm weights, biases, embeddings rows).
struct VectorView {
  DType dtype = DType::kF32;
  int64_t size = 0;
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  float At(int64_t i) const;
};

}  // namespace loopserve
