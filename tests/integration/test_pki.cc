#include "tests/integration/test_pki.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace loopserve::testing {
namespace {

// Runs `command` with its output in `log`; the output on failure.
absl::Status Run(const std::string& command, const std::string& log) {
  const int rc = std::system((command + " >" + log + " 2>&1").c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("`", command, "` failed (", rc, "):\n", ReadFile(log)));
  }
  return absl::OkStatus();
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return out ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

// P-256 keys: fast to generate, and every TLS stack speaks them.
constexpr char kNewKey[] = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

absl::Status MakeCa(const std::string& dir, const std::string& name) {
  return Run(absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                          "-nodes -days 2 -subj /CN=",
                          name, " -keyout ", dir, "/", name, ".key -out ", dir, "/", name,
                          ".pem -addext basicConstraints=critical,CA:TRUE "
                          "-addext keyUsage=critical,keyCertSign,cRLSign"),
             dir + "/openssl.log");
}

// A leaf `name` signed by CA `ca` with the extensions in `ext`.
absl::Status MakeLeaf(const std::string& dir, const std::string& name, const std::string& ca,
                      const std::string& cn, const std::string& ext, int serial) {
  const std::string p = dir + "/" + name;
  if (absl::Status s = WriteText(p + ".ext", ext); !s.ok()) return s;
  if (absl::Status s =
          Run(absl::StrCat(kNewKey, " -subj /CN=", cn, " -keyout ", p, ".key -out ", p, ".csr"),
              dir + "/openssl.log");
      !s.ok()) {
    return s;
  }
  return Run(absl::StrCat("openssl x509 -req -days 2 -in ", p, ".csr -CA ", dir, "/", ca,
                          ".pem -CAkey ", dir, "/", ca, ".key -set_serial ", serial, " -extfile ",
                          p, ".ext -out ", p, ".pem"),
             dir + "/openssl.log");
}

}  // namespace

bool HaveOpenssl() { return std::system("openssl version >/dev/null 2>&1") == 0; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  for (const char* ca : {"ca", "rogue_ca"}) {
    if (absl::Status s = MakeCa(dir, ca); !s.ok()) return s;
  }
  const std::string server_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
      "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  const std::string client_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";
  if (absl::Status s = MakeLeaf(dir, "server", "ca", "localhost", server_ext, 1001); !s.ok()) {
    return s;
  }
  if (absl::Status s = MakeLeaf(dir, "client", "ca", "test-client", client_ext, 1002); !s.ok()) {
    return s;
  }
  if (absl::Status s = MakeLeaf(dir, "rogue", "rogue_ca", "rogue-client", client_ext, 1003);
      !s.ok()) {
    return s;
  }
  TestPki pki;
  pki.ca_cert = dir + "/ca.pem";
  pki.server_cert = dir + "/server.pem";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.pem";
  pki.client_key = dir + "/client.key";
  pki.rogue_cert = dir + "/rogue.pem";
  pki.rogue_key = dir + "/rogue.key";
  pki.rogue_ca_cert = dir + "/rogue_ca.pem";
  return pki;
}

std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address, const std::string& ca_cert,
                                          const std::string& client_cert,
                                          const std::string& client_key) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(ca_cert);
  if (!client_cert.empty()) {
    options.pem_cert_chain = ReadFile(client_cert);
    options.pem_private_key = ReadFile(client_key);
  }
  return grpc::CreateChannel(address, grpc::SslCredentials(options));
}

}  // namespace loopserve::testing
