// A minimal HTTP/1.0 GET over a POSIX socket, for tests that scrape the
// Prometheus endpoint (no HTTP client library in the tree).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace loopserve::testing {

struct HttpResponse {
  int status = 0;       // e.g. 200
  std::string headers;  // raw header block, status line excluded
  std::string body;
};

// GET http://`address``path` where `address` is "host:port" (IPv4 literal or
// a resolvable name). Fails on connect/IO errors or after `timeout_ms`.
absl::StatusOr<HttpResponse> HttpGet(const std::string& address, const std::string& path,
                                     int timeout_ms = 5000);

}  // namespace loopserve::testing
