// A server that cannot load its model exits non-zero with the error and
// never binds its gRPC port: the test holds the port itself (no
// SO_REUSEPORT), so a server that tried to bind first would fail with
// "cannot listen" instead of the model error. A good model on the same held
// port proves the test would see such a bind.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A listening socket on 127.0.0.1 with a kernel-chosen port.
class HeldPort {
 public:
  HeldPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd_, 1) != 0) {
      return;
    }
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~HeldPort() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Runs the server binary to its exit (at most 60 s): the exit code (-1 if
// killed or still running) and its stderr.
std::pair<int, std::string> RunToExit(const std::vector<std::string>& args,
                                      const std::string& log_path) {
  std::vector<std::string> storage = {LOOPSERVE_SERVER_BINARY};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  int code = -1;
  for (int i = 0; i < 6000; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (code == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  std::ifstream in(log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  return {code, ss.str()};
}

// Runs the server on the held port with `model_dir`: its exit code and log.
std::pair<int, std::string> RunOnHeldPort(const TestModel& model, const std::string& model_dir,
                                          int port) {
  nlohmann::json config = ServerConfigJson(model, nlohmann::json::array({{{"name", "default"}}}));
  config["model_dir"] = model_dir;
  config["listen_address"] = "127.0.0.1:" + std::to_string(port);
  config["metrics_address"] = "";
  WriteJson(model.Join("held.json"), config);
  return RunToExit({"--config=" + model.Join("held.json")}, model.Join("held.log"));
}

TEST(ServerLoadingTest, ControlAGoodModelOnTheHeldPortFailsToBind) {
  TestModel model;
  HeldPort held;
  ASSERT_GT(held.port(), 0);
  auto [code, log] = RunOnHeldPort(model, model.dir(), held.port());
  EXPECT_NE(code, 0);
  EXPECT_THAT(log, HasSubstr("cannot listen"));
}

TEST(ServerLoadingTest, BadModelsExitNonZeroBeforeBinding) {
  TestModel model;
  HeldPort held;
  ASSERT_GT(held.port(), 0);
  // A truncated checkpoint and a missing directory.
  const std::string truncated = model.Join("truncated");
  std::filesystem::create_directories(truncated);
  for (const auto& entry : std::filesystem::directory_iterator(model.dir())) {
    if (entry.is_regular_file()) {
      std::filesystem::copy_file(entry.path(), truncated / entry.path().filename());
    }
  }
  const std::filesystem::path weights = std::filesystem::path(truncated) / "model.safetensors";
  ASSERT_TRUE(std::filesystem::exists(weights));
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) / 2);
  const std::string corrupt_tokenizer = model.Join("bad_tokenizer");
  std::filesystem::create_directories(corrupt_tokenizer);
  for (const auto& entry : std::filesystem::directory_iterator(model.dir())) {
    if (entry.is_regular_file()) {
      std::filesystem::copy_file(entry.path(), corrupt_tokenizer / entry.path().filename());
    }
  }
  std::ofstream(std::filesystem::path(corrupt_tokenizer) / "tokenizer.json") << "{\"model\": 7";

  struct Case {
    std::string dir;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{{model.Join("no_such_model"), "no_such_model"},
                                         {truncated, "model.safetensors"},
                                         {corrupt_tokenizer, "tokenizer.json"}}) {
    SCOPED_TRACE(c.dir);
    auto [code, log] = RunOnHeldPort(model, c.dir, held.port());
    EXPECT_EQ(code, 1);
    EXPECT_THAT(log, HasSubstr("cannot start the server"));
    EXPECT_THAT(log, HasSubstr(c.message));
    EXPECT_THAT(log, Not(HasSubstr("cannot listen")));
    EXPECT_THAT(log, Not(HasSubstr("server started")));
  }
}

}  // namespace
}  // namespace loopserve::testing
