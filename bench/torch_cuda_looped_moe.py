#!/usr/bin/python3
"""PyTorch eager on the GPU for the CUDA benchmark: bench/torch_looped_moe.py's
model (same math, bf16 matmuls with fp32 accumulation, Mixtral-style MoE
loop over experts) with weights, caches and masks on the CUDA device, timed
with torch.cuda.synchronize(). Prints lines in loopserve_cuda_bench's format:

  /usr/bin/python3 bench/torch_cuda_looped_moe.py --model DIR --batches 1,16,64,256
"""

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_looped_moe import LoopedMoe, prompt_ids  # noqa: E402


class CudaLoopedMoe(LoopedMoe):
    def __init__(self, directory):
        super().__init__(directory, "bf16")
        self.w = {k: v.cuda() for k, v in self.w.items()}
        self.cos, self.sin = self.cos.cuda(), self.sin.cuda()

    def new_cache(self, batch, max_len):
        return {key: (torch.zeros(batch, self.Hkv, max_len, self.d, device="cuda"),
                      torch.zeros(batch, self.Hkv, max_len, self.d, device="cuda"))
                for key in self.layers}

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
        K = kc[:, :, :S].repeat_interleave(H // Hkv, dim=1)
        V = vc[:, :, :S].repeat_interleave(H // Hkv, dim=1)
        scores = q.transpose(1, 2) @ K.transpose(2, 3) / math.sqrt(d)
        if T > 1:
            ar = torch.arange(S, device="cuda")
            mask = ar[None, :] > (pos0 + torch.arange(T, device="cuda"))[:, None]
            scores = scores.masked_fill(mask, float("-inf"))
        o = (scores.softmax(-1) @ V).transpose(1, 2).reshape(B, T, H * d)
        return self.linear(o, p + "self_attn.o_proj.weight")


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--prompt_len", type=int, default=16)
    ap.add_argument("--decode_steps", type=int, default=32)
    ap.add_argument("--prefill_batch", type=int, default=16)
    ap.add_argument("--prefill_len", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    model = CudaLoopedMoe(args.model)
    vocab = model.cfg["vocab_size"]
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.tensor(prompt_ids(batch, args.prompt_len, vocab), device="cuda")
        times = []
        for r in range(args.reps + 1):
            cache = model.new_cache(batch, args.prompt_len + args.decode_steps + 1)
            nxt = model.forward(ids, 0, cache).argmax(-1, keepdim=True)

            def run():
                nonlocal nxt
                pos = args.prompt_len
                for _ in range(args.decode_steps):
                    nxt = model.forward(nxt, pos, cache).argmax(-1, keepdim=True)
                    pos += 1
            t = timed(run)
            if r:
                times.append(t)
        t = statistics.median(times)
        print(f"decode batch {batch:4d}: {batch * args.decode_steps / t:10.1f} tokens/s  "
              f"{1e3 * t / args.decode_steps:8.3f} ms/step")
    b, n = args.prefill_batch, args.prefill_len
    ids = torch.tensor(prompt_ids(b, n, vocab), device="cuda")
    times = []
    for r in range(args.reps + 1):
        cache = model.new_cache(b, n)
        t = timed(lambda: model.forward(ids, 0, cache))
        if r:
            times.append(t)
    print(f"prefill {b} x {n}: {b * n / statistics.median(times):10.1f} tokens/s")


if __name__ == "__main__":
    main()
