#!/usr/bin/python3
"""gpt2_torch.py -- an independent GPT-2 in PyTorch, the oracle the C model is checked against.

A plain nn.Module whose parameters carry Hugging Face's names (transformer.wte.weight,
transformer.h.0.attn.c_attn.weight [in, out], ..., lm_head tied to wte unless the checkpoint
has its own), written from the GPT-2 paper / HF's modeling_gpt2 semantics, not from qkv's C.

    from gpt2_torch import GPT2, load
    model = load(folder, dtype=torch.float64)        # reads config.json + model.safetensors
    logits, attn = model(ids, return_attn=True)      # [N, V], list of [H, N, N] per layer
    ids = model.generate_greedy(prompt_ids, n)       # no cache: the full forward every step

Training tests use it for gradient checks: model.named_parameters() has the HF names.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402


class Conv1D(nn.Module):
    """HF's Conv1D: y = x @ weight + bias, weight stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.c_attn = Conv1D(C, 3 * C)
        self.c_proj = Conv1D(C, C)

    def forward(self, x, temperature=1.0, causal=True):
        N, C = x.shape
        H, d = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=1)
        q, k, v = (t.reshape(N, H, d).transpose(0, 1) for t in (q, k, v))  # [H, N, d]
        scores = q @ k.transpose(1, 2) / math.sqrt(d)  # [H, N, N]
        logits = scores / temperature
        if causal:
            mask = torch.ones(N, N, dtype=torch.bool).tril()
            logits = logits.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        heads = probs @ v  # [H, N, d]
        out = heads.transpose(0, 1).reshape(N, C)
        return self.c_proj(out), {"probs": probs, "scores": scores, "q": q, "k": k, "v": v,
                                  "head_out": heads}


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        self.c_fc = Conv1D(C, 4 * C)
        self.c_proj = Conv1D(4 * C, C)

    def forward(self, x):
        return self.c_proj(gelu_tanh(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, eps = cfg["n_embd"], cfg.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = MLP(cfg)

    def forward(self, x, temperature=1.0, causal=True):
        a, cap = self.attn(self.ln_1(x), temperature, causal)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, cap


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], C)
        self.wpe = nn.Embedding(cfg["n_positions"], C)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(C, eps=cfg.get("layer_norm_epsilon", 1e-5))


class GPT2(nn.Module):
    def __init__(self, cfg, untied_lm_head=False):
        super().__init__()
        self.cfg = cfg
        self.transformer = Transformer(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        if not untied_lm_head:
            self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2 is

    def forward(self, ids, temperature=1.0, causal=True, return_attn=False, return_all=False):
        """ids: list or 1-D tensor of N token ids -> logits [N, V] (and per-layer captures)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        N = ids.shape[0]
        t = self.transformer
        x = t.wte(ids) + t.wpe(torch.arange(N))
        caps, hidden = [], []
        for block in t.h:
            hidden.append(x)
            x, cap = block(x, temperature, causal)
            caps.append(cap)
        hidden.append(x)
        logits = self.lm_head(t.ln_f(x))
        if return_all:
            return logits, caps, hidden
        if return_attn:
            return logits, [c["probs"] for c in caps]
        return logits

    @torch.no_grad()
    def generate_greedy(self, ids, n_new, eot=None):
        ids = list(ids)
        out = []
        for _ in range(n_new):
            if len(ids) > self.cfg["n_positions"]:
                break
            nxt = int(torch.argmax(self.forward(ids)[-1]))
            if nxt == eot:
                break
            out.append(nxt)
            ids.append(nxt)
        return out


def from_params(cfg, params, dtype=torch.float32):
    """A GPT2 holding params ({HF name without "transformer.": array})."""
    untied = "lm_head.weight" in params and not np.array_equal(params["lm_head.weight"],
                                                                params["wte.weight"])
    m = GPT2(cfg, untied_lm_head=untied)
    sd = {}
    for k, v in params.items():
        key = k if k == "lm_head.weight" else "transformer." + k
        sd[key] = torch.from_numpy(np.array(v, dtype=np.float32))
    if "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
    m.load_state_dict(sd, strict=True)
    return m.to(dtype).eval()


def load(folder, dtype=torch.float32):
    cfg, params = checkpoint.load_checkpoint(folder)
    return from_params(cfg, params, dtype)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    model = load(sys.argv[1], torch.float64)
    ids = [int(x) for x in sys.argv[2].split(",")]
    print(model(ids)[-1].argmax().item())
