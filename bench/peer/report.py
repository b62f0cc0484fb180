"""Summarises a peer-benchmark run (bench/peer/run.sh) as a markdown table.

Input: the run's JSON lines (one per timed run: RESULT objects of
loopserve_peer_driver and llama_driver.py, stream samples of
loopserve_engine_bench, each tagged with its repetition `rep`).
Output: per case the median tokens/s of each side over the repetitions with
the min-max spread, the ratio loopserve / llama.cpp; decode bandwidth of each
side as a fraction of the STREAM triad sampled in the same repetition; bytes
read per token; and the exit-policy speedups.

  python3 bench/peer/report.py build-peer/results/RUN.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def spread(values):
    med = statistics.median(values)
    return med, min(values), max(values)


def fmt(values, digits=1):
    if not values:
        return "—"
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def case_key(r):
    return (r["model"], r["mode"], r["batch"], r["policy"])


def summarise(rows):
    triad = {r["rep"]: r["triad_gbs"] for r in rows if r.get("side") == "stream"}
    runs = defaultdict(lambda: defaultdict(list))  # case -> side -> [row]
    for r in rows:
        if r.get("side") in ("loopserve", "llama.cpp"):
            runs[case_key(r)][r["side"]].append(r)
    # Bytes per step come from the loopserve full-depth run that counted them.
    step_bytes = {}
    for key, sides in runs.items():
        for r in sides["loopserve"]:
            if "bytes_per_step_unique" in r:
                step_bytes[key] = (r["bytes_per_step_unique"], r["bytes_per_step_unrolled"])
    out = []
    out.append(f"STREAM triad (GB/s, per repetition): "
               f"{', '.join(f'{triad[k]:.1f}' for k in sorted(triad))}; "
               f"median {statistics.median(triad.values()):.1f}" if triad else "no STREAM sample")
    out.append("")
    out.append("| model | case | loopserve tok/s | llama.cpp tok/s | loopserve / llama.cpp |")
    out.append("|---|---|---|---|---|")
    for key in sorted(runs, key=lambda k: (k[0], k[1] != "prefill", k[2], k[3])):
        model, mode, batch, policy = key
        if policy != "full":
            continue
        ls = [r["tok_s"] for r in runs[key]["loopserve"]]
        lc = [r["tok_s"] for r in runs[key]["llama.cpp"]]
        ratio = paired_ratio(runs[key]["loopserve"], runs[key]["llama.cpp"])
        case = f"prefill {runs[key]['loopserve'][0]['prompt_len'] if ls else ''}" \
            if mode == "prefill" else f"decode batch {batch}"
        out.append(f"| {model} | {case} | {fmt(ls)} | {fmt(lc)} | {fmt(ratio, 2)} |")
    out.append("")
    out.append("Ratios are per repetition (the two sides ran back to back), then median "
               "(min–max).")
    out.append("")
    out.append("| model | decode batch | weight MB/token: looped unique | unrolled | "
               "loopserve GB/s (unique) | of triad | llama.cpp GB/s (unrolled) | of triad |")
    out.append("|---|---|---|---|---|---|---|---|")
    for key in sorted(step_bytes, key=lambda k: (k[0], k[2])):
        model, _, batch, _ = key
        unique, unrolled = step_bytes[key]
        ls_bw = [unique / (r["ms_per_step"] / 1e3) / 1e9 for r in runs[key]["loopserve"]]
        lc_bw = [unrolled / (r["ms_per_step"] / 1e3) / 1e9 for r in runs[key]["llama.cpp"]]
        ls_frac = [unique / (r["ms_per_step"] / 1e3) / 1e9 / triad[r["rep"]]
                   for r in runs[key]["loopserve"] if r["rep"] in triad]
        lc_frac = [unrolled / (r["ms_per_step"] / 1e3) / 1e9 / triad[r["rep"]]
                   for r in runs[key]["llama.cpp"] if r["rep"] in triad]
        out.append(f"| {model} | {batch} | {unique / batch / 1e6:.1f} | "
                   f"{unrolled / batch / 1e6:.1f} | {fmt(ls_bw)} | {fmt(ls_frac, 2)} | "
                   f"{fmt(lc_bw)} | {fmt(lc_frac, 2)} |")
    out.append("")
    out.append("| model | decode batch | exit policy | loops run | compute_saved | "
               "tok/s | full-depth tok/s | speedup |")
    out.append("|---|---|---|---|---|---|---|---|")
    for key in sorted(runs):
        model, mode, batch, policy = key
        if policy == "full" or mode != "decode":
            continue
        mine = sorted_rows(runs[key]["loopserve"])
        full = sorted_rows(runs.get((model, mode, batch, "full"), {}).get("loopserve", []))
        speed = paired_ratio(mine, full)
        out.append(f"| {model} | {batch} | {policy} | "
                   f"{fmt([r['loops_frac'] for r in mine], 2)} | "
                   f"{fmt([r['compute_saved'] for r in mine], 3)} | "
                   f"{fmt([r['tok_s'] for r in mine])} | {fmt([r['tok_s'] for r in full])} | "
                   f"{fmt(speed, 2)} |")
    return "\n".join(out)


def sorted_rows(rows):
    return sorted(rows, key=lambda r: r["rep"])


def paired_ratio(a_rows, b_rows):
    """tok_s of a / tok_s of b, repetition by repetition (both ran back to back)."""
    b_by_rep = {r["rep"]: r["tok_s"] for r in b_rows}
    return [r["tok_s"] / b_by_rep[r["rep"]] for r in a_rows if r["rep"] in b_by_rep]


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    print(summarise(load(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
