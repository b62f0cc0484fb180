"""Numpy (float64) reference of the looped_moe model of docs MODEL_SPEC.md.

What is here: config loading with the spec defaults, strict weight checking,
the layer math (RMSNorm, GQA attention with qk-norm and rotate-half RoPE,
SwiGLU, MoE, IterAdaLN), a KV cache keyed by layer instance, the exit head
z_t = LMHead(norm(Coda(h_t))), the exit gate, and the full-depth (prefill /
teacher-forced scoring) forward. The early-exit decode step lives in
exit_policy.py.

Tokens are processed strictly one at a time. Layer instances (KV cache keys):
("prelude", i), ("recurrent", i, t), ("coda", i).
"""

import json
import os

import numpy as np

import safetensors_io

CONFIG_DEFAULTS = {
    "head_dim": None, "rope_theta": 10000.0, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6, "qk_norm": False, "num_prelude_layers": 0, "num_coda_layers": 0,
    "prelude_ffn": "dense", "recurrent_ffn": "moe", "coda_ffn": "dense",
    "intermediate_size": None, "num_experts": None, "num_experts_per_tok": None,
    "moe_intermediate_size": None, "num_shared_experts": 0, "router_score": "softmax",
    "norm_topk_prob": True, "routed_scaling_factor": 1.0, "iter_adaln_rank": 0,
    "exit_gate": False, "tie_word_embeddings": True,
}
CONFIG_REQUIRED = ("model_type", "vocab_size", "hidden_size", "num_attention_heads",
                   "num_recurrent_layers", "num_loops")
PARTS = ("prelude", "recurrent", "coda")


def complete_config(raw):
    """Spec defaults applied; derived head_dim / num_key_value_heads filled; validated."""
    for k in CONFIG_REQUIRED:
        if k not in raw:
            raise ValueError(f"config.json: missing required field {k}")
    if raw["model_type"] != "looped_moe":
        raise ValueError(f"config.json: model_type {raw['model_type']!r} != 'looped_moe'")
    cfg = dict(CONFIG_DEFAULTS)
    cfg.update(raw)
    if cfg.get("num_key_value_heads") is None:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    if cfg["head_dim"] is None:
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise ValueError("config.json: num_attention_heads % num_key_value_heads != 0")
    if cfg["head_dim"] % 2:
        raise ValueError("config.json: head_dim must be even (rotate-half RoPE)")
    for part in PARTS:
        kind = cfg[f"{part}_ffn"]
        if kind not in ("dense", "moe"):
            raise ValueError(f"config.json: {part}_ffn must be dense or moe, not {kind!r}")
        need = (("intermediate_size",) if kind == "dense" else
                ("num_experts", "num_experts_per_tok", "moe_intermediate_size"))
        if num_layers(cfg, part) > 0:
            for k in need:
                if cfg[k] is None:
                    raise ValueError(f"config.json: {k} required ({part}_ffn = {kind})")
    if cfg["router_score"] not in ("softmax", "sigmoid"):
        raise ValueError(f"config.json: router_score {cfg['router_score']!r}")
    return cfg


def num_layers(cfg, part):
    return cfg[f"num_{part}_layers"]


def expected_shapes(cfg):
    """{tensor name: shape} the checkpoint must hold, exactly."""
    V, D, H, Hkv, d = (cfg[k] for k in ("vocab_size", "hidden_size", "num_attention_heads",
                                         "num_key_value_heads", "head_dim"))
    r, L = cfg["iter_adaln_rank"], cfg["num_loops"]
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, D)
    if cfg["exit_gate"]:
        shapes["model.exit_gate.weight"] = (1, D)
        shapes["model.exit_gate.bias"] = (1,)
    for part in PARTS:
        for i in range(num_layers(cfg, part)):
            p = f"model.{part}.{i}."
            shapes.update({p + "input_layernorm.weight": (D,),
                           p + "post_attention_layernorm.weight": (D,),
                           p + "self_attn.q_proj.weight": (H * d, D),
                           p + "self_attn.k_proj.weight": (Hkv * d, D),
                           p + "self_attn.v_proj.weight": (Hkv * d, D),
                           p + "self_attn.o_proj.weight": (D, H * d)})
            if cfg["qk_norm"]:
                shapes[p + "self_attn.q_norm.weight"] = (d,)
                shapes[p + "self_attn.k_norm.weight"] = (d,)
            if cfg[f"{part}_ffn"] == "dense":
                I = cfg["intermediate_size"]
                shapes.update({p + "mlp.gate_proj.weight": (I, D), p + "mlp.up_proj.weight": (I, D),
                               p + "mlp.down_proj.weight": (D, I)})
            else:
                E, Im = cfg["num_experts"], cfg["moe_intermediate_size"]
                shapes[p + "mlp.gate.weight"] = (E, D)
                experts = [f"experts.{e}" for e in range(E)]
                experts += [f"shared_experts.{s}" for s in range(cfg["num_shared_experts"])]
                for ex in experts:
                    shapes.update({p + f"mlp.{ex}.gate_proj.weight": (Im, D),
                                   p + f"mlp.{ex}.up_proj.weight": (Im, D),
                                   p + f"mlp.{ex}.down_proj.weight": (D, Im)})
            if part == "recurrent" and r > 0:
                shapes.update({p + "adaln.down.weight": (r, D), p + "adaln.iter_embed": (L, r),
                               p + "adaln.up.weight": (6 * D, r), p + "adaln.up.bias": (6 * D,)})
    return shapes


