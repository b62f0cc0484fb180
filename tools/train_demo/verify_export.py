#!/usr/bin/env python3
"""Check an exported looped_moe checkpoint against the numpy reference.

  /usr/bin/python3 tools/train_demo/verify_export.py --model models/kjv-demo [--tokens 24]
      [--cli build/tools/loopserve-cli]

Loads DIR with tests/reference/looped_moe.py (float64, token by token, KV cache) and with
the PyTorch training module (model.py, whole sequence, the stored bf16 weights widened to
float32 and to float64), scores the same held-out snippet (John 3:1-3, a held-out chapter)
and compares the exit logits z_t at every loop boundary (per-loop prefill semantics of the
reference: boundaries t < L-1 are probes over the stored full-depth coda K/V).

Error = max |z_torch - z_ref| / max |z_ref| per boundary. Tolerances: float64 torch 1e-9
(same math, different summation order), float32 torch 1e-3 (the task's bar; typical ~1e-6).
With --cli, also runs `loopserve-cli score` and compares its per-loop log-probabilities of
the next token with the reference's (tolerance 1e-3 absolute, in nats).
Exits 1 when a check fails.
"""

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import bpe_tokenizer  # noqa: E402
import looped_moe  # noqa: E402
import safetensors_io  # noqa: E402
from model import LoopedMoE  # noqa: E402

SNIPPET = ("John 3\nThere was a man of the Pharisees, named Nicodemus, a ruler of the Jews:\n"
           "The same came to Jesus by night, and said unto him, Rabbi, we know that thou art a "
           "teacher come from God: for no man can do these miracles that thou doest, except "
           "God be with him.\n")
TOL = {"float64": 1e-9, "float32": 1e-3}


def log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/kjv-demo")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--cli", default=None, help="path of loopserve-cli to check as well")
    ap.add_argument("--append_readme", action="store_true",
                    help="append the report as a section of DIR/README.md")
    a = ap.parse_args()
    report = []

    def say(*args):  # print, and keep the line for --append_readme
        line = " ".join(str(x) for x in args)
        report.append(line)
        print(line, flush=True)

    torch.set_num_threads(1)

    tok_path = os.path.join(a.model, "tokenizer.json")
    if os.path.exists(tok_path):
        tok = bpe_tokenizer.Tokenizer.load(tok_path)
        ids = ([tok.bos_id] + tok.encode(SNIPPET))[: a.tokens]
    else:
        ids = list(range(1, a.tokens + 1))
    say(f"snippet: {len(ids)} tokens {ids}")

    ref = looped_moe.load(a.model)
    out = ref.score(looped_moe.Sequence(ref, max_pos=len(ids) + 1), ids)
    z_ref = out["exit_logits"]                                   # [L, T, V]
    L = z_ref.shape[0]

    with open(os.path.join(a.model, "config.json")) as f:
        cfg = looped_moe.complete_config(json.load(f))
    weights = safetensors_io.load_checkpoint(a.model)
    ok = True
    for dtype in (torch.float64, torch.float32):
        model = LoopedMoE(cfg).to(dtype)
        sd = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)).to(dtype) for k, v in weights.items()}
        model.load_state_dict(sd, strict=True)
        model.eval()
        with torch.no_grad():
            z, hid, _ = model(torch.tensor([ids]))
        z = z[:, 0].double().numpy()
        name = str(dtype).split(".")[-1]
        errs = [float(np.abs(z[t] - z_ref[t]).max() / np.abs(z_ref[t]).max()) for t in range(L)]
        herr = float(np.abs(hid[:, 0].double().numpy() - out["hidden"]).max() /
                     np.abs(out["hidden"]).max())
        good = max(errs) <= TOL[name] and herr <= TOL[name]
        ok &= good
        say(f"torch {name:7s} vs reference: max rel logit error per loop " +
              " ".join(f"{e:.2e}" for e in errs) + f"; hidden {herr:.2e} "
              f"(tolerance {TOL[name]:.0e}) {'OK' if good else 'FAIL'}")

    lp_ref = log_softmax(z_ref)                                  # [L, T, V]
    nxt = np.array(ids[1:])
    lp_next = lp_ref[:, np.arange(len(ids) - 1), nxt]            # [L, T-1]
    say("reference mean NLL of the snippet per loop: " +
          " ".join(f"{-v:.4f}" for v in lp_next.mean(1)))

    if a.cli:
        r = subprocess.run([a.cli, "score", "--model", a.model,
                            "--prompt_ids", ",".join(map(str, ids))],
                           capture_output=True, text=True)
        if r.returncode != 0:
            say("loopserve-cli score failed:", r.stderr.strip())
            return 1
        rows = [ln.split() for ln in r.stdout.splitlines() if re.match(r"^\d+\s", ln)]
        cli_lp = np.array([[float(v) for v in row[2:2 + L]] for row in rows]).T  # [L, T-1]
        err = float(np.abs(cli_lp - lp_next).max())
        good = err <= 1e-3
        ok &= good
        say(f"loopserve-cli score vs reference: max |Δ log p(next)| = {err:.2e} nats over "
              f"{cli_lp.shape[1]} positions x {L} loops (tolerance 1e-3) {'OK' if good else 'FAIL'}")
    say("PASS" if ok else "FAIL")
    if a.append_readme:
        cmd = "/usr/bin/python3 tools/train_demo/verify_export.py " + " ".join(sys.argv[1:])
        with open(os.path.join(a.model, "README.md"), "a") as f:
            f.write("\n## Export check\nThe shipped files loaded by the numpy reference "
                    "(tests/reference/looped_moe.py, float64) against the PyTorch training "
                    "module, per loop boundary:\n```\n$ " + cmd + "\n" +
                    "\n".join(report) + "\n```\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
