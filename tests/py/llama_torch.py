#!/usr/bin/python3
"""llama_torch.py -- an independent Llama-family model in PyTorch (the oracle the C model is
checked against), and writers of random checkpoints in the Hugging Face and llama2.c layouts.

Written from the published architectures (Llama: RMSNorm, rotary embeddings, SwiGLU; GQA as
in Ainslie et al. and HF's repeat_kv; Qwen2's q/k/v biases; Qwen3's per-head RMSNorm on q and
k before RoPE; Llama 3.1's rope_scaling as transformers' _compute_llama3_parameters), not
from qkv's C. Everything runs in the dtype asked for (float64 in the tests).

    from llama_torch import load, write_family
    cfg, params = write_family(folder, "qwen3")          # config.json, safetensors, vocab
    model = load(folder, dtype=torch.float64)            # reads them back (shards too)
    logits, attn = model(ids, return_attn=True)          # [N, V], list of [H, N, N] per layer
    ids = model.generate_greedy(prompt_ids, n)           # full forward every step

model.named_parameters() carries Hugging Face's names (model.layers.0.self_attn.q_proj.weight,
..., lm_head.weight only when untied), for gradient checks.

RoPE: rotate_half pairs (i, i + r/2) as HF stores q/k; interleaved=True pairs (2i, 2i+1) as
Meta's and llama2.c's code (used for llama2.c checkpoints, whose q/k rows are in that order).
Partial rotary: the first r = int(head_dim * partial_rotary_factor) dims of each head rotate.
"""
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import checkpoint  # noqa: E402  (safetensors writer/reader, dtype rounding)

LESSONS = os.path.join(ROOT, "models", "qkv-lessons")