def check_weights(cfg, weights):
    exp = expected_shapes(cfg)
    errors = []
    for name, shape in exp.items():
        if name not in weights:
            errors.append(f"tensor {name}: missing, expected {list(shape)}")
        elif tuple(weights[name].shape) != tuple(shape):
            errors.append(f"tensor {name}: expected {list(shape)}, found "
                          f"{list(weights[name].shape)}")
    errors += [f"tensor {n}: unexpected (found {list(weights[n].shape)})"
               for n in sorted(set(weights) - set(exp))]
    if errors:
        raise ValueError("; ".join(errors))


def load(directory):
    """Model from a checkpoint directory (config.json + safetensors, possibly sharded)."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = complete_config(json.load(f))
    return Model(cfg, safetensors_io.load_checkpoint(directory))


# ---------------------------------------------------------------- layer math

def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_softmax(z):
    m = z - np.max(z)
    return m - np.log(np.sum(np.exp(m)))


def softmax(z):
    return np.exp(log_softmax(z))


def rope(x, pos, theta):
    """x [heads, d] -> rotated at position pos; pairs (i, i + d/2), inv_freq = theta^(-2i/d)."""
    d = x.shape[-1]
    inv_freq = theta ** (-np.arange(0, d // 2, dtype=np.float64) * 2.0 / d)
    ang = pos * inv_freq
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def swiglu(w, prefix, x):
    g = w[prefix + "gate_proj.weight"] @ x
    u = w[prefix + "up_proj.weight"] @ x
    return w[prefix + "down_proj.weight"] @ (silu(g) * u)


def topk_lower_index(scores, k):
    """Indices of the k largest scores, descending; ties go to the lower index."""
    return np.argsort(-scores, kind="stable")[:k]


class KVCache:
    """Per layer instance: K, V [max_pos, Hkv, d] and the count of committed positions.

    A write to position p requires exactly p committed positions (strictly
    sequential); an uncommitted write (a probe) is scratch at slot p.
    """

    def __init__(self, max_pos, hkv, d):
        self.max_pos, self.hkv, self.d = max_pos, hkv, d
        self.slots = {}

    def _slot(self, key):
        if key not in self.slots:
            self.slots[key] = [np.zeros((self.max_pos, self.hkv, self.d)),
                               np.zeros((self.max_pos, self.hkv, self.d)), 0]
        return self.slots[key]

    def write(self, key, pos, k, v, commit):
        s = self._slot(key)
        if s[2] != pos:
            raise RuntimeError(f"KV instance {key}: write at {pos} with {s[2]} positions stored")
        s[0][pos], s[1][pos] = k, v
        if commit:
            s[2] = pos + 1

    def keys_values(self, key, upto):
        """K, V of positions [0, upto] (slot `upto` = the fresh, possibly uncommitted write)."""
        s = self.slots[key]
        return s[0][: upto + 1], s[1][: upto + 1]

    def read(self, key, pos):
        s = self.slots[key]
        if pos >= s[2]:
            raise RuntimeError(f"KV instance {key}: position {pos} not stored")
        return s[0][pos].copy(), s[1][pos].copy()

    def count(self, key):
        return self.slots[key][2] if key in self.slots else 0

    def copy(self):
        c = KVCache(self.max_pos, self.hkv, self.d)
        c.slots = {k: [s[0].copy(), s[1].copy(), s[2]] for k, s in self.slots.items()}
        return c


class Sequence:
    """The state of one sequence: its KV cache and the next position to process."""

    def __init__(self, model, max_pos=256):
        c = model.cfg
        self.cache = KVCache(max_pos, c["num_key_value_heads"], c["head_dim"])
        self.pos = 0

    def copy(self):
        s = Sequence.__new__(Sequence)
        s.cache, s.pos = self.cache.copy(), self.pos
        return s


class Model:
    def __init__(self, cfg, weights):
        check_weights(cfg, weights)
        self.cfg = cfg
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.eps = cfg["rms_norm_eps"]
        self.L = cfg["num_loops"]
        self.lm_head = self.w["model.embed_tokens.weight" if cfg["tie_word_embeddings"]
                              else "lm_head.weight"]
        # Robustness probe for goldens: smallest (k-th - (k+1)-th) router score
        # gap seen since the last reset (inf with no MoE or k = E).
        self.min_router_gap = np.inf

    # ------------------------------------------------------------ blocks

    def modulation(self, i, x, t):
        """IterAdaLN of recurrent layer i at loop t from block input x: (sa, ca, ga, sf, cf, gf)."""
        if t >= self.L:
            raise ValueError(f"IterAdaLN: loop {t} beyond num_loops {self.L}")
        p = f"model.recurrent.{i}.adaln."
        c = silu(self.w[p + "down.weight"] @ x + self.w[p + "iter_embed"][t])
        m = self.w[p + "up.weight"] @ c + self.w[p + "up.bias"]
        return np.split(m, 6)

    def kv_proj(self, prefix, x_normed, pos):
        """k, v [Hkv, d] of a layer for a (normalised, modulated) input at pos."""
        c = self.cfg
        k = (self.w[prefix + "self_attn.k_proj.weight"] @ x_normed).reshape(
            c["num_key_value_heads"], c["head_dim"])
        v = (self.w[prefix + "self_attn.v_proj.weight"] @ x_normed).reshape(
            c["num_key_value_heads"], c["head_dim"])
        if c["qk_norm"]:
            k = rmsnorm(k, self.w[prefix + "self_attn.k_norm.weight"], self.eps)
        return rope(k, pos, c["rope_theta"]), v

    def attention(self, prefix, x_normed, pos, cache, key, commit):
        c = self.cfg
        H, Hkv, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        q = (self.w[prefix + "self_attn.q_proj.weight"] @ x_normed).reshape(H, d)
        if c["qk_norm"]:
            q = rmsnorm(q, self.w[prefix + "self_attn.q_norm.weight"], self.eps)
        q = rope(q, pos, c["rope_theta"])
        k, v = self.kv_proj(prefix, x_normed, pos)
        cache.write(key, pos, k, v, commit)
        K, V = cache.keys_values(key, pos)             # [n, Hkv, d]
        grp = H // Hkv
        Kh = np.repeat(K, grp, axis=1)                 # [n, H, d]: head h uses kv head h // grp
        Vh = np.repeat(V, grp, axis=1)
        scores = np.einsum("hd,nhd->hn", q, Kh) / np.sqrt(d)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        o = np.einsum("hn,nhd->hd", p, Vh).reshape(H * d)
        return self.w[prefix + "self_attn.o_proj.weight"] @ o

    def moe(self, prefix, x):
        """(y, selected experts in descending score order)."""
        c = self.cfg
        logits = self.w[prefix + "mlp.gate.weight"] @ x
        if c["router_score"] == "softmax":
            s = softmax(logits)
        else:
            s = sigmoid(logits)
        k = c["num_experts_per_tok"]
        top = topk_lower_index(s, k)
        if k < len(s):
            srt = np.sort(s)[::-1]
            self.min_router_gap = min(self.min_router_gap, srt[k - 1] - srt[k])
        wts = s[top]
        if c["norm_topk_prob"]:
            wts = wts / wts.sum()
        y = np.zeros_like(x)
        for e, we in zip(top, wts):
            y += we * swiglu(self.w, prefix + f"mlp.experts.{e}.", x)
        y *= c["routed_scaling_factor"]
        for s_ in range(c["num_shared_experts"]):
            y += swiglu(self.w, prefix + f"mlp.shared_experts.{s_}.", x)
        return y, top

    def block(self, part, i, x, pos, cache, t=0, commit=True, routers=None):
        """One transformer block of `part` layer i (loop t for recurrent) at pos."""
        prefix = f"model.{part}.{i}."
        key = (part, i, t) if part == "recurrent" else (part, i)
        mod = (self.modulation(i, x, t)
               if part == "recurrent" and self.cfg["iter_adaln_rank"] > 0 else None)
        a_in = rmsnorm(x, self.w[prefix + "input_layernorm.weight"], self.eps)
        if mod is not None:
            a_in = a_in * (1 + mod[1]) + mod[0]
        a = self.attention(prefix, a_in, pos, cache, key, commit)
        h = x + ((1 + mod[2]) * a if mod is not None else a)
        f_in = rmsnorm(h, self.w[prefix + "post_attention_layernorm.weight"], self.eps)
        if mod is not None:
            f_in = f_in * (1 + mod[4]) + mod[3]
        if self.cfg[f"{part}_ffn"] == "moe":
            f, top = self.moe(prefix, f_in)
            if routers is not None:
                routers[(part, i, t if part == "recurrent" else 0)] = top
        else:
            f = swiglu(self.w, prefix + "mlp.", f_in)
        return h + ((1 + mod[5]) * f if mod is not None else f)

    # ------------------------------------------------------------ model pieces

    def prelude(self, token, pos, cache, routers=None):
        x = self.w["model.embed_tokens.weight"][token].copy()
        for i in range(self.cfg["num_prelude_layers"]):
            x = self.block("prelude", i, x, pos, cache, routers=routers)
        return x

    def loop(self, t, h, pos, cache, routers=None):
        """The R recurrent layers at loop t (always committing K/V of instances (i, t))."""
        for i in range(self.cfg["num_recurrent_layers"]):
            h = self.block("recurrent", i, h, pos, cache, t=t, routers=routers)
        return h

    def final_norm(self, h):
        return rmsnorm(h, self.w["model.norm.weight"], self.eps)

    def exit_head(self, h, pos, cache, commit, routers=None):
        """z = LMHead(norm(Coda(h))). commit=False is a probe: coda K/V are not stored."""
        x = h
        for i in range(self.cfg["num_coda_layers"]):
            x = self.block("coda", i, x, pos, cache, commit=commit, routers=routers)
        return self.lm_head @ self.final_norm(x)

    def gate_lambda(self, h):
        g = self.w["model.exit_gate.weight"][0] @ self.final_norm(h)
        return float(sigmoid(g + self.w["model.exit_gate.bias"][0]))

    def fill_kv(self, h_e, pos, cache, e, mode):
        """kv_fill of recurrent instances (i, t > e) at pos after an exit at loop e."""
        c = self.cfg
        for t in range(e + 1, self.L):
            for i in range(c["num_recurrent_layers"]):
                if mode == "reuse":
                    k, v = cache.read(("recurrent", i, e), pos)
                elif mode == "propagate":
                    prefix = f"model.recurrent.{i}."
                    x = rmsnorm(h_e, self.w[prefix + "input_layernorm.weight"], self.eps)
                    if c["iter_adaln_rank"] > 0:
                        sa, ca = self.modulation(i, h_e, t)[:2]
                        x = x * (1 + ca) + sa
                    k, v = self.kv_proj(prefix, x, pos)
                else:
                    raise ValueError(f"unknown kv_fill {mode!r}")
                cache.write(("recurrent", i, t), pos, k, v, commit=True)

    # ------------------------------------------------------------ full depth

    def full_depth_token(self, seq, token, probe_all=True, routers=None):
        """Prefill forward of one token: all L loops, coda K/V stored from h_{L-1}.

        Returns (zs, hs, lambdas): z_t for every t (probes for t < L-1 when
        probe_all, else None), h_t, and λ_t when exit_gate.
        """
        pos, cache = seq.pos, seq.cache
        h = self.prelude(token, pos, cache, routers)
        zs, hs, lams = [], [], []
        for t in range(self.L):
            h = self.loop(t, h, pos, cache, routers)
            hs.append(h)
            if self.cfg["exit_gate"]:
                lams.append(self.gate_lambda(h))
            if t < self.L - 1:
                zs.append(self.exit_head(h, pos, cache, commit=False) if probe_all else None)
        zs.append(self.exit_head(h, pos, cache, commit=True, routers=routers))
        seq.pos += 1
        return zs, hs, lams

    def score(self, seq, ids):
        """Teacher-forced per-loop scoring (and prefill) of ids appended to seq.

        Returns {"exit_logits": [L,T,V], "hidden": [L,T,D], "routers":
        {(part, layer, loop): [T,k]}, "gate_cdf": [L,T] or None}.
        """
        T, L = len(ids), self.L
        out_z = np.zeros((L, T, self.cfg["vocab_size"]))
        out_h = np.zeros((L, T, self.cfg["hidden_size"]))
        cdf = np.zeros((L, T)) if self.cfg["exit_gate"] else None
        routers = {}
        for j, tok in enumerate(ids):
            r = {}
            zs, hs, lams = self.full_depth_token(seq, int(tok), routers=r)
            out_z[:, j], out_h[:, j] = np.array(zs), np.array(hs)
            for key, top in r.items():
                routers.setdefault(key, []).append(top)
            if cdf is not None:
                cdf[:, j] = gate_cdf(lams)
        return {"exit_logits": out_z, "hidden": out_h, "gate_cdf": cdf,
                "routers": {k: np.array(v) for k, v in routers.items()}}


def gate_cdf(lambdas):
    """F_t = Σ_{s≤t} λ_s Π_{u<s} (1-λ_u)."""
    out, surv, F = [], 1.0, 0.0
    for lam in lambdas:
        F += lam * surv
        surv *= 1.0 - lam
        out.append(F)
    return np.array(out)
