"""test_attention.py -- `qkv attention` against PyTorch on the same .npy files, forward and
backward (autograd), through the command line.

PyTorch 1.13 (Debian's python3-torch) has no public scaled_dot_product_attention with a
scale, a bottom-right causal mask or grouped heads, so the oracle is the same formula in
float64 with autograd: temperature is a scale change, GQA repeats key/value heads
(repeat_interleave), and the private 1.13 `_scaled_dot_product_attention` is checked too
where it applies (Nq == Nk, default scale). Tolerances: out, lse, probs 2e-5 per element
(relative to 1 + |ref|); dq, dk, dv 1e-4 relative to the largest gradient.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, tmpdir, Skip  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover - .ci/run installs both
    np = torch = None
    IMPORT_ERROR = str(e)


def need_torch():
    if torch is None:
        raise Skip("numpy/torch not importable: %s" % IMPORT_ERROR)


def oracle(q, k, v, causal, scale, temperature, dout):
    """float64 attention with autograd: out, lse, probs, dq, dk, dv."""
    q, k, v = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (q, k, v))
    hq, hkv = q.shape[1], k.shape[1]
    kk = k.repeat_interleave(hq // hkv, dim=1)
    vv = v.repeat_interleave(hq // hkv, dim=1)
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    sc = (1.0 / d ** 0.5 if scale is None else scale) / temperature
    s = (q @ kk.transpose(-2, -1)) * sc
    if causal:
        i = torch.arange(nq).unsqueeze(1)
        j = torch.arange(nk).unsqueeze(0)
        s = s.masked_fill(j > i + (nk - nq), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    seen = torch.isfinite(lse).unsqueeze(-1)
    p = torch.where(seen, torch.exp(s - torch.where(seen, lse.unsqueeze(-1), torch.zeros_like(lse).unsqueeze(-1))),
                    torch.zeros_like(s))
    out = p @ vv
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return [x.detach().numpy() for x in (out, lse, p, q.grad, k.grad, v.grad)]


def run_case(b, hq, hkv, nq, nk, d, causal=False, scale=None, temperature=1.0, amp=1.0, seed=0,
             simd=None, threads=None):
    rng = np.random.default_rng(seed)
    q = (rng.uniform(-1, 1, (b, hq, nq, d)) * amp).astype(np.float32)
    k = (rng.uniform(-1, 1, (b, hkv, nk, d)) * amp).astype(np.float32)
    v = rng.uniform(-1, 1, (b, hkv, nk, d)).astype(np.float32)
    dout = rng.uniform(-1, 1, (b, hq, nq, d)).astype(np.float32)
    t = tmpdir()
    f = {n: os.path.join(t, n + ".npy") for n in ("q", "k", "v", "do", "o", "lse", "p", "dq", "dk", "dv")}
    np.save(f["q"], q), np.save(f["k"], k), np.save(f["v"], v), np.save(f["do"], dout)
    args = ["attention", "--q", f["q"], "--k", f["k"], "--v", f["v"], "--out", f["o"], "--lse", f["lse"],
            "--probs", f["p"], "--dout", f["do"], "--dq", f["dq"], "--dk", f["dk"], "--dv", f["dv"]]
    if causal:
        args.append("--causal")
    if scale is not None:
        args += ["--scale", repr(scale)]
    if temperature != 1.0:
        args += ["--temperature", repr(temperature)]
    if threads:
        args += ["--threads", threads]
    env = {"QKV_SIMD": simd} if simd else None
    try:
        qkv(*args, env=env)
        got = [np.load(f[n]) for n in ("o", "lse", "p", "dq", "dk", "dv")]
    finally:
        shutil.rmtree(t, ignore_errors=True)
    want = oracle(q, k, v, causal, scale, temperature, dout)
    big = 500.0 if amp > 4 else 1.0
    what = "b=%d hq=%d hkv=%d nq=%d nk=%d d=%d causal=%s scale=%s T=%s amp=%s simd=%s" % (
        b, hq, hkv, nq, nk, d, causal, scale, temperature, amp, simd)
    for name, g, w in zip(("out", "lse", "probs"), got[:3], want[:3]):
        assert g.shape == w.shape, "%s: %s shape %s, expected %s" % (what, name, g.shape, w.shape)
        assert np.all(np.isfinite(g) | (np.isneginf(g) & np.isneginf(w))), "%s: %s has NaN/inf" % (what, name)
        same_inf = np.isneginf(g) == np.isneginf(w)
        assert same_inf.all(), "%s: %s -inf rows differ" % (what, name)
        fin = np.isfinite(w)
        err = np.max(np.abs(g[fin] - w[fin]) / (1 + np.abs(w[fin])), initial=0.0)
        assert err <= 2e-5 * big, "%s: %s err %.3g > tol %.3g" % (what, name, err, 2e-5 * big)
    for name, g, w in zip(("dq", "dk", "dv"), got[3:], want[3:]):
        assert g.shape == w.shape and np.all(np.isfinite(g)), "%s: %s shape/finite" % (what, name)
        err = np.max(np.abs(g - w), initial=0.0) / max(1.0, np.max(np.abs(w), initial=0.0))
        assert err <= 1e-4 * big, "%s: %s err %.3g > tol %.3g" % (what, name, err, 1e-4 * big)
    return q, k, v, got


@test
def forward_backward_match_torch():
    need_torch()
    for causal in (False, True):
        run_case(2, 4, 4, 37, 37, 64, causal)
        run_case(1, 6, 2, 50, 83, 128, causal)       # GQA, Nq != Nk
        run_case(1, 3, 1, 70, 20, 17, causal)        # MQA, Nq > Nk: causal rows see nothing
        run_case(1, 2, 1, 1, 130, 256, causal)       # one query, d = 256
        run_case(1, 1, 1, 9, 9, 1, causal)           # d = 1


@test
def options_match_torch():
    need_torch()
    run_case(1, 4, 2, 33, 47, 64, True, scale=0.3)
    run_case(1, 4, 2, 33, 47, 64, False, temperature=0.25)
    run_case(2, 2, 2, 40, 40, 32, True, scale=0.05, temperature=3.0)
    run_case(1, 2, 2, 45, 60, 64, True, scale=1.0, amp=8 * (1000 / 64) ** 0.5)  # logits ~ 1e3


@test
def every_simd_path_and_thread_count():
    need_torch()
    for simd in ("scalar", "avx2", "avx512"):
        for threads in ("1", "2"):
            run_case(1, 4, 2, 29, 61, 48, True, temperature=0.7, simd=simd, threads=threads, seed=3)


@test
def matches_torch_private_sdpa():
    """The 1.13 private `_scaled_dot_product_attention` (top-left causal, default scale)."""
    need_torch()
    f = getattr(torch.nn.functional, "_scaled_dot_product_attention", None)
    if f is None:
        raise Skip("torch %s has no _scaled_dot_product_attention" % torch.__version__)
    for causal in (False, True):
        q, k, v, got = run_case(1, 3, 3, 64, 64, 64, causal, seed=7)
        r = f(torch.tensor(q), torch.tensor(k), torch.tensor(v), None, 0.0, False, causal)
        want = (r[0] if isinstance(r, tuple) else r).numpy()
        err = np.max(np.abs(got[0] - want))
        assert err <= 1e-5, "causal=%s: max |out - torch sdpa| = %.3g > 1e-5" % (causal, err)


def torch_f32(q, k, v, causal):
    """PyTorch's float32 math path, softmax(q k^T / sqrt(d) + mask) v, and logsumexp."""
    q, k, v = (torch.tensor(a) for a in (q, k, v))
    s = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    if causal:
        nq, nk = s.shape[-2:]
        i = torch.arange(nq).unsqueeze(1)
        j = torch.arange(nk).unsqueeze(0)
        s = s.masked_fill(j > i + (nk - nq), float("-inf"))
    return (torch.softmax(s, -1) @ v).numpy(), torch.logsumexp(s, -1).numpy()


