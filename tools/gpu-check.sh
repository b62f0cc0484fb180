#!/usr/bin/env bash
# One command for whoever gets a GPU: builds the CUDA backend for the device
# at hand, runs every GPU test (kernels vs CPU, golden fixtures through the
# CUDA engine, CUDA-vs-CPU parity), compute-sanitizer memcheck and racecheck,
# and the GPU benchmark (~1B-param looped MoE, plus PyTorch eager on the same
# checkpoint when torch sees the GPU), and writes one summary:
#   $BUILD/gpu-check/summary.md   (logs beside it)
#
#   tools/gpu-check.sh                 # build dir build-gpu
#   BUILD=build-x JOBS=16 tools/gpu-check.sh
#   SKIP_BENCH=1 tools/gpu-check.sh    # tests and sanitizers only
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-$(nproc)}
ARCH=${LOOPSERVE_CUDA_ARCHITECTURES:-native}
PY=/usr/bin/python3
# nvcc and compute-sanitizer live in the toolkit's bin/, often not on PATH.
export PATH=$PATH:/usr/local/cuda/bin
OUT=$BUILD/gpu-check
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
status=0

note() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step NAME LOG CMD...: runs CMD, logs it, records pass/fail
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  note "- $name: $([ $rc -eq 0 ] && echo PASS || echo "FAIL (rc $rc)") in $((SECONDS - t0)) s — \`$*\` (log: $log)"
  [ $rc -eq 0 ] || status=1
  return $rc
}

: >"$SUMMARY"
note "# loopserve GPU check"
note ""
note "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ local changes)')"
if command -v nvidia-smi >/dev/null; then
  note "- device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
else
  note "- device: nvidia-smi not found"
fi
note "- nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo missing)"
note "- architectures: $ARCH"
note ""
note "## Build and tests"

step "configure" "$OUT/configure.log" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLOOPSERVE_SERVER=OFF -DLOOPSERVE_CUDA=ON "-DLOOPSERVE_CUDA_ARCHITECTURES=$ARCH" || exit 1
step "build" "$OUT/build.log" ninja -C "$BUILD" -j "$JOBS" loopserve_unit_tests \
  loopserve_golden_tests loopserve_cuda_tests loopserve_cuda_bench || exit 1

# The golden fixtures (numpy reference) the GPU tests compare with.
step "golden fixtures" "$OUT/fixtures.log" \
  ctest --test-dir "$BUILD" -R 'make_golden_fixtures' --output-on-failure
export LOOPSERVE_FIXTURE_DIR=$PWD/$BUILD/golden-fixtures

step "GPU tests" "$OUT/cuda_tests.log" "$BUILD/tests/cuda/loopserve_cuda_tests"
# Per-test result lines end in "(N ms)"; gtest's summary repeats names without it.
count() { grep -cE "^\[ *$1 *\] .* \([0-9]+ ms\)\$" "$OUT/cuda_tests.log"; }
passed=$(count OK)
failed=$(count FAILED)
skipped=$(count SKIPPED)
note "  - GPU tests: $passed passed, $failed failed, $skipped skipped"
if [ "$skipped" -gt 0 ]; then
  note "  - WARNING: skipped GPU tests mean no usable device was found: nothing was verified"
  status=1
fi
step "CPU engine tests (backend interface unchanged)" "$OUT/cpu_tests.log" \
  ctest --test-dir "$BUILD" -R 'ForwardBackend|Golden|Engine' -E 'Cuda' -j "$JOBS"

note ""
note "## compute-sanitizer"
if command -v compute-sanitizer >/dev/null; then
  # Kernel tests in full; one golden config and one parity fixture through
  # the whole engine (sanitizers slow kernels ~100x).
  filter='CudaKernelsTest.*:Matrix/CudaGoldenTest.*/sharded:Fixtures/CudaParityTest.*/all_moe'
  for tool in memcheck racecheck; do
    step "$tool" "$OUT/sanitizer_$tool.log" compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "$BUILD/tests/cuda/loopserve_cuda_tests" "--gtest_filter=$filter"
  done
else
  note "- compute-sanitizer not found on PATH (CUDA toolkit bin/): NOT RUN"
  status=1
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  note ""
  note "## Benchmark (~1B-param looped MoE, bf16 weights)"
  CKPT=$BUILD/ckpt/gpu-1b
  step "checkpoint" "$OUT/checkpoint.log" $PY bench/make_cuda_bench_checkpoint.py --out "$CKPT"
  step "loopserve cuda bench" "$OUT/bench_cuda.log" "$BUILD/bench/loopserve_cuda_bench" \
    --model "$CKPT" --batches 1,16,64,256 --prompt_len 16 --decode_steps 32 \
    --prefill_batch 16 --prefill_len 512
  grep -E '^(model|decode|prefill)' "$OUT/bench_cuda.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  if $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    step "PyTorch eager (cuda)" "$OUT/bench_torch.log" $PY bench/torch_cuda_looped_moe.py \
      --model "$CKPT" --batches 1,16,64,256 --prompt_len 16 --decode_steps 32 \
      --prefill_batch 16 --prefill_len 512
    grep -E '^(decode|prefill)' "$OUT/bench_torch.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  else
    note "- PyTorch eager: torch without CUDA here: NOT RUN"
  fi
fi

note ""
note "overall: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
echo "summary: $SUMMARY"
exit $status
