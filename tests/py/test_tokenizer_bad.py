# qkv-test: sanitize
"""test_tokenizer_bad.py -- bad input through `qkv tokenize` and `qkv vocab`: invalid UTF-8,
empty stdin, missing or corrupt vocabulary files, huge files, a 1 MB single word, bad ids,
bad options, corpora the trainer must refuse. Each must end with a clear message (or, for
text, a lossless encoding), never a crash: this file also runs against the ASan+UBSan build.
Needs no shared data (it trains its own small vocabulary).
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atexit  # noqa: E402
import shutil  # noqa: E402

import harness  # noqa: E402
from harness import qkv, run_all, test  # noqa: E402


def tmpdir():
    """A temporary folder removed when the tests end."""
    d = harness.tmpdir()
    atexit.register(shutil.rmtree, d, True)
    return d

_VOCAB = []


def vocab_dir():
    """A 360-token vocabulary trained by `qkv vocab` on a small varied corpus."""
    if not _VOCAB:
        d = tmpdir()
        rng = random.Random(3)
        words = ["the", "bank", "river", "attention", "it's", "we'll", "naïve", "日本語", "😀",
                 "3.14", "aaaa", "--", "Hello", "\n", "\t", "  "]
        text = " ".join(rng.choice(words) for _ in range(20000))
        open(os.path.join(d, "corpus.txt"), "w", encoding="utf-8").write(text)
        qkv("vocab", "--data", os.path.join(d, "corpus.txt"), "--size", 360, "--out", os.path.join(d, "v"))
        _VOCAB.append(os.path.join(d, "v"))
    return _VOCAB[0]


def encode(data, d=None, *extra):
    cp = qkv("tokenize", "--model", d or vocab_dir(), *extra, input=data)
    return json.loads(cp.stdout)


def decode(ids, d=None):
    return qkv("tokenize", "--model", d or vocab_dir(), "--decode", input=json.dumps(ids).encode()).stdout


def expect_error(args, data=b"", code=None, says=(), env=None):
    cp = qkv(*args, input=data, check=False, env=env)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode != 0, "%r exited 0" % (args,)
    assert cp.returncode in (1, 2), "%r exited %d (crash?): %s" % (args, cp.returncode, err[-1500:])
    if code is not None:
        assert cp.returncode == code, (args, cp.returncode, err)
    assert "error" in err, err
    for s in says:
        assert s in err, "%r: message %r lacks %r" % (args, err, s)
    return err


@test
def invalid_utf8_round_trips():
    cases = [b"\xff", b"\x80abc", b"a\xc3", b"\xe2\x82", b"\xed\xa0\x80 surrogate", b"\xc0\xaf",
             b"\xf4\x90\x80\x80", b"ok \xfe\xff ok", b"\xf0\x9f\x98", b"caf\xc3\xa9 \xe9t\xe9"]
    rng = random.Random(9)
    cases += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) for _ in range(30)]
    cases.append(bytes(rng.randrange(256) for _ in range(200000)))
    for data in cases:
        ids = encode(data)
        assert decode(ids) == data, data[:20]
    # each invalid byte is its own token: "a\xffb" -> a, \xff, b
    assert len(encode(b"a\xffb")) == 3


@test
def empty_stdin():
    assert encode(b"") == []
    assert encode(b"", None, "--special") == []
    assert decode([]) == b""
    assert qkv("tokenize", "--model", vocab_dir(), "--jsonl", input=b"").stdout == b""


@test
def one_megabyte_single_word():
    for word in (b"a" * (1 << 20), bytes(random.Random(1).choice(b"abcdefghij") for _ in range(1 << 20))):
        t0 = time.time()
        ids = encode(word)
        dt = time.time() - t0
        assert decode(ids) == word
        assert len(ids) <= len(word)
        print("note: a 1 MB word -> %d tokens in %.2f s" % (len(ids), dt))
        assert dt < 120, dt  # generous: near-linear work, even under the sanitizers


@test
def missing_and_corrupt_vocabulary():
    d = tmpdir()
    expect_error(["tokenize", "--model", os.path.join(d, "nope")], b"hi", 1, ["vocab.json"])
    # the built-in model's folder when --model is left out ($QKV_MODEL here)
    expect_error(["tokenize"], b"hi", 1, ["nowhere", "vocab.json"],
                 env={"QKV_MODEL": os.path.join(d, "nowhere")})
    good = vocab_dir()
    vocab = open(os.path.join(good, "vocab.json"), "rb").read()
    merges = open(os.path.join(good, "merges.txt"), "rb").read()

    def folder(v, m):
        f = tmpdir()
        if v is not None:
            open(os.path.join(f, "vocab.json"), "wb").write(v)
        if m is not None:
            open(os.path.join(f, "merges.txt"), "wb").write(m)
        return f

    cases = [
        (vocab[: len(vocab) // 2], merges, ["invalid JSON at line"]),
        (b"", merges, ["invalid JSON"]),
        (b"[1,2]", merges, ["JSON object"]),
        (b"\xff\xfe{}", merges, ["invalid JSON"]),
        (vocab.replace(b'"!": 0', b'"!": -3'), merges, ["out of range"]),
        (vocab.replace(b'"!": 0', b'"!": 1.5'), merges, ["not an integer"]),
        (vocab.replace(b'"!": 0', b'"! !": 0'), merges, ["U+0020"]),
        (vocab, None, ["merges.txt"]),
        (vocab, merges + b"zzzq xq\n", ["is not in vocab.json"]),
        (vocab, merges + b"a b c\n", ["two tokens"]),
        (vocab, b"#version: 0.2\n" + merges.split(b"\n")[1] + b"\n" + merges.split(b"\n")[1] + b"\n",
         ["twice"]),
        (vocab, b"\xff \xfe\n", ["UTF-8"]),
    ]
    for v, m, says in cases:
        expect_error(["tokenize", "--model", folder(v, m)], b"hello", 1, says)
    # a huge file is refused by its size before anything is read (a sparse file)
    f = folder(None, merges)
    with open(os.path.join(f, "vocab.json"), "wb") as fh:
        fh.truncate(300 << 20)
    expect_error(["tokenize", "--model", f], b"hello", 1, ["more than the limit"])
    # a folder where the file should be
    f = folder(None, merges)
    os.mkdir(os.path.join(f, "vocab.json"))
    expect_error(["tokenize", "--model", f], b"hello", 1, ["not a regular file"])


@test
def empty_merges_refused_unless_bytes_only():
    """An empty merges.txt (or only its #version line) beside a vocabulary with merged tokens
    is a truncated or wrong file: refused, not silently encoded one byte per token (issue 14).
    A bytes-only vocabulary (`qkv vocab --size 257`: 256 bytes + <|endoftext|>) has no merges
    and loads."""
    vocab = open(os.path.join(vocab_dir(), "vocab.json"), "rb").read()
    for m in (b"", b"#version: 0.2\n", b"#version: 0.2\n\n\r\n"):
        f = tmpdir()
        open(os.path.join(f, "vocab.json"), "wb").write(vocab)
        open(os.path.join(f, "merges.txt"), "wb").write(m)
        expect_error(["tokenize", "--model", f], b"hello", 1,
                     ["merges.txt: no merges, but vocab.json has 103 tokens beyond the 256 bytes",
                      "empty or truncated"])
    d = tmpdir()
    open(os.path.join(d, "corpus.txt"), "w").write("abc abc abd\n" * 10)
    qkv("vocab", "--data", os.path.join(d, "corpus.txt"), "--size", 257, "--out", os.path.join(d, "v"))
    assert open(os.path.join(d, "v", "merges.txt"), "rb").read() == b"#version: 0.2\n"
    assert encode(b"abc", os.path.join(d, "v")) == encode(b"abc", os.path.join(d, "v"))
    assert len(encode(b"abc", os.path.join(d, "v"))) == 3
    open(os.path.join(d, "v", "merges.txt"), "wb").write(b"")
    assert len(encode(b"abc", os.path.join(d, "v"))) == 3


def asan_build():
    with open(harness.QKV_BIN, "rb") as f:
        return b"__asan_init" in f.read()


@test
def blank_lines_do_not_size_the_merge_table():
    """merges.txt's line count must not size an allocation: 64 MiB of blank lines after the
    real merges loads in a 1 GiB address space (the table was sized 2 x lines: 4 GiB)."""
    import resource
    import subprocess
    d = vocab_dir()
    f = tmpdir()
    shutil.copy(os.path.join(d, "vocab.json"), f)
    merges = open(os.path.join(d, "merges.txt"), "rb").read()
    with open(os.path.join(f, "merges.txt"), "wb") as fh:
        fh.write(merges + b"\n" * (64 << 20))

    def limit():
        if not asan_build():  # ASan reserves terabytes of shadow address space
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    cp = subprocess.run([harness.QKV_BIN, "tokenize", "--model", f], input=b"the river bank",
                        capture_output=True, timeout=300, preexec_fn=limit,
                        env=dict(os.environ, QKV_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")[-1500:]
    assert json.loads(cp.stdout) == encode(b"the river bank")


@test
def bad_ids_and_options():
    d = vocab_dir()
    expect_error(["tokenize", "--model", d, "--decode"], b"[1, 360]", 2, ["out of range"])
    expect_error(["tokenize", "--model", d, "--decode"], b"[-1]", 2, ["out of range"])
    expect_error(["tokenize", "--model", d, "--decode"], b"[1, x]", 2, ["unexpected character"])
    expect_error(["tokenize", "--model", d, "--decode"], b"99999999999999999999", 2, ["out of range"])
    expect_error(["tokenize", "--model", d, "--jsonl"], b"not json\n", 2, ["line 1"])
    expect_error(["tokenize", "--model", d, "--jsonl"], b'"ok"\n[1]\n', 2, ["line 2"])
    expect_error(["tokenize", "--model"], b"", 2, ["--model"])
    expect_error(["tokenize", "--bogus"], b"", 2, ["--bogus"])
    expect_error(["tokenize", "--model", d, "--decode", "--jsonl"], b"", 2)
    assert decode([0, 1, 2]) == b'!"#'


@test
def vocab_refuses_bad_requests():
    d = tmpdir()
    corpus = os.path.join(d, "c.txt")
    open(corpus, "w").write("ab ab ab")
    empty = os.path.join(d, "empty.txt")
    open(empty, "w").close()
    out = os.path.join(d, "out")
    expect_error(["vocab", "--data", empty, "--size", 300, "--out", out], code=1, says=["empty"])
    expect_error(["vocab", "--data", os.path.join(d, "missing.txt"), "--size", 300, "--out", out],
                 code=1, says=["missing.txt"])
    expect_error(["vocab", "--data", d, "--size", 300, "--out", out], code=1, says=["not a regular file"])
    expect_error(["vocab", "--data", corpus, "--size", 256, "--out", out], code=2, says=["too small"])
    expect_error(["vocab", "--data", corpus, "--size", "12x", "--out", out], code=2, says=["12x"])
    expect_error(["vocab", "--data", corpus, "--size", 300], code=2, says=["--out"])
    expect_error(["vocab", "--data", corpus, "--size", 5000, "--out", out], code=1,
                 says=["supports at most 259 tokens"])
    expect_error(["vocab", "--data", corpus, "--size", 259, "--out", os.path.join(corpus, "x")], code=1)
    assert not os.path.exists(out)
    # exactly what it supports works, and the result tokenizes
    qkv("vocab", "--data", corpus, "--size", 259, "--out", out)
    ids = encode(b"ab ab", out)
    assert ids == [256, 257], ids
    # invalid UTF-8 in a corpus is trained on byte by byte and round-trips
    bad = os.path.join(d, "bad.txt")
    open(bad, "wb").write(b"\xff\xfe caf\xc3\xa9 \xe9t\xe9 " * 200)
    qkv("vocab", "--data", bad, "--size", 262, "--out", os.path.join(d, "badv"))
    data = b"\xff caf\xc3\xa9 \xe9t\xe9\xc3"
    assert decode(encode(data, os.path.join(d, "badv")), os.path.join(d, "badv")) == data


run_all()