@test
def nonfinite_like_torch():
    """NaN, inf and overflowing inputs through the CLI against PyTorch float32 (the policy in
    include/qkv.h): the same NaN and inf elements, finite ones close; lse NaN where the row
    is undefined (torch.logsumexp says +-inf there). One documented difference: a masked
    key's NaN value reaches no row here, while PyTorch's 0 * NaN puts it in every row."""
    need_torch()
    rng = np.random.default_rng(11)
    nan, inf = float("nan"), float("inf")
    shape = (1, 2, 9, 16)
    base = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(3)]

    def case(edit, causal=False):
        q, k, v = (a.copy() for a in base)
        edit(q, k, v)
        return q, k, v

    def put(a, idx, x):
        a[idx] = x

    cases = [
        ("NaN in q", case(lambda q, k, v: put(q, (0, 1, 4, 3), nan)), False),
        ("NaN in k", case(lambda q, k, v: put(k, (0, 0, 6, 2), nan)), False),
        ("NaN in k, causal", case(lambda q, k, v: put(k, (0, 0, 6, 2), nan)), True),
        ("NaN in v", case(lambda q, k, v: put(v, (0, 1, 6, 5), nan)), False),
        ("inf in q row", case(lambda q, k, v: put(q, (0, 0, 2, slice(None)), inf)), False),
        ("inf in k", case(lambda q, k, v: put(k, (0, 0, 6, 2), inf)), False),
        ("-inf and inf in v", case(lambda q, k, v: (put(v, (0, 0, 3, 1), -inf), put(v, (0, 0, 5, 1), inf))), False),
        ("q, k ~ 1e30", case(lambda q, k, v: (q.__imul__(1e30), k.__imul__(1e30))), True),
        ("q, k ~ 1e15", case(lambda q, k, v: (q.__imul__(1e15), k.__imul__(1e15))), False),
    ]
    d = tmpdir()
    paths = {n: os.path.join(d, n + ".npy") for n in ("q", "k", "v", "o", "lse")}
    for simd in ("scalar", "avx2", "avx512"):
        for what, (q, k, v), causal in cases:
            np.save(paths["q"], q), np.save(paths["k"], k), np.save(paths["v"], v)
            args = ["attention", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--out", paths["o"],
                    "--lse", paths["lse"]] + (["--causal"] if causal else [])
            qkv(*args, env={"QKV_SIMD": simd})
            out, lse = np.load(paths["o"]), np.load(paths["lse"])
            want, want_lse = torch_f32(q, k, v, causal)
            tag = "%s (simd %s)" % (what, simd)
            assert np.array_equal(np.isnan(out), np.isnan(want)), "%s: NaN elements differ from torch" % tag
            assert np.array_equal(np.isinf(out), np.isinf(want)) and np.all(out[np.isinf(out)] == want[np.isinf(want)]), \
                "%s: inf elements differ" % tag
            fin = np.isfinite(want)
            assert fin.any() or what.startswith("q, k ~ 1e30"), tag
            err = np.max(np.abs(out[fin] - want[fin]), initial=0.0)
            assert err <= 1e-5, "%s: max |out - torch| = %.3g" % (tag, err)
            undefined = np.isnan(want).all(axis=-1)
            assert np.all(np.isnan(lse[undefined])), "%s: lse of an undefined row is not NaN" % tag
            ok = ~undefined
            assert np.allclose(lse[ok], want_lse[ok], rtol=1e-5, atol=1e-5), "%s: lse differs" % tag
    # the difference: NaN or inf in a value that rows 0..5 never see (causal)
    for x in (nan, inf):
        q, k, v = case(lambda q, k, v: put(v, (0, 0, 6, 2), x))
        np.save(paths["q"], q), np.save(paths["k"], k), np.save(paths["v"], v)
        qkv("attention", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--out", paths["o"], "--causal")
        out, want = np.load(paths["o"]), torch_f32(q, k, v, True)[0]
        assert np.isnan(want[0, 0, :6, 2]).all(), "PyTorch no longer leaks a masked %s: update the docs" % x
        assert np.isfinite(out[0, 0, :6]).all(), "a masked %s value leaked" % x
        assert np.array_equal(out[0, 0, 6:, 2], want[0, 0, 6:, 2], equal_nan=True)



def save_npy_v2(path, a):
    """A version-2 .npy whose data starts 4 bytes past a 64-byte boundary (header length u32,
    padded to 16 only), so qkv reads it rather than mapping it."""
    import struct
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (tuple(a.shape),)
    hdr += " " * ((16 - (12 + len(hdr) + 1) % 16) % 16) + "\n"
    if (12 + len(hdr)) % 64 == 0:
        hdr = hdr[:-1] + " " * 16 + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(hdr)) + hdr.encode())
        f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    assert (12 + len(hdr)) % 64 != 0


