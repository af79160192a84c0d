#!/usr/bin/python3
"""test_train_llama.py -- `qkv train --arch llama` trains a Llama-style model from scratch.

* The checkpoint is a Hugging Face Llama folder (config.json of model_type llama, or qwen3
  with --qk-norm; model.safetensors with the model.layers.N.* names) that the independent
  PyTorch implementation (llama_torch.py) loads and agrees with on logits.
* Training lowers the loss; `--stop-after` + `--resume` gives exactly the weights and losses of
  an uninterrupted run (the optimizer state, RNG and data position restored).
* Options that only a Llama-style model has are refused for GPT-2.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, tmpdir  # noqa: E402
import llama_torch  # noqa: E402

torch.set_num_threads(1)

TEXT = ("The keys to the cabinet were on the table. The bank by the river was steep. "
        "A cat sat on the mat and looked at the dog. ") * 60


def corpus(d):
    p = os.path.join(d, "corpus.txt")
    with open(p, "w") as f:
        f.write(TEXT)
    return p


def args(data, out, *extra):
    return ["train", "--data", data, "--out", out, "--arch", "llama", "--layers", 2, "--heads", 4,
            "--kv-heads", 2, "--embd", 64, "--ctx", 32, "--batch", 4, "--vocab-size", 300,
            "--steps", 12, "--eval-every", 4, "--threads", 1, "--seed", 7, "--no-final-eval", *extra]


def read_losses(d):
    with open(os.path.join(d, "train_log.csv")) as f:
        rows = [line.strip().split(",") for line in f][1:]
    return [float(r[2]) for r in rows]


@test
def llama_from_scratch_is_a_hugging_face_llama():
    d = tmpdir()
    out = os.path.join(d, "m")
    qkv(*args(corpus(d), out))
    import json
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["model_type"] == "llama" and cfg["num_key_value_heads"] == 2, cfg
    assert cfg["rms_norm_eps"] == 1e-05, cfg["rms_norm_eps"]
    losses = read_losses(out)
    assert losses[-1] < losses[0] - 0.5, losses
    ref = llama_torch.load(out)
    ids = list(np.random.RandomState(3).randint(0, cfg["vocab_size"], 20))
    lp = os.path.join(d, "l.npy")
    qkv("forward", "--model", out, "--ids", ",".join(map(str, ids)), "--logits", lp)
    got = np.load(lp)
    want = ref(ids).detach().numpy()
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 2e-5, err


@test
def llama_resume_continues_exactly():
    d = tmpdir()
    data = corpus(d)
    full, part = os.path.join(d, "full"), os.path.join(d, "part")
    qkv(*args(data, full))
    qkv(*args(data, part, "--stop-after", 5))
    qkv(*args(data, part, "--resume"))
    assert read_losses(full) == read_losses(part)
    wa = open(os.path.join(full, "model.safetensors"), "rb").read()
    wb = open(os.path.join(part, "model.safetensors"), "rb").read()
    assert wa == wb, "resumed weights differ from the uninterrupted run's"


@test
def qk_norm_model_is_a_qwen3():
    d = tmpdir()
    out = os.path.join(d, "m")
    qkv(*args(corpus(d), out, "--qk-norm", "--rope-theta", "1000000"))
    import json
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["model_type"] == "qwen3" and cfg["rope_theta"] == 1e6, cfg
    ref = llama_torch.load(out)
    ids = list(range(1, 17))
    lp = os.path.join(d, "l.npy")
    qkv("forward", "--model", out, "--ids", ",".join(map(str, ids)), "--logits", lp)
    want = ref(ids).detach().numpy()
    err = np.abs(np.load(lp) - want).max() / np.abs(want).max()
    assert err < 2e-5, err


@test
def llama_options_refused_for_gpt2():
    d = tmpdir()
    data = corpus(d)
    for extra, msg in ((["--kv-heads", "2"], b"--arch llama"), (["--arch", "bert"], b"bert")):
        cp = qkv("train", "--data", data, "--out", os.path.join(d, "x"), "--steps", 2, "--vocab-size", 300, *extra,
                 check=False)
        assert cp.returncode != 0 and msg in cp.stderr, cp.stderr


if __name__ == "__main__":
    run_all()
