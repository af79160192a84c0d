#!/usr/bin/python3
"""test_train.py -- qkv's trainer against PyTorch autograd and torch.optim.AdamW.

* `qkv grad` on a random checkpoint: the loss and every weight's gradient against PyTorch
  (float64) on the same checkpoint (tests/py/gpt2_torch.py, an independent GPT-2).
* `qkv train --init CKPT --sequential` for a few steps (gradient accumulation, clipping,
  warm-up + cosine, AdamW with decay on matrices only): the per-step losses and the final
  weights against the same steps in PyTorch.
* `--stop-after` + `--resume`, and Ctrl-C + `--resume`, give exactly the losses and weights of
  an uninterrupted run.
"""
import math
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, tmpdir, read_png, QKV_BIN  # noqa: E402
import checkpoint  # noqa: E402
import gpt2_torch  # noqa: E402

torch.set_num_threads(1)


def write_tokens(path, train, val, vocab):
    """A qkv token file: 64-byte header (magic, version, token bytes, vocab, counts), uint16."""
    hdr = b"QKVTOKEN" + struct.pack("<IIII", 1, 2, vocab, 0) + struct.pack("<QQ", len(train), len(val))
    hdr += b"\0" * (64 - len(hdr))
    with open(path, "wb") as f:
        f.write(hdr + np.asarray(list(train) + list(val), dtype="<u2").tobytes())


def read_log(d):
    rows = []
    with open(os.path.join(d, "train_log.csv")) as f:
        head = f.readline().strip().split(",")
        for line in f:
            rows.append(dict(zip(head, line.strip().split(","))))
    return rows


def torch_model(ckpt):
    return gpt2_torch.load(ckpt, dtype=torch.float64)


# ---- qkv grad vs autograd ----------------------------------------------------------------

@test
def grad_matches_torch_autograd():
    d = tmpdir()
    ckpt = os.path.join(d, "ckpt")
    checkpoint.write_checkpoint(ckpt, layers=2, heads=4, embd=32, ctx=24, vocab=97, seed=3,
                                tokenizer="none")
    rng = np.random.default_rng(5)
    ids = [int(x) for x in rng.integers(0, 97, size=20)]
    out = os.path.join(d, "grads.safetensors")
    cp = qkv("grad", "--model", ckpt, "--ids", ",".join(map(str, ids)), "--out", out)
    c_loss = float(cp.stdout.decode().split()[1])

    m = torch_model(ckpt)
    logits = m(ids[:-1])
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]))
    loss.backward()
    assert abs(c_loss - loss.item()) < 1e-5 * max(1.0, loss.item()), (c_loss, loss.item())

    grads = checkpoint.read_safetensors(out)
    names = {n for n, _ in m.named_parameters()}
    assert set(grads) == names, sorted(set(grads) ^ names)
    worst = 0.0
    for name, p in m.named_parameters():
        g_c = np.asarray(grads[name], dtype=np.float64)
        g_t = p.grad.numpy()
        assert g_c.shape == g_t.shape, (name, g_c.shape, g_t.shape)
        scale = max(np.abs(g_t).max(), 1e-3)
        err = np.abs(g_c - g_t).max() / scale
        worst = max(worst, err)
        # float32 C against float64 torch: max error relative to the tensor's largest entry
        assert err < 1e-4, "%s: max |dC - dtorch| / max|dtorch| = %.3g" % (name, err)
    print("      grad: loss %.7f vs torch %.7f; worst relative gradient error %.2e over %d tensors"
          % (c_loss, loss.item(), worst, len(grads)))


# ---- training steps vs torch.optim.AdamW ----------------------------------------------------

B, ACCUM, STEPS, WARMUP, LR, MINF, WD, B1, B2, EPS, CLIP = 2, 2, 8, 3, 3e-3, 0.1, 0.1, 0.9, 0.95, 1e-8, 1.0


def lr_at(step):  # nanoGPT's get_lr, as qkv__train_lr
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    ratio = (step - WARMUP) / max(1, STEPS - WARMUP)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return LR * MINF + coeff * (LR - LR * MINF)


def make_run(d, ctx=16, vocab=61):
    ckpt = os.path.join(d, "ckpt")
    checkpoint.write_checkpoint(ckpt, layers=2, heads=2, embd=32, ctx=ctx, vocab=vocab, seed=11,
                                tokenizer="none")
    rng = np.random.default_rng(9)
    # a corpus with structure (a repeated phrase with noise) so the loss moves
    phrase = rng.integers(0, vocab, size=23)
    train = np.concatenate([np.where(rng.random(23) < 0.2, rng.integers(0, vocab, 23), phrase)
                            for _ in range(40)])
    val = rng.integers(0, vocab, size=200)
    tok = os.path.join(d, "tokens.bin")
    write_tokens(tok, train, val, vocab)
    return ckpt, tok, train


