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


def npy_header(name, dict_text, n=4 * 5 * 8):
    """A .npy v1 file with the header dict written as given and N zero floats."""
    hdr = dict_text + " " * ((64 - (10 + len(dict_text) + 1) % 64) % 64) + "\n"
    return npy(name, (), raw=b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + bytes(4 * n))


@test
def npy_header_dict_is_parsed_exactly():
    """The header is a dict with exactly 'descr', 'fortran_order' and 'shape' (issue 14: 'descr'
    was a substring search, so '<f4x' passed)."""
    ok = "'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 5, 8)"
    out = os.path.join(DIR, "o2.npy")
    for good in ("{%s, }" % ok, "{%s}" % ok,
                 "{'shape': (1, 4, 5, 8,), 'fortran_order': False, 'descr': 'float32'}",
                 '{"descr": "<f4", "fortran_order": False, "shape": (1, 4, 5, 8), }'):
        qkv("attention", "--q", npy_header("good.npy", good), "--k", K, "--v", V, "--out", out)
    bad = [
        ("{'descr': '<f4x', 'fortran_order': False, 'shape': (1, 4, 5, 8), }", "dtype '<f4x'"),
        ("{'descr': '<f4 ', 'fortran_order': False, 'shape': (1, 4, 5, 8), }", "dtype '<f4 '"),
        ("{'descr': \"'descr': '<f4'\", 'fortran_order': False, 'shape': (1, 4, 5, 8), }", "expected float32"),
        ("{'descr': '<f8', %s, }" % ok, "expected float32"),
        ("{%s, 'descr': '<f4'}" % ok, "'descr' appears twice"),
        ("{%s, 'shape': (1, 4, 5, 8)}" % ok, "'shape' appears twice"),
        ("{%s, 'align': True}" % ok, "unknown key 'align'"),
        ("{'fortran_order': False, 'shape': (1, 4, 5, 8), }", "no 'descr'"),
        ("{'descr': '<f4', 'shape': (1, 4, 5, 8), }", "no 'fortran_order'"),
        ("{'descr': '<f4', 'fortran_order': False}", "no shape"),
        ("{'descr': '<f4', 'fortran_order': Falsely, 'shape': (1, 4, 5, 8), }", "False or True"),
        ("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4, 5, 8), }", "Fortran-ordered"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [1, 4, 5, 8], }", "not a tuple"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (160), }", "not a tuple"),
        ("{%s, } trailing" % ok, "text after the header dict"),
        ("{%s, }}" % ok, "text after the header dict"),
        ("'descr': '<f4'", "expected '{'"),
        ("{'descr' '<f4', 'fortran_order': False, 'shape': (1, 4, 5, 8)}", "expected ':'"),
        ("{'descr': '<f4' 'fortran_order': False, 'shape': (1, 4, 5, 8)}", "expected ',' or '}'"),
        ("{'descr': '<f4, 'fortran_order': False, 'shape': (1, 4, 5, 8)}", "expected float32"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 5, 8), ", "expected a key"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 5, 8", "expected ',' or ')'"),
    ]
    for i, (text, expect) in enumerate(bad):
        refused("--q", npy_header("bad%d.npy" % i, text), "--k", K, "--v", V, expect=expect)


@test
def shapes_that_disagree():
    refused("--q", Q, "--k", K, "--v", npy("v7.npy", (1, 2, 7, 8)), expect="same shape")
    refused("--q", npy("qd.npy", (1, 4, 5, 9)), "--k", K, "--v", V, expect="head dim must agree")
    refused("--q", npy("qb.npy", (2, 4, 5, 8)), "--k", K, "--v", V, expect="batch")
    bad_do = npy("do.npy", (1, 4, 5, 7))
    refused("--q", Q, "--k", K, "--v", V, "--dout", bad_do, "--dq", os.path.join(DIR, "a.npy"),
            "--dk", os.path.join(DIR, "b.npy"), "--dv", os.path.join(DIR, "c.npy"), expect="must have Q's shape")
    refused("--q", Q, "--k", K, "--v", V, "--dq", os.path.join(DIR, "a.npy"), expect="backward needs")


def sparse_npy(name, shape):
    """A .npy whose data is a hole (truncate): as large as its shape says, but costs no disk."""
    path = npy(name, shape, data=b"")
    n = 4
    for s in shape:
        n *= s
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) + n)
    return path


def bytes_read_by_children():
    """rchar of this process plus its reaped children (Linux accounts a waited-for child's I/O
    to its parent); None where /proc/self/io is unavailable."""
    try:
        with open("/proc/self/io") as f:
            return int(next(l.split()[1] for l in f if l.startswith("rchar:")))
    except (OSError, StopIteration, ValueError):
        return None


@test
def shapes_checked_before_data_is_read():
    """A 1 GiB K (a sparse file, its size matching its header) whose shape cannot match Q, V or
    dO is refused from the headers alone: its data is never read (issue 14)."""
    big_k = sparse_npy("k1g.npy", (1, 2, 1 << 23, 16))
    assert os.path.getsize(big_k) > 1 << 30
    dq = [os.path.join(DIR, x) for x in ("dq.npy", "dk.npy", "dv.npy")]
    cases = [
        (("--q", Q, "--k", big_k, "--v", V), "same shape"),
        (("--q", Q, "--k", big_k, "--v", big_k), "head dim must agree"),
        (("--q", Q, "--k", K, "--v", V, "--dout", sparse_npy("do1g.npy", (1, 4, 1 << 23, 8)),
          "--dq", dq[0], "--dk", dq[1], "--dv", dq[2]), "must have Q's shape"),
        (("--q", sparse_npy("q1g.npy", (1, 4, 1 << 23, 8)), "--k", big_k, "--v", V), "same shape"),
    ]
    for args, expect in cases:
        before = bytes_read_by_children()
        refused(*args, expect=expect)
        after = bytes_read_by_children()
        if before is not None and after is not None:
            assert after - before < 64 << 20, "%d MiB read before refusing %s" % ((after - before) >> 20, args)
    for p in dq:
        assert not os.path.exists(p), p


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
def bf16_forward_or_refused():
    """--bf16: the BF16 forward where the CPU has AVX512_BF16, else a refusal that says so;
    never with --probs or a backward; refused when QKV_SIMD forces a path without AVX-512."""
    out = os.path.join(DIR, "o16.npy")
    cp = qkv("attention", "--q", Q, "--k", K, "--v", V, "--causal", "--out", out, "--bf16", check=False, timeout=120)
    err = cp.stderr.decode(errors="replace")
    if cp.returncode == 0:
        assert os.path.getsize(out) == 128 + 4 * 5 * 8 * 4 and b"forward (bf16)" in cp.stdout, (cp.stdout, err)
    else:
        assert cp.returncode == 1 and "AVX512_BF16" in err, (cp.returncode, err)
    refused("--q", Q, "--k", K, "--v", V, "--bf16", "--probs", out, expect="--bf16")
    cp = qkv("attention", "--q", Q, "--k", K, "--v", V, "--out", out, "--bf16", check=False, timeout=120,
             env={"QKV_SIMD": "avx2"})
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 1 and "AVX512_BF16" in err and "Sanitizer" not in err, (cp.returncode, err)


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
