#!/usr/bin/env bash
# Builds and runs the unit and integration suites under a sanitizer
# (docs/reliability.md "Sanitizers"), with the CMakePresets.json presets:
#   scripts/sanitize.sh asan   # ASan + UBSan, halt on error (build-asan)
#   scripts/sanitize.sh tsan   # ThreadSanitizer (build-tsan)
# Extra arguments go to ctest (e.g. -R Scheduler, -j 1). SANITIZE_JOBS sets
# compile jobs (default 2). asan also runs the golden, tokenizer-parity and
# fuzz-corpus replay tests; tsan runs the suites labelled unit and
# integration, where the threads are (engine loop, scheduler, gRPC).
# Do not edit sources while it builds: an object compiled from a header as it
# was when its compile began can end up newer than the edited header, so
# ninja keeps it, and objects of two layouts get linked (ASan then reports a
# stack-buffer-overflow in whatever struct changed). After such an edit,
# `touch` the edited files and run again. (Nor edit this script while it
# runs: bash reads it as it goes.)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-}"
case "$preset" in
  asan | tsan) shift ;;
  *)
    echo "usage: scripts/sanitize.sh asan|tsan [ctest args...]" >&2
    exit 2
    ;;
esac
start=$(date +%s)
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "${SANITIZE_JOBS:-2}"
built=$(date +%s)
rc=0
ctest --preset "$preset" "$@" || rc=$?
echo "sanitize $preset: build $((built - start))s, tests $(($(date +%s) - built))s, ctest rc=$rc"
exit "$rc"
