#!/usr/bin/env bash
# The full soak and fault test (docs/reliability.md "Soak"): builds
# loopserve-server and loopserve-soak, then runs 10,000 requests against the
# demo model on loopback with deploy/soak.json and prints the summary.
# Exit status 0 = every assertion held.
#   scripts/soak.sh                      # full run
#   REQUESTS=2000 scripts/soak.sh        # shorter
#   scripts/soak.sh --concurrency 16     # extra flags go to loopserve-soak
# Env: BUILD_DIR (default build), OUT_DIR (default $BUILD_DIR/soak),
#      SKIP_BUILD=1 to use the binaries already built,
#      EXACT_AFTER_PREEMPTION=false to count (not fail) replies that differ
#      from their reference after a preemption (none are expected since
#      preempted sequences replay their exit loops).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/soak}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOOPSERVE_SERVER=ON >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target loopserve-server loopserve-soak
fi
mkdir -p "$OUT_DIR"
echo "soak: $(date -u +%Y-%m-%dT%H:%M:%SZ), load before: $(uptime | sed 's/.*load average: //')"
status=0
"$BUILD_DIR/tools/soak/loopserve-soak" \
  --server "$BUILD_DIR/server/loopserve-server" \
  --config deploy/soak.json \
  --requests "${REQUESTS:-10000}" \
  --server_log "$OUT_DIR/server.log" \
  --summary_json "$OUT_DIR/summary.json" \
  --exact_after_preemption="${EXACT_AFTER_PREEMPTION:-true}" \
  "$@" | tee "$OUT_DIR/summary.txt" || status=$?
echo "soak: load after: $(uptime | sed 's/.*load average: //'); summary in $OUT_DIR"
exit "$status"
