#!/usr/bin/env bash
# Runs COMMAND when PROGRAM is present, else exits 77 (ctest SKIP):
#   run_if_present.sh PROGRAM COMMAND [ARGS...]
# PROGRAM is a name on PATH or a path (e.g. a venv's python); COMMAND is the
# full command to run (it may be another program that needs PROGRAM).
set -euo pipefail
program=${1:?usage: $0 PROGRAM COMMAND [ARGS...]}
if [[ "$program" == */* ]]; then
  [[ -x "$program" ]] || { echo "SKIP: $program not found"; exit 77; }
else
  command -v "$program" >/dev/null || { echo "SKIP: $program not on PATH"; exit 77; }
fi
shift
exec "$@"
