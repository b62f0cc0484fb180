// Weight traffic of decode steps from the kernels' weight-read trace
// (op_profile::RecordWeightRead): bytes the kernels streamed, distinct bytes,
// and the bytes an LRU cache of a given size would miss, for the looped
// model as run and for its unrolled twin (every loop's layer instances are
// separate tensors). No PMU counters in this VM, so DRAM traffic is modelled,
// not counted: the LRU works per tensor (a tensor larger than the cache
// never hits), which is what a streaming access pattern gives.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/op_profile.h"

namespace loopserve {

struct WeightTraffic {
  double touched = 0;        // bytes the kernels streamed, per step
  double unique_looped = 0;  // distinct tensor bytes per step, looped model
  double lru_miss_looped = 0;
  double lru_miss_unrolled = 0;  // = unique of the unrolled model when nothing fits
};

class TensorLru {
 public:
  explicit TensorLru(double capacity) : capacity_(capacity) {}
  // Reads a tensor; returns the bytes that missed.
  double Read(const std::string& key, double bytes) {
    auto it = where_.find(key);
    if (it != where_.end()) {
      order_.splice(order_.begin(), order_, it->second.first);
      return 0;
    }
    if (bytes <= capacity_) {
      order_.push_front(key);
      where_[key] = {order_.begin(), bytes};
      used_ += bytes;
      while (used_ > capacity_) {
        const std::string& victim = order_.back();
        used_ -= where_[victim].second;
        where_.erase(victim);
        order_.pop_back();
      }
    }
    return bytes;
  }

 private:
  double capacity_, used_ = 0;
  std::list<std::string> order_;
  std::map<std::string, std::pair<std::list<std::string>::iterator, double>> where_;
};

// `steps`: the reads of consecutive decode steps. The first step only warms
// the caches; the result is the mean over the others.
inline WeightTraffic AnalyzeWeightReads(
    const std::vector<std::vector<op_profile::WeightRead>>& steps, double cache_bytes) {
  WeightTraffic out;
  TensorLru looped(cache_bytes), unrolled(cache_bytes);
  int counted = 0;
  for (size_t s = 0; s < steps.size(); ++s) {
    WeightTraffic step;
    std::set<const void*> seen;
    for (const op_profile::WeightRead& r : steps[s]) {
      const double bytes = static_cast<double>(r.bytes);
      char ptr[32];
      std::snprintf(ptr, sizeof(ptr), "%p", r.data);
      step.touched += bytes;
      if (seen.insert(r.data).second) step.unique_looped += bytes;
      step.lru_miss_looped += looped.Read(ptr, bytes);
      // Unrolled: the layer instances of loop t are tensors of their own.
      const bool in_loop = r.phase != nullptr && std::strncmp(r.phase, "loop ", 5) == 0;
      step.lru_miss_unrolled +=
          unrolled.Read(in_loop ? std::string(ptr) + "@" + r.phase : std::string(ptr), bytes);
    }
    if (s == 0 && steps.size() > 1) continue;
    ++counted;
    out.touched += step.touched;
    out.unique_looped += step.unique_looped;
    out.lru_miss_looped += step.lru_miss_looped;
    out.lru_miss_unrolled += step.lru_miss_unrolled;
  }
  if (counted > 0) {
    out.touched /= counted;
    out.unique_looped /= counted;
    out.lru_miss_looped /= counted;
    out.lru_miss_unrolled /= counted;
  }
  return out;
}

}  // namespace loopserve
