"""test_tokenizer_llama2c.py -- llama2.c's tokenizer.bin through `qkv tokenize`, against a line
for line Python port of run.c's encode() and decode() (karpathy/llama2.c).

run.c: a dummy prefix " " when the text is not empty; each UTF-8 character looked up in the
vocabulary, else its bytes as ids byte + 3; then, while some adjacent pair's concatenation is
in the vocabulary, merge the pair whose merged token has the best score (strictly better
than -1e10; the first such pair among equal scores). qkv does the same with a heap over
precomputed pairs, so this checks that the two orders agree, on shared/data's tok512.bin
(aidreams260K; skips when absent) and on a vocabulary this test writes (scores with ties,
byte tokens, multi-byte characters). 3,000 strings each, plain and with BOS, and decode.
"""
# qkv-test: sanitize
import json
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Skip, qkv, run_all, shared_data, test, tmpdir  # noqa: E402


def read_bin(path):
    data = open(path, "rb").read()
    (maxlen,) = struct.unpack_from("<i", data, 0)
    at, vocab, scores = 4, [], []
    while at < len(data):
        score, n = struct.unpack_from("<fi", data, at)
        vocab.append(data[at + 8:at + 8 + n])
        scores.append(score)
        at += 8 + n
    return vocab, scores


def runc_encode(vocab, scores, text, bos):
    """run.c's encode(), line for line (str_lookup is a search over the sorted vocabulary;
    with no duplicate strings any hit is the same token)."""
    lookup = {}
    for i, v in enumerate(vocab):
        lookup.setdefault(v, i)
    tokens = [1] if bos else []
    if text:
        tokens.append(lookup.get(b" ", -1))
    b = text
    i = 0
    while i < len(b):
        j = i + 1
        while j < len(b) and (b[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        cp = b[i:j]
        if cp in lookup:
            tokens.append(lookup[cp])
        else:
            tokens += [c + 3 for c in cp]
        i = j
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for k in range(len(tokens) - 1):
            if tokens[k] < 0 or tokens[k + 1] < 0:
                continue
            t = lookup.get(vocab[tokens[k]] + vocab[tokens[k + 1]], -1)
            if t != -1 and scores[t] > best_score:
                best_score, best_id, best_idx = scores[t], t, k
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def runc_decode(vocab, tokens):
    """run.c's decode(prev, token) over a sequence whose predecessor is BOS; safe_printf's
    filter of lone unprintable bytes left out (qkv returns the bytes)."""
    out = b""
    prev = 1
    for t in tokens:
        piece = vocab[t]
        if prev == 1 and piece[:1] == b" ":
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            piece = bytes([int(piece[3:5], 16)])
        if t in (1, 2):
            piece = b""
        out += piece
        prev = t
    return out


def strings(vocab, rnd, n):
    words = [v.decode("utf-8", "replace").strip() for v in vocab[259:] if v.strip()]
    pools = ["abcdefghijklmnopqrstuvwxyz ", "ABC xyz .,!?'\n", "éàü€日本😀", "0123456789 "]
    out = ["", " ", "  ", "a", "I dream", "The machine", "Echoes of", "x\ny", "😀 日本"]
    while len(out) < n:
        if rnd.random() < 0.5 and words:
            s = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 8)))
        else:
            s = "".join(rnd.choice(rnd.choice(pools)) for _ in range(rnd.randint(1, 30)))
        out.append(s)
    return out


def check(path, vocab, scores, n=3000):
    rnd = random.Random(7)
    ss = strings(vocab, rnd, n)
    stdin = "".join(json.dumps(s) + "\n" for s in ss).encode()
    for bos in (False, True):
        args = ["tokenize", "--model", path, "--jsonl"] + (["--add-special"] if bos else [])
        got = [json.loads(l) for l in qkv(*args, input=stdin).stdout.decode().splitlines()]
        assert len(got) == len(ss)
        for s, g in zip(ss, got):
            want = runc_encode(vocab, scores, s.encode(), bos)
            assert g == want, "%r (bos %s): run.c %s, qkv %s" % (s, bos, want, g)
    # decode: every encoded string, as ids on stdin
    for s in ss[:300]:
        ids = runc_encode(vocab, scores, s.encode(), False)
        out = qkv("tokenize", "--model", path, "--decode", input=json.dumps(ids).encode()).stdout
        assert out == runc_decode(vocab, ids) == s.encode(), "%r: decoded %r" % (s, out)
    print("  %s: %d strings x (plain, BOS) and 300 decodes match run.c" % (os.path.basename(path), len(ss)))


@test
def tok512_matches_runc():
    d = shared_data()
    path = d and os.path.join(d, "aidreams260K", "tok512.bin")
    if not path or not os.path.isfile(path):
        raise Skip("shared/data/aidreams260K/tok512.bin is absent")
    vocab, scores = read_bin(path)
    check(path, vocab, scores)


@test
def written_vocab_matches_runc():
    """A vocabulary with tied scores (the first pair wins), byte tokens, and merges that
    compete across overlaps ("abc": "ab"+"c" vs "a"+"bc")."""
    vocab = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
    extra = [(b" ", 0.0), (b"a", -1.0), (b"b", -1.0), (b"c", -1.0), (b"ab", -2.0), (b"bc", -2.0),
             (b"abc", -3.0), (b" a", -2.0), (b" ab", -1.5), (b"\xc3\xa9", -4.0),
             (b"\xc3\xa9a", -2.0), (b"ca", -2.0), (b"cab", -5.0), (b"x", -1e11), (b"xx", -1e11)]
    scores = [0.0] * len(vocab)
    for v, sc in extra:
        vocab.append(v)
        scores.append(sc)
    blob = struct.pack("<i", 8) + b"".join(struct.pack("<fi", sc, len(v)) + v for v, sc in zip(vocab, scores))
    path = os.path.join(tmpdir(), "tokenizer.bin")
    open(path, "wb").write(blob)
    check(path, vocab, scores, n=1500)


run_all()
