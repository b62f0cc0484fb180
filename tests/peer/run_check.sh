#!/usr/bin/env bash
# ctest entry of the llama.cpp numerics cross-check: skips (77) when the peer
# venv (bench/peer/setup_venv.sh) is absent, else runs check_vs_llama_cpp.py
# under it.  Usage: run_check.sh VENV DUMP_BINARY WORKDIR
set -uo pipefail
VENV="${PEER_VENV:-$1}"
DUMP="$2"
WORKDIR="$3"
if [[ ! -x "$VENV/bin/python" ]] ||
   ! "$VENV/bin/python" -c 'import gguf, llama_cpp' >/dev/null 2>&1; then
  echo "skip: no peer venv with gguf + llama_cpp at $VENV (run bench/peer/setup_venv.sh)"
  exit 77
fi
exec "$VENV/bin/python" "$(dirname "$0")/check_vs_llama_cpp.py" --dump "$DUMP" \
  --workdir "$WORKDIR"
