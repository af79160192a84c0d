#!/usr/bin/python3
"""train_peers.py -- PyTorch's GPT-2 training step on the configuration `qkv bench train`
times, in the same run: forward, cross-entropy, backward, gradient clipping and AdamW
(decay on matrices), batch B x T of random tokens, float32, eager mode (PyTorch 1.13 has no
torch.compile and no fused CPU attention: attention is matmul + mask + softmax + matmul).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peers/train_peers.py \
        --layers 4 --heads 8 --embd 256 --ctx 256 --vocab 4096 --batch 8 --steps 3 --threads 2

Prints one JSON line: {"peer": "torch", "ms_per_step": median, "tokens_per_s": ..., ...}.
The caller sets OPENBLAS_CORETYPE=SkylakeX (OpenBLAS's best kernel on this CPU; Debian's
default picks an SSE3 one).
"""
import argparse
import ctypes
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // self.H))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, H, C, T, V):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(C, H) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1))
        for n, p in self.named_parameters():  # GPT-2 init
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("c_proj.weight") or n.endswith("mlp_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied output projection
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    for k, v in (("layers", 4), ("heads", 8), ("embd", 256), ("ctx", 256), ("vocab", 4096),
                 ("batch", 8), ("steps", 3), ("threads", 2)):
        ap.add_argument("--" + k, type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    core = ""
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        pass
    m = GPT(a.layers, a.heads, a.embd, a.ctx, a.vocab)
    params = dict(m.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, a.vocab, (a.batch, a.ctx + 1), generator=g)
    times, losses = [], []
    for step in range(a.steps + 1):  # the first step warms up (allocations)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = m(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if step:
            times.append(dt)
    ms = 1e3 * statistics.median(times)
    n_params = sum(p.numel() for p in params.values())
    print(json.dumps({"peer": "torch", "version": torch.__version__, "core": core,
                      "threads": a.threads, "ms_per_step": ms,
                      "tokens_per_s": a.batch * a.ctx / (ms / 1e3), "params": n_params,
                      "first_loss": losses[0], "last_loss": losses[-1]}), flush=True)


if __name__ == "__main__":
    main()
