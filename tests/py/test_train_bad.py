# qkv-test: sanitize
#!/usr/bin/python3
"""test_train_bad.py -- `qkv train` and `qkv grad` refuse bad input with a clear message
(exit status 1 for bad data, 2 for bad usage) and never crash. Tiny sizes: this file also
runs against the ASan+UBSan binary."""
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, tmpdir  # noqa: E402
import checkpoint  # noqa: E402

TEXT = ("The jury said it did find that many of the voters were not told. " * 40 +
        "\nA second line of plain English text follows here, and then a third.\n" * 20)


def refused(args, *needles, rc=(1, 2)):
    cp = qkv(*args, check=False)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode in (rc if isinstance(rc, tuple) else (rc,)), (cp.returncode, err)
    assert "error" in err, err
    for n in needles:
        assert n.lower() in err.lower(), "expected %r in: %s" % (n, err)
    assert "AddressSanitizer" not in err and "runtime error" not in err, err
    return err


def corpus(d, text=TEXT, name="c.txt"):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


SMALL = ["--layers", 1, "--heads", 2, "--embd", 16, "--ctx", 16, "--steps", 2, "--batch", 2,
         "--eval-every", 0, "--no-final-eval", "--threads", 1]


@test
def train_empty_corpus():
    d = tmpdir()
    refused(["train", "--data", corpus(d, ""), "--out", os.path.join(d, "o")] + SMALL, "empty")


@test
def train_unreadable_corpus():
    d = tmpdir()
    refused(["train", "--data", os.path.join(d, "missing.txt"), "--out", os.path.join(d, "o")] + SMALL,
            "missing.txt")
    refused(["train", "--data", d, "--out", os.path.join(d, "o")] + SMALL, "not a regular file")


@test
def train_vocab_larger_than_corpus_supports():
    d = tmpdir()
    refused(["train", "--data", corpus(d, "ab ab ab ab\n"), "--out", os.path.join(d, "o"),
             "--vocab-size", 5000] + SMALL, "supports")
    refused(["train", "--data", corpus(d), "--out", os.path.join(d, "o"), "--vocab-size", 100] + SMALL,
            "--vocab-size")


@test
def train_context_zero_and_bad_numbers():
    d = tmpdir()
    c = corpus(d)
    o = os.path.join(d, "o")
    refused(["train", "--data", c, "--out", o, "--ctx", 0], "context", rc=2)
    refused(["train", "--data", c, "--out", o, "--ctx", -5], "context", rc=2)
    refused(["train", "--data", c, "--out", o, "--lr", "abc"], "--lr", rc=2)
    refused(["train", "--data", c, "--out", o, "--batch", 0], "--batch", rc=2)
    refused(["train", "--data", c, "--out", o, "--steps", "1e3"], "--steps", rc=2)
    refused(["train", "--data", c, "--out", o, "--heads", 3, "--embd", 16, "--vocab-size", 300,
             "--steps", 1], "multiple")
    refused(["train", "--data", c], "--out", rc=2)
    refused(["train", "--data", c, "--out", o, "--bogus", 1], "unknown option", rc=2)
    refused(["train", "--data", c, "--out", o, "--dropout", 1], "--dropout", rc=2)
    refused(["train", "--data", c, "--out", o, "--dropout", -0.1], "--dropout", rc=2)
    refused(["train", "--data", c, "--out", o, "--pos-init", "learned"], "--pos-init", rc=2)


@test
def train_corpus_shorter_than_context():
    d = tmpdir()
    refused(["train", "--data", corpus(d, "only a few words here\n"), "--out", os.path.join(d, "o"),
             "--vocab-size", 258, "--ctx", 64, "--steps", 1], "too few", "--ctx")


@test
def train_missing_vocab_dir():
    d = tmpdir()
    refused(["train", "--data", corpus(d), "--out", os.path.join(d, "o"), "--vocab",
             os.path.join(d, "novocab")] + SMALL, "novocab")


