"""Renders every kustomize overlay under deploy/k8s/overlays and checks it.

  k8s_manifests_test.py --repo DIR --server BIN
  (run with the deploy venv's python: it imports kubernetes_validate)

For each overlay:
  1. `kubectl kustomize` renders it (offline);
  2. kubernetes-validate checks every built-in object against the bundled
     Kubernetes 1.32 schemas in strict mode (unknown fields are errors);
  3. the PodMonitor (a CRD the validator has no schema for) is checked
     against the subset of the Prometheus Operator schema it uses, and
     against the Deployment it should scrape;
  4. cross-references the schemas cannot see: Service selectors and ports,
     probe ports, ConfigMap name, namespace, grace periods vs the config's
     drain grace, ports vs the config's addresses, backend vs overlay, GPU
     resources, non-root, and the Service deploy/prometheus/prometheus.yml
     discovers the pods through;
  5. the ConfigMap's config.json starts the real loopserve-server (model
     path pointed at the repo's demo model, loopback addresses, CPU), which
     must report SERVING and drain on SIGTERM.
Exits 77 (ctest skip) when kubectl or kubernetes_validate is missing.
"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
SCHEMA_VERSION = "1.32.0"  # bundled by kubernetes-validate 1.37.0 (see make_venv.sh)

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # not the deploy venv
    print(f"SKIP: {e}; run tests/deploy/make_venv.sh BUILD_DIR")
    sys.exit(SKIP)


class Failures:
    def __init__(self):
        self.items = []

    def check(self, ok, message):
        if not ok:
            self.items.append(message)
        return ok


def render(overlay_dir):
    out = subprocess.run(["kubectl", "kustomize", overlay_dir], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, f, where):
    found = by_kind(docs, kind)
    f.check(len(found) == 1, f"{where}: expected one {kind}, found {len(found)}")
    return found[0] if found else None


def schema_validate(docs, f, where):
    """Strict schema validation of built-in kinds; returns the kinds it skipped."""
    skipped = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.append(doc["kind"])
        except kubernetes_validate.ValidationError as e:
            f.check(False, f"{where}: {doc['kind']}/{doc['metadata']['name']}: "
                           f"{'.'.join(map(str, e.path))}: {e.message}")
    return skipped


# The fields of monitoring.coreos.com/v1 PodMonitor this repo uses, with the
# types the Prometheus Operator CRD gives them; anything else is rejected so
# a typo cannot pass silently.
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
POD_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object",
                                                   "additionalProperties": {"type": "string"}}},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        },
    },
}


def seconds(duration):
    total = 0.0
    for value, unit in re.findall(r"([0-9]+)(ms|h|m|s)", duration):
        total += int(value) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def check_pod_monitor(monitor, deployment, f, where):
    errors = sorted(jsonschema.Draft7Validator(POD_MONITOR_SCHEMA).iter_errors(monitor),
                    key=lambda e: list(e.path))
    for e in errors:
        f.check(False, f"{where}: PodMonitor: {'.'.join(map(str, e.path))}: {e.message}")
    if errors:
        return
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"].get("matchLabels", {})
    f.check(selector and all(pod_labels.get(k) == v for k, v in selector.items()),
            f"{where}: PodMonitor selector {selector} does not match the pod labels {pod_labels}")
    f.check(monitor["metadata"].get("namespace") == deployment["metadata"].get("namespace"),
            f"{where}: PodMonitor is not in the Deployment's namespace")
    port_names = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"]
                  for p in c.get("ports", [])}
    for ep in monitor["spec"]["podMetricsEndpoints"]:
        f.check(ep["port"] in port_names,
                f"{where}: PodMonitor port {ep['port']} is not a container port {port_names}")
        if "interval" in ep and "scrapeTimeout" in ep:
            f.check(seconds(ep["scrapeTimeout"]) <= seconds(ep["interval"]),
                    f"{where}: PodMonitor scrapeTimeout exceeds interval")


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def check_cross_references(overlay, docs, f):
    where = overlay
    deployment = one(docs, "Deployment", f, where)
    config_map = one(docs, "ConfigMap", f, where)
    monitor = one(docs, "PodMonitor", f, where)
    if deployment is None or config_map is None:
        return None
    namespace = deployment["metadata"].get("namespace")
    f.check(namespace, f"{where}: Deployment has no namespace")
    for doc in docs:
        if doc["kind"] != "Namespace":
            f.check(doc["metadata"].get("namespace") == namespace,
                    f"{where}: {doc['kind']}/{doc['metadata']['name']} is in namespace "
                    f"{doc['metadata'].get('namespace')}, not {namespace}")
    f.check(any(d["metadata"]["name"] == namespace for d in by_kind(docs, "Namespace")),
            f"{where}: namespace {namespace} is not created")

    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    f.check(all(pod_labels.get(k) == v
                for k, v in deployment["spec"]["selector"]["matchLabels"].items()),
            f"{where}: Deployment selector does not match its pod labels")
    containers = pod["containers"]
    f.check(len(containers) == 1, f"{where}: expected one container")
    c = containers[0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    f.check({"grpc", "metrics"} <= ports.keys(), f"{where}: container ports {ports}")

    # Config: the file the server reads is the generated ConfigMap's.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    cm_volumes = [v for v in volumes.values() if "configMap" in v]
    f.check(any(v["configMap"]["name"] == config_map["metadata"]["name"] for v in cm_volumes),
            f"{where}: no volume mounts ConfigMap {config_map['metadata']['name']}")
    args = c.get("command", []) + c.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    f.check(config_path is not None and os.path.dirname(config_path) in mounts and
            os.path.basename(config_path) in config_map["data"],
            f"{where}: --config {config_path} is not a file of the mounted ConfigMap")
    config = json.loads(config_map["data"]["config.json"])
    f.check(port_of(config["listen_address"]) == ports.get("grpc"),
            f"{where}: listen_address {config['listen_address']} != grpc port {ports.get('grpc')}")
    f.check(port_of(config["metrics_address"]) == ports.get("metrics"),
            f"{where}: metrics_address {config['metrics_address']} != metrics port")
    f.check(config["listen_address"].startswith("0.0.0.0:"),
            f"{where}: listen_address must bind all interfaces in a pod")
    f.check(config["backend"] == overlay, f"{where}: backend {config['backend']} in overlay {overlay}")

    # Probes: native gRPC on the server's port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(probe)
        f.check(p is not None and p.get("grpc", {}).get("port") == ports.get("grpc"),
                f"{where}: {probe} must be a gRPC probe on port {ports.get('grpc')}")
    drain = float(config.get("drain_grace_seconds", 30))
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_seconds = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    f.check(grace > pre_stop_seconds + drain,
            f"{where}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop_seconds} + "
            f"drain_grace_seconds {drain}: Kubernetes would kill the drain")
    live = c.get("livenessProbe", {})
    f.check(live.get("periodSeconds", 10) * live.get("failureThreshold", 3) > drain,
            f"{where}: liveness would restart a draining pod (NOT_SERVING for {drain} s)")

    # Services select the pods and target named container ports.
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"].get("selector", {})
        f.check(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
                f"{where}: Service {svc['metadata']['name']} selector misses the pods")
        for p in svc["spec"]["ports"]:
            f.check(p.get("targetPort") in ports,
                    f"{where}: Service {svc['metadata']['name']} targets unknown port "
                    f"{p.get('targetPort')}")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    f.check(any(s["spec"].get("clusterIP") == "None" for s in services.values()),
            f"{where}: no headless Service for client-side gRPC balancing")

    # Non-root, no privilege.
    pod_sc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    f.check(pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) != 0,
            f"{where}: pod must run as a non-root user")
    f.check(sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged", False),
            f"{where}: container must not escalate privileges")

    # Backend-specific resources.
    limits = c.get("resources", {}).get("limits", {})
    if overlay == "cuda":
        f.check(int(limits.get("nvidia.com/gpu", 0)) >= 1, f"{where}: no nvidia.com/gpu limit")
        f.check("nvidia.com/gpu.present" in pod.get("nodeSelector", {}),
                f"{where}: GPU pods need a GPU node selector")
        f.check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])),
                f"{where}: GPU pods need the nvidia.com/gpu toleration")
        f.check(c["image"].endswith(":cuda"), f"{where}: image {c['image']} is not the CUDA one")
    else:
        f.check("nvidia.com/gpu" not in limits, f"{where}: CPU pods must not take a GPU")
        # "0 = all cores" would see the node's cores, not the CPU limit.
        f.check(str(config.get("num_threads")) == str(limits.get("cpu")),
                f"{where}: num_threads {config.get('num_threads')} != cpu limit {limits.get('cpu')}")
    if monitor is not None:
        check_pod_monitor(monitor, deployment, f, where)
    return config


def check_prometheus_discovery(docs, repo, f, where):
    """deploy/prometheus/prometheus.yml finds the pods through a headless
    Service of these manifests (DNS SD): that Service must exist, include
    not-ready pods and expose the metrics port."""
    with open(os.path.join(repo, "deploy", "prometheus", "prometheus.yml")) as fh:
        prom = yaml.safe_load(fh)
    services = {(s["metadata"].get("namespace"), s["metadata"]["name"]): s
                for s in by_kind(docs, "Service")}
    deployment = by_kind(docs, "Deployment")[0]
    ports = {p["name"]: p["containerPort"]
             for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    found = 0
    for job in prom["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                found += 1
                m = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", name)
                svc = services.get((m.group(2), m.group(1))) if m else None
                if not f.check(svc is not None, f"{where}: prometheus.yml scrapes {name}, "
                                                f"which is no Service of the manifests"):
                    continue
                f.check(svc["spec"].get("clusterIP") == "None" and
                        svc["spec"].get("publishNotReadyAddresses") is True,
                        f"{where}: Service {name} must be headless and publish not-ready pods")
                f.check(sd.get("port") == ports.get("metrics"),
                        f"{where}: prometheus.yml scrapes port {sd.get('port')}, "
                        f"metrics port is {ports.get('metrics')}")
    f.check(found > 0, "prometheus.yml has no DNS discovery of the pods")


def start_server_with(config, repo, server, f, where):
    """Starts the real server on the overlay's config (demo model, loopback, CPU)."""
    config = copy.deepcopy(config)
    config["model_dir"] = os.path.join(repo, "models", "kjv-demo")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as out:
            json.dump(config, out)
        cmd = [server, "--config", path, "--listen", "127.0.0.1:0", "--metrics_listen",
               "127.0.0.1:0", "--backend", "cpu", "--threads", "1",
               "--kv_cache_bytes", str(16 << 20)]
        log = open(os.path.join(tmp, "server.log"), "w+")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            line = proc.stdout.readline()
            m = re.match(r"loopserve listening on (\S+) ", line)
            if m is None:
                proc.wait(timeout=30)  # it exits when the config is refused
                f.check(False, f"{where}: server did not start on the overlay's config: "
                               f"{line!r} {open(log.name).read()[-2000:]}")
                return
            health = subprocess.run([server, "--health_check", m.group(1)],
                                    capture_output=True, text=True, timeout=20)
            f.check(health.returncode == 0 and health.stdout.strip() == "SERVING",
                    f"{where}: health {health.returncode} {health.stdout!r}")
            proc.terminate()
            f.check(proc.wait(timeout=30) == 0, f"{where}: server did not exit 0 on SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def check_validator_is_strict(docs, f):
    """A misspelled field must fail: proves step 2 can fail at all."""
    broken = copy.deepcopy(by_kind(docs, "Deployment")[0])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcPort"] = 1
    try:
        kubernetes_validate.validate(broken, SCHEMA_VERSION, strict=True)
        f.check(False, "kubernetes-validate accepted an unknown field: strict mode is off")
    except kubernetes_validate.ValidationError:
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--server", required=True)
    args = parser.parse_args()
    if shutil.which("kubectl") is None:
        print("SKIP: kubectl not on PATH")
        return SKIP
    overlays_dir = os.path.join(args.repo, "deploy", "k8s", "overlays")
    overlays = sorted(os.listdir(overlays_dir))
    f = Failures()
    f.check(set(overlays) == {"cpu", "cuda"}, f"overlays: {overlays}")
    for overlay in overlays:
        docs = render(os.path.join(overlays_dir, overlay))
        kinds = sorted(d["kind"] for d in docs)
        skipped = schema_validate(docs, f, overlay)
        f.check(skipped == ["PodMonitor"], f"{overlay}: no schema for {skipped}")
        config = check_cross_references(overlay, docs, f)
        check_prometheus_discovery(docs, args.repo, f, overlay)
        if config is not None:
            start_server_with(config, args.repo, args.server, f, overlay)
        if overlay == overlays[0]:
            check_validator_is_strict(docs, f)
        print(f"{overlay}: {len(docs)} objects ({', '.join(kinds)}), "
              f"schema-validated against Kubernetes {SCHEMA_VERSION}")
    for item in f.items:
        print("FAIL:", item)
    return 1 if f.items else 0


if __name__ == "__main__":
    sys.exit(main())
