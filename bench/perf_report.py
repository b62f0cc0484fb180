#!/usr/bin/python3
"""Markdown tables from a bench/run_perf_bench.sh output folder (the figures
of docs/performance.md).

  /usr/bin/python3 bench/perf_report.py build-perf/perf_results
"""
import glob
import os
import re
import statistics
import subprocess
import sys

DECODE = re.compile(r"^decode batch (\d+) .*?policy (\S+)\): ([\d.]+) tok/s(?: \[([\d.]+)\.\.([\d.]+)\])?, "
                    r"([\d.]+) ms/step, loops run ([\d.]+)% of full depth"
                    r"(?:, compute_saved (-?[\d.]+))?", re.M)
PREFILL = re.compile(r"^prefill batch \d+ x \d+ tokens: ([\d.]+) tok/s"
                     r"(?:, ([\d.]+) GFLOP/s wall, ([\d.]+) GFLOP per process CPU-second)?", re.M)
LOAD = re.compile(r"^# (\d\d:\d\d:\d\d) load: ([\d.]+)", re.M)


def read(path):
    return open(path).read() if os.path.exists(path) else ""


def first_tok_s(text):
    m = DECODE.search(text) or PREFILL.search(text)
    return float(m.group(3) if m and m.re is DECODE else m.group(1)) if m else None


def load_of(text):
    m = LOAD.search(text)
    return f"{m.group(1)} load {m.group(2)}" if m else "?"


def ab_table(out):
    print("| cell | pairs | before tok/s (per pair) | after tok/s (per pair) | after / before, "
          "paired median (min–max) | load (first pair) |")
    print("|---|---|---|---|---|---|")
    for cell, label in (("decode1", "decode, batch 1"), ("decode8", "decode, batch 8"),
                        ("prefill512", "prefill, 512 tokens")):
        olds, news = [], []
        i = 1
        while os.path.exists(f"{out}/ab_old_{cell}_{i}.txt"):
            o = first_tok_s(read(f"{out}/ab_old_{cell}_{i}.txt"))
            n = first_tok_s(read(f"{out}/ab_new_{cell}_{i}.txt"))
            if o and n:
                olds.append(o)
                news.append(n)
            i += 1
        if not olds:
            continue
        ratios = [n / o for o, n in zip(olds, news)]
        print(f"| {label} | {len(olds)} | {', '.join(f'{x:.1f}' for x in olds)} | "
              f"{', '.join(f'{x:.1f}' for x in news)} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}–{max(ratios):.2f}) | "
              f"{load_of(read(f'{out}/ab_old_{cell}_1.txt'))} |")


def policy_table(path, title):
    text = read(path)
    if not text:
        return
    print(f"\n{title} ({load_of(text)}; medians, [min..max] tok/s over the repetitions):\n")
    print("| policy | tok/s | ms/step | loops run | compute_saved | vs full depth |")
    print("|---|---|---|---|---|---|")
    rows = list(DECODE.finditer(text))
    base = float(rows[0].group(3))
    for m in rows:
        rng = f" [{m.group(4)}..{m.group(5)}]" if m.group(4) else ""
        print(f"| `{m.group(2)}` | {m.group(3)}{rng} | {m.group(6)} | {m.group(7)}% | "
              f"{m.group(8)} | {float(m.group(3)) / base:.2f}x |")


def profile_block(path, title, top=14):
    text = read(path)
    if not text:
        return
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.startswith("per-kernel wall time"))
    except StopIteration:
        return
    body = []
    for l in lines[start + 1:]:
        if not l.startswith("  "):
            break
        body.append(l)
    head, rows = body[0], body[1:]
    kernels = [r for r in rows if not r.strip().startswith("(")]
    tail = [r for r in rows if r.strip().startswith("(")]
    print(f"\n{title} ({load_of(text)}):\n```")
    print(head)
    for r in kernels[:top]:
        print(r)
    if len(kernels) > top:
        print(f"  ... {len(kernels) - top} smaller rows")
    for r in tail:
        print(r)
    print("```")


def main():
    out = sys.argv[1]
    peak = read(f"{out}/peak.txt")
    print("## Peak (loopserve_kernels_bench, medians of 3)\n")
    print("| benchmark (median of 3) | wall time | CPU time | counters |")
    print("|---|---|---|---|")
    for m in re.finditer(r"^(BM_\S+)_median[ \t]+([\d.]+ \w+)[ \t]+([\d.]+ \w+)[ \t]+\d+[ \t]*"
                         r"([^\n]*)$", peak, re.M):
        print(f"| {m.group(1).replace('/real_time', '')} | {m.group(2)} | {m.group(3)} | "
              f"{m.group(4)} |")
    print("\n## Before / after (interleaved A B A B ...)\n")
    ab_table(out)
    for cell in ("decode1", "decode8", "prefill512"):
        profile_block(f"{out}/profile_old_{cell}.txt", f"Before, {cell}")
        profile_block(f"{out}/profile_new_{cell}.txt", f"After, {cell}")
    for f in sorted(glob.glob(f"{out}/ab_new_prefill512_*.txt")):
        m = PREFILL.search(read(f))
        if m and m.group(2):
            print(f"\n{os.path.basename(f)}: {m.group(1)} tok/s, {m.group(2)} GFLOP/s wall, "
                  f"{m.group(3)} GFLOP per process CPU-second")
    print("\n## Exit policies\n")
    policy_table(f"{out}/exit_target1.txt", "Target run, batch 1")
    policy_table(f"{out}/exit_target8.txt", "Target run, batch 8")
    policy_table(f"{out}/policies_decode1.txt", "Check costs, batch 1")
    policy_table(f"{out}/policies_decode8.txt", "Check costs, batch 8")
    here = os.path.dirname(os.path.abspath(__file__))
    for b in (1, 8):
        p = f"{out}/policies_decode{b}.txt"
        if os.path.exists(p):
            print()
            sys.stdout.flush()
            subprocess.run([sys.executable, os.path.join(here, "exit_break_even.py"), p])
    print("\n## Weight traffic and bandwidth\n")
    for name in ("weights_decode1", "weights_decode8", "bandwidth_decode1", "bandwidth_decode8"):
        text = read(f"{out}/{name}.txt")
        for l in text.splitlines():
            if l.startswith(("weights per step", "decode weights", "stream in-process")):
                print(f"- {name} ({load_of(text)}): {l}")
    for b in (1, 8):
        profile_block(f"{out}/weights_decode{b}.txt", f"Phases, batch {b}, full depth", top=40)


if __name__ == "__main__":
    main()
