#!/usr/bin/python3
"""Exit-check cost and break-even per criterion, from one engine_bench run of
--policies that holds static depths never:0:1:d (d = 1..L) and criteria
with thresholds they never meet (bench/run_perf_bench.sh writes such runs).

Step time T(d) of static depth d fits T = a + b*d: b is one loop, a the rest
(embedding, final head, sampling). A criterion with a never-met threshold
runs full depth and checks at every boundary, so its check costs
c = (T_crit - T_full) / (L - 1) per boundary (the last boundary's head is
needed anyway). A token that checks at every boundary and exits at boundary
e saves (L-1-e) loops and pays e checks, so the criterion pays when the
fraction of loops skipped, s = (L-1-e)/L, exceeds s* = (L-1) c / (L (b + c)).

  /usr/bin/python3 bench/exit_break_even.py build-perf/perf_results/policies_decode1.txt
"""
import re
import sys


def fit(static):
    ds = sorted(static)
    n = len(ds)
    mean_d = sum(ds) / n
    mean_t = sum(static[d] for d in ds) / n
    b = sum((d - mean_d) * (static[d] - mean_t) for d in ds) / sum((d - mean_d) ** 2 for d in ds)
    return mean_t - b * mean_d, b


def main():
    text = open(sys.argv[1]).read()
    pat = re.compile(r"^decode batch (\d+) .*?policy (\S+)\): ([\d.]+) tok/s \[[\d.]+\.\.([\d.]+)\], "
                     r"([\d.]+) ms/step", re.M)
    found = list(pat.finditer(text))
    batch = int(found[0].group(1))
    # Per policy: median ms/step, and the best repetition's (from max tok/s).
    rows = {m.group(2): (float(m.group(5)), 1e3 * batch / float(m.group(4))) for m in found}
    tables = {}
    for k, label in ((0, "median"), (1, "best repetition")):
        static = {}
        for spec, t in rows.items():
            m = re.fullmatch(r"never:0:1:(\d+)", spec)
            if m:
                static[int(m.group(1))] = t[k]
        L = max(static) + 1
        static[L] = rows["never"][k]
        a, b = fit(static)
        tables[label] = (static, a, b, L)
        print(f"batch {batch}, {label}: step = {a:.2f} ms + {b:.2f} ms x loops (static depths "
              + ", ".join(f"{d}: {static[d]:.2f}" for d in sorted(static)) + " ms)")
    print("\n| criterion (never-met threshold) | step ms (median / best) | check ms per boundary "
          "| check / loop | break-even: loops skipped |")
    print("|---|---|---|---|---|")
    for spec, t in rows.items():
        if spec == "never" or spec.startswith("never:"):
            continue
        cells = []
        for k, label in ((0, "median"), (1, "best repetition")):
            static, a, b, L = tables[label]
            c = (t[k] - static[L]) / (L - 1)
            s_star = (L - 1) * max(c, 0.0) / (L * (b + max(c, 0.0))) if b > 0 else float("nan")
            cells.append((c, c / b if b > 0 else float("nan"), s_star))
        print(f"| `{spec}` | {t[0]:.2f} / {t[1]:.2f} | {cells[0][0]:.2f} / {cells[1][0]:.2f} | "
              f"{cells[0][1]:.2f} / {cells[1][1]:.2f} | {100 * cells[0][2]:.0f}% / "
              f"{100 * cells[1][2]:.0f}% |")


if __name__ == "__main__":
    main()
