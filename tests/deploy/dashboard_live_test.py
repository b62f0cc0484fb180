"""Every Grafana panel of deploy/grafana/loopserve.json has data from a real
Prometheus scraping the real server.

  dashboard_live_test.py --repo DIR --server BIN --client BIN

Starts loopserve-server (demo model, three deployments) and Prometheus
(Debian package, 1 s scrapes, deploy/prometheus/rules loaded) on loopback,
sends ~12 s of concurrent load with loopserve-client (good requests on every
deployment, plus invalid ones), then:
  - checks the dashboard's structure (ids, datasource, queries) and that it
    shows every metric issue 11 asks for (exit loops as a heatmap);
  - checks Prometheus scraped every request the clients sent;
  - resolves the dashboard variables through the API (label_values);
  - evaluates EVERY panel target, for every value of $deployment, through
    /api/v1/query at the end of the load: each must be valid PromQL and
    return at least one finite sample;
  - checks every recording rule has data and every rule evaluates healthy.
Exits 77 (ctest skip) when `prometheus` is not on PATH. Takes ~30 s.
"""

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live_stack  # noqa: E402

SKIP = 77
LOAD_SECONDS = 12
# What Grafana would put in for a 1 s scrape interval and a short time range;
# the window covers the whole load run when evaluated right after it.
BUILTINS = {"__rate_interval": "30s", "__interval": "2s", "__range": "30s"}


def panels_of(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def check_structure(dashboard, failures):
    ids = [p["id"] for p in panels_of(dashboard)]
    if len(ids) != len(set(ids)):
        failures.append(f"duplicate panel ids: {ids}")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for p in panels_of(dashboard):
        grid = p.get("gridPos", {})
        if not (0 <= grid.get("x", -1) and grid.get("x", 0) + grid.get("w", 99) <= 24):
            failures.append(f"panel {p['title']}: gridPos {grid} outside 24 columns")
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            failures.append(f"panel {p['title']}: datasource is not the $datasource variable")
        if not p.get("targets"):
            failures.append(f"panel {p['title']}: no queries")
        for t in p.get("targets", []):
            if not t.get("expr") or not t.get("refId"):
                failures.append(f"panel {p['title']}: target without expr/refId")
            used = set(re.findall(r"\$\{?(\w+)", t.get("expr", ""))) - set(BUILTINS)
            if used - variables:
                failures.append(f"panel {p['title']}: unknown variables {used - variables}")


# What the dashboard must show (issue 11): each metric in some panel.
REQUIRED_METRICS = [
    "loopserve_requests_total", "loopserve_generated_tokens_total",
    "loopserve_time_to_first_token_seconds_bucket", "loopserve_time_per_output_token_seconds_bucket",
    "loopserve_flops_done_total", "loopserve_flops_full_depth_total",
    "loopserve_loops_skipped_total", "loopserve_exit_loop_bucket", "loopserve_kv_blocks_used",
    "loopserve_requests_waiting", "loopserve_requests_running", "loopserve_batch_size",
    "loopserve_preemptions_total",
]


def check_coverage(dashboard, failures):
    exprs = [(p["type"], t.get("expr", "")) for p in panels_of(dashboard)
             for t in p.get("targets", [])]
    for metric in REQUIRED_METRICS:
        if not any(re.search(rf"\b{metric}\b", e) for _, e in exprs):
            failures.append(f"no panel shows {metric}")
    if not any(kind == "heatmap" and "loopserve_exit_loop_bucket" in e for kind, e in exprs):
        failures.append("the exit-loop distribution is not a heatmap panel")


def substitute(expr, values):
    merged = dict(BUILTINS, **values)
    # Longest names first so $__rate_interval is not read as $__rate.
    for name in sorted(merged, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", merged[name]).replace("$" + name, merged[name])
    if "$" in expr:
        raise ValueError(f"unsubstituted variable left in {expr}")
    return expr


def resolve_variable(stack, variable, values):
    """label_values(SELECTOR, LABEL) through /api/v1/series, as Grafana does."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"].strip())
    if m is None:
        raise ValueError(f"variable {variable['name']}: unsupported query")
    selector = substitute(m.group(1), values)
    series = stack.api("series", **{"match[]": selector})
    return sorted({s[m.group(2)] for s in series if m.group(2) in s})


def finite_samples(data):
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return [float(r["value"][1]) for r in data["result"]
            if not math.isnan(float(r["value"][1]))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, tsdb)")
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        print("SKIP: prometheus not on PATH (Debian package `prometheus`)")
        return SKIP
    with open(os.path.join(args.repo, "deploy", "grafana", "loopserve.json")) as f:
        dashboard = json.load(f)
    failures = []
    check_structure(dashboard, failures)
    check_coverage(dashboard, failures)

    tmp = tempfile.mkdtemp(prefix="loopserve-dashboard-")
    stack = live_stack.Stack(args.repo, args.server, tmp)
    try:
        counts = stack.run_load(args.client, LOAD_SECONDS)
        sent = sum(counts[k] for k in ("ok", "failed"))
        print(f"load: {counts}")
        if counts["ok"] < 10:
            failures.append(f"load: only {counts['ok']} requests succeeded")
        # Wait for Prometheus to scrape the final counters (1 s scrapes).
        at, scraped = time.time(), -1
        for _ in range(20):
            time.sleep(1)
            at = time.time()
            scraped = sum(finite_samples(stack.query("sum(loopserve_requests_total)", at)))
            if scraped == sent:
                break
        if scraped != sent:
            failures.append(f"Prometheus counted {scraped} requests, clients sent {sent}")

        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        values = {"datasource": "prometheus"}
        for name in ("model", "instance"):
            found = resolve_variable(stack, variables[name], values)
            if not found:
                failures.append(f"variable ${name}: no values")
            values[name] = found[0] if found else "none"
        deployments = resolve_variable(stack, variables["deployment"], values)
        if deployments != sorted(live_stack.DEPLOYMENTS):
            failures.append(f"variable $deployment: {deployments}, "
                            f"expected {sorted(live_stack.DEPLOYMENTS)}")

        evaluated = 0
        for panel in panels_of(dashboard):
            for target in panel.get("targets", []):
                for deployment in deployments:
                    expr = substitute(target["expr"], dict(values, deployment=deployment))
                    where = f"panel '{panel['title']}' {target['refId']} ($deployment={deployment})"
                    try:
                        samples = finite_samples(stack.query(expr, at))
                    except ValueError as e:
                        failures.append(f"{where}: invalid: {e}\n    {expr}")
                        continue
                    evaluated += 1
                    if not samples:
                        failures.append(f"{where}: no data\n    {expr}")
        print(f"evaluated {evaluated} panel queries "
              f"({sum(len(p.get('targets', [])) for p in panels_of(dashboard))} targets x "
              f"{len(deployments)} deployments)")

        groups = stack.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        for rule in rules:
            if rule.get("health") != "ok":
                failures.append(f"rule {rule['name']}: health {rule.get('health')} "
                                f"{rule.get('lastError', '')}")
            if rule["type"] == "recording" and not finite_samples(stack.query(rule["name"], at)):
                failures.append(f"recording rule {rule['name']}: no data")
        print(f"rules: {sum(r['type'] == 'recording' for r in rules)} recording, "
              f"{sum(r['type'] == 'alerting' for r in rules)} alerting loaded and healthy")
        for name in ("loopserve_preemptions_total", "loopserve_requests_waiting"):
            peak = stack.query(f"max_over_time({name}[60s])", at)
            print(f"{name} peak: {finite_samples(peak)}")
    finally:
        stack.stop()
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
