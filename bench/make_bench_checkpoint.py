#!/usr/bin/python3
"""Random looped-MoE checkpoints for the engine-vs-PyTorch CPU benchmark.

Writes DIR/config.json + DIR/model.safetensors (BF16) in the loopserve format
(MODEL_SPEC.md), initialised by tests/reference/fixture_configs.init_weights:
N(0, 1/fan_in) projections, so activations stay O(1) and exit-head
distributions are peaky but not saturated. Deterministic (fixed seed per size).

  /usr/bin/python3 bench/make_bench_checkpoint.py --size small --out build-bench/ckpt/small
  /usr/bin/python3 bench/make_bench_checkpoint.py --size m100  --out build-bench/ckpt/m100
  /usr/bin/python3 bench/make_bench_checkpoint.py --size bench-m --out build-bench/ckpt/bench-m

bench-m (issue 10's peer-benchmark model) is MODEL_SPEC's vanilla case, i.e.
llama.cpp's qwen3moe architecture: no prelude/coda, no IterAdaLN, no exit
gate, qk_norm, softmax router with norm_topk_prob, no shared experts,
rotate-half RoPE, untied head. V=32000, D=1024, H=16, Hkv=4, head_dim 64,
E=32 experts, top-4, moe_intermediate 512, R=4 recurrent layers x L=4 loops
(16 unrolled layers), ~280M unique parameters. bench-m-l1 is the same with
L=1 (a plain 4-layer MoE); its weights are identical to bench-m's (same seed,
same tensor shapes), so it is bench-m cut after the first loop.
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

_COMMON = {
    "model_type": "looped_moe", "rope_theta": 10000.0, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6, "num_prelude_layers": 1, "num_recurrent_layers": 2,
    "num_coda_layers": 1, "num_loops": 4, "prelude_ffn": "dense", "recurrent_ffn": "moe",
    "coda_ffn": "dense", "num_shared_experts": 0, "router_score": "softmax",
    "norm_topk_prob": True, "routed_scaling_factor": 1.0, "iter_adaln_rank": 0,
    "exit_gate": False,
}

SIZES = {
    # ~6M parameters: everything fits in L2/L3.
    "small": dict(_COMMON, vocab_size=4096, hidden_size=256, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=32, qk_norm=False, intermediate_size=512,
                  num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256,
                  tie_word_embeddings=True),
    # ~103M unique parameters (206 MB in bf16): a DRAM-bound decode.
    "m100": dict(_COMMON, vocab_size=32000, hidden_size=768, num_attention_heads=12,
                 num_key_value_heads=4, head_dim=64, qk_norm=True, intermediate_size=2048,
                 num_experts=16, num_experts_per_tok=2, moe_intermediate_size=512,
                 tie_word_embeddings=False),
}

# MODEL_SPEC's vanilla case (llama.cpp qwen3moe): only recurrent MoE layers.
_VANILLA = dict(_COMMON, num_prelude_layers=0, num_coda_layers=0, prelude_ffn="dense",
                coda_ffn="dense")
SIZES["bench-m"] = dict(_VANILLA, vocab_size=32000, hidden_size=1024, num_attention_heads=16,
                        num_key_value_heads=4, head_dim=64, qk_norm=True, num_experts=32,
                        num_experts_per_tok=4, moe_intermediate_size=512,
                        num_recurrent_layers=4, num_loops=4, tie_word_embeddings=False)
SIZES["bench-m-l1"] = dict(SIZES["bench-m"], num_loops=1)
SEEDS = {"small": 1234, "m100": 4321, "bench-m": 2710, "bench-m-l1": 2710}


def parameter_count(cfg):
    return int(sum(np.prod(s) for s in expected_shapes(complete_config(cfg)).values()))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true", help="rewrite an existing checkpoint")
    args = ap.parse_args()
    cfg = SIZES[args.size]
    n = parameter_count(cfg)
    cfg_path = os.path.join(args.out, "config.json")
    if not args.force and os.path.exists(cfg_path) and os.path.exists(
            os.path.join(args.out, "model.safetensors")):
        with open(cfg_path) as f:
            if json.load(f) == cfg:
                print(f"{args.size}: {n / 1e6:.1f}M parameters, up to date in {args.out}")
                return
    os.makedirs(args.out, exist_ok=True)
    weights = init_weights(cfg, SEEDS[args.size])
    save_file(os.path.join(args.out, "model.safetensors"), weights,
              dtypes={k: "BF16" for k in weights})
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"{args.size}: {n / 1e6:.1f}M parameters ({2 * n / 1e6:.0f} MB bf16) -> {args.out}")


if __name__ == "__main__":
    main()
