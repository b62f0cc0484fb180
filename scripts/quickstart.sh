#!/usr/bin/env bash
# Installs dependencies, builds loopserve and runs the engine on a small
# looped-MoE checkpoint: a greedy completion with the loop each token exited
# at and the compute saved. Until the trained demo model lands in models/,
# the checkpoint is a random one made by the reference's fixture maker.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
BUILD_DIR="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$(nproc)" --target loopserve-cli
MODEL="${MODEL:-}"
if [[ -z "$MODEL" ]]; then
  MODEL="$BUILD_DIR/quickstart-model/adaln"
  if [[ ! -f "$MODEL/config.json" ]]; then
    /usr/bin/python3 tests/reference/make_fixtures.py --out "$BUILD_DIR/quickstart-model" --only adaln
  fi
fi
echo "== full depth"
"$BUILD_DIR/tools/loopserve-cli" generate --model "$MODEL" --prompt_ids 1,2,3,4,5 \
  --max_tokens 12 --policy never
echo "== early exit: max_prob >= 0.4"
"$BUILD_DIR/tools/loopserve-cli" generate --model "$MODEL" --prompt_ids 1,2,3,4,5 \
  --max_tokens 12 --policy max_prob:0.4
