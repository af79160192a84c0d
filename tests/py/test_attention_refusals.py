# qkv-test: sanitize
"""test_attention_refusals.py -- `qkv attention` refuses bad input with a clear message and a
non-zero exit, never a crash (this file also runs against the ASan+UBSan build).

The .npy files are written by hand (no NumPy needed), so the test runs anywhere."""
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, tmpdir  # noqa: E402

DIR = tmpdir()


def npy(name, shape, descr="<f4", data=None, raw=None):
    """Writes a .npy v1 file; returns its path."""
    path = os.path.join(DIR, name)
    if raw is not None:
        with open(path, "wb") as f:
            f.write(raw)
        return path
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % s for s in shape) if len(shape) != 1 else "%d," % shape[0])
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    n = 1
    for s in shape:
        n *= s
    size = 8 if descr == "<f8" else 4
    body = data if data is not None else bytes(n * size)
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body)
    return path


Q = npy("q.npy", (1, 4, 5, 8))
K = npy("k.npy", (1, 2, 6, 8))
V = npy("v.npy", (1, 2, 6, 8))


def refused(*args, expect):
    """Runs qkv attention ARGS; it must exit non-zero (not by a signal) and say EXPECT."""
    cp = qkv("attention", *args, check=False, timeout=120)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode > 0, "exit %d for %s (expected a refusal): %s" % (cp.returncode, args, err)
    assert "Sanitizer" not in err and "runtime error" not in err, "sanitizer report: %s" % err
    assert expect.lower() in err.lower(), "message %r lacks %r" % (err.strip(), expect)
    return err


@test
def accepts_good_input():
    out = os.path.join(DIR, "o.npy")
    cp = qkv("attention", "--q", Q, "--k", K, "--v", V, "--causal", "--out", out)
    assert cp.returncode == 0 and os.path.getsize(out) == 128 + 4 * 5 * 8 * 4


@test
def missing_file():
    refused("--q", os.path.join(DIR, "nope.npy"), "--k", K, "--v", V, expect="nope.npy: cannot open")


@test
def not_float32():
    f64 = npy("f64.npy", (1, 4, 5, 8), descr="<f8")
    refused("--q", f64, "--k", K, "--v", V, expect="expected float32")
    i32 = npy("i32.npy", (1, 2, 6, 8), descr="<i4")
    refused("--q", Q, "--k", i32, "--v", V, expect="expected float32")


@test
def not_npy_or_truncated():
    refused("--q", npy("junk.npy", (), raw=b"hello, world\n" * 4), "--k", K, "--v", V, expect="not a .npy")
    with open(Q, "rb") as f:
        whole = f.read()
    refused("--q", npy("short.npy", (), raw=whole[:-7]), "--k", K, "--v", V, expect="shorter")
    refused("--q", npy("hdr.npy", (), raw=whole[:40]), "--k", K, "--v", V, expect="truncated")
    refused("--q", npy("q3.npy", (4, 5, 8)), "--k", K, "--v", V, expect="expected 4")


@test
def shapes_that_disagree():
    refused("--q", Q, "--k", K, "--v", npy("v7.npy", (1, 2, 7, 8)), expect="same shape")
    refused("--q", npy("qd.npy", (1, 4, 5, 9)), "--k", K, "--v", V, expect="head dim must agree")
    refused("--q", npy("qb.npy", (2, 4, 5, 8)), "--k", K, "--v", V, expect="batch")
    bad_do = npy("do.npy", (1, 4, 5, 7))
    refused("--q", Q, "--k", K, "--v", V, "--dout", bad_do, "--dq", os.path.join(DIR, "a.npy"),
            "--dk", os.path.join(DIR, "b.npy"), "--dv", os.path.join(DIR, "c.npy"), expect="must have Q's shape")
    refused("--q", Q, "--k", K, "--v", V, "--dq", os.path.join(DIR, "a.npy"), expect="backward needs")


@test
def heads_not_a_multiple():
    refused("--q", npy("q3h.npy", (1, 3, 5, 8)), "--k", K, "--v", V, expect="multiple")


@test
def head_dim_too_large():
    big = npy("q257.npy", (1, 2, 2, 257))
    kb = npy("k257.npy", (1, 2, 2, 257))
    refused("--q", big, "--k", kb, "--v", kb, expect="[1, 256]")


@test
def temperature_not_positive():
    for t in ("0", "-1", "nan", "inf", "abc"):
        refused("--q", Q, "--k", K, "--v", V, "--temperature", t, expect="temperature")


@test
def bad_options():
    refused("--q", Q, "--k", K, "--v", V, "--scale", "0", expect="scale")
    refused("--q", Q, "--k", K, "--v", V, "--threads", "0", expect="threads")
    refused("--q", Q, "--k", K, "--v", V, "--frobnicate", expect="unknown option")
    refused("--q", Q, "--k", K, expect="required")
    refused("--q", Q, "--k", K, "--v", expect="needs a value")


@test
def nonfinite_input_warns_exit_0():
    """NaN in the input is not refused (the result follows PyTorch: NaN rows), but stderr
    says how many output values are NaN or inf; clean input gets no warning."""
    data = bytearray(struct.pack("<f", 0.5) * (4 * 5 * 8))
    data[4 * (2 * 8 + 3):4 * (2 * 8 + 4)] = struct.pack("<f", float("nan"))  # head 0, row 2
    qn = npy("qnan.npy", (1, 4, 5, 8), data=bytes(data))
    out = os.path.join(DIR, "onan.npy")
    cp = qkv("attention", "--q", qn, "--k", K, "--v", V, "--out", out, check=False, timeout=120)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 0 and "warning: 8 of 160 output values are NaN" in err, (cp.returncode, err)
    cp = qkv("attention", "--q", Q, "--k", K, "--v", V, "--out", out, timeout=120)
    assert b"warning" not in cp.stderr, cp.stderr


if __name__ == "__main__":
    try:
        run_all()
    finally:
        shutil.rmtree(DIR, ignore_errors=True)
