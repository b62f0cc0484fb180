// Scalar element access for weight views: the cold path that tests and the
// loader use to read single values whatever the storage dtype.
#include "kernels/common/weight_view.h"

#include <cassert>
#include <cstring>

#include "kernels/common/scalar_math.h"

namespace loopserve {
namespace {

// Checkpoint data sits at arbitrary byte offsets inside an mmap, so loads go
// through memcpy rather than a typed pointer (no alignment assumptions).
float LoadWidened(DType dtype, const void* data, int64_t index) {
  const char* base = static_cast<const char*>(data);
  switch (dtype) {
    case DType::kF32: {
      float v;
      memcpy(&v, base + index * 4, sizeof(v));
      return v;
    }
    case DType::kF16: {
      uint16_t v;
      memcpy(&v, base + index * 2, sizeof(v));
      return F16ToF32(v);
    }
    case DType::kBF16: {
      uint16_t v;
      memcpy(&v, base + index * 2, sizeof(v));
      return Bf16ToF32(v);
    }
  }
  return 0.0f;  // unreachable: every enumerator is handled above
}

}  // namespace

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

float MatrixView::At(int64_t r, int64_t c) const {
  assert(data != nullptr && r >= 0 && r < rows && c >= 0 && c < cols);
  return LoadWidened(dtype, data, r * cols + c);
}

float VectorView::At(int64_t i) const {
  assert(data != nullptr && i >= 0 && i < size);
  return LoadWidened(dtype, data, i);
}

}  // namespace loopserve
