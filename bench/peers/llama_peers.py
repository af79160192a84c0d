#!/usr/bin/python3
"""llama_peers.py -- PyTorch on the Llama-family checkpoint `qkv bench model --shape smollm2|qwen2.5`
wrote (the same weights): the sibling of model_peers.py (GPT-2).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peers/llama_peers.py DIR --threads 2 \
        --reps 3 --gen 64

DIR holds config.json + model.safetensors (Hugging Face Llama/Mistral/Qwen2/Qwen3 layout, F32),
ids.npy (1024 prompt ids, float32) and qkv_last128.npy (qkv's last-position logits for the
first 128 ids, the check). The model is tests/py/llama_torch.py's (written from the published
architectures, not from qkv's C), in float32: its layers compute the check (last logits at 128
tokens against qkv's). The timed passes use the same weights and arithmetic, leaner: prompt
processing (prompt_pass: attention without llama_torch's kept intermediates, GQA without
repeating keys/values) computes the last position's logits only (as llama-bench and qkv's bench
do); generation keeps a per-layer KV cache and runs one-token steps as matrix @ vector
(torch.mv). q|k|v and gate|up are each one [out, in] matrix whose row blocks
are the model's q_proj/k_proj/v_proj and gate_proj/up_proj weights (views, no copies), so a
step does one matrix-vector product for each, as qkv does. Prints one JSON line: pp128, pp1024,
gen (tokens/s, medians), gen_ids (first 8 greedy tokens), check_max_diff (llama_torch's layers
vs qkv), check_timed_vs_reference (the timed prompt pass vs llama_torch's layers), peak_mb.
"""
import argparse
import json
import os
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "py"))
import llama_torch  # noqa: E402


def read_f32_safetensors(path):
    """{name: (offset, count, shape)} of an F32 safetensors file: each tensor is read straight
    into its array when needed, so the file never sits in this process's memory whole (the
    peak memory reported is the model's)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            raise ValueError("%s: dtype %s (the bench writes F32)" % (name, e["dtype"]))
        b0, b1 = e["data_offsets"]
        out[name] = (8 + n + b0, (b1 - b0) // 4, e["shape"])
    return out


def param(t):
    return nn.Parameter(t, requires_grad=False)


def load(d):
    """llama_torch.Llama in float32 holding the checkpoint's weights, built without the random
    initialisation (0.5B parameters would take seconds and twice the memory)."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    path = os.path.join(d, "model.safetensors")
    st = read_f32_safetensors(path)

    def t(name):
        off, count, shape = st.pop(name)
        a = np.fromfile(path, dtype="<f4", count=count, offset=off)
        if a.size != count:
            raise ValueError("%s: the file is short" % name)
        return torch.from_numpy(a.astype(np.float32, copy=False).reshape(shape))

    saved = nn.Linear.reset_parameters, nn.Embedding.reset_parameters
    nn.Linear.reset_parameters = nn.Embedding.reset_parameters = lambda self: None
    try:
        model = llama_torch.Llama(cfg)  # torch.empty weights: untouched pages, no memory yet
    finally:
        nn.Linear.reset_parameters, nn.Embedding.reset_parameters = saved
    inner = model.model
    inner.embed_tokens.weight = param(t("model.embed_tokens.weight"))
    inner.norm.weight = param(t("model.norm.weight"))
    for li, layer in enumerate(inner.layers):
        p = "model.layers.%d." % li
        a, m = layer.self_attn, layer.mlp
        layer.input_layernorm.weight = param(t(p + "input_layernorm.weight"))
        layer.post_attention_layernorm.weight = param(t(p + "post_attention_layernorm.weight"))
        qkv_w = torch.cat([t(p + "self_attn.%s_proj.weight" % z) for z in "qkv"])  # [Hd + 2 KVd, C]
        nq, nk = a.H * a.d, a.KV * a.d
        a.qkv_w = qkv_w
        a.q_proj.weight, a.k_proj.weight, a.v_proj.weight = (
            param(qkv_w[:nq]), param(qkv_w[nq:nq + nk]), param(qkv_w[nq + nk:]))
        if a.q_proj.bias is not None:
            qkv_b = torch.cat([t(p + "self_attn.%s_proj.bias" % z) for z in "qkv"])
            a.qkv_b = qkv_b
            a.q_proj.bias, a.k_proj.bias, a.v_proj.bias = (
                param(qkv_b[:nq]), param(qkv_b[nq:nq + nk]), param(qkv_b[nq + nk:]))
        else:
            a.qkv_b = None
        if a.qk_norm:
            a.q_norm.weight = param(t(p + "self_attn.q_norm.weight"))
            a.k_norm.weight = param(t(p + "self_attn.k_norm.weight"))
        a.o_proj.weight = param(t(p + "self_attn.o_proj.weight"))
        gu_w = torch.cat([t(p + "mlp.gate_proj.weight"), t(p + "mlp.up_proj.weight")])  # [2F, C]
        nf = gu_w.shape[0] // 2
        m.gu_w = gu_w
        m.gate_proj.weight, m.up_proj.weight = param(gu_w[:nf]), param(gu_w[nf:])
        m.down_proj.weight = param(t(p + "mlp.down_proj.weight"))
    if model.tied:
        model.head_w = inner.embed_tokens.weight
    else:
        model.lm_head.weight = param(t("lm_head.weight"))
        model.head_w = model.lm_head.weight
    if st:
        raise ValueError("tensors the model does not use: %s" % sorted(st)[:4])
    for name, v in model.named_parameters():  # every weight came from the file
        assert v.device.type == "cpu" and v.dtype == torch.float32, name
    return model.eval()


