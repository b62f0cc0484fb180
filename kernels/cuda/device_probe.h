// Whether a usable CUDA device is present, and why not when it is not, so
// backend selection can log a clear reason before falling back to the CPU.
#pragma once

#include <string>

namespace loopserve::cuda {

struct DeviceProbe {
  int device_count = 0;
  std::string reason;  // empty when a device is usable
  std::string name;    // of device 0
};

DeviceProbe ProbeDevices();

}  // namespace loopserve::cuda
