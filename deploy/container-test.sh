#!/usr/bin/env bash
# Builds the CPU container image (deploy/docker/Dockerfile) with podman and
# checks it end to end on loopback: health SERVING (start-to-SERVING time),
# HEALTHCHECK, a Generate request, a metrics scrape, non-root PID 1, a mounted
# model and config, and SIGTERM draining (in-flight requests finish; with a
# zero grace they get UNAVAILABLE). Prints a summary with the image size.
#   sudo deploy/container-test.sh        (root: apt-get, debootstrap, podman)
# Not part of CI: the first run compiles the project inside the image build
# (15-25 min on 2 cores). Re-runs reuse podman's layer cache and the base image.
# Env: IMAGE (localhost/loopserve:cpu), GRPC_PORT (57151), METRICS_PORT
# (57164), WORK (/var/tmp/loopserve-container-test), SKIP_BUILD=1 (test the
# image already built, e.g. while the working tree changes under it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" -ne 0 ]]; then exec sudo --preserve-env "$0" "$@"; fi

IMAGE="${IMAGE:-localhost/loopserve:cpu}"
GRPC_PORT="${GRPC_PORT:-57151}"
METRICS_PORT="${METRICS_PORT:-57164}"
WORK="${WORK:-/var/tmp/loopserve-container-test}"
NAME=loopserve-ctest
TARGET="127.0.0.1:$GRPC_PORT"
METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"
PROMPT="And God said unto Moses,"
mkdir -p "$WORK"

# The runtime this machine accepts (crun is not used), always.
pm() { podman --runtime /usr/sbin/runc "$@"; }
step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  for c in "$NAME" "$NAME-drain" "$NAME-cut"; do
    if pm container exists "$c" 2>/dev/null; then
      echo "--- logs of $c" >&2
      pm logs "$c" 2>&1 | tail -20 >&2 || true
    fi
  done
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
remove_containers() {
  for c in "$NAME" "$NAME-drain" "$NAME-cut" "$NAME-clients"; do
    pm rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
}

step "tools: podman, runc, debootstrap (apt-get)"
needed=(podman runc debootstrap uidmap fuse-overlayfs curl)
missing=()
for p in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
podman --version

# The default ulimits podman adds (nofile/nproc) are refused on these machines.
CONF=/etc/containers/containers.conf
if ! grep -qs '^[[:space:]]*default_ulimits' "$CONF"; then
  echo "writing default_ulimits = [] to $CONF"
  mkdir -p "$(dirname "$CONF")"
  if grep -qs '^\[containers\]' "$CONF"; then
    sed -i '/^\[containers\]/a default_ulimits = []' "$CONF"
  else
    printf '[containers]\ndefault_ulimits = []\n' >> "$CONF"
  fi
fi

