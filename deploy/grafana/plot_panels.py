"""Renders two panels of deploy/grafana/loopserve.json as a PNG for docs/.

  /usr/bin/python3 deploy/grafana/plot_panels.py --server build/server/loopserve-server \
      --client build/tools/client/loopserve-client --out docs/dashboard-panels.png

Runs the same stack as the dashboard test (tests/deploy/live_stack.py: the
real server on the demo model, Debian's Prometheus scraping it every second),
sends --seconds of load from 6 concurrent clients, then asks Prometheus for
the panels' own PromQL (taken from the dashboard JSON, $__rate_interval =
10s) over the run with /api/v1/query_range and plots it the way Grafana
would: "Compute saved by deployment" and "Time to first token". Needs
python3-matplotlib (Debian). Not part of the test suite.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "deploy"))
import live_stack  # noqa: E402

PANELS = ["Compute saved by deployment", "Time to first token (p50 / p90 / p99)"]


def panel(dashboard, title):
    for p in dashboard["panels"]:
        if p.get("title") == title:
            return p
    raise KeyError(title)


def expand(expr, values):
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("$" + name, values[name])
    return expr


def legend(fmt, metric):
    for k, v in metric.items():
        fmt = fmt.replace("{{" + k + "}}", v)
    return fmt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "dashboard-panels.png"))
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(REPO, "deploy", "grafana", "loopserve.json")) as f:
        dashboard = json.load(f)
    tmp = tempfile.mkdtemp(prefix="loopserve-plot-")
    # A pool large enough that no request waits for KV (the test's tiny pool
    # provokes preemptions on purpose; here the panels should show serving).
    stack = live_stack.Stack(REPO, args.server, tmp,
                             server_overrides={"kv_cache_bytes": 32 << 20, "max_num_seqs": 8})
    try:
        start = time.time()
        counts = stack.run_load(args.client, args.seconds, errors_every=1000)
        time.sleep(3)
        end = time.time()
        print("load:", counts)
        values = {"model": ".*", "instance": ".*", "deployment": ".*",
                  "__rate_interval": "10s"}
        fig, axes = plt.subplots(1, len(PANELS), figsize=(13, 4.2))
        for ax, title in zip(axes, PANELS):
            p = panel(dashboard, title)
            for target in p["targets"]:
                expr = expand(target["expr"], values)
                data = stack.api("query_range", query=expr, start=f"{start:.3f}",
                                 end=f"{end:.3f}", step="1")
                for series in data["result"]:
                    ts = [float(t) - start for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    if p["fieldConfig"]["defaults"]["unit"] == "percentunit":
                        ys = [100 * y for y in ys]
                    elif p["fieldConfig"]["defaults"]["unit"] == "s":
                        ys = [1000 * y for y in ys]
                    style = {"p50": "-", "p90": "--", "p99": ":"}.get(
                        target["legendFormat"].split(" ")[0], "-")
                    ax.plot(ts, ys, style, label=legend(target["legendFormat"], series["metric"]))
            unit = p["fieldConfig"]["defaults"]["unit"]
            ax.set_ylabel({"percentunit": "%", "s": "ms"}.get(unit, unit))
            ax.set_xlabel("seconds into the load run")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2 if len(ax.lines) > 4 else 1)
        load = os.getloadavg()[0]
        fig.suptitle("loopserve dashboard panels: demo model (kjv-demo), CPU, 1 engine thread, "
                     f"6 clients, Prometheus scraping every 1 s (host load average {load:.1f})",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print("wrote", args.out)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
