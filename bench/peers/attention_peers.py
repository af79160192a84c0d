"""attention_peers.py -- the peers of `qkv bench attention`, timed on the same shapes in the
same run: NumPy + OpenBLAS (q @ k.T, softmax, @ v; forward only: NumPy has no autograd) and
PyTorch 1.13 (its private `_scaled_dot_product_attention`, a matmul + softmax composite on
CPU, and the explicit formula; forward, and forward + backward with autograd).

Run by the bench with /usr/bin/python3 and OPENBLAS_CORETYPE=SkylakeX (Debian's OpenBLAS
otherwise picks its SSE3 kernel on this CPU); prints one JSON object per line:
  {"peer": "numpy", "n": 1024, "causal": 0, "pass": "fwd", "ms": 12.3}
  {"peer": "numpy", "n": 16384, "skipped": "why"}

usage: attention_peers.py --sizes 128,512 --threads 2 [--heads 12 --dim 64 --budget 0.3]
"""
import argparse
import json
import os
import sys
import time


def emit(**kw):
    print(json.dumps(kw), flush=True)


def timed(fn, budget):
    """Best wall and best CPU milliseconds of repeated calls until `budget` seconds are
    spent (at least 2 calls). CPU time (all threads of this process) is what a 1-thread
    comparison uses: other tenants of a shared machine do not inflate it."""
    fn()  # warm-up: allocations, thread pools
    best, best_cpu, spent, n = float("inf"), float("inf"), 0.0, 0
    while n < 2 or spent < budget:
        c = time.process_time()
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best_cpu = min(best_cpu, time.process_time() - c)
        best, spent, n = min(best, dt), spent + dt, n + 1
        if n >= 50:
            break
    return {"ms": best * 1e3, "cpu_ms": best_cpu * 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,512,1024,2048,4096")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--budget", type=float, default=0.3)
    ap.add_argument("--max-n", type=int, default=8192,
                    help="larger N are skipped: the peers materialise the H x N x N scores")
    a = ap.parse_args()
    try:
        import numpy as np
    except ImportError as e:
        emit(peer="numpy", skipped="numpy not importable: %s" % e)
        return
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError as e:
        torch = None
        emit(peer="torch", skipped="torch not importable: %s" % e)
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        emit(info="openblas", core=lib.openblas_get_corename().decode(),
             coretype_env=os.environ.get("OPENBLAS_CORETYPE", ""))
    except Exception:  # noqa: BLE001 - informational only
        pass
    H, d = a.heads, a.dim
    scale = 1.0 / d ** 0.5
    for n in [int(s) for s in a.sizes.split(",") if s]:
        if n > a.max_n:
            gb = H * n * n * 4 / 1e9
            for peer in ("numpy", "torch"):
                emit(peer=peer, n=n, skipped="N > %d: the %d x %d x %d score matrix is %.1f GB per copy"
                     % (a.max_n, H, n, n, gb))
            continue
        rng = np.random.default_rng(n)
        q, k, v = (rng.uniform(-1, 1, (1, H, n, d)).astype(np.float32) for _ in range(3))
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        for causal in (0, 1):
            def np_fwd():
                s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(scale)
                if causal:
                    s += mask
                s -= s.max(-1, keepdims=True)
                np.exp(s, out=s)
                s /= s.sum(-1, keepdims=True)
                return s @ v
            emit(peer="numpy", n=n, causal=causal, **{"pass": "fwd"}, **timed(np_fwd, a.budget))
            if torch is None:
                continue
            tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
            sdpa = getattr(torch.nn.functional, "_scaled_dot_product_attention", None)
            tmask = torch.from_numpy(mask)

            def explicit(qq, kk, vv):
                s = (qq @ kk.transpose(-2, -1)) * scale
                if causal:
                    s = s + tmask
                return torch.softmax(s, -1) @ vv

            def attn(qq, kk, vv):
                if sdpa is not None:
                    r = sdpa(qq, kk, vv, None, 0.0, False, bool(causal))
                    return r[0] if isinstance(r, tuple) else r
                return explicit(qq, kk, vv)

            name = "torch_sdpa" if sdpa is not None else "torch_explicit"
            with torch.no_grad():
                emit(peer=name, n=n, causal=causal, **{"pass": "fwd"}, **timed(lambda: attn(tq, tk, tv), a.budget))
                emit(peer="torch_explicit", n=n, causal=causal, **{"pass": "fwd"},
                     **timed(lambda: explicit(tq, tk, tv), a.budget))
            gq, gk, gv = (x.clone().requires_grad_(True) for x in (tq, tk, tv))
            dout = torch.ones_like(tq) * 0.01

            def fwd_bwd(f):
                gq.grad = gk.grad = gv.grad = None
                f(gq, gk, gv).backward(dout)
            emit(peer=name, n=n, causal=causal, **{"pass": "fwdbwd"}, **timed(lambda: fwd_bwd(attn), a.budget))
            emit(peer="torch_explicit", n=n, causal=causal, **{"pass": "fwdbwd"},
                 **timed(lambda: fwd_bwd(explicit), a.budget))


if __name__ == "__main__":
    sys.exit(main())
