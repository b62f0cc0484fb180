"""llama.cpp side of the peer benchmark and of the numerics cross-check.

Drives llama.cpp through llama-cpp-python's low-level C API (llama_batch +
llama_decode; no tokenizer, no sampler chain: token ids in, logits out,
greedy argmax in numpy) so that what is timed is llama.cpp's forward, the
same work loopserve_peer_driver times on the loopserve side:

  prefill  one sequence of --prompt_len tokens in one llama_decode (logits of
           the last position only), from an empty KV cache.
  decode   --batch sequences, each prefilled untimed with its prompt, then
           --decode_steps timed steps of one token per sequence (logits of
           every sequence, greedy next token).

Prompts are bench/engine_bench.cc's: id(b, p) = (1 + 7919 p + 104729 b) % V.
Each timed run prints `RESULT {json}` (side "llama.cpp").

  build-peer/venv/bin/python bench/peer/llama_driver.py --gguf m.gguf --mode decode --batch 8
"""

import argparse
import ctypes
import json
import sys
import time

import numpy as np

import llama_cpp as lc

GGML_TYPE_F32 = 0
FLASH_ATTN_AUTO, FLASH_ATTN_DISABLED = -1, 0


def prompt_ids(b, length, vocab):
    return [(1 + 7919 * p + 104729 * b) % vocab for p in range(length)]


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet_log(level, text, user_data):  # llama.cpp's load chatter off stdout
    del level, text, user_data


_backend_ready = False


def _init_backend():
    global _backend_ready
    if not _backend_ready:
        lc.llama_log_set(_quiet_log, ctypes.c_void_p())
        lc.llama_backend_init()
        _backend_ready = True


class LlamaModel:
    """One GGUF loaded into one llama_context; close() (or `with`) frees both."""

    def __init__(self, gguf_path, threads, n_ctx, n_batch, n_seq_max=1, exact=False):
        """exact: F32 KV cache and flash attention off (the numerics check);
        otherwise llama.cpp's defaults (F16 KV, flash attention auto), what a
        CPU user runs."""
        _init_backend()
        mparams = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(gguf_path.encode(), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf_path}")
        self.vocab_size = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = min(n_batch, 512)
        cparams.n_seq_max = n_seq_max
        cparams.n_outputs_max_per_seq = 0  # = n_outputs_max: every position may output
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = False  # each sequence attends over its own cells only
        cparams.no_perf = True
        if exact:
            cparams.type_k = GGML_TYPE_F32
            cparams.type_v = GGML_TYPE_F32
            cparams.flash_attn_type = FLASH_ATTN_DISABLED
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise RuntimeError(f"llama.cpp could not create a context for {gguf_path}")
        self.n_batch = n_batch
        self.batch = lc.llama_batch_init(n_batch, 0, n_seq_max)

    def close(self):
        if self.ctx:
            lc.llama_batch_free(self.batch)
            lc.llama_free(self.ctx)
            lc.llama_model_free(self.model)
            self.ctx = self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def clear(self):
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)

    def fill(self, tokens, positions, seqs, outputs):
        """Loads the batch (outside any timed region for prefill)."""
        b = self.batch
        n = len(tokens)
        if n > self.n_batch:
            raise ValueError(f"{n} tokens > n_batch {self.n_batch}")
        for i in range(n):
            b.token[i] = tokens[i]
            b.pos[i] = positions[i]
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seqs[i]
            b.logits[i] = outputs[i]
        b.n_tokens = n

    def decode(self):
        rc = lc.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def logits(self, n_outputs):
        """[n_outputs, V] view of the last decode's logits, in batch order."""
        ptr = lc.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_outputs, self.vocab_size))


def score(gguf_path, ids, threads=1):
    """Logits of every position of `ids` (one sequence, one decode): [T, V] f32."""
    n = len(ids)
    with LlamaModel(gguf_path, threads, n_ctx=max(256, n), n_batch=max(n, 32),
                    exact=True) as m:
        m.fill(ids, list(range(n)), [0] * n, [1] * n)
        m.decode()
        return m.logits(n).copy()


def time_prefill(m, prompt_len):
    ids = prompt_ids(0, prompt_len, m.vocab_size)
    m.clear()
    m.fill(ids, list(range(prompt_len)), [0] * prompt_len, [0] * (prompt_len - 1) + [1])
    t0 = time.perf_counter()
    m.decode()
    m.logits(1).argmax()  # the next token, as loopserve samples one
    return time.perf_counter() - t0


def time_decode(m, batch, prompt_len, steps):
    """Seconds of `steps` decode steps of `batch` sequences (prefill untimed)."""
    m.clear()
    toks, pos, seqs = [], [], []
    for b in range(batch):
        toks += prompt_ids(b, prompt_len, m.vocab_size)
        pos += list(range(prompt_len))
        seqs += [b] * prompt_len
    outs = [0] * len(toks)
    for b in range(batch):
        outs[(b + 1) * prompt_len - 1] = 1
    for lo in range(0, len(toks), m.n_batch):  # the prompts, untimed
        hi = min(len(toks), lo + m.n_batch)
        m.fill(toks[lo:hi], pos[lo:hi], seqs[lo:hi], outs[lo:hi])
        m.decode()
    # The outputs of the last chunk are the last sequences' prompts; the
    # first decode step's inputs only have to be valid ids, as on the
    # loopserve side (greedy from there on).
    nxt = [prompt_ids(b, prompt_len + 1, m.vocab_size)[-1] for b in range(batch)]
    seq_ids = list(range(batch))
    t0 = time.perf_counter()
    for s in range(steps):
        m.fill(nxt, [prompt_len + s] * batch, seq_ids, [1] * batch)
        m.decode()
        nxt = m.logits(batch).argmax(axis=1).tolist()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--name", default="", help="model name for the RESULT line")
    ap.add_argument("--mode", choices=["prefill", "decode"], required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt_len", type=int, default=64)
    ap.add_argument("--decode_steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=1, help="timed runs")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs first (decode needs none: its untimed prefill "
                         "already touches the weights and allocates)")
    a = ap.parse_args()

    if a.mode == "prefill":
        n_ctx, n_batch, n_seq = max(512, a.prompt_len), max(512, a.prompt_len), 1
    else:
        per_seq = -(-(a.prompt_len + a.decode_steps + 1) // 256) * 256
        n_ctx, n_batch, n_seq = a.batch * per_seq, 512, a.batch
    with LlamaModel(a.gguf, a.threads, n_ctx, n_batch, n_seq) as m:
        for r in range(a.warmup + a.reps):
            if a.mode == "prefill":
                sec = time_prefill(m, a.prompt_len)
                tok_s, ms_step = a.prompt_len / sec, 0.0
            else:
                sec = time_decode(m, a.batch, a.prompt_len, a.decode_steps)
                tok_s, ms_step = a.batch * a.decode_steps / sec, 1e3 * sec / a.decode_steps
            if r < a.warmup:
                continue  # page faults of the mapped weights, allocations
            print("RESULT " + json.dumps({
                "side": "llama.cpp", "model": a.name, "mode": a.mode, "batch": a.batch,
                "prompt_len": a.prompt_len, "threads": a.threads, "policy": "full",
                "tok_s": round(tok_s, 3), "ms_per_step": round(ms_step, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
