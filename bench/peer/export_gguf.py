"""Writes a loopserve checkpoint as an unrolled llama.cpp `qwen3moe` GGUF.

A looped checkpoint with R recurrent layers and L loops and none of
IterAdaLN, exit gate, prelude or coda computes at full depth what a plain
model computes whose R*L layers are the recurrent ones repeated in loop order
(layer t*R+i = recurrent layer i, each instance with its own KV). MODEL_SPEC's
vanilla case with qk_norm, a softmax router, norm_topk_prob, no shared
experts and rotate-half RoPE is llama.cpp's qwen3moe (NEOX RoPE), so the same
weights run there. `--loops t` cuts the unrolled model after loop t: its
logits are the exit head z_{t-1} (final norm + LM head on the state after
loop t), which equals MODEL_SPEC's exit head because there is no coda.

Tensor layout: GGUF lists dimensions innermost first, the reverse of numpy's
order, and gguf-py reverses numpy shapes when it writes. So a numpy array is
written in the shape the HF/loopserve convention gives it: projections
[out, in], experts stacked as gate/up [E, I, D] and down [E, D, I] (llama.cpp
reads ne = {D, I, E} and {I, D, E}). Q/K are NOT permuted (that is only for
llama.cpp's interleaved-RoPE archs). Norms and the router are written F32,
as llama.cpp's convert_hf_to_gguf.py does; other tensors keep the
checkpoint's dtype (or --dtype). bf16 values are copied bit for bit.

No tokenizer: the GGUF declares tokenizer model "none" with `vocab_size`
dummy tokens; callers feed token ids (no BOS/EOS is added by anything).

  build-peer/venv/bin/python bench/peer/export_gguf.py --checkpoint DIR --out m.gguf
"""

import argparse
import json
import os
import sys

import numpy as np

_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference")
sys.path.insert(0, _REF)
from safetensors_io import f32_to_bf16_bits, load_checkpoint  # noqa: E402

import gguf  # noqa: E402  (from the peer venv)

ARCH = "qwen3moe"

# config field -> value it must have for qwen3moe to compute the same model.
_REQUIRED = {
    "num_prelude_layers": 0, "num_coda_layers": 0, "iter_adaln_rank": 0, "exit_gate": False,
    "recurrent_ffn": "moe", "num_shared_experts": 0, "router_score": "softmax",
    "norm_topk_prob": True, "routed_scaling_factor": 1.0, "qk_norm": True,
}
_DEFAULTS = {"num_prelude_layers": 0, "num_coda_layers": 0, "iter_adaln_rank": 0,
             "exit_gate": False, "recurrent_ffn": "moe", "num_shared_experts": 0,
             "router_score": "softmax", "norm_topk_prob": True, "routed_scaling_factor": 1.0,
             "qk_norm": False, "rope_theta": 10000.0, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-6, "tie_word_embeddings": True}


def check_exportable(cfg):
    """Raises ValueError naming the first field that qwen3moe cannot express."""
    if cfg.get("model_type") != "looped_moe":
        raise ValueError(f"model_type {cfg.get('model_type')!r}, expected 'looped_moe'")
    for key, want in _REQUIRED.items():
        got = cfg.get(key, _DEFAULTS[key])
        if got != want:
            raise ValueError(f"{key} = {got!r}: qwen3moe needs {want!r}")


class _Tensors:
    """The checkpoint's tensors as stored: bf16 stays uint16 bit patterns."""

    def __init__(self, ckpt_dir):
        self.arrays, self.dtypes = load_checkpoint(ckpt_dir, with_dtypes=True)
        self._stacks = {}  # the L unrolled copies of a layer share one array

    def get(self, name, out_dtype):
        """(array, GGMLQuantizationType) of `name` converted to out_dtype."""
        src = self.arrays[name]
        if out_dtype == "F32":
            return np.ascontiguousarray(src, dtype=np.float32), gguf.GGMLQuantizationType.F32
        if out_dtype == "F16":
            return np.ascontiguousarray(src, dtype=np.float16), gguf.GGMLQuantizationType.F16
        if out_dtype == "BF16":  # exact when the source is bf16 (f32 widened from it)
            return f32_to_bf16_bits(src), gguf.GGMLQuantizationType.BF16
        raise ValueError(out_dtype)

    def stacked(self, names, out_dtype):
        key = (tuple(names), out_dtype)
        if key not in self._stacks:
            arrays = [self.get(n, out_dtype) for n in names]
            self._stacks[key] = (np.ascontiguousarray(np.stack([a for a, _ in arrays])),
                                 arrays[0][1])
        return self._stacks[key]


