#!/usr/bin/python3
"""make_seeds.py OUT_DIR -- seed corpora for the fuzz targets in tests/fuzz/fz_*.c.

Writes OUT_DIR/<target>/<name> files (names starting "ok_" are valid inputs the code must
accept; tests/py/test_fuzz_regressions.py checks that it does): valid inputs (tiny models and vocabularies from
tests/py/checkpoint.py) plus one file per malformed class of reliability-anchors.md section 1
(the public proof-of-concept *shapes*, re-created here, nothing downloaded). Deterministic;
needs /usr/bin/python3 with NumPy (checkpoint.py uses it). Nothing here is committed as a
blob: the corpora are rebuilt from this script.
"""
import json
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "py"))

import checkpoint  # noqa: E402  (tests/py/checkpoint.py)


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- .npy -----------------------------------------------------------------------------------

def npy(shape, data=None, descr="'<f4'", fortran="False", version=1, pad=True, extra=b""):
    dims = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
    hdr = "{'descr': %s, 'fortran_order': %s, 'shape': (%s), }" % (descr, fortran, dims)
    pre = 10 if version == 1 else 12
    if pad:
        hdr += " " * ((64 - (pre + len(hdr) + 1) % 64) % 64)
    hdr = hdr.encode() + b"\n"
    if version == 1:
        head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr))
    else:
        head = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(hdr))
    if data is None:
        n = 1
        for s in shape:
            n *= s
        data = struct.pack("<%df" % n, *[float(i) * 0.5 - 1 for i in range(n)])
    return head + hdr + data + extra


