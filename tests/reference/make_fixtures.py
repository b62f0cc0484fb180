#!/usr/bin/env python3
"""Build small random looped_moe checkpoints and their golden outputs.

usage: /usr/bin/python3 tests/reference/make_fixtures.py --out DIR [--only NAME ...]

Writes DIR/<name>/{config.json, model.safetensors (or shards + index),
golden.safetensors, golden.json}. Deterministic (fixed seeds). See README.md
for the format.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import exit_policy as xp  # noqa: E402
import looped_moe  # noqa: E402
import safetensors_io  # noqa: E402
from fixture_configs import FIXTURES, fixture_config, fixture_seed, init_weights  # noqa: E402

PROMPT_LENGTHS = (5, 9, 13)
MAX_TOKENS = 8
MIN_STAT_GAP = 1e-3     # relative |stat - τ| / |τ| of every decision
MIN_ARGMAX_GAP = 1e-3   # top-2 logit gap of every argmax that matters
MIN_ROUTER_GAP = 1e-5   # k-th minus (k+1)-th router score of every MoE evaluation
NUDGES = (0.0, 0.004, -0.004, 0.01, -0.01, 0.03, -0.03, 0.07, -0.07, 0.15, -0.15)

# Quantile of the statistic (over prompt positions and boundaries t < L-1) used as τ,
# oriented so that roughly a third to a half of the boundaries stop.
QUANTILE = {"max_prob": 0.6, "margin": 0.6, "entropy": 0.4, "kl": 0.45,
            "hidden_cosine": 0.55, "gate": 0.5}


def write_checkpoint(path, raw_cfg, weights, dtype, shards):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(raw_cfg, f, indent=2)
    if shards == 1:
        safetensors_io.save_file(os.path.join(path, "model.safetensors"), weights, dtypes=dtype)
    else:
        safetensors_io.save_sharded(path, weights, shards, dtypes=dtype)


def make_prompt(model, rng, T):
    """(ids, score dict, prefilled Sequence): retried until its argmax/router gaps are safe."""
    V, L = model.cfg["vocab_size"], model.L
    for _ in range(50):
        ids = rng.integers(0, V, size=T)
        model.min_router_gap = np.inf
        seq = looped_moe.Sequence(model, max_pos=T + MAX_TOKENS + 1)
        sc = model.score(seq, ids)
        if (xp.top2_gap(sc["exit_logits"][L - 1, T - 1]) > MIN_ARGMAX_GAP
                and model.min_router_gap > MIN_ROUTER_GAP):
            return ids, sc, seq
    raise RuntimeError("no prompt with safe gaps found")


def stat_samples(model, scores, criterion):
    """The criterion's statistic at every prompt position and boundary t < L-1."""
    L, vals = model.L, []
    for sc in scores:
        z, h = sc["exit_logits"], sc["hidden"]
        for j in range(z.shape[1]):
            for t in range(L - 1):
                if criterion in ("max_prob", "margin", "entropy"):
                    vals.append(xp.prob_stats(z[t, j])[criterion])
                elif criterion == "kl" and t >= 1:
                    vals.append(xp.kl(looped_moe.log_softmax(z[t, j]),
                                      looped_moe.log_softmax(z[t - 1, j])))
                elif criterion == "hidden_cosine" and t >= 1:
                    vals.append(xp.cosine(h[t, j], h[t - 1, j]))
                elif criterion == "gate":
                    vals.append(sc["gate_cdf"][t, j])
    return np.array(vals)


def base_threshold(model, scores, criterion, min_loops):
    if criterion == "never":
        return 0.0
    if criterion == "top1_stable":
        return 1.5 if min_loops >= 2 and model.L >= 4 else 0.5
    s = stat_samples(model, scores, criterion)
    if s.size == 0:  # L <= 2: nothing to compare at t < L-1; any τ
        return {"max_prob": 0.5, "margin": 0.3, "entropy": 1.0, "kl": 0.1,
                "hidden_cosine": 0.9, "gate": 0.5}[criterion]
    return float(np.quantile(s, QUANTILE[criterion]))


def case_specs(cfg):
    """(name, criterion, kv_fill, min_loops, max_loops, prompt_index)."""
    L = cfg["num_loops"]
    crits = [c for c in xp.CRITERIA if c != "gate" or cfg["exit_gate"]]
    specs = []
    for c in crits:
        for fill in xp.KV_FILLS:
            specs.append((f"{c}_{fill}", c, fill, 1, L))
    if L >= 2:
        specs += [(f"never_max{L - 1}_{f}", "never", f, 1, L - 1) for f in xp.KV_FILLS]
        specs.append((f"max_prob_max{L - 1}_propagate", "max_prob", "propagate", 1, L - 1))
    if L >= 3:
        for c, f in (("max_prob", "propagate"), ("kl", "reuse"), ("top1_stable", "propagate"),
                     ("hidden_cosine", "reuse"), ("entropy", "propagate")):
            specs.append((f"{c}_min2_{f}", c, f, 2, L))
        if cfg["exit_gate"]:
            specs.append(("gate_min2_reuse", "gate", "reuse", 2, L))
    return [s + (k % len(PROMPT_LENGTHS),) for k, s in enumerate(specs)]