def train_args(ckpt, tok, out, *extra):
    return ["train", "--data", tok, "--init", ckpt, "--out", out, "--sequential",
            "--batch", B, "--accum", ACCUM, "--steps", STEPS, "--warmup", WARMUP, "--lr", LR,
            "--min-lr-frac", MINF, "--weight-decay", WD, "--beta1", B1, "--beta2", B2,
            "--clip", CLIP, "--eval-every", 4, "--eval-batches", 2, "--save-every", 0,
            "--threads", 2] + list(extra)


@test
def training_steps_match_torch_adamw():
    d = tmpdir()
    ckpt, tok, train = make_run(d)
    out = os.path.join(d, "out")
    qkv(*train_args(ckpt, tok, out, "--no-final-eval"))
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    c_losses = [float(r["loss"]) for r in rows]

    m = torch_model(ckpt).train()
    params = dict(m.named_parameters())
    decay = [p for n, p in params.items() if p.dim() >= 2]
    no_decay = [p for n, p in params.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(B1, B2), eps=EPS)
    T = m.cfg["n_positions"]
    pos = 0
    t_losses, clipped = [], 0
    for step in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for _ in range(ACCUM):
            if pos + B * T + 1 > len(train):
                pos = 0
            loss = 0.0
            for b in range(B):
                row = [int(x) for x in train[pos + b * T: pos + b * T + T + 1]]
                loss = loss + torch.nn.functional.cross_entropy(m(row[:-1]), torch.tensor(row[1:]))
            pos += B * T
            loss = loss / B
            (loss / ACCUM).backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(m.parameters(), CLIP)
        clipped += float(norm) > CLIP
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.step()
        t_losses.append(total / ACCUM)
    diffs = [abs(a - b) for a, b in zip(c_losses, t_losses)]
    print("      losses qkv   %s\n      losses torch %s\n      max |diff| %.2e, %d of %d steps clipped"
          % (" ".join("%.5f" % x for x in c_losses), " ".join("%.5f" % x for x in t_losses),
             max(diffs), clipped, STEPS))
    assert t_losses[-1] < t_losses[0] - 0.1, "the reference did not learn: a useless test"
    # float32 C vs float64 torch through 8 AdamW steps
    assert max(diffs) < 2e-4, diffs
    # the weights after the last step. Adam divides by sqrt(v): an entry whose gradient is
    # ~0 moves by up to lr whatever its sign, so float32-vs-float64 noise there shows as up to
    # ~lr; everywhere else the weights agree closely. Checked: the max error is below lr / 2
    # and the mean error below 1e-6.
    final = checkpoint.read_safetensors(os.path.join(out, "model.safetensors"))
    worst, total, count = 0.0, 0.0, 0
    for name, p in params.items():
        key = name if name in final else name.replace("transformer.", "")
        if name == "lm_head.weight":
            continue
        diff = np.abs(np.asarray(final[key], np.float64) - p.detach().numpy())
        worst = max(worst, float(diff.max()))
        total += float(diff.sum())
        count += diff.size
    print("      final weights: max |qkv - torch| = %.2e, mean %.2e" % (worst, total / count))
    assert worst < LR / 2 and total / count < 1e-6, (worst, total / count)


@test
def resume_continues_exactly():
    d = tmpdir()
    ckpt, tok, _ = make_run(d)
    full, part = os.path.join(d, "full"), os.path.join(d, "part")
    # random windows (not --sequential): the resumed run must restore the RNG too
    args = [a for a in train_args(ckpt, tok, full) if a != "--sequential"]
    qkv(*args)
    args_p = [a if a != full else part for a in args]
    qkv(*(args_p + ["--stop-after", 3]))
    assert [int(r["step"]) for r in read_log(part)] == [1, 2, 3]
    qkv(*(args_p + ["--resume"]))
    a, b = read_log(full), read_log(part)
    assert [r["loss"] for r in a] == [r["loss"] for r in b], (a, b)
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    wa = open(os.path.join(full, "model.safetensors"), "rb").read()
    wb = open(os.path.join(part, "model.safetensors"), "rb").read()
    assert wa == wb, "resumed weights differ from the uninterrupted run's"
    ea = open(os.path.join(full, "optimizer.bin"), "rb").read()
    eb = open(os.path.join(part, "optimizer.bin"), "rb").read()
    # the same but for the elapsed-time field (bytes 80..88 of the header)
    assert ea[:80] == eb[:80], "optimizer state headers differ"
    assert ea[88:] == eb[88:], "Adam moments differ"