def seeds_npy(out):
    t = "fz_npy"
    put(out, t, "ok_v1_2x3", npy((2, 3)))
    put(out, t, "ok_v2_4", npy((4,), version=2))
    put(out, t, "ok_v3_1x1x2", npy((1, 1, 2), version=3))
    put(out, t, "ok_scalar", npy(()))
    put(out, t, "ok_empty_0x5", npy((0, 5)))
    put(out, t, "ok_float32_descr", npy((2,), descr="'float32'"))
    put(out, t, "f8", npy((2,), descr="'<f8'", data=b"\0" * 16))
    put(out, t, "fortran", npy((2, 2), fortran="True"))
    put(out, t, "truncated_data", npy((3, 3))[:-5])
    put(out, t, "trailing_data", npy((2,), extra=b"xx"))
    put(out, t, "huge_shape", npy((1 << 40, 1 << 40), data=b""))
    put(out, t, "9_dims", npy((1,) * 9, data=b"\0" * 4))
    put(out, t, "bad_magic", b"\x93NUMPZ\x01\x00\x10\x00{}")
    put(out, t, "hlen_past_end", b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'")
    put(out, t, "nul_in_header", npy((2,)).replace(b"'shape'", b"'sh\0pe'"))
    # the header dict is parsed, not searched (issue 14): each of these is refused
    put(out, t, "descr_suffix", npy((2,), descr="'<f4x'"))
    put(out, t, "descr_in_string", npy((2,), descr="\"'descr': '<f4'\""))
    put(out, t, "dup_key", npy((2,)).replace(b"'fortran_order'", b"'descr': '<f4', 'fortran_order'"))
    put(out, t, "unknown_key", npy((2,)).replace(b"'shape'", b"'x': 1, 'shape'"))
    put(out, t, "shape_not_tuple", npy((2,)).replace(b"(2,)", b"(2) "))
    put(out, t, "unterminated", npy((2,), descr="'<f4, 'x"))


# ---- safetensors ----------------------------------------------------------------------------

def st_raw(header, data=b"", hlen=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def seeds_safetensors(out):
    t = "fz_safetensors"
    import numpy as np
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    for dt in ("f32", "f16", "bf16"):
        put(out, t, "ok_" + dt, checkpoint.safetensors_bytes(
            {"a": a, "b": np.ones((4,), np.float32), "z": np.zeros((0, 3), np.float32)}, dt,
            metadata={"format": "pt"}))
    put(out, t, "ok_empty_object", st_raw({}))
    put(out, t, "ok_metadata_only", st_raw({"__metadata__": {"k": "v"}}))
    put(out, t, "hlen_huge", st_raw({}, hlen=(1 << 64) - 1))
    put(out, t, "hlen_zero", st_raw(b"", hlen=0))
    put(out, t, "hlen_past_end", st_raw({"a": 1}, hlen=1000))
    put(out, t, "not_object", st_raw([1, 2, 3]))
    put(out, t, "shape_overflow", st_raw(
        {"w": {"dtype": "F32", "shape": [4194305, 4194305, 211106198978564], "data_offsets": [0, 4]}},
        b"\0" * 4))
    put(out, t, "shape_2_2e64m2", st_raw(
        b'{"w":{"dtype":"F32","shape":[2,18446744073709551614],"data_offsets":[0,8]}}', b"\0" * 8))
    put(out, t, "ten_at_0_16", st_raw(
        {"t%d" % i: {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]} for i in range(10)},
        b"\0" * 16))
    valid = checkpoint.safetensors_bytes({"a": a}, "f32")
    put(out, t, "trailing_pickle", valid + b"\x80\x02}q\x00.")
    put(out, t, "ok_zero_size_reuse", st_raw(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
         "f": {"dtype": "F16", "shape": [0, 7], "data_offsets": [8, 8]}}, b"\0" * 8))
    put(out, t, "end_before_begin", st_raw(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8))
    put(out, t, "negative_offset", st_raw(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, b"\0" * 8))
    put(out, t, "unsupported_dtype", st_raw(
        {"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8))
    put(out, t, "unknown_dtype", st_raw(
        {"a": {"dtype": "Q4_0", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8))
    put(out, t, "duplicate_key", st_raw(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))
    put(out, t, "nine_dims", st_raw(
        {"a": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}}, b"\0" * 4))
    put(out, t, "float_shape", st_raw(
        {"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}, b"\0" * 4))
    put(out, t, "escaped_name", st_raw(
        b'{"\\u0000a\\ud800":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4))


# ---- model folder: config.json NUL model.safetensors ----------------------------------------

def seeds_model_load(out):
    t = "fz_model_load"
    variants = [
        ("f32", dict()),
        ("f16", dict(dtype="f16")),
        ("bf16_noprefix", dict(dtype="bf16", prefix=False)),
        ("untied", dict(lm_head="untied")),
        ("tied_stored", dict(lm_head="tied")),
        ("buffers", dict(buffers=True)),
    ]
    with tempfile.TemporaryDirectory(prefix="qkv-seeds-") as tmp:
        for name, kw in variants:
            d = os.path.join(tmp, name)
            layers = 1
            checkpoint.write_checkpoint(d, layers=layers, heads=1 if name != "untied" else 2,
                                        embd=8, ctx=8, vocab=300, tokenizer="none", **kw)
            with open(os.path.join(d, "config.json"), "rb") as f:
                cfg = f.read()
            with open(os.path.join(d, "model.safetensors"), "rb") as f:
                st = f.read()
            put(out, t, "ok_" + name, cfg + b"\0" + st)
        # the config and a weights file that disagree
        d = os.path.join(tmp, "f32")
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            st = f.read()
        cfg = json.loads(open(os.path.join(d, "config.json")).read())
        for key, val in [("n_embd", 16), ("n_layer", 2), ("vocab_size", 299), ("n_positions", 4),
                         ("n_head", 3), ("layer_norm_epsilon", 0), ("n_inner", 7),
                         ("model_type", "llama"), ("activation_function", "relu"),
                         ("n_ctx", "8")]:
            c = dict(cfg)
            c[key] = val
            put(out, t, "cfg_%s" % key, json.dumps(c).encode() + b"\0" + st)
        put(out, t, "empty_cfg", b"{}\0" + st)
        put(out, t, "no_weights", json.dumps(cfg).encode() + b"\0")


# ---- tokenizer --------------------------------------------------------------------------------

TEXTS = [
    b"Hello world! It's 2024, isn't it?",
    b"The keys to the cabinet were on the table.",
    "caf\u00e9 \u65e5\u672c\u8a9e \U0001F917 \u043f\u0440\u0438\u0432\u0435\u0442".encode(),
    b"<|endoftext|>Once upon a time<|endoftext|>",
    b"\xff\xfe\xc3( \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf \xe2\x82",
    b"  \t\n\n   \r\n\xc2\x85\xe3\x80\x80\xe2\x80\xa8 x",
    b"they'll we've I'm 'S 'LL  's 123456789 3.14",
    b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    b"",
    # long pieces: the heap-based merge path, long whitespace runs, long invalid runs
    b"x" * 5000,
    b"ab" * 2500,
    b" " * 3000 + b"a",
    bytes(range(256)) * 8,
    "\u65e5\u672c".encode() * 800,
]


def seeds_tok_encode(out):
    t = "fz_tok_encode"
    for i, s in enumerate(TEXTS):
        put(out, t, "ok_plain_%d" % i, b"\0" + s)
        put(out, t, "ok_special_%d" % i, b"\1" + s)


def seeds_tok_load(out):
    t = "fz_tok_load"
    with tempfile.TemporaryDirectory(prefix="qkv-seeds-") as tmp:
        for n in (300, 260):
            checkpoint.write_tokenizer(tmp, n, "tiny")
            v = open(os.path.join(tmp, "vocab.json"), "rb").read()
            m = open(os.path.join(tmp, "merges.txt"), "rb").read()
            put(out, t, "ok_tiny_%d" % n, v + b"\0" + m)
    b2u = checkpoint.bytes_to_unicode()
    alphabet = [b2u[b] for b in range(256)]
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["\u0120t"] = 256
    vocab["he"] = 257
    vocab["\u0120the"] = 258
    vocab["<|endoftext|>"] = 259
    merges = "#version: 0.2\n\u0120 t\nh e\n\u0120t he\n"
    put(out, t, "ok_small", json.dumps(vocab).encode() + b"\0" + merges.encode())
    put(out, t, "no_merges", json.dumps(vocab).encode() + b"\0")
    put(out, t, "merge_unknown", json.dumps(vocab).encode() + b"\0#version: 0.2\nx y\n")
    put(out, t, "merge_result_missing", json.dumps(vocab).encode() + b"\0#version: 0.2\na b\n")
    put(out, t, "bad_id", b'{"a": -1, "b": 1.5}\0')
    put(out, t, "dup_id", b'{"a": 0, "b": 0}\0')
    put(out, t, "huge_id", b'{"a": 4294967296}\0')
    put(out, t, "sparse_ids", b'{"a": 0, "b": 1000000}\0')
    put(out, t, "not_alphabet", '{"\u4e00": 0}\0'.encode())
    put(out, t, "escapes", b'{"\\u0000": 0, "\\ud800": 1}\0')
    put(out, t, "merge_three_fields", json.dumps(vocab).encode() + b"\0h e x\n")
    put(out, t, "merge_crlf", json.dumps(vocab).encode() + "\0#version: 0.2\r\nh e\r\n\r\n".encode())


# ---- API ----------------------------------------------------------------------------------------

def seeds_api(out):
    t = "fz_api"
    attend = [
        {"text": "The keys to the cabinet"},
        {"text": "The bank", "temperature": 0.5, "causal": False, "scores": True, "top_k": 3},
        {"text": "a b c", "layers": [1, 0], "scores": [0], "detail": {"layer": 1, "head": 1},
         "probe": [" b", "zz"]},
        {"text": "emoji \U0001F917", "attention": False, "top_k": 0},
        {"text": "x" * 200},
        {"text": "", "top_k": 50},
        {"text": "a", "temperature": 1e-30, "top_k": 1000},
        {"text": "a b", "layers": [-1, 99], "detail": {"layer": 0, "head": 5}},
        {"text": "bank", "temperature": "hot"},
        {"text": 5},
        {"text": "a", "unknown_key": 1},
    ]
    for i, body in enumerate(attend):
        put(out, t, ("ok_attend_%d" if i < 4 else "attend_%d") % i, b"\0" + json.dumps(body).encode())
    compare = [
        {"a": "the bank of the river", "b": "money in the bank", "word": "bank"},
        {"a": "the bank of the river", "b": "money in the bank", "word": "bank", "index_a": 1},
        {"a": "x", "b": "y", "word": "z"},
        {"a": "", "b": "", "word": ""},
        {"a": "bank bank", "b": "bank", "word": "bank", "index_a": 5, "index_b": -1},
    ]
    for i, body in enumerate(compare):
        put(out, t, ("ok_compare_%d" if i < 2 else "compare_%d") % i, b"\1" + json.dumps(body).encode())
    put(out, t, "ok_model", b"\2")
    put(out, t, "model_post", b"\6{}")
    put(out, t, "nope", b"\3{}")
    put(out, t, "attend_get", b"\4")
    put(out, t, "invalid_json", b"\0{\"text\":\"abc")
    put(out, t, "nul_escape", b"\0{\"text\":\"a\\u0000b\"}")
    put(out, t, "lone_surrogate", b"\0{\"text\":\"a\\ud800b\"}")
    put(out, t, "deep_nesting", b"\0" + b"[" * 3000 + b"]" * 3000)
    put(out, t, "duplicate", b"\0{\"text\":\"a\",\"text\":\"b\"}")


# ---- attention views ------------------------------------------------------------------------------

def seeds_viz(out):
    t = "fz_viz"
    toks = [
        [b"The", b" keys", b" to"],
        [b"\x00\x01\x1b[31m", b"\x7f\xc2\x85", b"\xe2\x80\xae", b"\xe2\x80\xa8"],
        [b"\"", b"<&>", b"',\r\n", b"\\u0000"],
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f\xa4", b"\xf0\x9f\xa4\x97", b"\xe6\x97\xa5"],
        [b" ", b"\t", b"\n\n", b"  x"],
        [b"x" * 200],
    ]
    for i, ts in enumerate(toks):
        for flags in (0, 3, 4 + 8 + 16, 0xF8):
            put(out, t, "ok_%d_%02x" % (i, flags),
                bytes([flags, len(ts) - 1]) + b"\xfe".join(ts))


# ---- GGUF -------------------------------------------------------------------------------------

def g_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def g_kv(key, vtype, payload):
    return g_str(key) + struct.pack("<I", vtype) + payload


def g_tinfo(name, ne, ttype, offset):
    return (g_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
            + struct.pack("<IQ", ttype, offset))


def gguf(kvs, tinfos, data=b"", version=3, align=32, n_kv=None, n_t=None):
    head = b"GGUF" + struct.pack("<IQQ", version, len(tinfos) if n_t is None else n_t,
                                 len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tinfos)
    if tinfos:
        body += b"\0" * ((-len(body)) % align)
    return body + data


def seeds_gguf(out):
    """fz_gguf: tiny valid files (every metadata type, the model views), then one file per
    malformed class of reliability-anchors.md (GGUF CVEs, ggml PR #1516, gguf-py #27188,
    gguf-tools #25), re-created from their published shapes."""
    t = "fz_gguf"
    U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
    arch = lambda a: g_kv("general.architecture", STR, g_str(a))
    u32 = lambda k, v: g_kv(k, U32, struct.pack("<I", v))
    f32 = lambda k, v: g_kv(k, F32, struct.pack("<f", v))
    every = [
        g_kv("u8", U8, b"\xc8"), g_kv("i8", I8, b"\x9c"), g_kv("u16", U16, struct.pack("<H", 60000)),
        g_kv("i16", I16, struct.pack("<h", -3)), u32("u32", 7), g_kv("i32", I32, struct.pack("<i", -7)),
        f32("f32", 1e-5), g_kv("b", BOOL, b"\x01"), arch("llama"), g_kv("u64", U64, struct.pack("<Q", 1 << 40)),
        g_kv("i64", I64, struct.pack("<q", -5)), g_kv("f64", F64, struct.pack("<d", 0.5)),
        g_kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 3) + g_str("a") + g_str("") + g_str("<s>")),
        g_kv("tokenizer.ggml.scores", ARR, struct.pack("<IQ", F32, 3) + struct.pack("<3f", 0, -1, 2)),
        g_kv("tokenizer.ggml.token_type", ARR, struct.pack("<IQ", I32, 3) + struct.pack("<3i", 1, 1, 3)),
    ]
    f32data = struct.pack("<8f", *[i * 0.5 for i in range(8)])
    put(out, t, "ok_every_type_v3", gguf(every, [g_tinfo("w", [4, 2], 0, 0)], f32data))
    put(out, t, "ok_every_type_v2", gguf(every, [g_tinfo("w", [4, 2], 0, 0)], f32data, version=2))
    put(out, t, "ok_vocab_only", gguf(every, []))
    put(out, t, "ok_empty", gguf([], []))
    q8 = struct.pack("<H", 0x3800) + bytes(range(32))
    q4 = struct.pack("<H", 0x4000) + bytes(range(16))
    q4k = struct.pack("<HH", 0x3c00, 0x3800) + bytes(range(12)) + bytes(range(128))
    put(out, t, "ok_quant_types", gguf([u32("general.alignment", 64)], [
        g_tinfo("q8", [32], 8, 0), g_tinfo("q4", [32], 2, 64), g_tinfo("q4k", [256], 12, 128),
        g_tinfo("bf", [4], 30, 320), g_tinfo("h", [4], 1, 384)],
        q8 + b"\0" * 30 + q4 + b"\0" * 46 + q4k + b"\0" * 48 + b"\x80\x3f" * 4 + b"\0" * 56
        + b"\x00\x3c" * 4, align=64))
    # a two-layer llama (GQA 4/2, d 2) and a one-layer gpt2, F32, for the model view
    C, H, KV, F, V = 8, 4, 2, 16, 6
    lk = [arch("llama"), u32("llama.block_count", 2), u32("llama.embedding_length", C),
          u32("llama.attention.head_count", H), u32("llama.attention.head_count_kv", KV),
          u32("llama.feed_forward_length", F), u32("llama.context_length", 16),
          f32("llama.attention.layer_norm_rms_epsilon", 1e-5), f32("llama.rope.freq_base", 10000)]
    ti, data = [], b""
    def add(name, ne):
        nonlocal data
        n = 1
        for x in ne:
            n *= x
        ti.append(g_tinfo(name, ne, 0, len(data)))
        data += struct.pack("<%df" % n, *[((i * 7) % 13) / 13.0 - 0.5 for i in range(n)])
        data += b"\0" * ((-len(data)) % 32)
    add("token_embd.weight", [C, V])
    add("output_norm.weight", [C])
    for l in range(2):
        add("blk.%d.attn_q.weight" % l, [C, C])
        add("blk.%d.attn_k.weight" % l, [C, KV * 2])
        add("blk.%d.attn_k.bias" % l, [KV * 2])
        add("blk.%d.ffn_down.weight" % l, [F, C])
    put(out, t, "ok_llama_model", gguf(lk, ti, data))
    gk = [arch("gpt2"), u32("gpt2.block_count", 1), u32("gpt2.embedding_length", C),
          u32("gpt2.attention.head_count", 2), u32("gpt2.context_length", 4),
          f32("gpt2.attention.layer_norm_epsilon", 1e-5)]
    ti, data = [], b""
    add("token_embd.weight", [C, V])
    add("position_embd.weight", [C, 4])
    add("blk.0.attn_qkv.weight", [C, 3 * C])
    add("blk.0.attn_qkv.bias", [3 * C])
    add("blk.0.ffn_up.weight", [C, 4 * C])
    put(out, t, "ok_gpt2_model", gguf(gk, ti, data))
    # malformed classes
    one = lambda ne, ty=0, off=0, data=b"\0" * 64: gguf([arch("llama")], [g_tinfo("w", ne, ty, off)], data)
    put(out, t, "cve_2024_23605_n_kv_max", gguf([], [], n_kv=(1 << 64) - 1))
    put(out, t, "cve_2024_23605_n_kv_wrap", gguf([arch("x")], [], n_kv=(1 << 61) + 1))
    put(out, t, "n_tensors_max", gguf([], [], n_t=(1 << 64) - 1))
    put(out, t, "cve_2024_21802_ne_2_64", one([1 << 32, 1 << 32]))
    put(out, t, "cve_2025_53630_offset_wrap", one([8], off=(1 << 64) - 32))
    put(out, t, "cve_2026_27940_ne_7ffffffffffffc0", one([0x7FFFFFFFFFFFFFC0]))
    put(out, t, "cve_2026_33298_pad_2_63_m3", one([(1 << 63) - 3]))
    put(out, t, "zero_dim", one([4, 0]))
    put(out, t, "ollama_cve_2026_7482_past_end", one([32], data=b"\0" * 64))
    put(out, t, "unaligned_offset", one([4], off=4))
    put(out, t, "overlap", gguf([], [g_tinfo("a", [16], 0, 0), g_tinfo("b", [16], 0, 32)], b"\0" * 128))
    put(out, t, "pr1516_string_1gib", gguf([g_kv("k", STR, struct.pack("<Q", 1 << 30) + b"abc")], []))
    put(out, t, "pr1516_alignment_2_30", gguf([u32("general.alignment", 1 << 30)], []))
    put(out, t, "alignment_0x80000000", gguf([u32("general.alignment", 0x80000000)], []))
    put(out, t, "alignment_u64", gguf([g_kv("general.alignment", U64, struct.pack("<Q", 32))], []))
    put(out, t, "gguf_py_27188_array_2_63",
        gguf([g_kv("a", ARR, struct.pack("<IQ", U8, 1 << 63) + b"\1\2")], []))
    put(out, t, "nested_array", gguf([g_kv("a", ARR, struct.pack("<IQIQ", ARR, 1, U8, 1) + b"\0")], []))
    put(out, t, "gguf_tools_25_n_dims_ffffffff",
        gguf([], [g_str("w") + struct.pack("<I", 0xFFFFFFFF) + b"\1" * 80]))
    put(out, t, "n_dims_5", gguf([], [g_tinfo("w", [1, 1, 1, 1, 1], 0, 0)], b"\0" * 32))
    put(out, t, "dup_key", gguf([u32("k", 1), u32("k", 2)], []))
    put(out, t, "dup_tensor", gguf([], [g_tinfo("a", [8], 0, 0), g_tinfo("a", [8], 0, 32)], b"\0" * 64))
    put(out, t, "q8_row_33", one([33], ty=8))
    put(out, t, "unknown_type_4", one([8], ty=4))
    put(out, t, "bool_2", gguf([g_kv("b", BOOL, b"\2")], []))
    put(out, t, "scores_int8", gguf([arch("llama"),
        g_kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 2) + g_str("a") + g_str("b")),
        g_kv("tokenizer.ggml.scores", ARR, struct.pack("<IQ", I8, 2) + b"\1\2")], []))
    put(out, t, "big_endian", b"GGUF\0\0\0\3" + b"\0" * 16)
    put(out, t, "version_1", b"GGUF\1\0\0\0" + b"\0" * 8)
    put(out, t, "truncated", gguf(every, [g_tinfo("w", [4, 2], 0, 0)], f32data)[:-9])


def seeds_tok_json(out):
    t = "fz_tok_json"
    bpe = '"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<s>":3},"merges":["a b"]}'
    put(out, t, "ok_plain", ("{" + bpe + "}\0ab ba").encode())
    put(out, t, "ok_split", ('{"pre_tokenizer":{"type":"Split","pattern":{"Regex":'
        '"\\\\s+(?!\\\\S)|\\\\p{L}{1,3}|(?i:ab)"},"behavior":"Isolated"},'
        '"added_tokens":[{"id":3,"content":"<s>","special":true}],' + bpe + '}\0a<s>b').encode())
    put(out, t, "bad_model", b'{"model":{"type":"Unigram"}}')
    put(out, t, "bad_bytelevel_without_bytes", ('{"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},'
        '"decoder":{"type":"ByteLevel"},' + bpe + '}\0ab a\xc3\xa9').encode())
    put(out, t, "ok_metaspace", ('{"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend",'
        '"prepend":"\u2581"},{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]},'
        '"decoder":{"type":"Metaspace"},' + bpe + '}\0a b').encode())
    put(out, t, "bad_json", b'{"model":')
    put(out, t, "bad_regex", ('{"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(?<=a)"},'
        '"behavior":"Isolated"},' + bpe + '}').encode())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py OUT_DIR")
    out = sys.argv[1]
    seeds_npy(out)
    seeds_safetensors(out)
    seeds_model_load(out)
    seeds_tok_encode(out)
    seeds_tok_load(out)
    seeds_api(out)
    seeds_viz(out)
    seeds_gguf(out)
    seeds_tok_json(out)
    n = sum(len(fs) for _, _, fs in os.walk(out))
    print("make_seeds: %d seed files in %s" % (n, out))


if __name__ == "__main__":
    main()
