"""PyTorch training module of the `looped_moe` model (MODEL_SPEC.md v1).

Parameter names are the checkpoint tensor names of MODEL_SPEC "Tensor names"
(the module tree is laid out so that `state_dict()` keys match them; with tied
embeddings there is no lm_head parameter). The training forward runs whole
sequences causally (no KV cache) and returns the exit-head logits
z_t = LMHead(norm(Coda(h_t))) at every loop boundary t = 0..L-1, with the
reference's prefill semantics: z_{L-1} is the full-depth pass, and z_t for
t < L-1 is a probe whose coda attends to its own fresh K/V and to the coda K/V
that earlier positions stored at full depth (so the per-loop losses train the
exit heads the way the engine evaluates them).

Only the subset of the spec the demo uses beyond the defaults is supported
here: softmax or sigmoid router, shared experts, IterAdaLN, qk_norm, tied or
untied head. The exit gate is not implemented (exit_gate must be false).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    # x [..., n] -> x / sqrt(mean(x^2) + eps) * w, in fp32 (fp64 when x is fp64)
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        xf = x if x.dtype == torch.float64 else x.float()
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, d, theta, device=None):
    # cos, sin [T, d/2]; pairs (i, i + d/2), inv_freq = theta^(-2i/d)
    inv = theta ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2.0 / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv
    return ang.cos().to(device), ang.sin().to(device)  # float64; cast by the caller


def apply_rope(x, cos, sin):
    # x [B, heads, T, d] rotate-half
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, H, Hkv, d = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.H, self.Hkv, self.d = H, Hkv, d
        self.q_proj = nn.Linear(D, H * d, bias=False)
        self.k_proj = nn.Linear(D, Hkv * d, bias=False)
        self.v_proj = nn.Linear(D, Hkv * d, bias=False)
        self.o_proj = nn.Linear(H * d, D, bias=False)
        if c["qk_norm"]:
            self.q_norm = RMSNorm(d, c["rms_norm_eps"])
            self.k_norm = RMSNorm(d, c["rms_norm_eps"])
        self.qk_norm = c["qk_norm"]

    def forward(self, x, cos, sin, mask):
        # x [B, T, D] -> [B, T, D], causal over T
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        grp = self.H // self.Hkv
        if grp > 1:  # head h uses kv head h // grp
            k = k.repeat_interleave(grp, dim=1)
            v = v.repeat_interleave(grp, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.d)
        s = s.masked_fill(mask, float("-inf"))
        o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.H * self.d))


    def probe(self, x, x_full, cos, sin):
        """The exit-head probe of MODEL_SPEC / tests/reference: position p attends to the
        K/V of the stored (full-depth) pass at positions < p and to its own fresh K/V.
        x, x_full [B, T, D] (normalised inputs of the probe and of the stored pass) -> [B, T, D]."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.d).transpose(1, 2)
        kp = self.k_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)
        vp = self.v_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)
        kf = self.k_proj(x_full).view(B, T, self.Hkv, self.d).transpose(1, 2)
        vf = self.v_proj(x_full).view(B, T, self.Hkv, self.d).transpose(1, 2)
        if self.qk_norm:
            q, kp, kf = self.q_norm(q), self.k_norm(kp), self.k_norm(kf)
        q, kp, kf = (apply_rope(u, cos, sin) for u in (q, kp, kf))
        grp = self.H // self.Hkv
        if grp > 1:
            kp, vp, kf, vf = (u.repeat_interleave(grp, dim=1) for u in (kp, vp, kf, vf))
        scale = 1.0 / math.sqrt(self.d)
        sf = (q @ kf.transpose(-1, -2)) * scale                      # [B, H, T, T]
        strict = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(0)
        sf = sf.masked_fill(strict, float("-inf"))                    # keys j < p only
        sd = (q * kp).sum(-1, keepdim=True) * scale                   # own key
        p = torch.softmax(torch.cat([sf, sd], -1), dim=-1)
        o = p[..., :T] @ vf + p[..., T:] * vp
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.H * self.d))


