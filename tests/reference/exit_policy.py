"""Early-exit decode step of the looped_moe reference, and its compute accounting.

A decode forward of a token at position p under a policy: prelude; for each
loop t the R recurrent layers (K/V of instances (i, t) stored); at boundary t
the criterion is evaluated (exit-head evaluations at t < exit are probes that
store nothing); the token stops at the first t >= min_loops-1 where the
criterion holds, or at max_loops-1. At the exit loop e the coda runs on h_e
with its K/V stored, the next token is argmax z_e, and recurrent instances
(i, t > e) get K/V at p by kv_fill (reuse | propagate).
"""

from dataclasses import dataclass, field

import numpy as np

from looped_moe import log_softmax

CRITERIA = ("never", "max_prob", "margin", "entropy", "kl", "top1_stable",
            "hidden_cosine", "gate")
KV_FILLS = ("reuse", "propagate")


@dataclass
class Policy:
    criterion: str = "never"
    threshold: float = 0.0
    min_loops: int = 1
    max_loops: int = 1
    kv_fill: str = "reuse"

    def validate(self, num_loops, has_gate):
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {self.criterion!r}")
        if self.kv_fill not in KV_FILLS:
            raise ValueError(f"unknown kv_fill {self.kv_fill!r}")
        if not 1 <= self.min_loops <= self.max_loops <= num_loops:
            raise ValueError(f"need 1 <= min_loops {self.min_loops} <= max_loops "
                             f"{self.max_loops} <= L {num_loops}")
        if self.criterion == "gate" and not has_gate:
            raise ValueError("criterion gate needs a model with exit_gate")

    def as_dict(self):
        return {"criterion": self.criterion, "threshold": float(self.threshold),
                "min_loops": self.min_loops, "max_loops": self.max_loops,
                "kv_fill": self.kv_fill}


def head_boundaries(policy, e):
    """Boundaries t (ascending) where the exit head is evaluated, given exit loop e."""
    c, m = policy.criterion, policy.min_loops
    if c in ("max_prob", "margin", "entropy"):
        first = m - 1
    elif c == "kl":
        first = max(0, m - 2)
    elif c == "top1_stable":
        first = 0
    else:  # never, hidden_cosine, gate: only the exit boundary
        first = e
    return list(range(min(first, e), e + 1))


# ---------------------------------------------------------------- statistics

def top2_gap(z):
    s = np.sort(z)
    return float(s[-1] - s[-2])


def prob_stats(z):
    lp = log_softmax(z)
    p = np.exp(lp)
    s = np.sort(p)
    return {"max_prob": float(s[-1]), "margin": float(s[-1] - s[-2]),
            "entropy": float(-np.sum(p * lp)), "logp": lp}


def kl(lp_t, lp_prev):
    return float(np.sum(np.exp(lp_t) * (lp_t - lp_prev)))


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- flops

def layer_flops(cfg, part, n):
    D, H, Hkv, d = (cfg[k] for k in ("hidden_size", "num_attention_heads",
                                      "num_key_value_heads", "head_dim"))
    f = 2 * D * (H * d + 2 * Hkv * d) + 2 * H * d * D + 4 * H * d * n
    if cfg[f"{part}_ffn"] == "dense":
        f += 6 * D * cfg["intermediate_size"]
    else:
        f += 2 * D * cfg["num_experts"] + 6 * D * cfg["moe_intermediate_size"] * (
            cfg["num_experts_per_tok"] + cfg["num_shared_experts"])
    if part == "recurrent":
        f += adaln_flops(cfg)
    return f


def adaln_flops(cfg):
    D, r = cfg["hidden_size"], cfg["iter_adaln_rank"]
    return 2 * D * r + 2 * r * 6 * D if r > 0 else 0


def part_flops(cfg, part, n):
    return cfg[f"num_{part}_layers"] * layer_flops(cfg, part, n)


def head_flops(cfg, n):
    """One exit-head evaluation: coda layers + LM head."""
    return part_flops(cfg, "coda", n) + 2 * cfg["hidden_size"] * cfg["vocab_size"]


def flops_full(cfg, pos):
    n = pos + 1
    return (part_flops(cfg, "prelude", n) + cfg["num_loops"] * part_flops(cfg, "recurrent", n)
            + head_flops(cfg, n))


def flops_done(cfg, pos, policy, e):
    n, D = pos + 1, cfg["hidden_size"]
    f = part_flops(cfg, "prelude", n) + (e + 1) * part_flops(cfg, "recurrent", n)
    f += len(head_boundaries(policy, e)) * head_flops(cfg, n)
    if policy.criterion == "gate":
        f += (e + 1) * 2 * D
    if policy.kv_fill == "propagate":
        per = 2 * D * 2 * cfg["num_key_value_heads"] * cfg["head_dim"] + adaln_flops(cfg)
        f += (cfg["num_loops"] - 1 - e) * cfg["num_recurrent_layers"] * per
    return f


