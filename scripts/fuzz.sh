#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for SECONDS each, one after the
# other, with ASan+UBSan, and prints a table of executions, coverage and
# findings (docs/reliability.md "Fuzzing").
#   scripts/fuzz.sh 600                    # the long run: 10 minutes each
#   scripts/fuzz.sh 60 safetensors deployment
#   scripts/fuzz.sh --ctest 15             # CI (scripts/test.sh): all targets
#                                          # under ctest, nproc at a time
# Builds in build-fuzz (clang, LOOPSERVE_FUZZ=ON; FUZZ_BUILD_DIR to change,
# FUZZ_JOBS compile jobs, default 2). Inputs that find new coverage go to
# build-fuzz/tests/fuzz/work/<target>/; crashes to .../artifacts/ and make
# the script exit 1. Logs: build-fuzz/fuzz-logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
CTEST=0
if [[ "${1:-}" == "--ctest" ]]; then CTEST=1; shift; fi
SECONDS_EACH="${1:?usage: scripts/fuzz.sh [--ctest] SECONDS [target...]}"
shift
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
JOBS="${FUZZ_JOBS:-2}"
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=(safetensors model_config exit_policies deployment tokenizer_json tokenizer_encode
           generate_request)
fi

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" -DLOOPSERVE_FUZZ=ON -DLOOPSERVE_CUDA=OFF \
  -DLOOPSERVE_WERROR=OFF -DLOOPSERVE_FUZZ_SECONDS="$SECONDS_EACH" >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target loopserve_fuzzers
if ((CTEST)); then
  # Targets are single-threaded: run nproc of them at once.
  exec ctest --test-dir "$BUILD" -L '^fuzz$' --output-on-failure -j "$(nproc)"
fi

fuzz_dir="$BUILD/tests/fuzz"
logs="$BUILD/fuzz-logs"
mkdir -p "$logs" "$fuzz_dir/artifacts"
failed=0
rows=()
for t in "${TARGETS[@]}"; do
  work="$fuzz_dir/work/$t"
  mkdir -p "$work"
  echo "fuzz: $t for ${SECONDS_EACH}s (log $logs/$t.log)"
  start=$(date +%s)
  rc=0
  "$fuzz_dir/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -max_len=16384 -print_final_stats=1 -artifact_prefix="$fuzz_dir/artifacts/$t-" \
    "$work" "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t" >"$logs/$t.log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: U/B ...") and
  # final stats; a crash leaves no DONE line, so take the last "cov:" line.
  last=$(grep -E '^#[0-9]+.*cov: ' "$logs/$t.log" | tail -1 || true)
  execs=$(grep -oP 'stat::number_of_executed_units: \K[0-9]+' "$logs/$t.log" || true)
  [[ -z "$execs" ]] && execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
  cov=$(grep -oP 'cov: \K[0-9]+' <<<"$last" || true)
  ft=$(grep -oP 'ft: \K[0-9]+' <<<"$last" || true)
  corp=$(grep -oP 'corp: \K[0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" || true)
  if ((rc == 0)); then
    finding="none"
  else
    failed=1
    finding="CRASH rc=$rc: $(grep -m1 -E 'ERROR:|runtime error|Check failed' "$logs/$t.log" |
      cut -c1-100) (artifact in $fuzz_dir/artifacts/)"
  fi
  rows+=("| $t | ${took}s | ${execs:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $finding |")
done

echo
echo "| target | time | executions | cov | ft | corpus (units/size) | findings |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
