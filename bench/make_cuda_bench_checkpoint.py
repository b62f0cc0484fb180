#!/usr/bin/python3
"""The ~1B-parameter random looped-MoE checkpoint of the GPU benchmark
(issue 5): D=2048, H=16, Hkv=4, head_dim 128, 16 experts top-2 of width 2048,
4 recurrent MoE layers x 4 loops, no prelude/coda, untied head, V=32000:
~0.98B unique parameters, ~2 GB in bf16. Weights from the fixtures'
init_weights (O(1) activations, peaky exit heads). Deterministic.

  /usr/bin/python3 bench/make_cuda_bench_checkpoint.py --out build-gpu/ckpt/gpu-1b
"""

import argparse
import json
import os
import sys

import numpy as np

_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference")
sys.path.insert(0, _REF)
from fixture_configs import init_weights  # noqa: E402
from looped_moe import complete_config, expected_shapes  # noqa: E402
from safetensors_io import save_file  # noqa: E402

CONFIG = {
    "model_type": "looped_moe", "vocab_size": 32000, "hidden_size": 2048,
    "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 128,
    "rope_theta": 10000.0, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
    "qk_norm": True, "num_prelude_layers": 0, "num_recurrent_layers": 4, "num_coda_layers": 0,
    "num_loops": 4, "prelude_ffn": "dense", "recurrent_ffn": "moe", "coda_ffn": "dense",
    "num_experts": 16, "num_experts_per_tok": 2, "moe_intermediate_size": 2048,
    "num_shared_experts": 0, "router_score": "softmax", "norm_topk_prob": True,
    "routed_scaling_factor": 1.0, "iter_adaln_rank": 0, "exit_gate": False,
    "tie_word_embeddings": False,
}
SEED = 5005


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    n = int(sum(np.prod(s) for s in expected_shapes(complete_config(CONFIG)).values()))
    cfg_path = os.path.join(args.out, "config.json")
    if os.path.exists(cfg_path) and os.path.exists(os.path.join(args.out, "model.safetensors")):
        with open(cfg_path) as f:
            if json.load(f) == CONFIG:
                print(f"gpu-1b: {n / 1e6:.1f}M parameters, up to date in {args.out}")
                return
    os.makedirs(args.out, exist_ok=True)
    weights = init_weights(CONFIG, SEED)
    save_file(os.path.join(args.out, "model.safetensors"), weights,
              dtypes={k: "BF16" for k in weights})
    with open(cfg_path, "w") as f:
        json.dump(CONFIG, f, indent=2)
    print(f"gpu-1b: {n / 1e6:.1f}M parameters ({2 * n / 1e9:.2f} GB bf16) -> {args.out}")


if __name__ == "__main__":
    main()
