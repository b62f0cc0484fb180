"""A real loopserve-server and a real Prometheus scraping it, on loopback.

Used by dashboard_live_test.py (every Grafana panel's PromQL must return
data) and by deploy/grafana/plot_panel.py (renders a panel for docs/).
Prometheus is Debian's `prometheus` binary with a temporary storage dir,
scraping every second and evaluating deploy/prometheus/rules every second.
"""

import json
import os
import random
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# Three deployments of the demo model: full depth, an exit policy, and a
# calibrated named policy. The KV pool is small (about 6 blocks of 16
# tokens) and at most 4 sequences run at once, so that 6 concurrent clients
# fill it and queue: the KV, queue and preemption panels show more than zeros.
SERVER_CONFIG = {
    "listen_address": "127.0.0.1:0",
    "metrics_address": "127.0.0.1:0",
    "backend": "cpu",
    "num_threads": 1,
    "kv_cache_bytes": 1 << 20,
    "block_size": 16,
    "max_batch_tokens": 128,
    "max_num_seqs": 4,
    "max_queued_requests": 64,
    "drain_grace_seconds": 5,
    "default_deployment": "full",
    "deployments": [
        {"name": "full", "exit_policy": {"criterion": "never"}, "limits": {"max_tokens": 64}},
        {"name": "fast", "exit_policy": {"criterion": "hidden_cosine", "threshold": 0.98,
                                         "min_loops": 2}, "limits": {"max_tokens": 64}},
        {"name": "no-loss", "policy": "no_loss", "limits": {"max_tokens": 64}},
    ],
}
DEPLOYMENTS = [d["name"] for d in SERVER_CONFIG["deployments"]]
PROMPTS = ["In the beginning", "And God said", "The LORD is my shepherd",
           "Blessed are the meek", "And it came to pass", "Let there be light"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """Starts both processes in `tmp`; stop() ends them (SIGTERM, then SIGKILL)."""

    def __init__(self, repo, server_binary, tmp, scrape_interval="1s", server_overrides=None):
        self.repo = repo
        self.tmp = tmp
        self.procs = []
        config = dict(SERVER_CONFIG, model_dir=os.path.join(repo, "models", "kjv-demo"),
                      **(server_overrides or {}))
        config_path = os.path.join(tmp, "server.json")
        with open(config_path, "w") as out:
            json.dump(config, out)
        self.server_log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen([server_binary, "--config", config_path],
                                  stdout=subprocess.PIPE, stderr=self.server_log, text=True)
        self.procs.append(server)
        line = server.stdout.readline()
        m = re.match(r"loopserve listening on (\S+) \(metrics on (\S+)\)", line)
        if m is None:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}; see {self.server_log.name}")
        self.address, self.metrics_address = m.group(1), m.group(2)
        self._start_prometheus(scrape_interval)

    def _start_prometheus(self, scrape_interval):
        rules = os.path.join(self.repo, "deploy", "prometheus", "rules")
        config = {
            "global": {"scrape_interval": scrape_interval,
                       "evaluation_interval": scrape_interval},
            "rule_files": [os.path.join(rules, "recording.yml"), os.path.join(rules, "alerts.yml")],
            "scrape_configs": [{"job_name": "loopserve",
                                "static_configs": [{"targets": [self.metrics_address]}]}],
        }
        path = os.path.join(self.tmp, "prometheus.yml")
        with open(path, "w") as out:
            json.dump(config, out)  # JSON is YAML
        self.prometheus_log = open(os.path.join(self.tmp, "prometheus.log"), "w")
        for _ in range(3):  # the free port may be taken before Prometheus binds it
            port = free_port()
            proc = subprocess.Popen(
                ["prometheus", f"--config.file={path}",
                 f"--storage.tsdb.path={os.path.join(self.tmp, 'tsdb')}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=self.prometheus_log, stderr=self.prometheus_log)
            self.prometheus = f"http://127.0.0.1:{port}"
            deadline = time.time() + 30
            while time.time() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(self.prometheus + "/-/ready", timeout=1) as r:
                        if r.status == 200:
                            self.procs.append(proc)
                            return
                except OSError:
                    time.sleep(0.2)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.stop()
        raise RuntimeError(f"prometheus did not become ready; see {self.prometheus_log.name}")

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    # Prometheus HTTP API -----------------------------------------------------

    def api(self, path, **params):
        """GET /api/v1/<path>; returns `data`, raises on an API error."""
        url = f"{self.prometheus}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: bad query; the body says why
            body = json.load(e)
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr, at):
        return self.api("query", query=expr, time=f"{at:.3f}")

    # Load ----------------------------------------------------------------------

    def generate(self, client, deployment, prompt, max_tokens):
        """One loopserve-client request; True when it succeeded."""
        r = subprocess.run([client, "generate", "--target", self.address, "--deployment",
                            deployment, "--prompt", prompt, "--max_tokens", str(max_tokens),
                            "--temperature", "0.8", "--quiet", "--timeout", "60"],
                           capture_output=True, text=True)
        return r.returncode == 0

    def run_load(self, client, seconds, concurrency=6, schedule=None, errors_every=5):
        """Sends requests from `concurrency` threads for `seconds`.

        `schedule(elapsed)` picks the deployments to use at that moment (all by
        default). Every `errors_every`-th request of a thread is a bad one, in
        rotation over the deployments: max_tokens over the deployment's limit
        (invalid_argument), and every fourth an unknown deployment
        (not_found). Returns counts by outcome."""
        counts = {"ok": 0, "failed": 0, "invalid_sent": 0, "unknown_sent": 0}
        lock = threading.Lock()
        start = time.time()

        def worker(seed):
            rng = random.Random(seed)
            n = 0
            while time.time() - start < seconds:
                n += 1
                choices = schedule(time.time() - start) if schedule else DEPLOYMENTS
                if n % errors_every == 0:
                    k = seed + n // errors_every
                    if k % 4 == 3:
                        key, deployment, max_tokens = "unknown_sent", "no-such-deployment", 8
                    else:
                        key, deployment, max_tokens = "invalid_sent", choices[k % len(choices)], 1000
                else:
                    key, deployment, max_tokens = None, rng.choice(choices), rng.randint(8, 48)
                ok = self.generate(client, deployment, rng.choice(PROMPTS), max_tokens)
                with lock:
                    if key:
                        counts[key] += 1
                    counts["ok" if ok else "failed"] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return counts
