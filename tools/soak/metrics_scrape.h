// Scrapes the server's Prometheus endpoint (plain HTTP/1.0 GET over a
// loopback socket) and sums samples by name and label values.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loopserve::soak {

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

class MetricsSnapshot {
 public:
  // GET http://`address`/metrics.
  static absl::StatusOr<MetricsSnapshot> Scrape(const std::string& address);
  // Parses a text exposition (comments skipped).
  static MetricsSnapshot Parse(const std::string& text);

  // Sum of the samples called `name` whose labels include every pair of
  // `match` (0 when none).
  double Sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const;
  // The distinct values of `label` over samples called `name`.
  std::vector<std::string> LabelValues(const std::string& name, const std::string& label) const;

 private:
  std::vector<MetricSample> samples_;
};

}  // namespace loopserve::soak
