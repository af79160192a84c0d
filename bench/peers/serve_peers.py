#!/usr/bin/python3
"""serve_peers.py -- the peer for `qkv bench serve`: what a Python attention server does for
one request (the BertViz / exBERT pattern): a PyTorch forward pass over the same weights that
keeps every layer's attention (and raw scores), then json.dumps of the maps and the top-10
predictions, as /api/attend returns them.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/peers/serve_peers.py MODEL_DIR CASES.json \
        --threads 2 --reps 5

CASES.json: [{"ids": [...], "attn_npy": "qkv attention [L,H,N,N] for these ids" or null}, ...].
Prints one JSON line: per case N, total_ms (median), forward_ms (median), mb, and
check_max_diff (max |peer - qkv| attention, the check that both computed the same thing).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model = gpt2_torch.load(a.model_dir, torch.float32)
    out = []
    for case in json.load(open(a.cases)):
        ids = case["ids"]
        totals, forwards, mb, diff = [], [], 0.0, None
        for rep in range(a.reps + 1):
            t0 = time.perf_counter()
            logits, caps, _ = model(ids, return_all=True)
            t1 = time.perf_counter()
            p = torch.softmax(logits[-1], -1)
            top = torch.topk(p, 10)
            body = json.dumps({
                "ids": ids,
                "attention": [c["probs"].tolist() for c in caps],
                "scores": [c["scores"].tolist() for c in caps],
                "top": [{"id": int(i), "prob": float(v)} for v, i in zip(top.values, top.indices)],
            })
            t2 = time.perf_counter()
            if rep == 0:
                mb = len(body) / 1e6
                if case.get("attn_npy"):
                    ref = np.load(case["attn_npy"])
                    mine = np.stack([c["probs"].numpy() for c in caps])
                    diff = float(np.abs(ref - mine).max())
            else:
                totals.append((t2 - t0) * 1e3)
                forwards.append((t1 - t0) * 1e3)
        out.append({"n": len(ids), "total_ms": statistics.median(totals),
                    "forward_ms": statistics.median(forwards), "mb": mb, "check_max_diff": diff})
    print(json.dumps({"peer": "pytorch+json", "torch": torch.__version__, "threads": a.threads,
                      "cases": out}))


if __name__ == "__main__":
    main()
