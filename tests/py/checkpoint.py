#!/usr/bin/python3
"""checkpoint.py -- writes random-weight GPT-2 checkpoints in the Hugging Face layout.

A folder with config.json, model.safetensors (written by hand here: 8-byte header length,
JSON header, raw little-endian bytes; F32, F16 or BF16), vocab.json and merges.txt. Used by
the model, training and playground tests; nothing here needs the qkv binary.

    from checkpoint import write_checkpoint, read_safetensors, load_checkpoint
    cfg, params = write_checkpoint(out_dir, layers=2, heads=4, embd=64, ctx=128, vocab=300,
                                   dtype="f32", seed=1)
    # params: {HF name without "transformer.": float32 numpy array}, the values exactly as
    # stored (after rounding to F16/BF16), so a reference model sees the same weights.

Command line:
    /usr/bin/python3 tests/py/checkpoint.py OUT_DIR --layers 2 --heads 4 --embd 64 --ctx 128 \
        --vocab 300 --dtype f32 --seed 1 [--no-prefix] [--lm-head untied|tied|none]
        [--tokenizer tiny|gpt2|none]

The "tiny" tokenizer is a made-up byte-level BPE (GPT-2's byte alphabet, merges learnt here
from a few sentences, "<|endoftext|>" last); "gpt2" copies GPT-2's real vocabulary from
../shared/data/gpt2 (vocab must be 50257) when present.
"""
import argparse
import itertools
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


# ---- values -------------------------------------------------------------------------------

def to_bf16_bits(a):
    """float32 array -> uint16 BF16 bit patterns (round to nearest even)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def round_to(a, dtype):
    """The float32 values a tensor has after storing it as dtype."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "f16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return from_bf16_bits(to_bf16_bits(a))
    return a.copy()


def make_config(layers=2, heads=4, embd=64, ctx=128, vocab=300, eps=1e-5):
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_layer": layers,
        "n_head": heads,
        "n_embd": embd,
        "n_positions": ctx,
        "n_ctx": ctx,
        "vocab_size": vocab,
        "layer_norm_epsilon": eps,
    }


