#!/usr/bin/env bash
# Peer benchmark: loopserve vs llama.cpp on the same weights, same machine,
# same run (issue 10). One command:
#
#   bench/peer/run.sh                 # REPS=5 THREADS=2 by default
#   REPS=3 bench/peer/run.sh          # fewer repetitions
#   QUICK=1 bench/peer/run.sh         # smoke test: 1 repetition, short runs
#
# 1. the peer venv (bench/peer/setup_venv.sh: gguf + llama-cpp-python, which
#    builds llama.cpp from source: many minutes the first time);
# 2. loopserve's loopserve_peer_driver + loopserve_engine_bench (STREAM) in
#    $BUILD_DIR (default build-peer/build, configured without the server);
# 3. random bf16 checkpoints bench-m (R=4 x L=4) and its L=1 twin
#    (bench/make_bench_checkpoint.py) and their unrolled qwen3moe GGUFs
#    (bench/peer/export_gguf.py, bf16 bit for bit);
# 4. REPS repetitions; each samples STREAM triad bandwidth, then runs every
#    case on both sides back to back (the side that goes first alternates):
#    prefill of a 512-token prompt, decode at batch 1, 8 and 32; plus
#    loopserve alone at batch 1 and 8 under an exit policy (static depth 2
#    of 4: compute_saved ~40%). Each timed run follows a warm-up in the
#    same process (prefill) or the untimed prefill of its prompts (decode).
# 5. bench/peer/report.py: medians, min-max spread, ratios, bandwidth
#    fractions, bytes per token -> $OUT_DIR/RUN.md (and stdout).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEER_DIR="${PEER_DIR:-$ROOT/build-peer}"
VENV="${PEER_VENV:-$PEER_DIR/venv}"
BUILD_DIR="${BUILD_DIR:-$PEER_DIR/build}"
OUT_DIR="${OUT_DIR:-$PEER_DIR/results}"
THREADS="${THREADS:-2}"
REPS="${REPS:-5}"
PREFILL_LEN="${PREFILL_LEN:-512}"
PROMPT_LEN="${PROMPT_LEN:-64}"      # decode: prompt per sequence (prefilled untimed)
DECODE_STEPS="${DECODE_STEPS:-32}"  # decode: timed steps
BATCHES="${BATCHES:-1 8 32}"
EXIT_POLICY="${EXIT_POLICY:-never}"
EXIT_MAX_LOOPS="${EXIT_MAX_LOOPS:-2}"
EXIT_BATCHES="${EXIT_BATCHES:-1 8}"
if [[ "${QUICK:-0}" == 1 ]]; then
  REPS=1 PREFILL_LEN=128 DECODE_STEPS=8 BATCHES="1 8"
fi

log() { echo "[peer] $*" >&2; }

# 1. venv
"$ROOT/bench/peer/setup_venv.sh" "$VENV"
PY="$VENV/bin/python"

# 2. loopserve binaries
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLOOPSERVE_SERVER=OFF -DLOOPSERVE_CUDA=OFF >/dev/null
fi
ninja -C "$BUILD_DIR" -j "$(nproc)" loopserve_peer_driver loopserve_engine_bench >&2
DRIVER="$BUILD_DIR/bench/peer/loopserve_peer_driver"
STREAM="$BUILD_DIR/bench/loopserve_engine_bench"

# 3. checkpoints and GGUFs (kept between runs; rewritten when the weights change)
MODELS=(bench-m bench-m-l1)
for m in "${MODELS[@]}"; do
  /usr/bin/python3 "$ROOT/bench/make_bench_checkpoint.py" --size "$m" --out "$PEER_DIR/ckpt/$m" >&2
  gguf="$PEER_DIR/gguf/$m.gguf"
  if [[ ! -f "$gguf" || "$PEER_DIR/ckpt/$m/model.safetensors" -nt "$gguf" ]]; then
    mkdir -p "$PEER_DIR/gguf"
    "$PY" "$ROOT/bench/peer/export_gguf.py" --checkpoint "$PEER_DIR/ckpt/$m" \
      --out "$gguf" --dtype BF16 >&2
  fi
done

