// Serves TLS files that are renewed in place (cert-manager, certbot, a
// mounted Kubernetes Secret) without a restart, and only ever a set that
// passed the start-up checks. gRPC's own file-watcher provider (1.51)
// rereads files but serves whatever it finds, so a half-written or wrong
// renewal would fail every new handshake. Instead this polls the configured
// files every `tls.reload_interval_seconds`, checks each change with
// ReadTlsFiles, and installs a good set into a private directory (a new
// version directory, then one atomic symlink swap) that gRPC's provider
// watches. A bad change is logged and refused; the last good set stays in
// service.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/security/server_credentials.h"
#include "server/tls_config.h"

namespace loopserve {

class TlsReloader {
 public:
  // What a poll that found a change did.
  struct Outcome {
    bool installed = false;              // false: refused, the old set stays
    std::string error;                   // why it was refused
    int64_t not_after_unix_seconds = 0;  // expiry of the certificate in service
  };
  using Observer = std::function<void(const Outcome&)>;

  // Checks the files (errors as at start-up, naming the field and file),
  // installs them and starts polling. `tls.reload_interval_seconds` > 0.
  static absl::StatusOr<std::unique_ptr<TlsReloader>> Start(const TlsConfig& tls);
  ~TlsReloader();  // stops polling, removes the private directory
  TlsReloader(const TlsReloader&) = delete;
  TlsReloader& operator=(const TlsReloader&) = delete;

  // gRPC credentials that follow the installed set.
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  // Told about every change found from now on (metrics), on the polling
  // thread; once SetObserver returns, the previous observer is done and
  // never called again. Thread-safe.
  void SetObserver(Observer observer);
  // One poll (the thread's work; tests call it directly).
  void CheckNow();
  int64_t not_after_unix_seconds() const;

 private:
  explicit TlsReloader(TlsConfig tls) : tls_(std::move(tls)) {}
  absl::Status Install(const TlsFiles& files) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Current(const char* name) const;  // path gRPC watches
  void Run();

  const TlsConfig tls_;
  std::string dir_;  // private (0700) directory of the installed copies
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  mutable absl::Mutex mu_;
  int version_ ABSL_GUARDED_BY(mu_) = 0;
  TlsFiles installed_ ABSL_GUARDED_BY(mu_);
  std::string last_seen_ ABSL_GUARDED_BY(mu_);  // raw bytes of the files at the last poll
  Observer observer_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace loopserve