# ---------------------------------------------------------------- decode step

@dataclass
class StepResult:
    token: int
    exit_loop: int
    logits: np.ndarray
    flops_done: float
    flops_full: float
    decisions: list = field(default_factory=list)   # (statistic, threshold) compared
    argmax_gaps: list = field(default_factory=list)  # top-2 logit gaps whose argmax mattered
    head_loops: list = field(default_factory=list)   # boundaries where z_t was computed


def decide(policy, t, stats):
    """(stop?, compared statistic or None) at boundary t >= min_loops-1."""
    c, tau = policy.criterion, policy.threshold
    if c == "never":
        return False, None
    if c in ("max_prob",):
        return stats["max_prob"] >= tau, stats["max_prob"]
    if c == "margin":
        return stats["margin"] >= tau, stats["margin"]
    if c == "entropy":
        return stats["entropy"] <= tau, stats["entropy"]
    if c == "kl":
        return (stats["kl"] <= tau, stats["kl"]) if t >= 1 else (False, None)
    if c == "top1_stable":
        return stats["stable"] >= tau, float(stats["stable"])
    if c == "hidden_cosine":
        return (stats["cos"] >= tau, stats["cos"]) if t >= 1 else (False, None)
    if c == "gate":
        return stats["F"] >= tau, stats["F"]
    raise ValueError(c)


def decode_step(model, seq, token, policy):
    """Early-exit forward of `token` at position seq.pos; returns StepResult."""
    cfg, L = model.cfg, model.L
    policy.validate(L, cfg["exit_gate"])
    pos, cache = seq.pos, seq.cache
    m1, last = policy.min_loops - 1, policy.max_loops - 1
    crit = policy.criterion
    # Boundaries where z_t is needed regardless of the exit (the exit one is added later).
    if crit in ("max_prob", "margin", "entropy"):
        first_head = m1
    elif crit == "kl":
        first_head = max(0, m1 - 1)
    elif crit == "top1_stable":
        first_head = 0
    else:
        first_head = L  # only at the exit
    res = StepResult(token=-1, exit_loop=-1, logits=None, flops_done=0.0, flops_full=0.0)
    h = model.prelude(token, pos, cache)
    prev_h, prev_lp, prev_top, stable, surv, F = None, None, None, 0, 1.0, 0.0
    z = None
    for t in range(L):
        h = model.loop(t, h, pos, cache)
        stats = {}
        z = None
        if t >= first_head and t < last:
            z = model.exit_head(h, pos, cache, commit=False)
            res.head_loops.append(t)
            ps = prob_stats(z)
            stats.update(ps)
            top = int(np.argmax(z))
            if crit == "top1_stable":
                res.argmax_gaps.append(top2_gap(z))
                stable = stable + 1 if (prev_top is not None and top == prev_top) else 0
                stats["stable"] = stable
            if crit == "kl" and prev_lp is not None:
                stats["kl"] = kl(ps["logp"], prev_lp)
            prev_lp, prev_top = ps["logp"], top
        if crit == "hidden_cosine" and prev_h is not None:
            stats["cos"] = cosine(h, prev_h)
        if crit == "gate":
            lam = model.gate_lambda(h)
            F += lam * surv
            surv *= 1.0 - lam
            stats["F"] = F
        prev_h = h
        if t == last:
            break
        if t >= m1:
            stop, stat = decide(policy, t, stats)
            if stat is not None:
                res.decisions.append((stat, float(policy.threshold)))
            if stop:
                break
    e = t
    if z is None:  # exit boundary not probed yet (or it is max_loops-1): compute it now
        z = model.exit_head(h, pos, cache, commit=False)
        res.head_loops.append(e)
        if crit == "top1_stable":
            res.argmax_gaps.append(top2_gap(z))
    # Commit: the coda K/V of the exit boundary. The last coda run wrote exactly
    # these (it ran on h_e at pos), so re-running it committed is equivalent.
    z_commit = model.exit_head(h, pos, cache, commit=True)
    assert np.array_equal(z_commit, z)
    model.fill_kv(h, pos, cache, e, policy.kv_fill)
    seq.pos += 1
    res.token, res.exit_loop, res.logits = int(np.argmax(z)), e, z
    res.argmax_gaps.append(top2_gap(z))
    res.flops_full = float(flops_full(cfg, pos))
    res.flops_done = float(flops_done(cfg, pos, policy, e))
    assert res.head_loops == head_boundaries(policy, e), (res.head_loops, policy, e)
    return res


def generate(model, seq, first_token, policy, steps):
    """Feed first_token then each produced token: `steps` decode forwards."""
    out, tok = [], first_token
    for _ in range(steps):
        r = decode_step(model, seq, tok, policy)
        out.append(r)
        tok = r.token
    return out