@test
def train_resume_without_checkpoint():
    d = tmpdir()
    os.makedirs(os.path.join(d, "o"))
    refused(["train", "--data", corpus(d), "--out", os.path.join(d, "o"), "--resume"] + SMALL,
            "no checkpoint")


@test
def train_bad_token_file():
    d = tmpdir()
    p = os.path.join(d, "tokens.bin")
    with open(p, "wb") as f:  # magic right, counts larger than the file
        f.write(b"QKVTOKEN" + struct.pack("<IIII", 1, 2, 50, 0) + struct.pack("<QQ", 1000, 10) +
                b"\0" * 24 + b"\1\0" * 10)
    refused(["train", "--data", p, "--out", os.path.join(d, "o")] + SMALL, "inconsistent")
    with open(p, "wb") as f:  # a token id outside the vocabulary
        f.write(b"QKVTOKEN" + struct.pack("<IIII", 1, 2, 50, 0) + struct.pack("<QQ", 3, 0) +
                b"\0" * 24 + struct.pack("<HHH", 1, 60, 2))
    refused(["train", "--data", p, "--out", os.path.join(d, "o")] + SMALL, "outside")
    with open(p, "wb") as f:  # version from the future
        f.write(b"QKVTOKEN" + struct.pack("<IIII", 9, 2, 50, 0) + struct.pack("<QQ", 1, 0) +
                b"\0" * 24 + b"\1\0")
    refused(["train", "--data", p, "--out", os.path.join(d, "o")] + SMALL, "version")


@test
def train_resume_refuses_mismatched_optimizer_state():
    d = tmpdir()
    c = corpus(d)
    o = os.path.join(d, "o")
    args = ["train", "--data", c, "--out", o, "--vocab-size", 300] + SMALL
    qkv(*args)
    # weights changed behind the optimizer's back (another run saved over them)
    ck = os.path.join(d, "other")
    checkpoint.write_checkpoint(ck, layers=1, heads=2, embd=16, ctx=16, vocab=300, seed=4,
                                tokenizer="none")
    shutil.copy(os.path.join(ck, "model.safetensors"), os.path.join(o, "model.safetensors"))
    refused(args + ["--resume"], "other weights")
    # a truncated optimizer state
    checkpoint.write_checkpoint(o, layers=1, heads=2, embd=16, ctx=16, vocab=300, seed=4,
                                tokenizer="none")
    with open(os.path.join(o, "optimizer.bin"), "r+b") as f:
        f.truncate(100)
    refused(args + ["--resume"], "optimizer.bin")


@test
def grad_bad_input():
    d = tmpdir()
    ck = os.path.join(d, "m")
    checkpoint.write_checkpoint(ck, layers=1, heads=2, embd=16, ctx=8, vocab=50, seed=2,
                                tokenizer="none")
    out = os.path.join(d, "g.safetensors")
    refused(["grad", "--model", ck, "--ids", "1,x,3", "--out", out], "not a token id", rc=2)
    refused(["grad", "--model", ck, "--ids", "1,,3", "--out", out], "not a token id", rc=2)
    refused(["grad", "--model", ck, "--ids", "1", "--out", out], "at least 2", rc=2)
    refused(["grad", "--model", ck, "--ids", "-1,2", "--out", out], "not a token id", rc=2)
    refused(["grad", "--model", ck, "--ids", "1,50", "--out", out], "outside the vocabulary")
    refused(["grad", "--model", ck, "--ids", ",".join(["1"] * 10), "--out", out], "context")
    refused(["grad", "--model", os.path.join(d, "nomodel"), "--ids", "1,2", "--out", out], "nomodel")
    refused(["grad", "--model", ck, "--ids", "1,2"], "--out", rc=2)
    refused(["grad", "--model", ck, "--ids", "1,2", "--out", os.path.join(d, "no", "dir", "g")], "g")
    assert not os.path.exists(out)
    qkv("grad", "--model", ck, "--ids", ",".join(["1"] * 9), "--out", out)  # ctx + 1 is fine
    assert os.path.getsize(out) > 0


run_all()