class SwiGLU(nn.Module):
    def __init__(self, D, I):
        super().__init__()
        self.gate_proj = nn.Linear(D, I, bias=False)
        self.up_proj = nn.Linear(D, I, bias=False)
        self.down_proj = nn.Linear(I, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, E, Im = c["hidden_size"], c["num_experts"], c["moe_intermediate_size"]
        self.gate = nn.Linear(D, E, bias=False)  # router
        self.experts = nn.ModuleList(SwiGLU(D, Im) for _ in range(E))
        if c["num_shared_experts"]:
            self.shared_experts = nn.ModuleList(SwiGLU(D, Im) for _ in range(c["num_shared_experts"]))
        self.c = c
        self.aux = []  # load-balancing losses of the calls since the last reset

    def forward(self, x):
        # x [B, T, D] -> [B, T, D]
        c = self.c
        shp = x.shape
        xf = x.reshape(-1, shp[-1])
        logits = self.gate(xf)
        lf = logits if logits.dtype == torch.float64 else logits.float()
        s = torch.softmax(lf, -1) if c["router_score"] == "softmax" else torch.sigmoid(lf)
        k, E = c["num_experts_per_tok"], c["num_experts"]
        w, top = torch.topk(s, k, dim=-1)
        if c["norm_topk_prob"]:
            w = w / w.sum(-1, keepdim=True)
        y = torch.zeros_like(xf)
        for e in range(E):
            tok, slot = torch.where(top == e)
            if tok.numel() == 0:
                continue
            y.index_add_(0, tok, self.experts[e](xf[tok]) * w[tok, slot, None])
        y = y * c["routed_scaling_factor"]
        for se in getattr(self, "shared_experts", []):
            y = y + se(xf)
        # Switch-style balance loss: E * sum_e (fraction routed to e) * (mean score of e)
        frac = torch.zeros(E, device=x.device).index_add_(
            0, top.reshape(-1), torch.ones(top.numel(), device=x.device)) / top.numel()
        p = s / s.sum(-1, keepdim=True)
        self.aux.append(E * (frac * p.mean(0)).sum())
        return y.view(shp)


class IterAdaLN(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, r, L = c["hidden_size"], c["iter_adaln_rank"], c["num_loops"]
        self.down = nn.Linear(D, r, bias=False)
        self.iter_embed = nn.Parameter(torch.randn(L, r) * 0.02)
        self.up = nn.Linear(r, 6 * D, bias=True)
        nn.init.zeros_(self.up.weight)  # starts as the plain block
        nn.init.zeros_(self.up.bias)

    def forward(self, x, t):
        # x [B, T, D] -> 6 x [B, T, D]: sa, ca, ga, sf, cf, gf
        c = F.silu(self.down(x) + self.iter_embed[t])
        return self.up(c).chunk(6, dim=-1)


class Block(nn.Module):
    def __init__(self, c, ffn, adaln):
        super().__init__()
        D, eps = c["hidden_size"], c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(D, eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(D, eps)
        self.mlp = MoE(c) if ffn == "moe" else SwiGLU(D, c["intermediate_size"])
        if adaln:
            self.adaln = IterAdaLN(c)

    def forward(self, x, cos, sin, mask, t=0):
        if hasattr(self, "adaln"):
            sa, ca, ga, sf, cf, gf = self.adaln(x, t)
            h = x + (1 + ga) * self.self_attn(self.input_layernorm(x) * (1 + ca) + sa, cos, sin, mask)
            return h + (1 + gf) * self.mlp(self.post_attention_layernorm(h) * (1 + cf) + sf)
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))

    def probe(self, x, x_full, cos, sin):
        # plain (coda) block as a probe over the stored pass whose input was x_full
        h = x + self.self_attn.probe(self.input_layernorm(x), self.input_layernorm(x_full), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        r = c["iter_adaln_rank"]
        self.prelude = nn.ModuleList(Block(c, c["prelude_ffn"], False) for _ in range(c["num_prelude_layers"]))
        self.recurrent = nn.ModuleList(Block(c, c["recurrent_ffn"], r > 0) for _ in range(c["num_recurrent_layers"]))
        self.coda = nn.ModuleList(Block(c, c["coda_ffn"], False) for _ in range(c["num_coda_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LoopedMoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        if c.get("exit_gate"):
            raise ValueError("exit_gate is not implemented by the demo trainer")
        self.c = c
        self.model = Inner(c)
        if not c["tie_word_embeddings"]:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self._init()

    def _init(self):
        c = self.c
        depth = c["num_prelude_layers"] + c["num_recurrent_layers"] * c["num_loops"] + c["num_coda_layers"]
        for name, p in self.named_parameters():
            if "adaln.up" in name or "adaln.iter_embed" in name or p.dim() < 2:
                continue
            std = 0.02 / math.sqrt(2 * depth) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            nn.init.normal_(p, std=std)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.c["tie_word_embeddings"] else self.lm_head.weight

    def forward(self, ids, loops=None):
        """ids [B, T] -> (logits [L, B, T, V], hidden [L, B, T, D], moe aux loss (scalar))."""
        c = self.c
        L = loops or c["num_loops"]
        B, T = ids.shape
        cos, sin = rope_tables(T, c["head_dim"], c["rope_theta"], ids.device)
        mask = torch.ones(T, T, dtype=torch.bool, device=ids.device).triu(1)
        x = self.model.embed_tokens(ids)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        moes = [m for m in self.modules() if isinstance(m, MoE)]
        for m in moes:
            m.aux = []
        for blk in self.model.prelude:
            x = blk(x, cos, sin, mask)
        hs = []
        for t in range(L):
            for blk in self.model.recurrent:
                x = blk(x, cos, sin, mask, t)
            hs.append(x)
        hid = torch.stack(hs)                         # [L, B, T, D]
        # Full depth: the coda on h_{L-1}; its per-layer inputs are what the stored coda
        # K/V of earlier positions are computed from (prefill semantics of the reference).
        y, full_in = hs[-1], []
        for blk in self.model.coda:
            full_in.append(y)
            y = blk(y, cos, sin, mask)
        outs = [y]
        if L > 1:
            # Boundaries t < L-1 are probes: position p's coda sees its own h_t and the
            # stored full-depth coda K/V of positions < p. All boundaries batched at once.
            yp = hid[:-1].reshape((L - 1) * B, T, -1)
            for blk, xf in zip(self.model.coda, full_in):
                yp = blk.probe(yp, xf.repeat(L - 1, 1, 1), cos, sin)
            outs.insert(0, yp)
        y = torch.cat(outs, 0)
        logits = F.linear(self.model.norm(y), self.head_weight()).view(L, B, T, -1)
        aux = [a for m in moes for a in m.aux]
        return logits, hid, (sum(aux) / len(aux) if aux else torch.zeros(()))