step "base images debian:bookworm and debian:bookworm-slim"
BASE=docker.io/library/debian:bookworm
SLIM=docker.io/library/debian:bookworm-slim
if ! pm image exists "$BASE"; then
  # No registry is reachable: debootstrap a minbase bookworm from the Debian
  # mirror this machine's apt uses and import it.
  MIRROR=$(grep -hsoE '^(URIs:|deb)[[:space:]]+[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
  SECURITY=$(grep -hsoE '^(URIs:|deb)[[:space:]]+[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -E 'debian-security/?$' | head -1 || true)
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
  SECURITY="${SECURITY:-http://deb.debian.org/debian-security}"
  ROOTFS="$WORK/rootfs"
  rm -rf "${ROOTFS:?}"
  echo "debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap (log: $WORK/debootstrap.log)"; }
  # The same apt sources layout as Debian's official images.
  rm -f "$ROOTFS/etc/apt/sources.list"
  cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # debootstrap takes the release as it was; apply bookworm-updates and
  # -security like the official images, which are rebuilt with them.
  echo "apt-get upgrade inside the new rootfs (podman --rootfs)"
  pm run --rm --network=host --rootfs "$ROOTFS" /bin/sh -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq && apt-get clean' \
    > "$WORK/upgrade.log" 2>&1 || { tail -20 "$WORK/upgrade.log"; fail "apt-get upgrade in the rootfs"; }
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
  tar -C "$ROOTFS" --numeric-owner -c . | pm import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "${ROOTFS:?}"
  echo "imported $BASE"
fi
if ! pm image exists "$SLIM"; then
  # Stand-in for the slim image: the same minbase rootfs, exported from the
  # base image, without what Debian's slim variant leaves out (docs, man
  # pages, locales), and dpkg told to keep leaving them out (debuerreotype's
  # slimify). Only this private copy of the rootfs is touched.
  SLIMFS="$WORK/rootfs-slim"
  rm -rf "$SLIMFS"
  mkdir -p "$SLIMFS"
  cid=$(pm create "$BASE" true)
  pm export "$cid" | tar -C "$SLIMFS" --numeric-owner -x
  pm rm "$cid" >/dev/null
  [[ -x "$SLIMFS/usr/bin/dpkg" ]] || fail "exported rootfs of $BASE is incomplete"
  printf 'path-exclude /usr/share/%s/*\n' doc groff info linda lintian locale man \
    > "$SLIMFS/etc/dpkg/dpkg.cfg.d/docker"
  echo 'path-include /usr/share/doc/*/copyright' >> "$SLIMFS/etc/dpkg/dpkg.cfg.d/docker"
  find "${SLIMFS:?}/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "${SLIMFS:?}/usr/share/doc" -mindepth 1 -type d -empty -delete
  for d in groff info linda lintian locale man; do
    rm -rf "${SLIMFS:?}/usr/share/$d"
    mkdir -p "$SLIMFS/usr/share/$d"
  done
  tar -C "$SLIMFS" --numeric-owner -c . | pm import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$SLIM" >/dev/null
  rm -rf "$SLIMFS"
  echo "imported $SLIM (the minbase rootfs, slimmed)"
fi

if [[ "${SKIP_BUILD:-0}" == 1 ]] && pm image exists "$IMAGE"; then
  step "SKIP_BUILD=1: testing the existing $IMAGE"
  BUILD_S="(not rebuilt)"
else
  step "build $IMAGE (log: $WORK/build.log)"
  t0=$(now)
  pm build --pull=never --network=host --format docker -f deploy/docker/Dockerfile -t "$IMAGE" . \
    > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "image build"; }
  BUILD_S="$(elapsed "$t0" "$(now)")s"