def _file_type(dtype):
    return {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
            "BF16": gguf.LlamaFileType.MOSTLY_BF16}[dtype]


def export(ckpt_dir, out_path, loops=None, dtype="source"):
    """Writes the GGUF; returns (number of unrolled layers, weight dtype)."""
    with open(os.path.join(ckpt_dir, "config.json")) as f:
        cfg = json.load(f)
    check_exportable(cfg)
    c = dict(_DEFAULTS)
    c.update(cfg)
    R, L = c["num_recurrent_layers"], c["num_loops"]
    loops = L if loops is None else loops
    if not 1 <= loops <= L:
        raise ValueError(f"--loops {loops}: the checkpoint has {L} loops")
    D, H = c["hidden_size"], c["num_attention_heads"]
    head_dim = c.get("head_dim", D // H)
    tensors = _Tensors(ckpt_dir)
    if dtype == "source":
        dtype = tensors.dtypes["model.recurrent.0.self_attn.q_proj.weight"]
    n_layers = R * loops

    w = gguf.GGUFWriter(out_path, ARCH)
    w.add_name(os.path.basename(os.path.normpath(ckpt_dir)) + f"-unrolled-{loops}loops")
    w.add_file_type(_file_type(dtype))
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(D)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(c["moe_intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(float(c["rope_theta"]))
    w.add_layer_norm_rms_eps(float(c["rms_norm_eps"]))
    w.add_expert_count(c["num_experts"])
    w.add_expert_used_count(c["num_experts_per_tok"])
    w.add_expert_feed_forward_length(c["moe_intermediate_size"])
    w.add_expert_weights_norm(True)
    w.add_vocab_size(c["vocab_size"])
    w.add_tokenizer_model("none")

    names = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR

    def add(gguf_name, arr_qtype):
        arr, qtype = arr_qtype
        w.add_tensor(gguf_name, arr, raw_dtype=qtype)

    add(names[T.TOKEN_EMBD] + ".weight", tensors.get("model.embed_tokens.weight", dtype))
    add(names[T.OUTPUT_NORM] + ".weight", tensors.get("model.norm.weight", "F32"))
    if not c["tie_word_embeddings"]:
        add(names[T.OUTPUT] + ".weight", tensors.get("lm_head.weight", dtype))
    E = c["num_experts"]
    for layer in range(n_layers):
        src = f"model.recurrent.{layer % R}."

        def name(t, bid=layer):
            return names[t].format(bid=bid) + ".weight"

        add(name(T.ATTN_NORM), tensors.get(src + "input_layernorm.weight", "F32"))
        add(name(T.ATTN_Q), tensors.get(src + "self_attn.q_proj.weight", dtype))
        add(name(T.ATTN_K), tensors.get(src + "self_attn.k_proj.weight", dtype))
        add(name(T.ATTN_V), tensors.get(src + "self_attn.v_proj.weight", dtype))
        add(name(T.ATTN_OUT), tensors.get(src + "self_attn.o_proj.weight", dtype))
        add(name(T.ATTN_Q_NORM), tensors.get(src + "self_attn.q_norm.weight", "F32"))
        add(name(T.ATTN_K_NORM), tensors.get(src + "self_attn.k_norm.weight", "F32"))
        add(name(T.FFN_NORM), tensors.get(src + "post_attention_layernorm.weight", "F32"))
        add(name(T.FFN_GATE_INP), tensors.get(src + "mlp.gate.weight", "F32"))
        for t, proj in ((T.FFN_GATE_EXP, "gate_proj"), (T.FFN_UP_EXP, "up_proj"),
                        (T.FFN_DOWN_EXP, "down_proj")):
            experts = [f"{src}mlp.experts.{e}.{proj}.weight" for e in range(E)]
            add(name(t), tensors.stacked(experts, dtype))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_layers, dtype


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="loopserve checkpoint directory")
    ap.add_argument("--out", required=True, help="GGUF file to write")
    ap.add_argument("--loops", type=int, default=None,
                    help="unroll this many loops (default: all; fewer = the exit head z_{loops-1})")
    ap.add_argument("--dtype", choices=["source", "F32", "F16", "BF16"], default="source",
                    help="dtype of the matrices (norms and router are always F32)")
    a = ap.parse_args()
    try:
        n_layers, dtype = export(a.checkpoint, a.out, a.loops, a.dtype)
    except ValueError as e:
        print(f"export_gguf: {a.checkpoint}: {e}", file=sys.stderr)
        return 1
    print(f"{a.out}: qwen3moe, {n_layers} layers, {dtype}, "
          f"{os.path.getsize(a.out) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
