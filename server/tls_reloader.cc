#include "server/tls_reloader.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "server/api_keys.h"
#include "server/log.h"

namespace loopserve {
namespace {

// gRPC rereads the private copies this often; they only change when an
// install swaps them, so a renewal is served within interval + 1 s.
constexpr unsigned kProviderRefreshSeconds = 1;

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "(missing)";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A digest of the configured files' bytes: enough to notice a change
// without parsing them every poll.
std::string Fingerprint(const TlsConfig& tls) {
  std::string all = ReadWhole(tls.cert_file);
  all.push_back('\0');
  all += ReadWhole(tls.key_file);
  all.push_back('\0');
  if (tls.mutual()) all += ReadWhole(tls.client_ca_file);
  return Sha256Hex(all);
}

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteFile(const std::string& path, const std::string& data) {
  // 0600: the private directory holds a private key.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot create", path);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const absl::Status error = ErrnoError("cannot write", path);
      close(fd);
      return error;
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return ErrnoError("cannot close", path);
  return absl::OkStatus();
}

std::string Rfc3339(int64_t unix_seconds) {
  return absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsReloader>> TlsReloader::Start(const TlsConfig& tls) {
  if (!tls.enabled() || tls.reload_interval_seconds <= 0) {
    return absl::InvalidArgumentError("TlsReloader: TLS with reload_interval_seconds > 0 only");
  }
  // Fingerprint before reading: a change in between shows at the next poll.
  const std::string fingerprint = Fingerprint(tls);
  absl::StatusOr<TlsFiles> files = ReadTlsFiles(tls);
  if (!files.ok()) return files.status();

  std::unique_ptr<TlsReloader> reloader(new TlsReloader(tls));
  std::string dir = (std::filesystem::temp_directory_path() / "loopserve-tls-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) {
    return ErrnoError("server config: field `tls.reload_interval_seconds`: cannot create",
                      dir);
  }
  reloader->dir_ = dir;
  {
    absl::MutexLock lock(&reloader->mu_);
    reloader->last_seen_ = fingerprint;
    if (absl::Status s = reloader->Install(*files); !s.ok()) return s;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      reloader->Current("key.pem"), reloader->Current("cert.pem"),
      tls.mutual() ? reloader->Current("ca.pem") : "", kProviderRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.mutual()) options.watch_root_certs();
  options.set_cert_request_type(ClientCertificateRequest(tls));
  reloader->credentials_ = grpc::experimental::TlsServerCredentials(options);
  reloader->thread_ = std::thread([r = reloader.get()] { r->Run(); });
  return reloader;
}

TlsReloader::~TlsReloader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

std::string TlsReloader::Current(const char* name) const {
  return absl::StrCat(dir_, "/current/", name);
}

absl::Status TlsReloader::Install(const TlsFiles& files) {
  const std::string name = absl::StrCat("v", ++version_);
  const std::string version_dir = absl::StrCat(dir_, "/", name);
  if (mkdir(version_dir.c_str(), 0700) != 0) return ErrnoError("cannot create", version_dir);
  for (const auto& [file, data] : {std::pair<const char*, const std::string*>{"key.pem", &files.key},
                                   {"cert.pem", &files.cert},
                                   {"ca.pem", &files.client_ca}}) {
    if (absl::Status s = WriteFile(absl::StrCat(version_dir, "/", file), *data); !s.ok()) return s;
  }
  // One rename swaps key, certificate and CA together, so the path gRPC's
  // provider reads names one complete set at any moment (its reader also
  // retries when the files' timestamps change between its reads).
  const std::string link = absl::StrCat(dir_, "/current");
  const std::string staged = absl::StrCat(link, ".tmp");
  unlink(staged.c_str());
  if (symlink(name.c_str(), staged.c_str()) != 0) return ErrnoError("cannot link", staged);
  if (rename(staged.c_str(), link.c_str()) != 0) return ErrnoError("cannot rename", staged);
  if (version_ > 2) {
    // gRPC rereads every second and polls here are at least a second apart,
    // so it has moved past the set before the previous one: that can go.
    std::error_code ignored;
    std::filesystem::remove_all(absl::StrCat(dir_, "/v", version_ - 2), ignored);
  }
  installed_ = files;
  return absl::OkStatus();
}

void TlsReloader::SetObserver(Observer observer) {
  absl::MutexLock lock(&mu_);
  observer_ = std::move(observer);
}

int64_t TlsReloader::not_after_unix_seconds() const {
  absl::MutexLock lock(&mu_);
  return installed_.not_after_unix_seconds;
}

void TlsReloader::CheckNow() {
  const std::string fingerprint = Fingerprint(tls_);
  {
    absl::MutexLock lock(&mu_);
    if (fingerprint == last_seen_) return;
    last_seen_ = fingerprint;
  }
  absl::StatusOr<TlsFiles> files = ReadTlsFiles(tls_);
  Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    if (files.ok() && *files == installed_) return;  // rewritten with the same content
    if (files.ok()) {
      const absl::Status s = Install(*files);
      outcome.installed = s.ok();
      outcome.error = std::string(s.message());
    } else {
      outcome.error = std::string(files.status().message());
    }
    outcome.not_after_unix_seconds = installed_.not_after_unix_seconds;
    // Under the lock, so that once SetObserver(nullptr) returns the old
    // observer is not running and never runs again.
    if (observer_) observer_(outcome);
  }
  if (outcome.installed) {
    LogInfo("TLS files reloaded: new connections get the renewed certificate",
            {{"cert_file", tls_.cert_file},
             {"not_after", Rfc3339(outcome.not_after_unix_seconds)}});
  } else {
    LogError("TLS files changed but were refused; the previous certificate stays in service",
             {{"error", outcome.error}, {"not_after", Rfc3339(outcome.not_after_unix_seconds)}});
  }
}

void TlsReloader::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_),
                               absl::Seconds(tls_.reload_interval_seconds))) {
        return;
      }
    }
    CheckNow();
  }
}

}  // namespace loopserve