# ---- the model ------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight (Zhang & Sennrich 2019), over the last dim."""

    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_inv_freq(cfg):
    """inv_freq [r/2] for theta, partial rotary and llama3 scaling (HF semantics, float64)."""
    d = head_dim(cfg)
    r = rope_dim(cfg)
    theta = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / (theta ** (torch.arange(0, r, 2, dtype=torch.float64) / r))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, low, high = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        old = float(rs["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        # long wavelengths (low frequencies) are slowed by factor, short ones kept, and the
        # band between interpolated smoothly
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    assert d >= r
    return inv


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def rope_dim(cfg):
    return int(head_dim(cfg) * cfg.get("partial_rotary_factor", 1.0))


def apply_rope(x, pos, inv_freq, interleaved):
    """x [H, N, d]: the first 2 * len(inv_freq) dims rotated by angle pos * inv_freq."""
    r = 2 * inv_freq.shape[0]
    ang = pos.to(torch.float64)[:, None] * inv_freq[None, :]  # [N, r/2]
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    xr, xp = x[..., :r], x[..., r:]
    if interleaved:
        a, b = xr[..., 0::2], xr[..., 1::2]
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    else:
        cos2, sin2 = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
        half = r // 2
        rot = torch.cat((-xr[..., half:], xr[..., :half]), -1)  # rotate_half
        out = xr * cos2 + rot * sin2
    return torch.cat((out, xp), -1)


class Attention(nn.Module):
    def __init__(self, cfg, interleaved):
        super().__init__()
        C, H = cfg["hidden_size"], cfg["num_attention_heads"]
        KV = cfg.get("num_key_value_heads") or H
        d = head_dim(cfg)
        bias = cfg["model_type"] == "qwen2"
        self.H, self.KV, self.d = H, KV, d
        self.q_proj = nn.Linear(C, H * d, bias=bias)
        self.k_proj = nn.Linear(C, KV * d, bias=bias)
        self.v_proj = nn.Linear(C, KV * d, bias=bias)
        self.o_proj = nn.Linear(H * d, C, bias=False)
        self.qk_norm = cfg["model_type"] == "qwen3"
        if self.qk_norm:
            eps = cfg.get("rms_norm_eps", 1e-6)
            self.q_norm = RMSNorm(d, eps)
            self.k_norm = RMSNorm(d, eps)
        self.interleaved = interleaved
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def forward(self, x, temperature=1.0, causal=True):
        N = x.shape[0]
        H, KV, d = self.H, self.KV, self.d
        q = self.q_proj(x).reshape(N, H, d).transpose(0, 1)  # [H, N, d]
        k = self.k_proj(x).reshape(N, KV, d).transpose(0, 1)  # [KV, N, d]
        v = self.v_proj(x).reshape(N, KV, d).transpose(0, 1)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        pos = torch.arange(N)
        q = apply_rope(q, pos, self.inv_freq, self.interleaved)
        k = apply_rope(k, pos, self.inv_freq, self.interleaved)
        # GQA: query head h reads key/value head h // (H / KV) (HF's repeat_kv)
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        scores = q @ k.transpose(1, 2) / math.sqrt(d)
        logits = scores / temperature
        if causal:
            mask = torch.ones(N, N, dtype=torch.bool).tril()
            logits = logits.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        heads = probs @ v  # [H, N, d]
        out = heads.transpose(0, 1).reshape(N, H * d)
        return self.o_proj(out), {"probs": probs, "scores": scores, "q": q, "k": k, "v": v,
                                  "head_out": heads}


class MLP(nn.Module):
    """SwiGLU (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg):
        super().__init__()
        C, F = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(C, F, bias=False)
        self.up_proj = nn.Linear(C, F, bias=False)
        self.down_proj = nn.Linear(F, C, bias=False)

    def forward(self, x):
        g = self.gate_proj(x)
        return self.down_proj(g * torch.sigmoid(g) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg, interleaved):
        super().__init__()
        C, eps = cfg["hidden_size"], cfg.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(C, eps)
        self.self_attn = Attention(cfg, interleaved)
        self.post_attention_layernorm = RMSNorm(C, eps)
        self.mlp = MLP(cfg)

    def forward(self, x, temperature=1.0, causal=True):
        a, cap = self.self_attn(self.input_layernorm(x), temperature, causal)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), cap


class Inner(nn.Module):
    def __init__(self, cfg, interleaved):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([Layer(cfg, interleaved) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg.get("rms_norm_eps", 1e-6))


class Llama(nn.Module):
    def __init__(self, cfg, interleaved=False):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg, interleaved)
        self.tied = cfg.get("tie_word_embeddings", False)
        if not self.tied:
            self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    def n_ctx(self):
        n = self.cfg.get("max_position_embeddings", 2048)
        w = self.cfg.get("sliding_window")
        if w and (self.cfg["model_type"] == "mistral" or self.cfg.get("use_sliding_window")):
            n = min(n, w)
        return n

    def forward(self, ids, temperature=1.0, causal=True, return_attn=False, return_all=False):
        ids = torch.as_tensor(ids, dtype=torch.long)
        x = self.model.embed_tokens(ids)
        caps, hidden = [], []
        for layer in self.model.layers:
            hidden.append(x)
            x, cap = layer(x, temperature, causal)
            caps.append(cap)
        hidden.append(x)
        h = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        logits = h @ w.t()
        if return_all:
            return logits, caps, hidden
        if return_attn:
            return logits, [c["probs"] for c in caps]
        return logits

    @torch.no_grad()
    def generate_greedy(self, ids, n_new, eot=None):
        ids, out = list(ids), []
        for _ in range(n_new):
            if len(ids) > self.n_ctx():
                break
            nxt = int(torch.argmax(self.forward(ids)[-1]))
            if nxt == eot:
                break
            out.append(nxt)
            ids.append(nxt)
        return out


def strip_prefix(name):
    for p in ("model.", "transformer."):
        if name.startswith(p):
            return name[len(p):]
    return name


def from_params(cfg, params, dtype=torch.float64, interleaved=False):
    """A Llama holding params ({HF name, with or without "model.": array})."""
    m = Llama(cfg, interleaved)
    sd = {}
    for k, v in params.items():
        key = k if k == "lm_head.weight" else "model." + strip_prefix(k)
        sd[key] = torch.from_numpy(np.array(v, dtype=np.float32))
    if m.tied:
        sd.pop("lm_head.weight", None)
    m.load_state_dict(sd, strict=True)
    return m.to(dtype).eval()


def read_folder_params(d):
    """{name: float32 array} of model.safetensors or of every shard of the index."""
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return checkpoint.read_safetensors(single)
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        wm = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(wm.values())):
        out.update(checkpoint.read_safetensors(os.path.join(d, shard)))
    return out


def load(d, dtype=torch.float64):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    return from_params(cfg, read_folder_params(d), dtype)


# ---- random checkpoints, Hugging Face layout ------------------------------------------------

def make_config(model_type, hidden, heads, kv_heads, layers=2, ff=None, vocab=8192, ctx=256,
                head_dim_=None, tie=True, theta=10000.0, eps=1e-5, **extra):
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                           "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[model_type]],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": ff or 3 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": ctx,
        "vocab_size": vocab,
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "rope_scaling": None,
        "hidden_act": "silu",
        "tie_word_embeddings": tie,
        "torch_dtype": "float32",
    }
    if head_dim_ is not None:
        cfg["head_dim"] = head_dim_
    if model_type in ("llama", "qwen3"):
        cfg["attention_bias"] = False
    if model_type == "llama":
        cfg["mlp_bias"] = False
    cfg.update(extra)
    return cfg


def tensor_shapes(cfg):
    """[(HF name with "model.", shape)] in the order HF saves them."""
    C, V, F = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    d = head_dim(cfg)
    out = [("model.embed_tokens.weight", (V, C))]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        out += [(p + "input_layernorm.weight", (C,)),
                (p + "self_attn.q_proj.weight", (H * d, C)),
                (p + "self_attn.k_proj.weight", (KV * d, C)),
                (p + "self_attn.v_proj.weight", (KV * d, C)),
                (p + "self_attn.o_proj.weight", (C, H * d))]
        if cfg["model_type"] == "qwen2":
            out += [(p + "self_attn.q_proj.bias", (H * d,)), (p + "self_attn.k_proj.bias", (KV * d,)),
                    (p + "self_attn.v_proj.bias", (KV * d,))]
        if cfg["model_type"] == "qwen3":
            out += [(p + "self_attn.q_norm.weight", (d,)), (p + "self_attn.k_norm.weight", (d,))]
        out += [(p + "post_attention_layernorm.weight", (C,)),
                (p + "mlp.gate_proj.weight", (F, C)),
                (p + "mlp.up_proj.weight", (F, C)),
                (p + "mlp.down_proj.weight", (C, F))]
    out.append(("model.norm.weight", (C,)))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (V, C)))
    return out


def random_params(cfg, seed=1):
    """Weights scaled so the residual stream stays O(1) and attention is far from uniform."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in tensor_shapes(cfg):
        if name.endswith("q_norm.weight") or name.endswith("k_norm.weight"):
            v = 1.7 + 0.2 * rng.standard_normal(shape)  # QK-norm: sharpen, or attention is flat
        elif name.endswith("norm.weight"):
            v = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            v = 0.5 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            v = 0.3 * rng.standard_normal(shape)
        else:
            scale = 2.0 if ("q_proj" in name or "k_proj" in name) else 1.0
            v = scale / np.sqrt(shape[1]) * rng.standard_normal(shape)
        params[name] = v.astype(np.float32)
    return params


def copy_vocab(out_dir, src=LESSONS):
    """vocab.json + merges.txt of a small GPT-2-style vocabulary (the built-in model's), so the
    CLI can tokenize text for these checkpoints. Returns its size."""
    shutil.copyfile(os.path.join(src, "vocab.json"), os.path.join(out_dir, "vocab.json"))
    shutil.copyfile(os.path.join(src, "merges.txt"), os.path.join(out_dir, "merges.txt"))
    with open(os.path.join(src, "vocab.json"), encoding="utf-8") as f:
        return len(json.load(f))


def vocab_size_of(src=LESSONS):
    with open(os.path.join(src, "vocab.json"), encoding="utf-8") as f:
        return len(json.load(f))


def write_hf(out_dir, cfg, params=None, dtype="f32", seed=1, shards=1, prefix=True, tokenizer=True):
    """Writes config.json, the weights (one file, or `shards` files + the index) and the vocab.
    Returns (cfg, params as stored, rounded to dtype)."""
    os.makedirs(out_dir, exist_ok=True)
    if params is None:
        params = random_params(cfg, seed)
    params = {k: checkpoint.round_to(v, dtype) for k, v in params.items()}
    names = [n for n, _ in tensor_shapes(cfg)]

    def stored(n):
        return n if prefix or n == "lm_head.weight" else strip_prefix(n)
    if shards <= 1:
        checkpoint.write_safetensors(os.path.join(out_dir, "model.safetensors"),
                                     {stored(n): params[n] for n in names}, dtype,
                                     metadata={"format": "pt"})
    else:
        per = -(-len(names) // shards)
        wm, total = {}, 0
        for s in range(shards):
            part = names[s * per:(s + 1) * per]
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            checkpoint.write_safetensors(os.path.join(out_dir, fn), {stored(n): params[n] for n in part},
                                         dtype, metadata={"format": "pt"})
            for n in part:
                wm[stored(n)] = fn
                total += params[n].size * (4 if dtype == "f32" else 2)
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if tokenizer:
        copy_vocab(out_dir)
    return cfg, params


# One checkpoint per family / feature: (config kwargs, write kwargs). C 192-448, 2 layers.
FAMILIES = {
    # GQA 3:1, head dim 64, tied (as SmolLM2), F32
    "llama": (dict(model_type="llama", hidden=384, heads=6, kv_heads=2, theta=100000.0), dict(dtype="f32")),
    # GQA 4:1, untied, BF16; sliding_window below max_position_embeddings: n_ctx is capped at it
    "mistral": (dict(model_type="mistral", hidden=256, heads=8, kv_heads=2, tie=False, ctx=256,
                     sliding_window=96), dict(dtype="bf16")),
    # Q/K/V biases, GQA 7:1, head dim 64, theta 1e6, F16, 2 shards
    "qwen2": (dict(model_type="qwen2", hidden=448, heads=7, kv_heads=1, theta=1000000.0, eps=1e-6,
                   use_sliding_window=False, sliding_window=4096, max_window_layers=2), dict(dtype="f16", shards=2)),
    # QK-norm, head_dim 128 apart from C / H (256 / 4 = 64), untied, 3 shards
    "qwen3": (dict(model_type="qwen3", hidden=256, heads=4, kv_heads=2, head_dim_=128, tie=False,
                   theta=1000000.0, eps=1e-6), dict(dtype="f32", shards=3)),
    # Llama 3.1/3.2 rope scaling with a short original context, so all three bands occur
    "llama3": (dict(model_type="llama", hidden=256, heads=4, kv_heads=2, theta=500000.0,
                    rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 64, "rope_type": "llama3"}),
               dict(dtype="bf16")),
    # multi-query attention, names without "model."
    "mqa": (dict(model_type="llama", hidden=256, heads=4, kv_heads=1, tie=False), dict(dtype="f32", prefix=False)),
    # partial rotary (phi-style factor 0.5 on a llama config)
    "partial": (dict(model_type="llama", hidden=256, heads=4, kv_heads=2, partial_rotary_factor=0.5),
                dict(dtype="f32")),
    # head dim 80
    "hd80": (dict(model_type="llama", hidden=320, heads=4, kv_heads=2), dict(dtype="f32")),
}


def write_family(out_dir, family, seed=1, tokenizer=True, **overrides):
    ckw, wkw = FAMILIES[family]
    ckw = dict(ckw)
    ckw.setdefault("vocab", vocab_size_of() if tokenizer else 512)
    ckw.update(overrides)
    cfg = make_config(**ckw)
    return write_hf(out_dir, cfg, seed=seed, tokenizer=tokenizer, **wkw)


# ---- llama2.c checkpoints -------------------------------------------------------------------

def llama2c_config(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=True):
    """The HF-style config dict the reference model reads for a llama2.c checkpoint."""
    return {"model_type": "llama", "hidden_size": dim, "intermediate_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": seq_len,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": shared}


def _l2c_weights(cfg, params):
    L = cfg["num_hidden_layers"]

    def per(kind):
        return [params["model.layers.%d.%s" % (l, kind)] for l in range(L)]
    return per, L


def write_llama2c(path, cfg, params, version=0, group_size=64):
    """Writes params (HF names) as llama2.c: version 0 (legacy run.c header), 1 (fp32 "ak42")
    or 2 (Q8_0). Version 2 quantises as export.py does; returns the params as the file holds
    them (dequantised), so the reference sees the same weights."""
    per, L = _l2c_weights(cfg, params)
    C, F, H = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    KV, V, T = cfg["num_key_value_heads"], cfg["vocab_size"], cfg["max_position_embeddings"]
    shared = cfg["tie_word_embeddings"]
    f32 = lambda a: np.ascontiguousarray(a, dtype="<f4").tobytes()  # noqa: E731
    emb = params["model.embed_tokens.weight"]
    mats = {"wq": per("self_attn.q_proj.weight"), "wk": per("self_attn.k_proj.weight"),
            "wv": per("self_attn.v_proj.weight"), "wo": per("self_attn.o_proj.weight"),
            "w1": per("mlp.gate_proj.weight"), "w2": per("mlp.down_proj.weight"),
            "w3": per("mlp.up_proj.weight")}
    att, ffn = per("input_layernorm.weight"), per("post_attention_layernorm.weight")
    out = dict(params)
    with open(path, "wb") as f:
        if version == 0:
            f.write(struct.pack("<7i", C, F, L, H, KV, V if shared else -V, T))
            f.write(f32(emb))
            for a in att:
                f.write(f32(a))
            for k in ("wq", "wk", "wv", "wo"):
                for a in mats[k]:
                    f.write(f32(a))
            for a in ffn:
                f.write(f32(a))
            for k in ("w1", "w2", "w3"):
                for a in mats[k]:
                    f.write(f32(a))
            f.write(f32(params["model.norm.weight"]))
            f.write(b"\0" * (4 * T * (C // H)))  # freq_cis_real + imag, unused
            if not shared:
                f.write(f32(params["lm_head.weight"]))
            return out
        hdr = struct.pack("<Ii", 0x616b3432, version) + struct.pack("<7i", C, F, L, H, KV, V, T)
        hdr += struct.pack("<B", int(shared))
        if version == 2:
            hdr += struct.pack("<i", group_size)
        f.write(hdr + b"\0" * (256 - len(hdr)))
        for a in att + ffn + [params["model.norm.weight"]]:
            f.write(f32(a))
        weights = [("model.embed_tokens.weight", emb)]
        names = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
                 "wo": "self_attn.o_proj", "w1": "mlp.gate_proj", "w2": "mlp.down_proj", "w3": "mlp.up_proj"}
        for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
            weights += [("model.layers.%d.%s.weight" % (l, names[k]), a) for l, a in enumerate(mats[k])]
        if not shared:
            weights.append(("lm_head.weight", params["lm_head.weight"]))
        for name, a in weights:
            if version == 1:
                f.write(f32(a))
                continue
            # export.py's quantize_q80: per group, scale = max|w| / 127, q = round(w / scale)
            w = np.asarray(a, np.float32).reshape(-1, group_size)
            scale = (np.abs(w).max(axis=1) / np.float32(127.0)).astype(np.float32)
            q = np.round(w / scale[:, None]).astype(np.int8)
            f.write(q.tobytes())
            f.write(f32(scale))
            out[name] = (q.astype(np.float32) * scale[:, None]).reshape(a.shape)
    return out


def random_llama2c(path, dim=64, hidden=160, layers=2, heads=4, kv_heads=2, vocab=300, seq_len=64,
                   shared=True, version=0, seed=1, group_size=32):
    """A random llama2.c checkpoint; returns (cfg, params as the file holds them)."""
    cfg = llama2c_config(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared)
    params = random_params(cfg, seed)
    params = write_llama2c(path, cfg, params, version, group_size)
    return cfg, params


def read_llama2c(path):
    """(cfg, params) of a legacy or version 1 llama2.c file (the reference's own reader)."""
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x616b3432:
        version = struct.unpack("<i", data[4:8])[0]
        C, F, L, H, KV, V, T = struct.unpack("<7i", data[8:36])
        shared = bool(data[36])
        assert version == 1, "reader: version 1 only"
        at = 256
    else:
        C, F, L, H, KV, V, T = struct.unpack("<7i", data[:28])
        shared, V, at, version = V > 0, abs(V), 28, 0
    cfg = llama2c_config(C, F, L, H, KV, V, T, shared)
    d = C // H

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        a = np.frombuffer(data, dtype="<f4", count=n, offset=at).reshape(shape).astype(np.float32)
        at += 4 * n
        return a
    p = {}
    kinds = [("self_attn.q_proj.weight", (H * d, C)), ("self_attn.k_proj.weight", (KV * d, C)),
             ("self_attn.v_proj.weight", (KV * d, C)), ("self_attn.o_proj.weight", (C, H * d))]
    mlp = [("mlp.gate_proj.weight", (F, C)), ("mlp.down_proj.weight", (C, F)), ("mlp.up_proj.weight", (F, C))]
    lay = "model.layers.%d."
    if version == 0:
        p["model.embed_tokens.weight"] = take(V, C)
        for l in range(L):
            p[lay % l + "input_layernorm.weight"] = take(C)
        for name, shape in kinds:
            for l in range(L):
                p[lay % l + name] = take(*shape)
        for l in range(L):
            p[lay % l + "post_attention_layernorm.weight"] = take(C)
        for name, shape in mlp:
            for l in range(L):
                p[lay % l + name] = take(*shape)
        p["model.norm.weight"] = take(C)
        at += 4 * T * d
    else:
        for l in range(L):
            p[lay % l + "input_layernorm.weight"] = take(C)
        for l in range(L):
            p[lay % l + "post_attention_layernorm.weight"] = take(C)
        p["model.norm.weight"] = take(C)
        p["model.embed_tokens.weight"] = take(V, C)
        for name, shape in kinds + mlp:
            for l in range(L):
                p[lay % l + name] = take(*shape)
    if not shared:
        p["lm_head.weight"] = take(V, C)
    assert at == len(data), "llama2.c file: %d bytes, layout says %d" % (len(data), at)
    return cfg, p


def load_llama2c(path, dtype=torch.float64):
    cfg, params = read_llama2c(path)
    return from_params(cfg, params, dtype, interleaved=True)


# ---- llama2.c's tokenizer (run.c's encode, for the prompts of the greedy references) ----------

def read_llama2c_tokenizer(path, vocab_size):
    data = open(path, "rb").read()
    at = 4
    vocab, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack("<fi", data[at:at + 8])
        vocab.append(data[at + 8:at + 8 + n])
        scores.append(score)
        at += 8 + n
    return vocab, scores


def llama2c_encode(text, vocab, scores, bos=True):
    """run.c's encode(): BOS, a " " dummy prefix when text is non-empty, one token per UTF-8
    code point (byte fallback to id byte + 3), then merge the best-scoring pair until none."""
    lookup = {v: i for i, v in enumerate(vocab)}
    toks = [1] if bos else []
    if text:
        toks.append(lookup[b" "])
    raw = text.encode("utf-8")
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        cp = raw[i:j]
        if cp in lookup:
            toks.append(lookup[cp])
        else:
            toks += [b + 3 for b in cp]
        i = j
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for k in range(len(toks) - 1):
            s = vocab[toks[k]] + vocab[toks[k + 1]]
            if s in lookup and scores[lookup[s]] > best:
                best, best_id, best_i = scores[lookup[s]], lookup[s], k
        if best_i < 0:
            break
        toks[best_i:best_i + 2] = [best_id]
    return toks


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Write a random Llama-family checkpoint folder.")
    ap.add_argument("out_dir")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="llama")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    cfg, _ = write_family(a.out_dir, a.family, a.seed)
    print("wrote %s (%s)" % (a.out_dir, a.family))
