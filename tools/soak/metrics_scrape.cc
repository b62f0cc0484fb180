#include "tools/soak/metrics_scrape.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace loopserve::soak {
namespace {

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("address without port");
  const std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", address));
  }
  const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  const bool connected = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  freeaddrinfo(found);
  if (!connected) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host, "\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[8192];
  for (;;) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos || response.rfind("HTTP/1.", 0) != 0 ||
      response.find(" 200 ") == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("bad HTTP response from ", address, path));
  }
  return response.substr(body + 4);
}

// `a="x",b="y"` (no escaped quotes in our label values).
std::map<std::string, std::string> ParseLabels(absl::string_view text) {
  std::map<std::string, std::string> labels;
  while (!text.empty()) {
    const size_t eq = text.find('=');
    if (eq == absl::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') break;
    const size_t end = text.find('"', eq + 2);
    if (end == absl::string_view::npos) break;
    labels[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 2, end - eq - 2));
    text.remove_prefix(end + 1);
    if (!text.empty() && text[0] == ',') text.remove_prefix(1);
  }
  return labels;
}

}  // namespace

absl::StatusOr<MetricsSnapshot> MetricsSnapshot::Scrape(const std::string& address) {
  absl::StatusOr<std::string> body = HttpGet(address, "/metrics");
  if (!body.ok()) return body.status();
  return Parse(*body);
}

MetricsSnapshot MetricsSnapshot::Parse(const std::string& text) {
  MetricsSnapshot snapshot;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    MetricSample s;
    size_t value_at = 0;
    const size_t brace = line.find('{');
    const size_t space = line.find(' ');
    if (brace != absl::string_view::npos && brace < space) {
      const size_t close = line.find('}', brace);
      if (close == absl::string_view::npos) continue;
      s.name = std::string(line.substr(0, brace));
      s.labels = ParseLabels(line.substr(brace + 1, close - brace - 1));
      value_at = close + 1;
    } else {
      if (space == absl::string_view::npos) continue;
      s.name = std::string(line.substr(0, space));
      value_at = space;
    }
    const std::string value(absl::StripAsciiWhitespace(line.substr(value_at)));
    s.value = std::strtod(value.c_str(), nullptr);  // "+Inf"/"NaN" parse too
    snapshot.samples_.push_back(std::move(s));
  }
  return snapshot;
}

double MetricsSnapshot::Sum(const std::string& name,
                            const std::map<std::string, std::string>& match) const {
  double sum = 0;
  for (const MetricSample& s : samples_) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      all &= it != s.labels.end() && it->second == v;
    }
    if (all) sum += s.value;
  }
  return sum;
}

std::vector<std::string> MetricsSnapshot::LabelValues(const std::string& name,
                                                      const std::string& label) const {
  std::set<std::string> values;
  for (const MetricSample& s : samples_) {
    if (s.name != name) continue;
    auto it = s.labels.find(label);
    if (it != s.labels.end()) values.insert(it->second);
  }
  return {values.begin(), values.end()};
}

}  // namespace loopserve::soak