@test
def dropout_changes_training_and_resumes_exactly():
    """Dropout masks depend on (seed, step, micro-batch) only: a resumed run replays them."""
    d = tmpdir()
    ckpt, tok, _ = make_run(d)
    plain, full, part = (os.path.join(d, n) for n in ("plain", "full", "part"))
    base = [a for a in train_args(ckpt, tok, plain) if a != "--sequential"]
    qkv(*base)
    args = [a if a != plain else full for a in base] + ["--dropout", 0.2]
    qkv(*args)
    args_p = [a if a != full else part for a in args]
    qkv(*(args_p + ["--stop-after", 3]))
    qkv(*(args_p + ["--resume"]))
    p, a, b = read_log(plain), read_log(full), read_log(part)
    assert [r["loss"] for r in a] == [r["loss"] for r in b], (a, b)
    assert [r["loss"] for r in a] != [r["loss"] for r in p], "--dropout 0.2 changed nothing"
    assert all(math.isfinite(float(r["val_loss"])) for r in a if r["val_loss"])
    wa = open(os.path.join(full, "model.safetensors"), "rb").read()
    wb = open(os.path.join(part, "model.safetensors"), "rb").read()
    assert wa == wb, "resumed weights differ from the uninterrupted run's (dropout)"


def read_png_rgb(path):
    """(width, height, rows of RGB bytes) of an 8-bit RGB PNG with filter-0 rows (qkv's own)."""
    w, h, depth, colour, raw = read_png(path)
    assert (depth, colour) == (8, 2)
    row = 1 + 3 * w
    assert len(raw) == row * h
    assert all(raw[y * row] == 0 for y in range(h))
    return w, h, [raw[y * row + 1:(y + 1) * row] for y in range(h)]


@test
def loss_curve_svg_and_png():
    import xml.etree.ElementTree as ET
    d = tmpdir()
    ckpt, tok, _ = make_run(d)
    out = os.path.join(d, "out")
    qkv(*train_args(ckpt, tok, out))
    rows = read_log(out)
    root = ET.parse(os.path.join(out, "loss.svg")).getroot()
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points").split()) == len(rows)
    assert len(lines[1].get("points").split()) == sum(1 for r in rows if r["val_loss"])
    w, h, px = read_png_rgb(os.path.join(out, "loss.png"))
    assert (w, h) == (760, 420)
    colours = {}
    for r in px:
        for x in range(0, len(r), 3):
            c = bytes(r[x:x + 3])
            colours[c] = colours.get(c, 0) + 1
    # the validation line and dots, the training line, the grid and the text are all drawn
    for name, rgb, least in (("validation", (217, 83, 79), 50), ("train", (127, 167, 217), 20),
                             ("grid", (221, 221, 221), 500)):
        assert colours.get(bytes(rgb), 0) >= least, (name, colours.get(bytes(rgb), 0))
    assert sum(n for c, n in colours.items() if max(c) < 80) > 300, "no text drawn"


@test
def ctrl_c_saves_and_resume_finishes():
    d = tmpdir()
    ckpt, tok, _ = make_run(d, ctx=64, vocab=61)
    out = os.path.join(d, "out")
    args = train_args(ckpt, tok, out)
    args[args.index("--steps") + 1] = 100000
    args[args.index("--save-every") + 1] = 0
    env = dict(os.environ)
    wall0 = time.time()
    p = subprocess.Popen([QKV_BIN] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    # wait for the first steps (plain lines: not a TTY)
    t0 = time.time()
    seen = b""
    while b"step" not in seen and time.time() - t0 < 60:
        seen += p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(1)
    p.send_signal(signal.SIGINT)
    so, se = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, se.decode()[-500:])
    assert b"--resume" in so, so[-500:]
    rows = read_log(out)
    done = int(rows[-1]["step"])
    assert done >= 1
    assert os.path.exists(os.path.join(out, "optimizer.bin"))
    # resume with a smaller step budget: it continues from `done`
    args[args.index("--steps") + 1] = done + 2
    qkv(*(args + ["--resume"]))
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == list(range(1, done + 3)), [r["step"] for r in rows]
    # elapsed time carries over the interruption, never counted twice
    el = [float(r["elapsed_s"]) for r in rows]
    assert el == sorted(el) and el[-1] <= time.time() - wall0 + 1.0, (el, time.time() - wall0)


run_all()