# llama.cpp's OpenMP workers spin while they wait (OMP_WAIT_POLICY=active):
# its fastest setting on idle cores, but 10x+ slower when other processes
# share the cores (seen on this 2-core machine under load). Unless the caller
# fixed it, give llama.cpp whichever is faster right now (a short decode probe).
if [[ -z "${OMP_WAIT_POLICY:-}" ]]; then
  best_tok=0
  for policy in active passive; do
    tok=$(OMP_WAIT_POLICY=$policy "$PY" "$ROOT/bench/peer/llama_driver.py" \
      --gguf "$PEER_DIR/gguf/bench-m.gguf" --threads "$THREADS" --mode decode --batch 1 \
      --decode_steps 8 | sed -n 's/.*"tok_s": \([0-9.]*\).*/\1/p')
    log "llama.cpp probe, OMP_WAIT_POLICY=$policy: $tok tok/s (decode batch 1)"
    if awk -v a="$tok" -v b="$best_tok" 'BEGIN { exit !(a > b) }'; then
      best_tok=$tok
      OMP_WAIT_POLICY=$policy
    fi
  done
  OMP_WAIT_POLICY_HOW="probe: faster of active/passive"
else
  OMP_WAIT_POLICY_HOW="set by the caller"
fi
export OMP_WAIT_POLICY

# 4. measurements
mkdir -p "$OUT_DIR"
RUN="$OUT_DIR/$(date -u +%Y%m%dT%H%M%SZ)"
JSONL="$RUN.jsonl"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores"
  echo "command: ${QUICK:+QUICK=$QUICK }REPS=$REPS THREADS=$THREADS bench/peer/run.sh"
  echo "llama.cpp: llama-cpp-python $("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')," \
    "GGML_NATIVE, F16 KV cache, flash attention auto, n_ubatch 512," \
    "OMP_WAIT_POLICY=$OMP_WAIT_POLICY ($OMP_WAIT_POLICY_HOW)"
  echo "uptime at start: $(uptime)"
} >"$RUN.md"
tag() {  # adds "rep" to every RESULT line of stdin
  sed -n "s/^RESULT {\(.*\)}\$/{\"rep\":$1,\1}/p"
}
ls_run() {  # rep, model, args...
  local rep=$1 model=$2; shift 2
  "$DRIVER" --model "$PEER_DIR/ckpt/$model" --name "$model" --threads "$THREADS" "$@" |
    tag "$rep" | tee -a "$JSONL" >&2
}
lc_run() {
  local rep=$1 model=$2; shift 2
  "$PY" "$ROOT/bench/peer/llama_driver.py" --gguf "$PEER_DIR/gguf/$model.gguf" --name "$model" \
    --threads "$THREADS" "$@" | tag "$rep" | tee -a "$JSONL" >&2
}
both() {  # rep, model, args...: the two sides back to back, alternating who goes first
  if (($1 % 2)); then ls_run "$@"; lc_run "$@"; else lc_run "$@"; ls_run "$@"; fi
}

for ((rep = 1; rep <= REPS; rep++)); do
  log "repetition $rep/$REPS ($(uptime | sed 's/.*load/load/'))"
  "$STREAM" --mode stream --threads "$THREADS" --stream_mib 256 | tag "$rep" | tee -a "$JSONL" >&2
  for m in "${MODELS[@]}"; do
    both "$rep" "$m" --mode prefill --prompt_len "$PREFILL_LEN"
    for b in $BATCHES; do
      args=(--mode decode --batch "$b" --prompt_len "$PROMPT_LEN" --decode_steps "$DECODE_STEPS"
            --warmup 0)
      bytes=()
      ((rep == 1)) && bytes=(--bytes)  # weight bytes per step: counted once, loopserve side
      if ((rep % 2)); then
        ls_run "$rep" "$m" "${args[@]}" "${bytes[@]}"; lc_run "$rep" "$m" "${args[@]}"
      else
        lc_run "$rep" "$m" "${args[@]}"; ls_run "$rep" "$m" "${args[@]}" "${bytes[@]}"
      fi
      # loopserve's own early exit, right after its full depth at this batch
      if [[ "$m" == bench-m && " $EXIT_BATCHES " == *" $b "* ]]; then
        ls_run "$rep" "$m" "${args[@]}" --policy "$EXIT_POLICY" --max_loops "$EXIT_MAX_LOOPS"
      fi
    done
  done
done
echo "uptime at end: $(uptime)" >>"$RUN.md"

# 5. report
{
  echo
  /usr/bin/python3 "$ROOT/bench/peer/report.py" "$JSONL"
} >>"$RUN.md"
cat "$RUN.md"
log "results: $RUN.md ($JSONL)"
