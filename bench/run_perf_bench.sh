#!/usr/bin/env bash
# Issue 10 "make it fast" figures on bench-m (docs/performance.md), one
# command, outside CI (~10 minutes on 2 cores):
#   - machine peak (register-resident f32 FMA and AVX512-BF16 dot loops) and
#     the bf16 GEMM/GEMV kernels (loopserve_kernels_bench);
#   - before/after: when OLD names the bench/ folder of a build of the code
#     before the change, OLD and NEW engine_bench run alternately (A B A B)
#     for decode batch 1 and 8 and a 512-token prefill, plus one --profile
#     run of each;
#   - exit policies run interleaved in one process (static depth 1..4 and
#     every criterion with a threshold it never meets: the cost of its checks);
#   - weight bytes per decode step from the kernels' read trace, looped vs
#     unrolled, and decode bandwidth against a STREAM triad in the same run.
# Output: $OUT/*.txt (one file per command) and $OUT/summary.txt.
#
#   bench/run_perf_bench.sh
#   OLD=/tmp/old-build/bench PAIRS=3 bench/run_perf_bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build-perf}"
OUT="${OUT:-$BUILD/perf_results}"
OLD="${OLD:-}"
PAIRS="${PAIRS:-3}"
THREADS="${THREADS:-2}"
CKPT="$BUILD/ckpt/bench-m"
NEW="$BUILD/bench"

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DLOOPSERVE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" -j"$THREADS" loopserve_engine_bench loopserve_kernels_bench >/dev/null
/usr/bin/python3 "$ROOT/bench/make_bench_checkpoint.py" --size bench-m --out "$CKPT"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{ date -u; lscpu | grep -E "Model name|^CPU\(s\)|L2|L3"; uptime; } > "$SUMMARY"

run() {  # run NAME CMD...: output to $OUT/NAME.txt, load before and after
  local name="$1"; shift
  { echo "# $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"; echo "# $*"
    "$@"; echo "# done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"; } \
    > "$OUT/$name.txt" 2>&1
  grep -E "^RESULT|tok/s|^weights per step|^stream|^decode weights|FLOP/s=" "$OUT/$name.txt" \
    | sed "s/^/$name: /" >> "$SUMMARY" || true
}

E=(--model "$CKPT" --threads "$THREADS")
DEC1=(--mode decode --batch 1 --prompt_len 16 --decode_steps 32 --reps 3 --bandwidth=false)
DEC8=(--mode decode --batch 8 --prompt_len 16 --decode_steps 16 --reps 3 --bandwidth=false)
PRE=(--mode prefill --batch 1 --prompt_len 512 --max_batch_tokens 512 --reps 2)

run peak "$NEW/loopserve_kernels_bench" \
    --benchmark_filter='PeakFlops|BM_Linear/dtype:2/N:1024/K:1024/m:(1|512)/|Cache|Kl' \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

if [[ -n "$OLD" ]]; then
  for i in $(seq "$PAIRS"); do
    for side in old new; do
      bin="$NEW"; [[ $side == old ]] && bin="$OLD"
      run "ab_${side}_decode1_$i" "$bin/loopserve_engine_bench" "${E[@]}" "${DEC1[@]}"
      run "ab_${side}_decode8_$i" "$bin/loopserve_engine_bench" "${E[@]}" "${DEC8[@]}"
      run "ab_${side}_prefill512_$i" "$bin/loopserve_engine_bench" "${E[@]}" "${PRE[@]}"
    done
  done
  for side in old new; do
    bin="$NEW"; [[ $side == old ]] && bin="$OLD"
    run "profile_${side}_decode1" "$bin/loopserve_engine_bench" "${E[@]}" "${DEC1[@]}" --profile
    run "profile_${side}_decode8" "$bin/loopserve_engine_bench" "${E[@]}" "${DEC8[@]}" --profile
    run "profile_${side}_prefill512" "$bin/loopserve_engine_bench" "${E[@]}" "${PRE[@]}" --profile
  done
fi

# Exit policies in one process, interleaved. Static depth d = never:0:1:d.
# The never-met thresholds run every check at every boundary and still go
# to full depth, so (their time - never's) / (L-1) is one check's cost.
POLICIES="never,never:0:1:2,never:0:1:1,never:0:1:3,max_prob:1,margin:1,entropy:0,kl:0"
POLICIES+=",top1_stable:100,hidden_cosine:1"
run policies_decode1 "$NEW/loopserve_engine_bench" "${E[@]}" "${DEC1[@]}" --policies "$POLICIES"
run policies_decode8 "$NEW/loopserve_engine_bench" "${E[@]}" "${DEC8[@]}" --reps 2 \
    --policies "$POLICIES"
# The issue's target: an exit policy with compute_saved >= 40% vs full depth,
# batch 1 and 8, interleaved in the same process: static depth 2 of 4, and
# two criteria that reach it on this random checkpoint.
TARGET="never,never:0:1:2,hidden_cosine:0.5,max_prob:0.05"
run exit_target1 "$NEW/loopserve_engine_bench" "${E[@]}" --mode decode --batch 1 --prompt_len 16 \
    --decode_steps 32 --reps 5 --bandwidth=false --policies "$TARGET"
run exit_target8 "$NEW/loopserve_engine_bench" "${E[@]}" --mode decode --batch 8 --prompt_len 16 \
    --decode_steps 16 --reps 5 --bandwidth=false --policies "$TARGET"

# Weight traffic (read trace + LRU model of the 32 MiB L3) and phases.
for b in 1 8; do
  run "weights_decode$b" "$NEW/loopserve_engine_bench" "${E[@]}" --mode decode --batch "$b" \
      --prompt_len 16 --decode_steps 16 --reps 1 --bandwidth=false --trace_weights \
      --profile --profile_phases --policies "never,never:0:1:2"
done
# Decode bandwidth against STREAM measured right after, same process.
for b in 1 8; do
  run "bandwidth_decode$b" "$NEW/loopserve_engine_bench" "${E[@]}" --mode decode --batch "$b" \
      --prompt_len 16 --decode_steps 32 --reps 3
done
uptime >> "$SUMMARY"
/usr/bin/python3 "$ROOT/bench/perf_report.py" "$OUT" > "$OUT/report.md"
cat "$SUMMARY" "$OUT/report.md"