def tensor_shapes(cfg):
    """[(HF name without "transformer.", shape)] in GPT-2's order."""
    C, V, T = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    out = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        out += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
                (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
                (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
    out += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return out


def random_params(cfg, seed=1):
    """Random weights scaled so activations stay O(1) and attention is far from uniform
    (a test that cannot tell heads apart checks nothing)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in tensor_shapes(cfg):
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name in ("wte.weight", "wpe.weight"):
            v = 0.3 * rng.standard_normal(shape)
        elif name.endswith(".weight"):
            scale = 1.0 if "c_attn" in name or "c_fc" in name else 0.5
            v = scale / np.sqrt(shape[0]) * rng.standard_normal(shape)
        else:
            v = 0.1 * rng.standard_normal(shape)
        params[name] = v.astype(np.float32)
    return params


# ---- safetensors --------------------------------------------------------------------------

def safetensors_bytes(tensors, dtype="f32", metadata=None, dtypes=None):
    """tensors: ordered {name: float32 array}. dtypes: optional {name: "f32"|"f16"|"bf16"}
    per tensor. Returns the file's bytes (header padded with spaces to 8 bytes)."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        dt = (dtypes or {}).get(name, dtype)
        a = np.ascontiguousarray(a, dtype=np.float32)
        if dt == "f32":
            raw = a.astype("<f4").tobytes()
        elif dt == "f16":
            raw = a.astype("<f2").tobytes()
        elif dt == "bf16":
            raw = to_bf16_bits(a).astype("<u2").tobytes()
        else:
            raise ValueError("dtype " + dt)
        header[name] = {"dtype": DTYPES[dt], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_safetensors(path, tensors, dtype="f32", metadata=None, dtypes=None):
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors, dtype, metadata, dtypes))


def read_safetensors(path):
    """{name: float32 numpy array} from a safetensors file (F32/F16/BF16), plus checks."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = e["data_offsets"]
        raw = data[base + b0:base + b1]
        shape = tuple(e["shape"])
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif e["dtype"] == "BF16":
            a = from_bf16_bits(np.frombuffer(raw, dtype="<u2"))
        else:
            raise ValueError("%s: dtype %s" % (name, e["dtype"]))
        out[name] = a.reshape(shape).astype(np.float32)
    return out


def load_checkpoint(d):
    """(config dict, {name without "transformer.": float32 array}) of a checkpoint folder."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("n_positions", cfg.get("n_ctx", 1024))
    cfg.setdefault("layer_norm_epsilon", 1e-5)
    raw = read_safetensors(os.path.join(d, "model.safetensors"))
    params = {}
    for k, v in raw.items():
        k = k[len("transformer."):] if k.startswith("transformer.") else k
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue
        params[k] = v
    return cfg, params


# ---- tokenizer ----------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


TINY_TEXT = ("the keys to the cabinet were on the table. the bank by the river was steep. "
             "she sat on the bank of the river and watched the water. the cat sat on the mat. "
             "attention is all you need. a model reads the text and predicts the next token. ")


def tiny_vocab(vocab_size):
    """(encoder dict, merges list) of a byte-level BPE with vocab_size tokens: 256 bytes,
    vocab_size - 257 merges learnt from TINY_TEXT, then <|endoftext|>."""
    if vocab_size < 257:
        raise ValueError("a byte-level vocabulary needs at least 257 tokens")
    b2u = bytes_to_unicode()
    enc = {b2u[b]: i for i, b in enumerate(range(256))}
    words = {}
    for i, w in enumerate(TINY_TEXT.split(" ")):
        if not w:
            continue
        w = (" " if i else "") + w
        key = tuple(b2u[b] for b in w.encode())
        words[key] = words.get(key, 0) + 1
    merges = []
    n_merges = vocab_size - 257
    letters = [b2u[b] for b in range(ord("a"), ord("z") + 1)]
    filler = itertools.chain(((x, y) for x in letters for y in letters),
                             ((x + y, z) for x in letters for y in letters for z in letters))
    while len(merges) < n_merges:
        counts = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if counts:
            pair = max(counts, key=lambda p: (counts[p], p))
            new = pair[0] + pair[1]
            words2 = {}
            for w, c in words.items():
                out, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
                        out.append(new)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                words2[tuple(out)] = words2.get(tuple(out), 0) + c
            words = words2
        else:  # the text is used up: merge pairs of letters so any size works
            pair = next(filler)
            new = pair[0] + pair[1]
        if new in enc:
            continue
        enc[new] = len(enc)
        merges.append(pair)
    enc["<|endoftext|>"] = len(enc)
    return enc, merges


def shared_gpt2_dir():
    env = os.environ.get("QKV_SHARED_DATA")
    for d in ([env] if env else []) + [os.path.join(ROOT, "..", "shared", "data")]:
        p = os.path.join(d, "gpt2")
        if os.path.isfile(os.path.join(p, "encoder.json")) and os.path.isfile(os.path.join(p, "vocab.bpe")):
            return p
    return None


def write_tokenizer(out_dir, vocab_size, kind="tiny"):
    """Writes vocab.json + merges.txt. kind "gpt2" needs vocab_size 50257 and shared data;
    returns False (writing nothing) when that is absent."""
    if kind == "gpt2":
        src = shared_gpt2_dir()
        if src is None or vocab_size != 50257:
            return False
        shutil.copyfile(os.path.join(src, "encoder.json"), os.path.join(out_dir, "vocab.json"))
        shutil.copyfile(os.path.join(src, "vocab.bpe"), os.path.join(out_dir, "merges.txt"))
        return True
    enc, merges = tiny_vocab(vocab_size)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    return True


# ---- the whole folder ---------------------------------------------------------------------

def write_checkpoint(out_dir, layers=2, heads=4, embd=64, ctx=128, vocab=300, dtype="f32",
                     seed=1, prefix=True, lm_head="none", tokenizer="tiny", buffers=False,
                     eps=1e-5, params=None):
    """Writes a checkpoint folder; returns (config, params as stored).

    prefix: names start with "transformer." (as GPT2LMHeadModel saves them) or not.
    lm_head: "none" (tied, not stored), "tied" (stored, equal to wte), "untied" (different).
    buffers: also store h.N.attn.bias / masked_bias (old checkpoints carry them).
    tokenizer: "tiny", "gpt2" or "none"."""
    os.makedirs(out_dir, exist_ok=True)
    cfg = make_config(layers, heads, embd, ctx, vocab, eps)
    if params is None:
        params = random_params(cfg, seed)
    params = {k: round_to(v, dtype) for k, v in params.items()}
    pre = "transformer." if prefix else ""
    tensors = {}
    for name, _ in tensor_shapes(cfg):
        tensors[pre + name] = params[name]
        if buffers and name.endswith("attn.c_attn.weight"):
            l = name.split(".")[1]
            tensors[pre + "h.%s.attn.bias" % l] = np.tril(np.ones((ctx, ctx), np.float32))[None, None]
            tensors[pre + "h.%s.attn.masked_bias" % l] = np.array(-1e4, np.float32)
    if lm_head == "tied":
        tensors["lm_head.weight"] = params["wte.weight"]
    elif lm_head == "untied":
        rng = np.random.default_rng(seed + 1000)
        params["lm_head.weight"] = round_to(0.3 * rng.standard_normal((vocab, embd)), dtype)
        tensors["lm_head.weight"] = params["lm_head.weight"]
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, dtype,
                      metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if tokenizer != "none":
        if not write_tokenizer(out_dir, vocab, tokenizer) and tokenizer == "gpt2":
            raise RuntimeError("GPT-2's vocabulary (shared/data/gpt2) is absent or vocab != 50257")
    return cfg, params


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a random-weight GPT-2 checkpoint folder.")
    ap.add_argument("out_dir")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-prefix", action="store_true", help='names without "transformer."')
    ap.add_argument("--lm-head", choices=["none", "tied", "untied"], default="none")
    ap.add_argument("--tokenizer", choices=["tiny", "gpt2", "none"], default="tiny")
    ap.add_argument("--buffers", action="store_true", help="store attn.bias/masked_bias too")
    a = ap.parse_args(argv)
    cfg, _ = write_checkpoint(a.out_dir, a.layers, a.heads, a.embd, a.ctx, a.vocab, a.dtype, a.seed,
                              prefix=not a.no_prefix, lm_head=a.lm_head, tokenizer=a.tokenizer,
                              buffers=a.buffers)
    print("wrote %s (%d layers, %d heads, n_embd %d, ctx %d, vocab %d, %s)" % (
        a.out_dir, cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"],
        cfg["vocab_size"], a.dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
