#!/usr/bin/env bash
# Installs every Debian package loopserve needs to build, test and benchmark.
# Idempotent and non-interactive; run as root (or with sudo available).
set -euo pipefail

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi

PACKAGES=(
  # build
  cmake ninja-build g++ pkg-config git
  # libraries
  libabsl-dev nlohmann-json3-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev  # tokenizer pre-tokenizer regex (engine/pretokenizer)
  libssl-dev  # SHA-256 of API keys, TLS file checks (server/api_keys, tls_config); libgrpc-dev pulls it anyway
  openssl     # the integration tests' throw-away CA (tests/integration/test_pki.cc)
  # reference, fixtures and the PyTorch side of the benchmarks
  python3 python3-numpy python3-regex  # python3-regex: tests/reference/bpe_tokenizer.py
  # fuzzing (tests/fuzz, scripts/fuzz.sh): clang 14; -fsanitize=fuzzer links
  # libFuzzer from libclang-rt-14-dev (libfuzzer-14-dev, the standalone
  # archive, is not needed). Sanitizer presets use GCC's own runtimes.
  clang libclang-rt-14-dev
  # deploy/ tests: promtool + prometheus server (tests/deploy), venv for kubernetes-validate
  prometheus python3-venv
)
# Training the demo model and the PyTorch side of the benchmarks (optional).
if [[ "${LOOPSERVE_WITH_TORCH:-0}" == "1" ]]; then PACKAGES+=(python3-torch bible-kjv); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
