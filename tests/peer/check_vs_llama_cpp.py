"""Numerics cross-check against llama.cpp (issue 10, item 2).

On f32 random checkpoints in MODEL_SPEC's vanilla case (qk_norm, softmax
router, norm_topk_prob, no prelude/coda/IterAdaLN/exit gate) — a plain L=1
model and a looped R=2 x L=4 one — loopserve's exit-head logits z_t at every
loop boundary (full depth is t = L-1) must equal llama.cpp's logits of the
same weights exported as an unrolled qwen3moe GGUF cut after loop t+1
(bench/peer/export_gguf.py), within 1e-4 relative at every position: for
each position, max_v |z_loopserve - z_llama| <= 1e-4 * max_v |z_llama|.
llama.cpp runs with F32 GGUF tensors, an F32 KV cache and flash attention off.

Discrimination: the exit heads of different loops differ from each other by
far more than the tolerance (checked), so a GGUF cut at the wrong loop, a
swapped RoPE variant or a mis-laid expert tensor fails.

Runs under the peer venv's python (bench/peer/setup_venv.sh):
  check_vs_llama_cpp.py --dump build/tests/peer/dump_exit_logits --workdir /tmp/x
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, os.path.join(ROOT, "bench", "peer"))
from fixture_configs import init_weights  # noqa: E402
from safetensors_io import save_file  # noqa: E402
import export_gguf  # noqa: E402
import llama_driver  # noqa: E402

TOLERANCE = 1e-4  # relative to the row's largest |logit|, both sides f32

_COMMON = {
    "model_type": "looped_moe", "num_prelude_layers": 0, "num_coda_layers": 0,
    "prelude_ffn": "dense", "coda_ffn": "dense", "recurrent_ffn": "moe", "qk_norm": True,
    "num_shared_experts": 0, "router_score": "softmax", "norm_topk_prob": True,
    "routed_scaling_factor": 1.0, "iter_adaln_rank": 0, "exit_gate": False,
    "max_position_embeddings": 256,
}
CONFIGS = {
    # A plain MoE (L = 1): tied head, MQA (Hkv = 1), default theta and eps.
    "vanilla": dict(_COMMON, vocab_size=256, hidden_size=64, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=16, rope_theta=10000.0,
                    rms_norm_eps=1e-6, num_recurrent_layers=2, num_loops=1, num_experts=8,
                    num_experts_per_tok=3, moe_intermediate_size=32,
                    tie_word_embeddings=True),
    # Looped R = 2 x L = 4: untied head, GQA, head_dim != D/H, other theta/eps.
    "looped": dict(_COMMON, vocab_size=320, hidden_size=96, num_attention_heads=6,
                   num_key_value_heads=2, head_dim=16, rope_theta=1e6, rms_norm_eps=1e-5,
                   num_recurrent_layers=2, num_loops=4, num_experts=4, num_experts_per_tok=2,
                   moe_intermediate_size=48, tie_word_embeddings=False),
}
SEEDS = {"vanilla": 101, "looped": 202}
TOKENS = 40


def make_checkpoint(name, directory):
    cfg = CONFIGS[name]
    os.makedirs(directory, exist_ok=True)
    save_file(os.path.join(directory, "model.safetensors"), init_weights(cfg, SEEDS[name]),
              dtypes="F32")
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def prompt(vocab):
    ids = [(3 + 37 * p + (p * p) % 11) % vocab for p in range(TOKENS)]
    ids[TOKENS // 2] = ids[3]  # a repeated token: attention must tell positions apart
    return ids


def loopserve_exit_logits(dump, ckpt, ids, workdir, cfg):
    out = os.path.join(workdir, "loopserve.f32")
    r = subprocess.run([dump, "--model", ckpt, "--prompt_ids", ",".join(map(str, ids)),
                        "--out", out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"dump_exit_logits failed: {r.stderr.strip()}")
    z = np.fromfile(out, dtype="<f4")
    return z.reshape(cfg["num_loops"], len(ids), cfg["vocab_size"])


def relative_error(got, want):
    """Per position: max |got - want| / max |want| -> [T]."""
    return np.abs(got - want).max(axis=-1) / np.abs(want).max(axis=-1)


def check(name, dump, workdir):
    cfg = CONFIGS[name]
    ckpt = os.path.join(workdir, name)
    make_checkpoint(name, ckpt)
    ids = prompt(cfg["vocab_size"])
    ours = loopserve_exit_logits(dump, ckpt, ids, workdir, cfg)
    failures = 0
    theirs = []
    for t in range(cfg["num_loops"]):
        gguf_path = os.path.join(workdir, f"{name}-loops{t + 1}.gguf")
        export_gguf.export(ckpt, gguf_path, loops=t + 1, dtype="F32")
        theirs.append(llama_driver.score(gguf_path, ids))
        err = relative_error(ours[t], theirs[t])
        worst = int(err.argmax())
        ok = bool(np.all(err <= TOLERANCE))
        failures += not ok
        print(f"{name}: z_{t} ({cfg['num_recurrent_layers'] * (t + 1)} unrolled layers), "
              f"{len(ids)} positions: max relative error {err.max():.2e} at position {worst} "
              f"(tolerance {TOLERANCE:.0e}) {'ok' if ok else 'FAIL'}")
    for t in range(1, cfg["num_loops"]):  # the loops must matter
        gap = relative_error(theirs[t - 1], theirs[t]).min()
        if gap <= 100 * TOLERANCE:
            print(f"{name}: z_{t - 1} and z_{t} differ by only {gap:.2e}: not discriminating")
            failures += 1
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump", required=True, help="path of the dump_exit_logits binary")
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    failures = sum(check(name, a.dump, a.workdir) for name in CONFIGS)
    print(f"{'FAILED' if failures else 'passed'}: {failures} failing check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
