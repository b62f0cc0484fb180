#!/usr/bin/env python3
"""Train the kjv-demo looped-MoE model on CPU and export it to models/kjv-demo/.

  /usr/bin/python3 tools/train_demo/prepare_corpus.py --out /tmp/kjv-work
  /usr/bin/python3 tools/train_demo/train.py --work /tmp/kjv-work --out models/kjv-demo --minutes 25

Trains a 4096-entry byte-level BPE on the train split (tests/reference/bpe_tokenizer.py),
then the model of model.py with AdamW and a cosine schedule over a wall-clock budget
(--minutes), loss = weighted mean over loop boundaries of the exit-head LM loss
(weight of boundary t ∝ t+1) + 0.01 · MoE load-balancing loss. At the end the weights are
rounded to bf16, the held-out set is scored at every loop boundary with the rounded
weights, and config.json, model.safetensors (BF16), tokenizer.json and README.md are written.

Threads: one. On a busy 2-core machine torch's OpenMP threads spin against each other
(a 2-thread step was 20x slower than a 1-thread one here). Debian's torch uses the
system BLAS; the reference netlib BLAS is ~13x slower than OpenBLAS, so run with
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread (package libopenblas0-pthread).
"""

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import bpe_tokenizer  # noqa: E402
import looped_moe  # noqa: E402
import safetensors_io  # noqa: E402
from model import LoopedMoE  # noqa: E402

SPECIALS = ["<|bos|>", "<|eos|>"]
SAMPLE_PROMPTS = ["In the beginning", "And the LORD said unto Moses,",
                  "John 3\n", "Blessed are the"]


def make_config(a):
    return {
        "model_type": "looped_moe", "vocab_size": a.vocab, "hidden_size": a.dim,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": a.dim // 4,
        "rope_theta": 10000.0, "max_position_embeddings": a.seq, "rms_norm_eps": 1e-6,
        "qk_norm": True, "num_prelude_layers": 1, "num_recurrent_layers": 2,
        "num_coda_layers": 1, "num_loops": a.loops, "prelude_ffn": "dense",
        "recurrent_ffn": "moe", "coda_ffn": "dense", "intermediate_size": 2 * a.dim,
        "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": a.dim,
        "num_shared_experts": 0, "router_score": "softmax", "norm_topk_prob": True,
        "routed_scaling_factor": 1.0, "iter_adaln_rank": 16, "exit_gate": False,
        "tie_word_embeddings": True,
    }


def chapters(path):
    with open(path) as f:
        return [c for c in f.read().split("\n\n") if c.strip()]


def encode_split(tok, path):
    """Every chapter as <|bos|> chapter-text <|eos|>, concatenated."""
    out = []
    for ch in chapters(path):
        out += [tok.bos_id] + tok.encode(ch.strip("\n") + "\n") + [tok.eos_id]
    return np.array(out, dtype=np.int64)


def get_tokenizer(a):
    path = os.path.join(a.work, f"tokenizer-{a.vocab}.json")
    if os.path.exists(path):
        return bpe_tokenizer.Tokenizer.load(path), None
    t0 = time.time()
    with open(os.path.join(a.work, "train.txt")) as f:
        tok = bpe_tokenizer.train_bpe(f.read(), a.vocab, SPECIALS)
    tok.save(path)
    return bpe_tokenizer.Tokenizer.load(path), time.time() - t0


def get_ids(a, tok, split):
    path = os.path.join(a.work, f"{split}-{a.vocab}.npy")
    if not os.path.exists(path):
        np.save(path, encode_split(tok, os.path.join(a.work, f"{split}.txt")))
    return np.load(path)


def per_loop_loss(logits, targets):
    """logits [L, B, T, V], targets [B, T] -> [L] mean NLL."""
    L = logits.shape[0]
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.repeat(L, 1).reshape(-1),
                           reduction="none").view(L, -1).mean(1)


@torch.no_grad()
def evaluate(model, ids, seq, batch=8):
    """Held-out: non-overlapping windows of seq+1 tokens; per-loop NLL, ppl, top-1 agreement
    of each boundary with full depth and top-1 accuracy."""
    model.eval()
    n = (len(ids) - 1) // seq
    L = model.c["num_loops"]
    nll, agree, acc, count = torch.zeros(L, dtype=torch.float64), torch.zeros(L), torch.zeros(L), 0
    for s in range(0, n, batch):
        w = [ids[i * seq: i * seq + seq + 1] for i in range(s, min(n, s + batch))]
        x = torch.from_numpy(np.stack(w))
        logits, _, _ = model(x[:, :-1])
        lp = torch.log_softmax(logits.float(), -1)
        tgt = x[:, 1:]
        nll += -lp.gather(-1, tgt.expand(L, *tgt.shape)[..., None]).squeeze(-1).sum((1, 2)).double()
        top = logits.argmax(-1)
        agree += (top == top[-1]).float().sum((1, 2))
        acc += (top == tgt).float().sum((1, 2))
        count += tgt.numel()
    model.train()
    m = (nll / count).tolist()
    return {"tokens": count, "nll": m, "ppl": [math.exp(v) for v in m],
            "agree_full": (agree / count).tolist(), "top1_acc": (acc / count).tolist()}