@test
def large_inputs_aligned_or_not_give_the_same_result():
    """Inputs of 1 MB and more (read into huge pages) as NumPy writes them (64-byte-aligned
    data) and as version-2 files with unaligned data: the outputs agree with float64 and with
    each other bit for bit, and the input files are left as they were."""
    need_torch()
    rng = np.random.default_rng(21)
    q, k, v = (rng.uniform(-1, 1, (1, 4, 512, 64)).astype(np.float32) for _ in range(3))  # 512 KB each
    big = [np.concatenate([a, a[:, :, ::-1]], axis=2) for a in (q, k, v)]                 # 1 MB each
    t = tmpdir()
    try:
        outs = []
        for tag, arrs, writer in (("aligned", big, np.save), ("v2, unaligned", big, save_npy_v2)):
            paths = [os.path.join(t, "%s%d.npy" % (n, len(outs))) for n in "qkv"]
            for p, a in zip(paths, arrs):
                writer(p, a)
            before = [open(p, "rb").read() for p in paths]
            o = os.path.join(t, "o%d.npy" % len(outs))
            qkv("attention", "--q", paths[0], "--k", paths[1], "--v", paths[2], "--out", o, "--causal")
            assert [open(p, "rb").read() for p in paths] == before, "%s: an input file changed" % tag
            outs.append(np.load(o))
        assert np.array_equal(outs[0], outs[1]), "aligned and unaligned inputs gave different outputs"
        want = oracle(*big, True, None, 1.0, np.zeros_like(big[0]))[0]
        err = np.max(np.abs(outs[0] - want) / (1 + np.abs(want)))
        assert err <= 2e-5, "out err %.3g" % err
    finally:
        shutil.rmtree(t, ignore_errors=True)

if __name__ == "__main__":
    run_all()