def reference_last_logits(model, ids):
    """The last position's logits through llama_torch's own layers (the check)."""
    inner = model.model
    x = inner.embed_tokens(ids)
    for layer in inner.layers:
        x, _ = layer(x)
    return torch.mv(model.head_w, inner.norm(x[-1]))


def rope_tables(a, pos):
    """cos, sin [N, r] for positions pos (float64 angles as llama_torch.apply_rope, HF pairing)."""
    ang = pos.to(torch.float64)[:, None] * a.inv_freq.to(torch.float64)[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    return torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)


def rope(x, cos, sin):
    """x [..., d]: the first r = cos.shape[-1] dims rotated (rotate_half pairs (i, i + r/2))."""
    r = cos.shape[-1]
    xr, xp = x[..., :r], x[..., r:]
    h = r // 2
    out = xr * cos + torch.cat((-xr[..., h:], xr[..., :h]), -1) * sin
    return torch.cat((out, xp), -1) if xp.shape[-1] else out


def prompt_pass(model, ids, cache=None):
    """The residual stream after the last layer [N, C], timed for prompt processing: the same
    weights and arithmetic as llama_torch's layers, with q|k|v and gate|up as one matrix each,
    GQA without repeating keys/values (the G query heads of a key/value head are one batch),
    and the large intermediates (q|k|v, scores, gate|up) written into buffers kept between calls
    and worked on in place. (llama_torch's layers keep every intermediate for the tests; and a
    fresh tensor of tens of MB costs this machine ~0.5 s of page faults, several a layer.)"""
    inner = model.model
    a0 = inner.layers[0].self_attn
    H, KV, d = a0.H, a0.KV, a0.d
    G, nq, nk, N = H // KV, a0.H * a0.d, a0.KV * a0.d, ids.shape[0]
    x = inner.embed_tokens(ids)
    cos, sin = rope_tables(a0, torch.arange(N))
    mask = torch.ones(N, N, dtype=torch.bool).triu(1)
    scale = 1.0 / d ** 0.5
    f = inner.layers[0].mlp.gu_w.shape[0] // 2
    ws = model.__dict__.setdefault("workspace", {})

    def buf(name, *shape):
        if name not in ws or tuple(ws[name].shape) != shape:
            ws[name] = torch.empty(shape)
        return ws[name]
    zb, sb, gub = buf("z", N, nq + 2 * nk), buf("s", KV, G * N, N), buf("gu", N, 2 * f)
    for layer in inner.layers:
        a, m = layer.self_attn, layer.mlp
        h = layer.input_layernorm(x)
        if a.qkv_b is not None:
            z = torch.addmm(a.qkv_b, h, a.qkv_w.t(), out=zb)
        else:
            z = torch.mm(h, a.qkv_w.t(), out=zb)
        q = z[:, :nq].reshape(N, H, d).transpose(0, 1)
        k = z[:, nq:nq + nk].reshape(N, KV, d).transpose(0, 1)
        v = z[:, nq + nk:].reshape(N, KV, d).transpose(0, 1)
        if a.qk_norm:
            q, k = a.q_norm(q), a.k_norm(k)
        q, k = rope(q, cos, sin), rope(k, cos, sin)  # contiguous [H, N, d], [KV, N, d]
        if cache is not None:
            cache.append([k, v.contiguous()])  # v is a view of the reused buffer
        s = torch.bmm(q.reshape(KV, G * N, d), k.transpose(1, 2), out=sb).mul_(scale)  # [KV, G N, N]
        s.view(KV, G, N, N).masked_fill_(mask, float("-inf"))
        s.sub_(s.amax(-1, keepdim=True)).exp_()  # softmax, in place
        s.div_(s.sum(-1, keepdim=True))
        o = torch.bmm(s, v)  # [KV, G N, d] = [H, N, d]
        x = x + F.linear(o.reshape(H, N, d).transpose(0, 1).reshape(N, nq), a.o_proj.weight)
        gu = torch.mm(layer.post_attention_layernorm(x), m.gu_w.t(), out=gub)
        g = F.silu(gu[:, :f], inplace=True).mul_(gu[:, f:])
        x = x + F.linear(g, m.down_proj.weight)
    return x


