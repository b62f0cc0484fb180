#include <cuda_runtime.h>

#include "kernels/common/scalar_math.h"
#include "kernels/cuda/device_probe.h"

namespace loopserve::cuda {
namespace {

// Compiles the shared per-element math as device code so it cannot rot
// before the CUDA kernels that use it land.
__global__ void SharedMathSmokeKernel(const uint16_t* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = Silu(Bf16ToF32(in[i])) + Sigmoid(F16ToF32(in[i]));
}

}  // namespace

DeviceProbe ProbeDevices() {
  DeviceProbe probe;
  const cudaError_t err = cudaGetDeviceCount(&probe.device_count);
  if (err != cudaSuccess) {
    probe.device_count = 0;
    probe.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    return probe;
  }
  if (probe.device_count == 0) {
    probe.reason = "no CUDA device";
    return probe;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) probe.name = prop.name;
  (void)&SharedMathSmokeKernel;
  return probe;
}

}  // namespace loopserve::cuda
