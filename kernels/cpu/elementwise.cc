// Row-wise CPU kernels (see elementwise.h). Memory-bound and cheap next to
// Linear, so they stay plain loops the compiler can vectorise.
#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <vector>

#include "kernels/common/scalar_math.h"
#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/widen.h"

namespace loopserve {

// ids (n) -> out (n, D)
void EmbeddingLookup(const MatrixView& table, const int32_t* ids, int64_t n, float* out) {
  op_profile::Scope profile("embedding");
  const int64_t dim = table.cols;
  const char* base = static_cast<const char*>(table.data);
  for (int64_t i = 0; i < n; ++i) {
    WidenRow(base + int64_t{ids[i]} * dim * DTypeSize(table.dtype), table.dtype, dim,
             out + i * dim);
  }
}

// x (n, dim) -> out (n, dim)
void RmsNorm(const float* x, int64_t n, int64_t dim, const VectorView& w, float eps, float* out) {
  op_profile::Scope profile("rmsnorm");
  // Per-thread scratch: called several times per layer, so no allocation.
  thread_local std::vector<float> weight;
  weight.resize(static_cast<size_t>(dim));
  WidenRow(w.data, w.dtype, dim, weight.data());
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * dim;
    // Sum of squares in double: a 4096-wide f32 sum would lose ~3 digits.
    double ss = 0;
    for (int64_t k = 0; k < dim; ++k) ss += static_cast<double>(xi[k]) * xi[k];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    float* oi = out + i * dim;
    for (int64_t k = 0; k < dim; ++k) oi[k] = xi[k] * inv * weight[k];
  }
}

// x (n, heads*head_dim) in place
void ApplyRope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
               float theta) {
  op_profile::Scope profile("rope");
  const int half = head_dim / 2;
  thread_local std::vector<float> cos_t, sin_t;
  thread_local std::vector<double> inv_freq;
  cos_t.resize(static_cast<size_t>(half));
  sin_t.resize(static_cast<size_t>(half));
  inv_freq.resize(static_cast<size_t>(half));
  // Same double-precision angle as RopePair, computed once per row and shared
  // by every head so the trig calls do not scale with the head count.
  for (int j = 0; j < half; ++j) {
    inv_freq[j] = std::pow(static_cast<double>(theta), -2.0 * j / head_dim);
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < half; ++j) {
      const double angle = static_cast<double>(positions[i]) * inv_freq[j];
      cos_t[j] = static_cast<float>(std::cos(angle));
      sin_t[j] = static_cast<float>(std::sin(angle));
    }
    for (int h = 0; h < heads; ++h) {
      float* head = x + (i * heads + h) * head_dim;
      for (int j = 0; j < half; ++j) RotateHalfPair(&head[j], &head[j + half], cos_t[j], sin_t[j]);
    }
  }
}

// gate (n, I), up (n, I) -> out (n, I)
void SiluMul(const float* gate, const float* up, int64_t n, int64_t width, float* out) {
  op_profile::Scope profile("silu_mul");
  const int64_t total = n * width;
  for (int64_t i = 0; i < total; ++i) out[i] = Silu(gate[i]) * up[i];
}

// x (n, dim) in place; scale, shift (n, ld)
void Modulate(float* x, int64_t n, int64_t dim, const float* scale, const float* shift,
              int64_t ld) {
  op_profile::Scope profile("modulate");
  for (int64_t i = 0; i < n; ++i) {
    float* xi = x + i * dim;
    const float* sc = scale + i * ld;
    const float* sh = shift + i * ld;
    for (int64_t k = 0; k < dim; ++k) xi[k] = AdaLnModulate(xi[k], sc[k], sh[k]);
  }
}

// acc (n, dim) += (1 + gain) ⊙ delta; gain (n, ld) or null
void ResidualAdd(float* acc, const float* delta, int64_t n, int64_t dim, const float* gain,
                 int64_t ld) {
  op_profile::Scope profile("residual_add");
  for (int64_t i = 0; i < n; ++i) {
    float* ai = acc + i * dim;
    const float* di = delta + i * dim;
    if (gain == nullptr) {
      for (int64_t k = 0; k < dim; ++k) ai[k] += di[k];
    } else {
      const float* gi = gain + i * ld;
      for (int64_t k = 0; k < dim; ++k) ai[k] += (1.0f + gi[k]) * di[k];
    }
  }
}

}  // namespace loopserve
