#!/usr/bin/env bash
# Creates the Python venv the deploy tests use to validate Kubernetes
# manifests offline: kubernetes-validate bundles the Kubernetes JSON schemas
# (1.25 .. 1.37), so after this one install nothing is downloaded.
#   tests/deploy/make_venv.sh BUILD_DIR      -> BUILD_DIR/deploy-venv
# Idempotent; exits 0 without a venv when PyPI cannot be reached (the tests
# that need it then skip).
set -euo pipefail
BUILD_DIR=${1:?usage: $0 BUILD_DIR}
VENV="$BUILD_DIR/deploy-venv"
# Pinned: the test validates against the 1.32 schemas this version bundles.
REQUIREMENT="kubernetes-validate==1.37.0"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "deploy-venv: present ($VENV)"
  exit 0
fi
mkdir -p "$BUILD_DIR"
rm -rf "$VENV"
# Debian's python3 (python3-venv from deploy/setup.sh), not a pyenv shim.
PYTHON=/usr/bin/python3
[[ -x "$PYTHON" ]] || PYTHON=python3
if ! "$PYTHON" -m venv "$VENV"; then
  echo "deploy-venv: $PYTHON -m venv failed (python3-venv missing?); the manifest test will skip" >&2
  rm -rf "$VENV"
  exit 0
fi
if ! "$VENV/bin/pip" install --quiet "$REQUIREMENT"; then
  echo "deploy-venv: cannot install $REQUIREMENT (offline?); the manifest validation test will skip" >&2
  rm -rf "$VENV"
  exit 0
fi
echo "deploy-venv: created ($VENV)"