def prompt_last_logits(model, ids):
    return torch.mv(model.head_w, model.model.norm(prompt_pass(model, ids)[-1]))


def generate(model, prompt, n_new):
    """Greedy generation with a KV cache; returns (ids, seconds from choosing the first token to
    choosing the last: n_new - 1 steps, as qkv's bench times its own)."""
    inner = model.model
    layers = inner.layers
    a0 = layers[0].self_attn
    H, KV, d = a0.H, a0.KV, a0.d
    G = H // KV
    nq, nk = H * d, KV * d
    cache = []
    N = prompt.shape[0]
    x = prompt_pass(model, prompt, cache)  # fills the cache
    logits = torch.mv(model.head_w, inner.norm(x[-1]))
    out, pos, t_first, t_last = [], N, None, None
    for step in range(n_new):
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        t_last = time.perf_counter()
        if t_first is None:
            t_first = t_last
        if step == n_new - 1:
            break
        x = inner.embed_tokens.weight[nxt]
        cos, sin = rope_tables(a0, torch.tensor([pos]))
        cos, sin = cos[0], sin[0]
        for li, layer in enumerate(layers):
            a, m = layer.self_attn, layer.mlp
            z = torch.mv(a.qkv_w, layer.input_layernorm(x))
            if a.qkv_b is not None:
                z = z + a.qkv_b
            q, k, v = z[:nq].reshape(H, d), z[nq:nq + nk].reshape(KV, d), z[nq + nk:].reshape(KV, d)
            if a.qk_norm:
                q, k = a.q_norm(q), a.k_norm(k)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            kc, vc = cache[li]
            kc = torch.cat([kc, k.reshape(KV, 1, d)], 1)
            vc = torch.cat([vc, v.reshape(KV, 1, d)], 1)
            cache[li] = [kc, vc]
            # query head h reads key/value head h // G: [KV, G, d] @ [KV, d, n]
            s = (q.reshape(KV, G, d) @ kc.transpose(1, 2)) / d ** 0.5
            o = (torch.softmax(s, -1) @ vc).reshape(nq)
            x = x + torch.mv(a.o_proj.weight, o)
            gu = torch.mv(m.gu_w, layer.post_attention_layernorm(x))
            g, u = gu[:gu.shape[0] // 2], gu[gu.shape[0] // 2:]
            x = x + torch.mv(m.down_proj.weight, F.silu(g) * u)
        logits = torch.mv(model.head_w, inner.norm(x))
        pos += 1
    return out, t_last - t_first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gen", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model = load(a.dir)
    ids = torch.from_numpy(np.load(os.path.join(a.dir, "ids.npy")).astype(np.int64))
    res = {"threads": a.threads, "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
           "model_type": model.cfg["model_type"]}
    ref = os.path.join(a.dir, "qkv_last128.npy")
    if os.path.exists(ref):  # llama_torch's own layers against qkv
        ours = reference_last_logits(model, ids[:128]).numpy()
        res["check_max_diff"] = float(np.abs(ours - np.load(ref)).max())
        # and the timed pass against llama_torch's layers
        res["check_timed_vs_reference"] = float(np.abs(prompt_last_logits(model, ids[:128]).numpy() - ours).max())
    for n in (128, 1024):
        prompt_last_logits(model, ids[:n])  # warm-up
        ts = []
        for _ in range(max(1, a.reps)):
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
