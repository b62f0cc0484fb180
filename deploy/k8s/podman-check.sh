#!/usr/bin/env bash
# Runs the CPU image the way deploy/k8s's pod spec does, with podman (no
# cluster here): the overlay's rendered ConfigMap mounted at /etc/loopserve,
# the Deployment's command, uid 10001, read-only root filesystem with a /tmp
# tmpfs, all capabilities dropped, no privilege escalation. Then: health
# SERVING, one request per configured deployment, a metrics scrape, SIGTERM
# with the pod's grace period, exit 0 after "drained".
#   deploy/k8s/podman-check.sh [OVERLAY=cpu]
# Needs the image (deploy/container-test.sh builds localhost/loopserve:cpu),
# kubectl, python3-yaml and a built loopserve-client (BUILD_DIR, default build).
# Env: IMAGE, GRPC_PORT (58051), METRICS_PORT (58464).
set -euo pipefail
cd "$(dirname "$0")/../.."
OVERLAY=${1:-cpu}
IMAGE=${IMAGE:-localhost/loopserve:cpu}
GRPC_PORT=${GRPC_PORT:-58051}
METRICS_PORT=${METRICS_PORT:-58464}
CLIENT=${BUILD_DIR:-build}/tools/client/loopserve-client
NAME=loopserve-k8s-check-$$
pm() { podman --runtime /usr/sbin/runc "$@"; }

work=$(mktemp -d)
trap 'pm rm -f -t 0 "$NAME" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
rendered="$work/rendered.yaml"
kubectl kustomize "deploy/k8s/overlays/$OVERLAY" > "$rendered"
mkdir -p "$work/config"
# Everything the pod takes from the manifests: config, command, user, grace.
read -r command user grace < <(/usr/bin/python3 - "$rendered" "$work/config" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
for name, text in cm["data"].items():
    open(f"{sys.argv[2]}/{name}", "w").write(text)
pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
c = pod["containers"][0]
sc = pod["securityContext"]
print(",".join(c["command"] + c["args"]), f"{sc['runAsUser']}:{sc['runAsGroup']}",
      pod["terminationGracePeriodSeconds"])
EOF
)
chmod -R a+rX "$work/config"
IFS=, read -r -a cmd <<< "$command"
deployments=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(d["name"] for d in json.load(open(sys.argv[1]))["deployments"]))' "$work/config/config.json")

# The config binds 0.0.0.0:50051/9464 in a pod; on the host network use loopback ports.
pm run -d --name "$NAME" --network=host --read-only --tmpfs /tmp --user "$user" \
  --cap-drop ALL --security-opt no-new-privileges -v "$work/config:/etc/loopserve:ro" \
  --entrypoint "${cmd[0]}" "$IMAGE" "${cmd[@]:1}" \
  --listen "127.0.0.1:$GRPC_PORT" --metrics_listen "127.0.0.1:$METRICS_PORT" >/dev/null
for _ in $(seq 1 120); do
  "$CLIENT" health --target "127.0.0.1:$GRPC_PORT" --timeout 1 >/dev/null 2>&1 && break
  sleep 0.5
done
echo "health: $("$CLIENT" health --target "127.0.0.1:$GRPC_PORT")"
echo "uid in the container: $(pm exec "$NAME" id -u)"
for d in $deployments; do
  "$CLIENT" generate --target "127.0.0.1:$GRPC_PORT" --deployment "$d" \
    --prompt "In the beginning" --max_tokens 8 --quiet >/dev/null
  echo "deployment $d: ok"
done
series=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep -c '^loopserve_')
echo "metrics: $series loopserve_ samples"
pm stop -t "$grace" "$NAME" >/dev/null
code=$(pm inspect "$NAME" --format '{{.State.ExitCode}}')
logs=$(pm logs "$NAME" 2>&1)
grep -q '"msg":"drained"' <<< "$logs" || { echo "FAIL: no drain in the logs"; exit 1; }
[[ "$code" == 0 ]] || { echo "FAIL: exit code $code after SIGTERM"; exit 1; }
echo "PASS: $OVERLAY pod spec runs as $user, read-only root, drains on SIGTERM and exits 0"