@torch.no_grad()
def generate(model, tok, prompt, n, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    ids = [tok.bos_id] + tok.encode(prompt)
    start = len(ids)
    for _ in range(n):
        logits, _, _ = model(torch.tensor([ids[-model.c["max_position_embeddings"]:]]))
        z = logits[-1, 0, -1].float()
        if temperature == 0:
            nxt = int(z.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(z / temperature, -1), 1, generator=g))
        if nxt == tok.eos_id:
            break
        ids.append(nxt)
    return tok.decode(ids[start:])


def bf16_round_(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def export(model, cfg, tok, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    weights = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    looped_moe.check_weights(looped_moe.complete_config(cfg), weights)
    safetensors_io.save_file(os.path.join(out, "model.safetensors"), weights, dtypes="BF16",
                             metadata={"format": "pt", "producer": "tools/train_demo/train.py"})
    tok.save(os.path.join(out, "tokenizer.json"))


def svg_curve(rows, L, path_w=640, path_h=280):
    """A small SVG of the training loss per boundary (smoothed) against step."""
    steps = [r["step"] for r in rows]
    cols = ["#bbbbbb", "#88aadd", "#4477bb", "#113366", "#000000"]
    series = []
    for t in range(L):
        v, ema = [], None
        for r in rows:
            ema = r[f"loss{t}"] if ema is None else 0.9 * ema + 0.1 * r[f"loss{t}"]
            v.append(ema)
        series.append(v)
    lo = min(min(s) for s in series)
    hi = min(max(max(s) for s in series), lo + 6)
    x0, y0, w, h = 50, 10, path_w - 60, path_h - 40
    sx = lambda s: x0 + w * (s - steps[0]) / max(1, steps[-1] - steps[0])  # noqa: E731
    sy = lambda v: y0 + h * (1 - (min(v, hi) - lo) / max(1e-9, hi - lo))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{path_w}" height="{path_h}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<text x="5" y="{sy(v) + 4:.1f}">{v:.2f}</text>')
    out.append(f'<text x="{x0}" y="{path_h - 12}">step {steps[0]}</text>')
    out.append(f'<text x="{x0 + w - 60}" y="{path_h - 12}">step {steps[-1]}</text>')
    for t, s in enumerate(series):
        pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(steps, s))
        c = cols[min(t + (len(cols) - L), len(cols) - 1)]
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{x0 + w - 90}" y="{y0 + 15 + 14 * t}" fill="{c}">loop {t} exit</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_readme(a, cfg, nparams, info, rows, ev, samples, cmd):
    L = cfg["num_loops"]
    out = a.out
    sizes = {f: os.path.getsize(os.path.join(out, f)) for f in
             ("config.json", "model.safetensors", "tokenizer.json")}
    with open(os.path.join(out, "loss_curve.svg"), "w") as f:
        f.write(svg_curve(rows, L))
    pick = sorted(set([0] + [int(len(rows) * k / 10) for k in range(1, 10)] + [len(rows) - 1]))
    lines = [
        "# kjv-demo: a small looped-MoE model trained on the King James Bible",
        "",
        "The demo checkpoint of loopserve (format: `looped_moe` v1 of MODEL_SPEC.md). It is "
        "tiny and trained for minutes on two shared CPU cores: it writes KJV-flavoured "
        "English, not sense. Its purpose is to exercise the engine (tokenizer, MoE routing, "
        "IterAdaLN, per-loop exit heads) on a model whose early exits mean something.",
        "",
        f"Trained {info['date']} on `{info['cpu']}` (2 cores shared with other jobs, 1 torch "
        f"thread, OpenBLAS), PyTorch {torch.__version__} (CPU), in {info['train_s'] / 60:.1f} "
        f"minutes ({info['steps']} steps, {info['tokens'] / 1e6:.2f} M training tokens, "
        f"{info['tokens'] / info['train_tokens']:.2f} epochs).",
        "",
        "## Reproduce",
        "```",
        "apt-get install bible-kjv python3-torch python3-numpy python3-regex libopenblas0-pthread",
        f"/usr/bin/python3 tools/train_demo/prepare_corpus.py --out {a.work}",
        cmd,
        "/usr/bin/python3 tools/train_demo/verify_export.py --model models/kjv-demo",
        "```",
        "Training stops on wall-clock time (`--minutes`), so a rerun on another machine "
        "takes a different number of steps; the seed fixes the initialisation and the batches.",
        "",
        "## Data",
        "The KJV text of Debian's `bible-kjv` (`bible \"Gen1:1-Rev22:21\"`), cleaned by "
        "`prepare_corpus.py`: per chapter a heading line (`Genesis 1`) and one verse per line, "
        "verse numbers stripped, wrapped lines joined. Each chapter is one document "
        "`<|bos|> text <|eos|>`. **Held out: every 50th chapter** in canonical order "
        "(index 49, 99, … from Genesis 1 = 0): 23 chapters, Genesis 50, Leviticus 10, "
        "Numbers 33, Joshua 13, 1 Samuel 14, 1 Kings 9, 1 Chronicles 12, 2 Chronicles 33, "
        "Job 14, Psalms 22, 72 and 122, Proverbs 22, Isaiah 21, Jeremiah 5, Lamentations 3, "
        "Ezekiel 48, Micah 7, Matthew 21, John 3, Romans 4, Ephesians 3, James 4. The other "
        f"1166 chapters train the tokenizer and the model ({info['train_tokens']} tokens; "
        f"held-out {info['heldout_tokens']} tokens).",
        "",
        "## Tokenizer",
        f"Byte-level BPE (GPT-2 pre-tokenizer regex), {cfg['vocab_size']} ids: 256 bytes, "
        f"{cfg['vocab_size'] - 258} merges, `<|bos|>` = {info['bos']}, `<|eos|>` = "
        f"{info['eos']}; trained on the train split by tests/reference/bpe_tokenizer.py. "
        "Prompts should start with `<|bos|>` (as every training document did).",
        "",
        "## Model",
        f"- {nparams:,} parameters ({info['active']:,} active per token and pass); "
        f"D = {cfg['hidden_size']}, {cfg['num_attention_heads']} heads / "
        f"{cfg['num_key_value_heads']} KV heads of {cfg['head_dim']}, qk_norm, RoPE θ = 10000, "
        f"context {cfg['max_position_embeddings']} (trained length).",
        f"- 1 prelude layer (dense SwiGLU, I = {cfg['intermediate_size']}), 2 recurrent layers "
        f"run {L} times (MoE: {cfg['num_experts']} experts, top-{cfg['num_experts_per_tok']}, "
        f"softmax router, renormalised, expert width {cfg['moe_intermediate_size']}; "
        f"IterAdaLN rank {cfg['iter_adaln_rank']}), 1 coda layer (dense), tied embeddings, "
        "no exit gate.",
        f"- Loss: Σ_t w_t · CE(z_t) with w_t ∝ t+1 over the {L} boundaries, + 0.01 × "
        "Switch load-balancing loss. AdamW (β = 0.9, 0.95, weight decay 0.1), peak lr "
        f"{a.lr}, {a.warmup}-step warm-up, cosine to 10% over the time budget, batch "
        f"{a.batch} × {a.seq} tokens, gradient clip 1.0, seed {a.seed}.",
        f"- Files: model.safetensors {sizes['model.safetensors'] / 1e6:.1f} MB (BF16), "
        f"tokenizer.json {sizes['tokenizer.json'] / 1e3:.0f} kB.",
        "",
        "## Held-out perplexity at every loop boundary",
        f"Computed with the shipped (bf16-rounded) weights over {ev['tokens']} held-out "
        f"tokens in windows of {a.seq}; full depth is loop {L - 1}. `agree` is the share of "
        "positions whose top-1 token at that boundary equals the full-depth top-1.",
        "",
        "| exit after loop | perplexity | NLL (nats) | top-1 accuracy | agree with full depth |",
        "|---|---|---|---|---|",
    ]
    for t in range(L):
        lines.append(f"| {t}{' (full depth)' if t == L - 1 else ''} | {ev['ppl'][t]:.2f} | "
                     f"{ev['nll'][t]:.4f} | {ev['top1_acc'][t]:.3f} | {ev['agree_full'][t]:.3f} |")
    lines += ["", "## Training loss", "", "![training loss per exit](loss_curve.svg)", "",
              "| step | tokens | " + " | ".join(f"loss loop {t}" for t in range(L)) + " |",
              "|---|---|" + "---|" * L]
    for i in pick:
        r = rows[i]
        lines.append(f"| {r['step']} | {r['tokens']} | " +
                     " | ".join(f"{r[f'loss{t}']:.3f}" for t in range(L)) + " |")
    lines += ["", "(training-batch loss of the exit at each boundary; the full log is "
              "written to the work directory as train_log.csv)", "",
              "## Samples", "Produced by the PyTorch training model with the bf16-rounded "
              "weights, full depth, 60 new tokens (prompt after `<|bos|>`).", ""]
    for p, mode, text in samples:
        lines += [f"**{mode}**, prompt `{json.dumps(p)[1:-1]}`:", "```", p + text, "```", ""]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/kjv-work")
    ap.add_argument("--out", default="models/kjv-demo")
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--loops", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log_every", type=int, default=5)
    a = ap.parse_args()
    cmd = "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 " \
          "tools/train_demo/train.py " + " ".join(sys.argv[1:])
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    tok, tok_s = get_tokenizer(a)
    if tok_s:
        print(f"tokenizer trained in {tok_s:.0f}s", flush=True)
    train_ids, held_ids = get_ids(a, tok, "train"), get_ids(a, tok, "heldout")
    print(f"train {len(train_ids)} tokens, held-out {len(held_ids)}", flush=True)

    cfg = make_config(a)
    model = LoopedMoE(cfg)
    nparams = sum(p.numel() for p in model.parameters())
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    expert = sum(p.numel() for p in model.model.recurrent[0].mlp.experts[0].parameters())
    active = nparams - cfg["num_recurrent_layers"] * (E - k) * expert
    print(f"{nparams} parameters ({active} active)", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    L = cfg["num_loops"]
    wts = torch.arange(1, L + 1, dtype=torch.float32)
    wts /= wts.sum()
    budget = a.minutes * 60
    t_start = time.time()
    rows, step, tokens = [], 0, 0
    log_path = os.path.join(a.work, "train_log.csv")
    logf = open(log_path, "w", newline="")
    writer = csv.writer(logf)
    writer.writerow(["step", "tokens", "elapsed_s", "lr", "loss"] + [f"loss{t}" for t in range(L)] + ["aux"])
    acc = torch.zeros(L)
    acc_aux, acc_n = 0.0, 0
    while True:
        frac = (time.time() - t_start) / budget
        if frac >= 1:
            break
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(train_ids) - a.seq - 1, a.batch)
        x = torch.from_numpy(np.stack([train_ids[s: s + a.seq + 1] for s in starts]))
        logits, _, aux = model(x[:, :-1])
        ll = per_loop_loss(logits, x[:, 1:])
        loss = (wts * ll).sum() + 0.01 * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x[:, 1:].numel()
        acc += ll.detach()
        acc_aux += float(aux)
        acc_n += 1
        if step % a.log_every == 0:
            m = (acc / acc_n).tolist()
            row = {"step": step, "tokens": tokens, "elapsed": time.time() - t_start, "lr": lr,
                   "loss": float((wts * acc / acc_n).sum()), "aux": acc_aux / acc_n}
            row.update({f"loss{t}": m[t] for t in range(L)})
            rows.append(row)
            writer.writerow([step, tokens, f"{row['elapsed']:.1f}", f"{lr:.6f}", f"{row['loss']:.4f}"] +
                            [f"{v:.4f}" for v in m] + [f"{row['aux']:.4f}"])
            logf.flush()
            print(f"step {step} {row['elapsed']:.0f}s lr {lr:.2e} loss/loop " +
                  " ".join(f"{v:.3f}" for v in m) + f" aux {row['aux']:.3f}", flush=True)
            acc.zero_()
            acc_aux, acc_n = 0.0, 0
        if step % 200 == 0:
            torch.save(model.state_dict(), os.path.join(a.work, "ckpt.pt"))
    train_s = time.time() - t_start
    torch.save(model.state_dict(), os.path.join(a.work, "ckpt.pt"))
    logf.close()

    bf16_round_(model)
    model.eval()
    export(model, cfg, tok, a.out)
    ev = evaluate(model, held_ids, a.seq)
    print("held-out ppl per loop:", " ".join(f"{p:.2f}" for p in ev["ppl"]), flush=True)
    print("agree with full depth:", " ".join(f"{p:.3f}" for p in ev["agree_full"]), flush=True)
    with open(os.path.join(a.work, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    samples = []
    for i, p in enumerate(SAMPLE_PROMPTS):
        samples.append((p, "greedy", generate(model, tok, p, 60, 0.0, a.seed)))
        samples.append((p, "temperature 0.8", generate(model, tok, p, 60, 0.8, a.seed + i)))
    info = {"date": "2026-11-23", "cpu": cpu_name(), "train_s": train_s, "steps": step,
            "tokens": tokens, "train_tokens": len(train_ids), "heldout_tokens": len(held_ids),
            "bos": tok.bos_id, "eos": tok.eos_id, "active": active}
    write_readme(a, cfg, nparams, info, rows, ev, samples, cmd)
    print("exported to", a.out, flush=True)


if __name__ == "__main__":
    main()