fi
grep -h "runtime packages:" "$WORK/build.log" | tail -1 || true
SIZE_BYTES=$(pm image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.0f", b / 1e6 }')
SLIM_MB=$(awk -v b="$(pm image inspect --format '{{.Size}}' "$SLIM")" 'BEGIN { printf "%.0f", b / 1e6 }')
echo "built in ${BUILD_S}; image $SIZE_MB MB (base $SLIM_MB MB)"

step "runtime libraries resolve in the image"
if pm run --rm --network=host --entrypoint /usr/bin/ldd "$IMAGE" \
     /usr/local/bin/loopserve-server /usr/local/bin/loopserve-client | grep "not found"; then
  fail "missing shared libraries in the image"
fi
echo "ldd: every library found"

remove_containers
trap remove_containers EXIT

# Polls the health service from inside container $1 until SERVING.
wait_serving() {
  local name=$1
  for _ in $(seq 1 600); do
    if pm exec "$name" loopserve-client health --target "$TARGET" --timeout 1 >/dev/null 2>&1; then
      return 0
    fi
    [[ "$(pm inspect --format '{{.State.Running}}' "$name")" == "true" ]] || fail "$name exited"
    sleep 0.1
  done
  fail "$name not SERVING after 60 s"
}
# Runs clients in a separate container (they must outlive the server's).
clients() {
  pm run --rm --name "$NAME-clients" --network=host --entrypoint /bin/sh "$IMAGE" -c "$1"
}

# podman times HEALTHCHECK with systemd timers; without systemd (as here) it
# logs "unable to get systemd connection to add healthchecks" and carries on.
# The test runs the image's check itself with `podman healthcheck run`.
step "run on $TARGET (metrics $METRICS_URL) and wait for SERVING"
t0=$(now)
pm run -d --name "$NAME" --network=host -e LOOPSERVE_HEALTH_TARGET="$TARGET" \
  "$IMAGE" --listen "$TARGET" --metrics_listen "127.0.0.1:$METRICS_PORT" >/dev/null
wait_serving "$NAME"
SERVING_S=$(elapsed "$t0" "$(now)")
# The server's own part: container start -> its "server started" log line.
STARTED_AT=$(pm inspect --format '{{.State.StartedAt}}' "$NAME")
STARTED_LOG=$(pm logs "$NAME" 2>&1 | grep -m1 '"msg":"server started"' || true)
SERVER_S=$(/usr/bin/python3 - "$STARTED_AT" "$STARTED_LOG" <<'EOF'
import datetime, json, re, sys
m = re.match(r"(\d+-\d+-\d+ \d+:\d+:\d+)(\.\d+)?", sys.argv[1])
start = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
start += datetime.timedelta(seconds=float(m.group(2) or 0))
ts = json.loads(sys.argv[2])["ts"]
ready = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
print(f"{(ready - start).total_seconds():.2f}")
EOF
) || SERVER_S="?"
echo "SERVING ${SERVING_S}s after podman run (server start -> started log: ${SERVER_S}s)"

step "HEALTHCHECK (the image's own, run by podman)"
pm healthcheck run "$NAME" || fail "podman healthcheck run"
echo "healthy"

step "PID 1 is loopserve-server, not root"
pm top "$NAME" pid user huser args
PID1_ARGS=$(pm top "$NAME" pid args | awk '$1 == 1 { $1 = ""; print }')
[[ "$PID1_ARGS" == *loopserve-server* ]] || fail "PID 1 is '$PID1_ARGS'"
HOST_PID=$(pm inspect --format '{{.State.Pid}}' "$NAME")
SERVER_UID=$(awk '/^Uid:/ { print $2 }' "/proc/$HOST_PID/status")
[[ "$SERVER_UID" != 0 ]] || fail "the server runs as uid 0"
EXEC_UID=$(pm exec "$NAME" id -u)
[[ "$EXEC_UID" != 0 ]] || fail "the image's user is root"
echo "server uid $SERVER_UID (host view), image user uid $EXEC_UID"

step "Generate"
OUT=$(pm exec "$NAME" loopserve-client generate --target "$TARGET" --prompt "$PROMPT" --max_tokens 24) \
  || fail "generate: $OUT"
echo "$OUT" | tail -3
COMPLETION=$(echo "$OUT" | sed -n 's/^completion: //p')
[[ "${#COMPLETION}" -gt "${#PROMPT}" ]] || fail "empty completion"
echo "$OUT" | grep -q "finish: FINISH_REASON_LENGTH; .* 24 generated tokens" || fail "not 24 tokens"

step "metrics scrape"
METRICS=$(curl -sf "$METRICS_URL") || fail "scrape $METRICS_URL"
echo "$METRICS" | grep -E '^loopserve_(requests_total|generated_tokens_total)\{' | head -4
echo "$METRICS" | awk '/^loopserve_requests_total\{/ && /deployment="full"/ && /status="ok"/ { s += $NF }
                       END { exit !(s == 1) }' || fail "loopserve_requests_total{status=\"ok\"} is not 1"
echo "$METRICS" | awk '/^loopserve_generated_tokens_total\{/ && /deployment="full"/ { s += $NF }
                       END { exit !(s == 24) }' || fail "loopserve_generated_tokens_total is not 24"
pm rm -f -t 0 "$NAME" >/dev/null

# Starts container $1 with a mounted model and config, extra server flags
# after it, and waits for SERVING. A tenth of a core and one engine thread
# make the demo model slow enough (seconds per 250-token request instead of
# 0.2 s) that requests are surely in flight when SIGTERM arrives: podman stop
# itself takes up to a second to deliver it on a loaded machine.
run_mounted() {
  local name=$1
  shift
  pm run -d --name "$name" --network=host --cpus 0.1 -e LOOPSERVE_HEALTH_TARGET="$TARGET" \
    -v "$PWD/models/kjv-demo:/models/custom:ro" -v "$WORK/config.json:/etc/loopserve/config.json:ro" \
    "$IMAGE" --listen "$TARGET" --metrics_listen "127.0.0.1:$METRICS_PORT" --threads 1 "$@" >/dev/null
  wait_serving "$name"
}
# Starts $1 long streaming requests in a client container (output in $2) and
# returns once the server runs all of them.
start_long_requests() {
  local n=$1 out=$2
  clients "for i in \$(seq 1 $n); do loopserve-client generate --target $TARGET --prompt_ids 1,2,3,4 \
             --max_tokens 250 --timeout 120 > /tmp/out.\$i 2>&1 & done; wait; cat /tmp/out.*" \
    > "$out" 2>&1 &
  CLIENTS_PID=$!
  for _ in $(seq 1 300); do
    if curl -sf "$METRICS_URL" | awk -v n="$n" '/^loopserve_requests_running\{/ { r = $NF }
                                               END { exit !(r >= n) }'; then
      return 0
    fi
    sleep 0.1
  done
  fail "$n requests were never running at once"
}
# Stops container $1 with SIGTERM (timeout above the drain grace) and checks
# exit code 0, in-flight requests at the signal and the "drained" line.
stop_and_check() {
  local name=$1
  local t0
  t0=$(now)
  pm stop -t 60 "$name" >/dev/null
  STOP_S=$(elapsed "$t0" "$(now)")
  local code
  code=$(pm inspect --format '{{.State.ExitCode}}' "$name")
  [[ "$code" == 0 ]] || fail "$name exited with $code after SIGTERM"
  LOGS=$(pm logs "$name" 2>&1)
  echo "$LOGS" | grep -E '"msg":"(signal received|draining|drained|server stopped)' || true
  echo "$LOGS" | grep -q '"signal":"SIGTERM"' || fail "no SIGTERM in the log"
  IN_FLIGHT=$(echo "$LOGS" | sed -n 's/.*"msg":"draining".*"in_flight":\([0-9]*\).*/\1/p')
  [[ "${IN_FLIGHT:-0}" -gt 0 ]] || fail "nothing in flight at SIGTERM: the check is inconclusive"
  CANCELLED=$(echo "$LOGS" | sed -n 's/.*"msg":"drained".*"cancelled":\([0-9]*\).*/\1/p')
  [[ -n "$CANCELLED" ]] || fail "no drained line"
}

# The mounted config: the baked-in one with a model path under /models.
sed 's#"/opt/loopserve/models/kjv-demo"#"/models/custom"#' deploy/docker/config.json > "$WORK/config.json"
chmod 0644 "$WORK/config.json"

step "SIGTERM drain: mounted model + config, 4 long requests in flight, podman stop -t 60"
run_mounted "$NAME-drain"
pm logs "$NAME-drain" 2>&1 | grep -q '"model_dir":"/models/custom"' || fail "mounted config not used"
start_long_requests 4 "$WORK/drain-clients.log"
stop_and_check "$NAME-drain"
wait "$CLIENTS_PID" || true
FINISHED=$(grep -c "finish: FINISH_REASON_LENGTH; 4 prompt + 250 generated" "$WORK/drain-clients.log" || true)
[[ "$CANCELLED" == 0 && "$FINISHED" == 4 ]] \
  || fail "drain: $FINISHED of 4 requests finished, $CANCELLED cancelled ($WORK/drain-clients.log)"
DRAIN_IN_FLIGHT=$IN_FLIGHT
DRAIN_STOP_S=$STOP_S
echo "exit 0; $IN_FLIGHT in flight at SIGTERM, all 4 finished with 250 tokens; stop took ${STOP_S}s"

step "SIGTERM with --drain_grace_seconds 0: in-flight requests get UNAVAILABLE"
run_mounted "$NAME-cut" --drain_grace_seconds 0
start_long_requests 4 "$WORK/cut-clients.log"
stop_and_check "$NAME-cut"
wait "$CLIENTS_PID" || true
UNAVAILABLE=$(grep -c "error 14: server is draining" "$WORK/cut-clients.log" || true)
[[ "$CANCELLED" == 4 && "$UNAVAILABLE" == 4 ]] \
  || fail "cut: $CANCELLED cancelled but $UNAVAILABLE clients saw UNAVAILABLE ($WORK/cut-clients.log)"
echo "exit 0; $CANCELLED cancelled, each client got UNAVAILABLE (retryable); stop took ${STOP_S}s"

step "summary ($(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg))"
cat <<EOF
image              $IMAGE, $SIZE_MB MB (base image $SLIM_MB MB), built in ${BUILD_S}
start to SERVING   ${SERVING_S}s from podman run (server start to "server started": ${SERVER_S}s)
generate           24 tokens OK; metrics scraped (loopserve_requests_total, generated_tokens_total)
user               server uid $SERVER_UID, PID 1 = loopserve-server; HEALTHCHECK healthy
drain              $DRAIN_IN_FLIGHT in flight at SIGTERM, all finished, exit 0, stop ${DRAIN_STOP_S}s
grace 0            $CANCELLED cancelled with UNAVAILABLE, exit 0
PASS
EOF
