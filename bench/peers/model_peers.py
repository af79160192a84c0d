#!/usr/bin/python3
"""model_peers.py -- PyTorch on the checkpoint `qkv bench model` wrote (the same weights).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peers/model_peers.py DIR --threads 2 \
        --reps 3 --gen 64

DIR holds config.json + model.safetensors, ids.npy (1024 prompt ids, float32) and
qkv_last128.npy (qkv's last-position logits for the first 128 ids, the check). Prompt
processing computes the last position's logits only (as llama-bench and qkv's bench do);
generation keeps a per-layer KV cache and runs one-token steps as vector @ matrix (torch.mv
underneath). Prints one JSON line: pp128, pp1024, gen (tokens/s, medians), check_max_diff,
peak_mb.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "py"))
import gpt2_torch  # noqa: E402


def prompt_last_logits(model, ids):
    t = model.transformer
    x = t.wte(ids) + t.wpe(torch.arange(ids.shape[0]))
    for block in t.h:
        x, _ = block(x)
    return model.lm_head(t.ln_f(x[-1]))


def generate(model, prompt, n_new):
    """Greedy generation with a KV cache; returns (ids, seconds for steps after the first)."""
    t = model.transformer
    H = model.cfg["n_head"]
    C = model.cfg["n_embd"]
    d = C // H
    cache = []
    x = t.wte(prompt) + t.wpe(torch.arange(prompt.shape[0]))
    for block in t.h:  # prompt pass filling the cache
        a = block.ln_1(x)
        q, k, v = block.attn.c_attn(a).split(C, dim=1)
        N = x.shape[0]
        q, k, v = (z.reshape(N, H, d).transpose(0, 1) for z in (q, k, v))
        cache.append([k, v])
        s = q @ k.transpose(1, 2) / math.sqrt(d)
        s = s.masked_fill(~torch.ones(N, N, dtype=torch.bool).tril(), float("-inf"))
        o = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(N, C)
        x = x + block.attn.c_proj(o)
        x = x + block.mlp(block.ln_2(x))
    logits = model.lm_head(t.ln_f(x[-1]))
    out, pos, t_first = [], prompt.shape[0], None
    for _ in range(n_new):
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        if t_first is None:
            t_first = time.perf_counter()
        x = t.wte.weight[nxt] + t.wpe.weight[pos]
        for li, block in enumerate(t.h):
            a = block.ln_1(x)
            qkv = a @ block.attn.c_attn.weight + block.attn.c_attn.bias
            q, k, v = qkv.split(C)
            kc, vc = cache[li]
            kc = torch.cat([kc, k.reshape(H, 1, d)], 1)
            vc = torch.cat([vc, v.reshape(H, 1, d)], 1)
            cache[li] = [kc, vc]
            s = (kc @ q.reshape(H, d, 1)).squeeze(-1) / math.sqrt(d)  # [H, n]
            o = (torch.softmax(s, -1).unsqueeze(1) @ vc).reshape(C)
            x = x + (o @ block.attn.c_proj.weight + block.attn.c_proj.bias)
            m = block.ln_2(x)
            h = gpt2_torch.gelu_tanh(m @ block.mlp.c_fc.weight + block.mlp.c_fc.bias)
            x = x + (h @ block.mlp.c_proj.weight + block.mlp.c_proj.bias)
        logits = torch.mv(model.lm_head.weight, t.ln_f(x))
        pos += 1
    return out, time.perf_counter() - t_first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gen", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model = gpt2_torch.load(a.dir, torch.float32)
    ids = torch.from_numpy(np.load(os.path.join(a.dir, "ids.npy")).astype(np.int64))
    res = {"threads": a.threads, "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}
    ref = os.path.join(a.dir, "qkv_last128.npy")
    if os.path.exists(ref):
        ours = prompt_last_logits(model, ids[:128]).numpy()
        res["check_max_diff"] = float(np.abs(ours - np.load(ref)).max())
    for n in (128, 1024):
        prompt_last_logits(model, ids[:n])  # warm-up
        ts = []
        for _ in range(a.reps if n == 128 else max(1, a.reps)):
            t0 = time.perf_counter()
            prompt_last_logits(model, ids[:n])
            ts.append(n / (time.perf_counter() - t0))
        res["pp%d" % n] = statistics.median(ts)
    out, dt = generate(model, ids[:16], a.gen)
    res["gen"] = (len(out) - 1) / dt
    res["gen_ids"] = out[:8]
    res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(res))


if __name__ == "__main__":
    main()
