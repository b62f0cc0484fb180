"""Checks a shipped checkpoint end to end: the numpy reference (float64) and
`loopserve-cli score` must give the same next-token log-probabilities at every
loop boundary of a text snippet (tokenized by the Python BPE when the model
has a tokenizer.json). Exit 0 on agreement within --tol nats.

    check_model_vs_cli.py --model models/kjv-demo --cli build/tools/loopserve-cli
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe_tokenizer  # noqa: E402
import looped_moe  # noqa: E402

SNIPPET = ("For God so loved the world, that he gave his only begotten Son, that "
           "whosoever believeth in him should not perish, but have everlasting life.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()

    model = looped_moe.load(a.model)
    tok_path = os.path.join(a.model, "tokenizer.json")
    if os.path.exists(tok_path):
        ids = bpe_tokenizer.Tokenizer.load(tok_path).encode(SNIPPET, add_bos=True)
    else:
        ids = [i % model.cfg["vocab_size"] for i in range(1, 200, 7)]
    ids = ids[: a.tokens]
    seq = looped_moe.Sequence(model, max_pos=len(ids) + 1)
    z = model.score(seq, ids)["exit_logits"]  # [L, T, V]
    lp = z - z.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    nxt = np.array(ids[1:])
    ref = lp[:, np.arange(len(ids) - 1), nxt]  # [L, T-1]

    r = subprocess.run([a.cli, "score", "--model", a.model, "--threads", "1",
                        "--prompt_ids", ",".join(map(str, ids))],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("loopserve-cli score failed:", r.stderr.strip())
        return 1
    rows = [ln.split() for ln in r.stdout.splitlines() if re.match(r"^\d+\s", ln)]
    got = np.array([[float(v) for v in row[2:2 + model.L]] for row in rows]).T
    if got.shape != ref.shape:
        print(f"shape mismatch: cli {got.shape}, reference {ref.shape}")
        return 1
    err = float(np.abs(got - ref).max())
    print(f"{a.model}: {len(ids)} tokens x {model.L} loops, max |d log p(next)| = {err:.2e} "
          f"(tolerance {a.tol:.0e})")
    return 0 if err <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
