"""The fixture matrix: small looped_moe configs and their random initialisation.

Each fixture is (config.json fields, storage dtype, sharded?). Weights are
initialised so activations stay O(1) and exit-head distributions are peaky
but not saturated (max_prob spreads over ~0.1-0.9), so exit policies exit
at varied loops.
"""

import zlib

import numpy as np

from looped_moe import complete_config, expected_shapes

_BASE = {
    "model_type": "looped_moe", "vocab_size": 128, "hidden_size": 48,
    "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 12,
    "rope_theta": 10000.0, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
    "qk_norm": False, "num_prelude_layers": 0, "num_recurrent_layers": 2,
    "num_coda_layers": 0, "num_loops": 4, "prelude_ffn": "dense", "recurrent_ffn": "moe",
    "coda_ffn": "dense", "intermediate_size": 96, "num_experts": 4,
    "num_experts_per_tok": 2, "moe_intermediate_size": 48, "num_shared_experts": 0,
    "router_score": "softmax", "norm_topk_prob": True, "routed_scaling_factor": 1.0,
    "iter_adaln_rank": 0, "exit_gate": False, "tie_word_embeddings": True,
}

# name -> (overrides of _BASE, storage dtype, number of shards (1 = model.safetensors))
FIXTURES = {
    "base": ({}, "F32", 1),
    "prelude_coda": ({"num_prelude_layers": 1, "num_coda_layers": 1, "num_loops": 3,
                      "vocab_size": 112, "hidden_size": 40, "head_dim": 10,
                      "intermediate_size": 80}, "F32", 1),
    "all_moe": ({"num_prelude_layers": 1, "num_coda_layers": 1, "num_recurrent_layers": 1,
                 "prelude_ffn": "moe", "coda_ffn": "moe", "num_shared_experts": 1,
                 "num_experts": 8, "num_experts_per_tok": 3, "moe_intermediate_size": 32,
                 "vocab_size": 96, "hidden_size": 32, "head_dim": 8}, "F32", 1),
    "sigmoid_router": ({"router_score": "sigmoid", "norm_topk_prob": False,
                        "routed_scaling_factor": 2.5, "num_experts": 6,
                        "hidden_size": 64, "head_dim": 8, "vocab_size": 160,
                        "num_loops": 3}, "F32", 1),
    "gqa_qknorm": ({"num_key_value_heads": 2, "qk_norm": True, "hidden_size": 40,
                    "head_dim": 16, "num_experts_per_tok": 1, "vocab_size": 144}, "F32", 1),
    "adaln": ({"iter_adaln_rank": 8, "hidden_size": 32, "head_dim": 8,
               "num_experts": 6, "vocab_size": 120}, "F32", 1),
    "exit_gate": ({"exit_gate": True, "num_coda_layers": 1, "num_loops": 4}, "F32", 1),
    "untied": ({"tie_word_embeddings": False, "num_recurrent_layers": 1,
                "num_experts": 8, "num_experts_per_tok": 3, "hidden_size": 56,
                "head_dim": 14}, "F32", 1),
    "bf16": ({"iter_adaln_rank": 8, "qk_norm": True, "num_prelude_layers": 1,
              "num_coda_layers": 1, "num_key_value_heads": 1, "head_dim": 16,
              "num_loops": 3, "exit_gate": True}, "BF16", 1),
    "dense_recurrent": ({"recurrent_ffn": "dense", "num_loops": 4,
                         "intermediate_size": 64}, "F32", 1),
    "vanilla": ({"num_loops": 1, "num_recurrent_layers": 2, "iter_adaln_rank": 0,
                 "num_coda_layers": 1}, "F32", 1),
    "f16": ({"num_prelude_layers": 1, "num_loops": 3, "num_key_value_heads": 2,
             "iter_adaln_rank": 4}, "F16", 1),
    "sharded": ({"num_prelude_layers": 1, "num_coda_layers": 1, "iter_adaln_rank": 8,
                 "exit_gate": True, "num_key_value_heads": 2, "num_loops": 3,
                 "tie_word_embeddings": False}, "F32", 2),
}

TARGET_LOGIT_STD = 3.0  # exit-head logit spread: peaky, not saturated
EMBED_STD = 0.15  # small: layer outputs, not the token's own embedding, dominate h



def fixture_config(name):
    over, dtype, shards = FIXTURES[name]
    raw = dict(_BASE)
    raw.update(over)
    return raw, dtype, shards


def fixture_seed(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def init_weights(raw_cfg, seed):
    """{name: float32 array} with O(1) activations and peaky exit heads."""
    cfg = complete_config(raw_cfg)
    rng = np.random.default_rng(seed)
    D = cfg["hidden_size"]
    out = {}
    for name, shape in sorted(expected_shapes(cfg).items()):
        if name.endswith("norm.weight") and name != "model.norm.weight":
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = EMBED_STD * rng.standard_normal(shape)
        elif name == "lm_head.weight":
            w = rng.standard_normal(shape) / np.sqrt(D)
        elif name.endswith("adaln.iter_embed"):
            w = EMBED_STD * rng.standard_normal(shape)
        elif name.endswith("adaln.up.weight"):
            w = 0.15 * rng.standard_normal(shape) / np.sqrt(shape[1])
        elif name.endswith("adaln.up.bias"):
            w = 0.05 * rng.standard_normal(shape)
        elif name == "model.exit_gate.weight":
            w = 2.0 * rng.standard_normal(shape) / np.sqrt(D)
        elif name == "model.exit_gate.bias":
            w = np.array([-1.0])
        elif name == "model.norm.weight":
            w = None  # set below, once the LM head is known
        else:  # projections, routers, experts: N(0, 1/fan_in)
            w = rng.standard_normal(shape) / np.sqrt(shape[-1])
        out[name] = w
    head = out["model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"]
    row = np.sqrt(np.mean(np.sum(head * head, axis=1)))  # logit std per unit-RMS input
    g = TARGET_LOGIT_STD / row
    out["model.norm.weight"] = g * (1.0 + 0.1 * rng.standard_normal(D))
    if cfg["exit_gate"]:  # the gate sees norm(h) too: undo the head scaling
        out["model.exit_gate.weight"] = out["model.exit_gate.weight"] / g
    return {k: v.astype(np.float32) for k, v in out.items()}