def run_case(model, prompt, policy):
    """Greedy generation of MAX_TOKENS tokens from a prefilled prompt; gap summary."""
    ids, sc, seq0 = prompt
    L, T = model.L, len(ids)
    first = int(np.argmax(sc["exit_logits"][L - 1, T - 1]))
    model.min_router_gap = np.inf
    steps = xp.generate(model, seq0.copy(), first, policy, MAX_TOKENS - 1)
    decisions = [d for s in steps for d in s.decisions]
    stat_gap = min((abs(s - tau) / abs(tau) for s, tau in decisions), default=None)
    argmax_gap = min(g for s in steps for g in s.argmax_gaps)
    return {
        "tokens": [first] + [s.token for s in steps],
        "exit_loops": [L - 1] + [s.exit_loop for s in steps],
        "decode_flops_done": float(sum(s.flops_done for s in steps)),
        "decode_flops_full": float(sum(s.flops_full for s in steps)),
        "min_stat_gap": stat_gap,
        "min_argmax_gap": argmax_gap,
        "min_router_gap": None if np.isinf(model.min_router_gap) else float(model.min_router_gap),
    }


def safe(r):
    return ((r["min_stat_gap"] is None or r["min_stat_gap"] > MIN_STAT_GAP)
            and r["min_argmax_gap"] > MIN_ARGMAX_GAP
            and (r["min_router_gap"] is None or r["min_router_gap"] > MIN_ROUTER_GAP))


def build_case(model, prompts, scores, spec):
    name, crit, fill, mn, mx, j0 = spec
    tau0 = base_threshold(model, scores, crit, mn)
    for dj in range(len(prompts)):
        j = (j0 + dj) % len(prompts)
        for nudge in (NUDGES if crit not in ("never", "top1_stable") else (0.0,)):
            pol = xp.Policy(crit, tau0 * (1 + nudge), mn, mx, fill)
            r = run_case(model, prompts[j], pol)
            if safe(r):
                return dict({"name": name, "prompt_index": j, "policy": pol.as_dict(),
                             "max_tokens": MAX_TOKENS}, **r)
    raise RuntimeError(f"case {name}: no threshold/prompt with safe gaps")


def golden_tensors(model, prompts):
    t = {}
    for j, (ids, sc, _) in enumerate(prompts):
        t[f"prompt.{j}.ids"] = ids.astype(np.int32)
        t[f"prompt.{j}.exit_logits"] = sc["exit_logits"].astype(np.float32)
        t[f"prompt.{j}.hidden"] = sc["hidden"].astype(np.float32)
        for (part, i, loop), top in sc["routers"].items():
            t[f"prompt.{j}.router.{part}.{i}.{loop}"] = top.astype(np.int32)
        if sc["gate_cdf"] is not None:
            t[f"prompt.{j}.gate_cdf"] = sc["gate_cdf"].astype(np.float32)
    return t


def make_fixture(name, out_dir):
    raw, dtype, shards = fixture_config(name)
    seed = fixture_seed(name)
    path = os.path.join(out_dir, name)
    write_checkpoint(path, raw, init_weights(raw, seed), dtype, shards)
    model = looped_moe.load(path)  # computes from the stored (rounded) weights
    rng = np.random.default_rng(seed + 1)
    prompts = [make_prompt(model, rng, T) for T in PROMPT_LENGTHS]
    scores = [p[1] for p in prompts]
    cases = [build_case(model, prompts, scores, s) for s in case_specs(model.cfg)]
    safetensors_io.save_file(os.path.join(path, "golden.safetensors"),
                             golden_tensors(model, prompts))
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump({"config": name, "num_prompts": len(prompts), "cases": cases}, f, indent=1)
    return model, cases


def exit_histogram(model, cases):
    h = np.zeros(model.L, dtype=int)
    for c in cases:
        for e in c["exit_loops"][1:]:
            h[e] += 1
    return h


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(FIXTURES))
    args = ap.parse_args(argv)
    names = args.only or list(FIXTURES)
    ok = True
    for name in names:
        t0 = time.time()
        model, cases = make_fixture(name, args.out)
        hist = exit_histogram(model, cases)
        varied = model.L == 1 or hist[: model.L - 1].sum() > 0
        ok &= bool(varied)
        gaps = [c["min_stat_gap"] for c in cases if c["min_stat_gap"] is not None]
        print(f"{name:16s} L={model.L} cases={len(cases):2d} exit-loop histogram "
              f"{hist.tolist()} min_stat_gap={min(gaps, default=float('nan')):.3g} "
              f"({time.time() - t0:.1f}s){'' if varied else '  NOT VARIED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
