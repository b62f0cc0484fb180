#include "tests/unit/testing/http_get.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace loopserve::testing {
namespace {

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

// True once the headers and Content-Length bytes of body have arrived (some
// servers keep the socket open for a while after answering).
bool Complete(const std::string& raw) {
  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) return false;
  const std::string headers = absl::AsciiStrToLower(raw.substr(0, header_end));
  const size_t at = headers.find("\r\ncontent-length:");
  if (at == std::string::npos) return false;  // read until the peer closes
  const size_t begin = at + std::strlen("\r\ncontent-length:");
  const size_t end = headers.find("\r\n", begin);
  size_t length = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(headers.substr(begin, end - begin)), &length)) {
    return false;
  }
  return raw.size() >= header_end + 4 + length;
}

}  // namespace

absl::StatusOr<HttpResponse> HttpGet(const std::string& address, const std::string& path,
                                     int timeout_ms) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("http_get: `", address, "` is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  const std::string port = address.substr(colon + 1);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("http_get: resolve ", address, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);

  FdCloser sock{-1};
  std::string last_error = "no address";
  for (addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      sock.fd = fd;
      break;
    }
    last_error = std::strerror(errno);
    close(fd);
  }
  if (sock.fd < 0) {
    return absl::UnavailableError(absl::StrCat("http_get: connect ", address, ": ", last_error));
  }

  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", address, "\r\nConnection: close\r\n\r\n");
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(sock.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("http_get: send to ", address, ": ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[16384];
  while (!Complete(raw)) {
    const ssize_t n = recv(sock.fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DeadlineExceededError(
          absl::StrCat("http_get: recv from ", address, ": ", std::strerror(errno)));
    }
    raw.append(buf, static_cast<size_t>(n));
  }

  const size_t header_end = raw.find("\r\n\r\n");
  const size_t line_end = raw.find("\r\n");
  if (header_end == std::string::npos || line_end == std::string::npos) {
    return absl::DataLossError(absl::StrCat("http_get: malformed response from ", address));
  }
  // "HTTP/1.1 200 OK"
  const std::string status_line = raw.substr(0, line_end);
  const size_t sp = status_line.find(' ');
  HttpResponse response;
  if (sp == std::string::npos ||
      !absl::SimpleAtoi(status_line.substr(sp + 1, 3), &response.status)) {
    return absl::DataLossError(absl::StrCat("http_get: bad status line `", status_line, "`"));
  }
  response.headers = raw.substr(line_end + 2, header_end - line_end - 2);
  response.body = raw.substr(header_end + 4);
  // Chunked bodies are not expected for HTTP/1.0 requests; refuse rather than mis-parse.
  if (response.headers.find("Transfer-Encoding: chunked") != std::string::npos) {
    return absl::UnimplementedError("http_get: chunked response");
  }
  return response;
}

}  // namespace loopserve::testing
