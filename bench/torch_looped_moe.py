#!/usr/bin/python3
"""The looped-MoE forward (MODEL_SPEC.md, full depth, no exit) in PyTorch eager,
timed the way bench/engine_bench.cc times loopserve: prefill tokens/s of B
prompts of P tokens, and decode tokens/s of B sequences decoding one token per
step after a short prompt.

The model code is what a Hugging Face port would do: nn-free F.linear calls,
a contiguous per-layer-instance KV cache [B, Hkv, T, d], repeat_kv for GQA,
rotate-half RoPE, and Mixtral-style MoE (softmax router, top-k, renormalise,
then per expert: torch.where over the one-hot mask, index the tokens, run the
expert, index_add_ the weighted output).

--weights bf16 keeps the checkpoint's bf16 weights and runs each matmul in
bf16 (oneDNN, f32 accumulation; everything else f32); --weights f32 widens
them to f32 (Debian's torch then calls the system BLAS). The benchmark uses
whichever is faster (see docs/benchmarks.md).

  /usr/bin/python3 bench/torch_looped_moe.py --model DIR --threads 2 --mode decode --batch 8
  /usr/bin/python3 bench/torch_looped_moe.py --model DIR --check_logits FILE  # vs engine_bench
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from looped_moe import complete_config  # noqa: E402
from safetensors_io import load_checkpoint  # noqa: E402


def prompt_ids(batch, length, vocab):
    """Same deterministic prompts as engine_bench.cc (PromptIds)."""
    return [[(1 + 7919 * p + 104729 * b) % vocab for p in range(length)] for b in range(batch)]


class LoopedMoe:
    def __init__(self, directory, weights_dtype):
        with open(os.path.join(directory, "config.json")) as f:
            self.cfg = c = complete_config(json.load(f))
        raw = load_checkpoint(directory)
        self.wdt = torch.bfloat16 if weights_dtype == "bf16" else torch.float32
        self.w = {}
        for name, arr in raw.items():
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            is_matrix = t.dim() == 2 and name != "model.embed_tokens.weight"
            self.w[name] = t.to(self.wdt) if is_matrix else t
        if c["tie_word_embeddings"]:
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"].to(self.wdt)
        self.D, self.H = c["hidden_size"], c["num_attention_heads"]
        self.Hkv = c["num_key_value_heads"]
        self.d = c["head_dim"]
        self.eps = c["rms_norm_eps"]
        self.L = c["num_loops"]
        d = self.d
        inv = c["rope_theta"] ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2.0 / d)
        ang = torch.arange(c["max_position_embeddings"], dtype=torch.float64)[:, None] * inv
        self.cos, self.sin = ang.cos().float(), ang.sin().float()
        self.layers = []  # (part, i, loop) in execution order
        for i in range(c["num_prelude_layers"]):
            self.layers.append(("prelude", i, 0))
        for t in range(self.L):
            for i in range(c["num_recurrent_layers"]):
                self.layers.append(("recurrent", i, t))
        for i in range(c["num_coda_layers"]):
            self.layers.append(("coda", i, 0))

    def linear(self, x, name):
        w = self.w[name]
        if w.dtype == torch.float32:
            return F.linear(x, w)
        return F.linear(x.to(w.dtype), w).float()

    def rmsnorm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w[name]

    def rope(self, x, pos0):  # x [B, T, h, d]
        T, half = x.shape[1], self.d // 2
        cos = self.cos[pos0:pos0 + T][None, :, None, :]
        sin = self.sin[pos0:pos0 + T][None, :, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def new_cache(self, batch, max_len):
        return {key: (torch.zeros(batch, self.Hkv, max_len, self.d),
                      torch.zeros(batch, self.Hkv, max_len, self.d)) for key in self.layers}

    def attention(self, p, x, pos0, kv):
        B, T, _ = x.shape
        H, Hkv, d = self.H, self.Hkv, self.d
        q = self.linear(x, p + "self_attn.q_proj.weight").view(B, T, H, d)
        k = self.linear(x, p + "self_attn.k_proj.weight").view(B, T, Hkv, d)
        v = self.linear(x, p + "self_attn.v_proj.weight").view(B, T, Hkv, d)
        if self.cfg["qk_norm"]:
            q = self.rmsnorm(q, p + "self_attn.q_norm.weight")
            k = self.rmsnorm(k, p + "self_attn.k_norm.weight")
        q, k = self.rope(q, pos0), self.rope(k, pos0)
        kc, vc = kv
        kc[:, :, pos0:pos0 + T] = k.transpose(1, 2)
        vc[:, :, pos0:pos0 + T] = v.transpose(1, 2)
        S = pos0 + T
        K = kc[:, :, :S].repeat_interleave(H // Hkv, dim=1)  # repeat_kv: [B, H, S, d]
        V = vc[:, :, :S].repeat_interleave(H // Hkv, dim=1)
        scores = q.transpose(1, 2) @ K.transpose(2, 3) / math.sqrt(d)  # [B, H, T, S]
        if T > 1:
            mask = torch.arange(S)[None, :] > (pos0 + torch.arange(T))[:, None]
            scores = scores.masked_fill(mask, float("-inf"))
        o = (scores.softmax(-1) @ V).transpose(1, 2).reshape(B, T, H * d)
        return self.linear(o, p + "self_attn.o_proj.weight")

    def swiglu(self, p, x):
        return self.linear(F.silu(self.linear(x, p + "gate_proj.weight")) *
                           self.linear(x, p + "up_proj.weight"), p + "down_proj.weight")

    def moe(self, p, x):
        c = self.cfg
        B, T, D = x.shape
        flat = x.reshape(-1, D)
        logits = self.linear(flat, p + "mlp.gate.weight")
        scores = logits.softmax(-1) if c["router_score"] == "softmax" else logits.sigmoid()
        topw, topi = torch.topk(scores, c["num_experts_per_tok"], dim=-1)
        if c["norm_topk_prob"]:
            topw = topw / topw.sum(-1, keepdim=True)
        topw = topw * c["routed_scaling_factor"]
        out = torch.zeros_like(flat)
        mask = F.one_hot(topi, c["num_experts"]).permute(2, 1, 0)  # [E, k, N]
        for e in range(c["num_experts"]):
            idx, rows = torch.where(mask[e])
            if rows.numel() == 0:
                continue
            y = self.swiglu(f"{p}mlp.experts.{e}.", flat[rows]) * topw[rows, idx, None]
            out.index_add_(0, rows, y)
        for s in range(c["num_shared_experts"]):
            out += self.swiglu(f"{p}mlp.shared_experts.{s}.", flat)
        return out.view(B, T, D)

    def block(self, part, i, x, pos0, kv):
        p = f"model.{part}.{i}."
        h = x + self.attention(p, self.rmsnorm(x, p + "input_layernorm.weight"), pos0, kv)
        hn = self.rmsnorm(h, p + "post_attention_layernorm.weight")
        ffn = self.cfg[part + "_ffn"]
        return h + (self.moe(p, hn) if ffn == "moe" else self.swiglu(p + "mlp.", hn))

    @torch.no_grad()
    def forward(self, ids, pos0, cache):
        """ids [B, T] at positions pos0.. -> full-depth logits of the last position [B, V]."""
        x = self.w["model.embed_tokens.weight"][ids]
        for part, i, t in self.layers:
            x = self.block(part, i, x, pos0, cache[(part, i, t)])
        last = self.rmsnorm(x[:, -1], "model.norm.weight")
        return self.linear(last, "lm_head.weight")


def time_prefill(model, batch, plen, reps):
    ids = torch.tensor(prompt_ids(batch, plen, model.cfg["vocab_size"]))
    times = []
    for r in range(reps + 1):  # the first run warms oneDNN's primitive cache
        cache = model.new_cache(batch, plen)
        t0 = time.perf_counter()
        model.forward(ids, 0, cache)
        if r:
            times.append(time.perf_counter() - t0)
    return batch * plen / statistics.median(times)


def time_decode(model, batch, plen, steps, reps):
    ids = torch.tensor(prompt_ids(batch, plen, model.cfg["vocab_size"]))
    times = []
    for r in range(reps + 1):
        cache = model.new_cache(batch, plen + steps + 1)
        nxt = model.forward(ids, 0, cache).argmax(-1, keepdim=True)
        pos = plen
        t0 = time.perf_counter()
        for _ in range(steps):
            nxt = model.forward(nxt, pos, cache).argmax(-1, keepdim=True)
            pos += 1
        if r:
            times.append(time.perf_counter() - t0)
    return batch * steps / statistics.median(times)


def check_logits(model, path, plen):
    """Compares with the engine's z_{L-1} of the last prompt position (engine_bench check)."""
    want = np.fromfile(path, dtype=np.float32)
    ids = torch.tensor(prompt_ids(1, plen, model.cfg["vocab_size"]))
    got = model.forward(ids, 0, model.new_cache(1, plen))[0].numpy()
    rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    top_same = int(np.argmax(got)) == int(np.argmax(want))
    print(f"check: max|torch-engine| / max|engine| = {rel:.2e} over {want.size} logits, "
          f"argmax {'equal' if top_same else 'DIFFERENT'}")
    return rel


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--mode", choices=["prefill", "decode"], default="decode")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt_len", type=int, default=16)
    ap.add_argument("--decode_steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    ap.add_argument("--check_logits", default="", help="engine logits file: compare, then exit")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = LoopedMoe(args.model, args.weights)
    if args.check_logits:
        sys.exit(0 if check_logits(model, args.check_logits, args.prompt_len) <= args.tolerance
                 else 1)
    if args.mode == "prefill":
        tps = time_prefill(model, args.batch, args.prompt_len, args.reps)
    else:
        tps = time_decode(model, args.batch, args.prompt_len, args.decode_steps, args.reps)
    print("RESULT " + json.dumps({
        "side": f"torch-{args.weights}", "model": os.path.basename(os.path.normpath(args.model)),
        "mode": args.mode, "batch": args.batch, "prompt_len": args.prompt_len,
        "threads": args.threads, "tok_s": round(tps, 2)}))


if __name__ == "__main__":
    main()
