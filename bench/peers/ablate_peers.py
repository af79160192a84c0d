#!/usr/bin/python3
"""ablate_peers.py -- the peer for the which-heads-matter grid in `qkv bench serve`: the same
grid computed with PyTorch hooks on the same weights (tests/py/gpt2_torch.py, float32): one
clean forward, then one forward per head with a forward pre-hook on that layer's attn.c_proj
zeroing the head's slice of its input (the head's output before the output projection), the
change in log P(target) at the last position each time (TransformerLens-style).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peers/ablate_peers.py MODEL_DIR CASES.json \
        --threads 2 --reps 3

CASES.json: [{"ids": [...], "target": id, "grid": qkv's [L][H] grid}, ...]. Prints one JSON
line: per case N, grid_ms (median) and check_max_diff (max |peer - qkv| over the grid).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "py"))
import gpt2_torch  # noqa: E402


def grid(model, ids, target):
    cfg = model.cfg
    L, H, C = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    d = C // H
    base = torch.log_softmax(model(ids)[-1], -1)[target].item()
    out = np.zeros((L, H))
    for l in range(L):
        for h in range(H):
            def zero(mod, args, h=h):
                x = args[0].clone()
                x[:, h * d:(h + 1) * d] = 0
                return (x,)
            hook = model.transformer.h[l].attn.c_proj.register_forward_pre_hook(zero)
            try:
                out[l, h] = torch.log_softmax(model(ids)[-1], -1)[target].item() - base
            finally:
                hook.remove()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model = gpt2_torch.load(a.model_dir, torch.float32)
    out = []
    for case in json.load(open(a.cases)):
        times, diff = [], None
        for rep in range(a.reps):
            t0 = time.perf_counter()
            g = grid(model, case["ids"], case["target"])
            times.append((time.perf_counter() - t0) * 1e3)
            if rep == 0:
                diff = float(np.abs(g - np.array(case["grid"])).max())
        out.append({"n": len(case["ids"]), "grid_ms": statistics.median(times), "check_max_diff": diff})
    print(json.dumps({"peer": "pytorch-hooks", "torch": torch.__version__, "threads": a.threads, "cases": out}))


if __name__ == "__main__":
    main()
