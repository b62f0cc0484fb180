#include "tools/soak/server_child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace loopserve::soak {
namespace {

constexpr char kListening[] = "loopserve listening on ";

// "ADDR (metrics on MADDR)" -> {ADDR, MADDR}; "off" -> "".
bool ParseListening(const std::string& line, std::string& address, std::string& metrics) {
  const size_t at = line.find(kListening);
  if (at == std::string::npos) return false;
  std::string rest = line.substr(at + std::strlen(kListening));
  const size_t space = rest.find(' ');
  address = rest.substr(0, space);
  const std::string key = "(metrics on ";
  const size_t m = rest.find(key);
  if (m != std::string::npos) {
    metrics = rest.substr(m + key.size());
    metrics = metrics.substr(0, metrics.find(')'));
    if (metrics == "off") metrics.clear();
  }
  return !address.empty();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerChild>> ServerChild::Start(
    const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
    std::chrono::seconds timeout) {
  int out[2];
  if (pipe(out) != 0) return absl::InternalError("pipe failed");
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::NotFoundError(absl::StrCat("cannot write ", log_path));
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close(out[0]);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  close(log_fd);
  std::unique_ptr<ServerChild> child(new ServerChild());
  child->pid_ = pid;
  child->stdout_fd_ = out[0];
  // Read stdout until the listening line (the server prints it once bound).
  std::string buffer;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) > 0) {
      char chunk[512];
      const ssize_t n = read(out[0], chunk, sizeof(chunk));
      if (n <= 0) break;  // closed: the server exited
      buffer.append(chunk, static_cast<size_t>(n));
      if (ParseListening(buffer, child->address_, child->metrics_address_) &&
          buffer.find('\n', buffer.find(kListening)) != std::string::npos) {
        return child;
      }
    }
    if (!child->Alive()) break;
  }
  return absl::UnavailableError(absl::StrCat("server did not start (", child->exit_description(),
                                             "); see ", log_path));
}

ServerChild::~ServerChild() {
  if (Alive()) {
    kill(pid_, SIGKILL);
    WaitForExit(std::chrono::seconds(5));
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

absl::StatusOr<int64_t> ServerChild::RssKib() const {
  std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v(line);
    if (!absl::ConsumePrefix(&v, "VmRSS:")) continue;
    v = absl::StripAsciiWhitespace(v);
    absl::ConsumeSuffix(&v, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &kib)) return kib;
  }
  return absl::NotFoundError("no VmRSS (process gone?)");
}

void ServerChild::ReapLocked(bool block) {
  if (exited_) return;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (r == pid_) {
    exited_ = true;
    wait_status_ = status;
  }
}

bool ServerChild::Alive() {
  absl::MutexLock lock(&mu_);
  ReapLocked(false);
  return !exited_;
}

std::string ServerChild::exit_description() {
  absl::MutexLock lock(&mu_);
  ReapLocked(false);
  if (!exited_) return "running";
  if (WIFEXITED(wait_status_)) return absl::StrCat("exit code ", WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) {
    return absl::StrCat("killed by signal ", WTERMSIG(wait_status_), " (",
                        strsignal(WTERMSIG(wait_status_)), ")");
  }
  return "ended";
}

int ServerChild::exit_code() {
  absl::MutexLock lock(&mu_);
  ReapLocked(false);
  if (exited_ && WIFEXITED(wait_status_)) return WEXITSTATUS(wait_status_);
  return -1;
}

void ServerChild::SendSigterm() { kill(pid_, SIGTERM); }

bool ServerChild::WaitForExit(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (!Alive()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !Alive();
}

}  // namespace loopserve::soak
