#!/usr/bin/env bash
# Installs dependencies, builds loopserve, starts the server on the demo
# model (CPU backend) and shows a completion from it at full depth and with
# early exit: every token with the loops it ran, and the compute saved.
# The server keeps running afterwards (Ctrl-C stops it; QUICKSTART_EXIT=1
# stops it right after the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
BUILD_DIR="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$(nproc)" --target loopserve-server loopserve-client loopserve-cli

MODEL="${MODEL:-models/kjv-demo}"
PROMPT="${PROMPT:-And God said unto Moses,}"
if [[ ! -f "$MODEL/config.json" ]]; then
  echo "no model at $MODEL; using a random checkpoint (token ids only)"
  /usr/bin/python3 tests/reference/make_fixtures.py --out "$BUILD_DIR/quickstart-model" --only adaln
  MODEL="$BUILD_DIR/quickstart-model/adaln"
  PROMPT=""
fi
ADDR="${ADDR:-127.0.0.1:50051}"
"$BUILD_DIR/server/loopserve-server" --config deploy/quickstart.json --model "$MODEL" \
  --listen "$ADDR" 2> "$BUILD_DIR/quickstart-server.log" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$BUILD_DIR/tools/client/loopserve-client" health --target "$ADDR" --timeout 1 >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
"$BUILD_DIR/tools/client/loopserve-client" health --target "$ADDR"

ask() {
  local deployment=$1
  echo
  echo "== deployment '$deployment'"
  if [[ -n "$PROMPT" ]]; then
    "$BUILD_DIR/tools/client/loopserve-client" generate --target "$ADDR" \
      --deployment "$deployment" --prompt "$PROMPT" --max_tokens 24
  else
    "$BUILD_DIR/tools/client/loopserve-client" generate --target "$ADDR" \
      --deployment "$deployment" --prompt_ids 1,2,3,4,5 --max_tokens 16
  fi
}
ask full
ask fast

echo
echo "loopserve-server is serving $MODEL on $ADDR (metrics: http://127.0.0.1:9464/metrics;"
echo "log: $BUILD_DIR/quickstart-server.log)."
if [[ "${QUICKSTART_EXIT:-0}" == "1" ]]; then exit 0; fi
echo "Ctrl-C to stop."
wait $SERVER
