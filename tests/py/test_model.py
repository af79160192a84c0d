#!/usr/bin/python3
"""test_model.py -- the C GPT-2 (qkv forward / generate) against an independent PyTorch GPT-2
(gpt2_torch.py, run in float64) on random-weight checkpoints written by checkpoint.py.

Tolerances (float32 C against a float64 reference):
  logits:      max |diff| <= 2e-5 * max(1, max |ref logit|)   (measured: ~1e-6)
  attention:   max |diff| <= 5e-6 (probabilities; measured: ~5e-7)
  greedy generation: identical ids.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Skip, qkv, run_all, shared_data, test, tmpdir  # noqa: E402
import checkpoint  # noqa: E402
import gpt2_torch  # noqa: E402

torch.set_grad_enabled(False)
LOGIT_TOL = 2e-5
ATTN_TOL = 5e-6


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def run_forward(d, ids, *extra):
    out = tmpdir()
    lp, ap = os.path.join(out, "l.npy"), os.path.join(out, "a.npy")
    qkv("forward", "--model", d, "--ids", ids_arg(ids), "--logits", lp, "--attn", ap, *extra)
    return np.load(lp), np.load(ap)


def compare(d, ids, temperature=1.0, causal=True, extra=()):
    ref = gpt2_torch.load(d, torch.float64)
    logits, attn = run_forward(d, ids, *extra)
    rl, ra = ref(ids, temperature=temperature, causal=causal, return_attn=True)
    rl, ra = rl.numpy(), torch.stack(ra).numpy()
    assert logits.shape == rl.shape, (logits.shape, rl.shape)
    assert attn.shape == ra.shape, (attn.shape, ra.shape)
    dl = np.abs(logits - rl).max()
    da = np.abs(attn - ra).max()
    scale = max(1.0, np.abs(rl).max())
    assert dl <= LOGIT_TOL * scale, "logits differ by %g (scale %g) in %s" % (dl, scale, d)
    assert da <= ATTN_TOL, "attention differs by %g in %s" % (da, d)
    return dl / scale, da


def rand_ids(n, vocab, seed):
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


@test
def forward_matches_torch_several_sizes():
    # (layers, heads, embd, ctx, vocab, N, prefix): odd sizes hit every kernel edge (row
    # tiles of 12, 32-column panels, K blocks of 256, N blocks of 768)
    cases = [(1, 1, 8, 16, 257, 1, True), (2, 4, 64, 128, 300, 13, False),
             (3, 6, 96, 64, 400, 64, True), (2, 5, 40, 40, 333, 37, False),
             (1, 4, 288, 160, 1000, 150, True)]
    for i, (L, H, C, T, V, N, prefix) in enumerate(cases):
        d = tmpdir()
        checkpoint.write_checkpoint(d, L, H, C, T, V, "f32", seed=10 + i, prefix=prefix)
        compare(d, rand_ids(N, V, i))


@test
def forward_matches_torch_f16_bf16():
    for dt in ("f16", "bf16"):
        for prefix in (True, False):
            d = tmpdir()
            checkpoint.write_checkpoint(d, 2, 4, 64, 64, 300, dt, seed=3, prefix=prefix)
            compare(d, rand_ids(20, 300, 5))


@test
def forward_lm_head_variants_and_buffers():
    for lm in ("tied", "untied"):
        d = tmpdir()
        checkpoint.write_checkpoint(d, 2, 2, 32, 32, 280, "f32", seed=4, lm_head=lm, buffers=True)
        compare(d, rand_ids(17, 280, 6))


@test
def forward_full_context():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 1, 2, 32, 48, 270, "f32", seed=8)
    compare(d, rand_ids(48, 270, 9))


@test
def forward_temperature_and_no_causal():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 2, 4, 64, 64, 300, "f32", seed=5)
    ids = rand_ids(19, 300, 7)
    compare(d, ids, temperature=2.5, extra=("--temperature", "2.5"))
    compare(d, ids, causal=False, extra=("--no-causal",))
    compare(d, ids, temperature=0.5, causal=False, extra=("--temperature", "0.5", "--no-causal"))


@test
def forward_json_top_predictions():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 2, 4, 64, 64, 300, "f32", seed=6)
    ids = rand_ids(9, 300, 2)
    out = json.loads(qkv("forward", "--model", d, "--ids", ids_arg(ids), "--json", "--top", "4").stdout)
    assert out["ids"] == ids and out["n_tokens"] == 9 and len(out["tokens"]) == 9
    ref = torch.softmax(gpt2_torch.load(d, torch.float64)(ids), dim=-1).numpy()
    for i, row in enumerate(out["top"]):
        assert len(row) == 4
        want = np.argsort(-ref[i], kind="stable")[:4]
        assert [e["id"] for e in row] == list(want), (i, row, want)
        for e in row:
            assert abs(e["prob"] - ref[i][e["id"]]) < 1e-5


@test
def forward_text_path_uses_the_tokenizer():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 2, 4, 64, 128, 320, "f32", seed=7)
    text = "the cat sat on the bank of the river."
    ids = json.loads(qkv("tokenize", "--model", d, input=text.encode()).stdout)
    out = json.loads(qkv("forward", "--model", d, "--text", text, "--json").stdout)
    assert out["ids"] == ids, (out["ids"], ids)
    assert "".join(out["tokens"]) == text
    compare(d, ids)


@test
def checkpoint_cli_writes_loadable_folders():
    d = tmpdir()
    import subprocess
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint.py"),
                    d, "--layers", "2", "--heads", "2", "--embd", "32", "--ctx", "24", "--vocab", "290",
                    "--dtype", "bf16", "--seed", "3", "--no-prefix", "--lm-head", "untied", "--buffers"],
                   check=True, capture_output=True)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["n_layer"] == 2 and cfg["vocab_size"] == 290 and cfg["n_positions"] == 24
    compare(d, rand_ids(24, 290, 8))


@test
def gpt2_vocabulary_end_to_end():
    if checkpoint.shared_gpt2_dir() is None:
        raise Skip("GPT-2's vocabulary (../shared/data/gpt2) is absent")
    d = tmpdir()
    checkpoint.write_checkpoint(d, 1, 2, 32, 64, 50257, "f16", seed=21, tokenizer="gpt2")
    text = "The keys to the cabinet were on the table."
    out = json.loads(qkv("forward", "--model", d, "--text", text, "--json").stdout)
    assert out["ids"] == [464, 8251, 284, 262, 13447, 547, 319, 262, 3084, 13], out["ids"]
    compare(d, out["ids"])
    gen = qkv("generate", "--model", d, "--prompt", text, "--temperature", "0", "--max-tokens", "5",
              "--ids-out").stdout
    want = gpt2_torch.load(d, torch.float64).generate_greedy(out["ids"], 5, eot=50256)
    assert json.loads(gen) == want, (gen, want)


@test
def real_gpt2_matches_published_outputs():
    """With real GPT-2 small weights (QKV_GPT2_DIR: the four Hugging Face files), the
    greedy generations published by transformers' tests and llm.c's step-0 loss."""
    real = os.environ.get("QKV_GPT2_DIR")
    data = shared_data()
    if not real or not os.path.isfile(os.path.join(real, "model.safetensors")):
        raise Skip("set QKV_GPT2_DIR to a folder with GPT-2 small's Hugging Face files to run")
    if data is None:
        raise Skip("../shared/data (reference outputs) is absent")
    with open(os.path.join(data, "gpt2-124m-reference-outputs.json")) as f:
        ref = json.load(f)
    for case in ref["greedy_generation"]:
        if "float32" not in case["generation"]:
            continue
        want = case.get("expected_ids", case["expected_text_ids_reencoded"])
        n_prompt = len(case["prompt_ids"])
        got = json.loads(qkv("generate", "--model", real, "--ids", ids_arg(case["prompt_ids"]),
                             "--temperature", "0", "--max-tokens", len(want) - n_prompt,
                             "--ids-out").stdout)
        assert got == want[n_prompt:], (case["prompt"], got, want[n_prompt:])
    b = ref["llmc_debug_batch"]
    toks = b["tokens_257"]
    losses = []
    for r in range(b["B"]):
        x = toks[r * b["T"]:(r + 1) * b["T"]]
        y = toks[r * b["T"] + 1:(r + 1) * b["T"] + 1]
        logits, _ = run_forward(real, x)
        lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        losses += list(lse - logits[np.arange(len(y)), y])
    assert abs(np.mean(losses) - b["step0_mean_cross_entropy"]) < 1e-3, np.mean(losses)


@test
def generate_greedy_matches_torch():
    for dt, extra in (("f32", ()), ("bf16", ("--bf16",))):
        d = tmpdir()
        checkpoint.write_checkpoint(d, 2, 4, 64, 64, 300, dt, seed=11, tokenizer="none")
        prompt = rand_ids(5, 300, 3)
        got = json.loads(qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--temperature", "0",
                             "--max-tokens", "30", "--ids-out", *extra).stdout)
        want = gpt2_torch.load(d, torch.float64).generate_greedy(prompt, 30)
        assert got == want, "%s: %s vs torch %s" % (dt, got, want)


@test
def generate_stops_when_the_context_is_full():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 1, 2, 32, 16, 270, "f32", seed=12, tokenizer="none")
    prompt = rand_ids(10, 270, 1)
    got = json.loads(qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--temperature", "0",
                         "--max-tokens", "100", "--ids-out").stdout)
    assert len(got) == 16 - 10 + 1, got  # the last token comes from the last position's logits
    want = gpt2_torch.load(d, torch.float64).generate_greedy(prompt, 7)
    assert got == want, (got, want)


@test
def generate_text_streams_token_bytes():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 2, 4, 64, 128, 300, "f32", seed=13)
    prompt = "the bank by the river"
    text = qkv("generate", "--model", d, "--prompt", prompt, "--temperature", "0",
               "--max-tokens", "12").stdout
    ids = json.loads(qkv("generate", "--model", d, "--prompt", prompt, "--temperature", "0",
                         "--max-tokens", "12", "--ids-out").stdout)
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
        inv = {v: k for k, v in json.load(f).items()}
    u2b = {u: b for b, u in checkpoint.bytes_to_unicode().items()}
    want = b"".join(bytes(u2b[ch] for ch in inv[i]) for i in ids if inv[i] != "<|endoftext|>")
    assert text == want + b"\n", (text, want)


@test
def sampling_is_seeded_and_respects_top_k():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 2, 4, 64, 64, 300, "f32", seed=14, tokenizer="none")
    prompt = rand_ids(4, 300, 4)

    def gen(*args):
        return json.loads(qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--max-tokens", "20",
                              "--ids-out", *args).stdout)
    a = gen("--temperature", "1.5", "--seed", "42")
    assert a == gen("--temperature", "1.5", "--seed", "42")
    others = [gen("--temperature", "1.5", "--seed", str(s)) for s in (1, 2, 3)]
    assert any(o != a for o in others), "different seeds all gave the same tokens"
    greedy = gen("--temperature", "0")
    assert gen("--temperature", "1", "--top-k", "1", "--seed", "5") == greedy
    assert gen("--temperature", "1", "--top-p", "0.000001", "--seed", "5") == greedy
    ref = gpt2_torch.load(d, torch.float64)
    for args, k in ((("--top-k", "3"), 3), (("--top-p", "0.5"), None)):
        got = gen("--temperature", "2", "--seed", "9", *args)
        ctx = list(prompt)
        for t in got:
            probs = torch.softmax(ref(ctx)[-1] / 2.0, dim=-1).numpy()
            order = np.argsort(-probs)
            if k is not None:
                allowed = set(order[:k].tolist())
            else:  # the nucleus: the smallest prefix with mass >= 0.5 (plus float slack)
                cum = np.cumsum(probs[order])
                allowed = set(order[:int(np.searchsorted(cum, 0.5 - 1e-6)) + 2].tolist())
            assert t in allowed, (args, t, sorted(allowed))
            ctx.append(t)


@test
def bad_requests_fail_cleanly():
    d = tmpdir()
    checkpoint.write_checkpoint(d, 1, 2, 32, 16, 270, "f32", seed=15)
    cases = [
        (("forward", "--model", d, "--ids", ids_arg(range(17))), b"context"),
        (("forward", "--model", d, "--ids", ""), b"no tokens"),
        (("forward", "--model", d, "--ids", "1,2,270"), b"outside"),
        (("forward", "--model", d, "--ids", "1,x"), b"--ids"),
        (("forward", "--model", d, "--text", "x" * 200), b"context"),
        (("forward", "--model", d + "/nope", "--ids", "1"), b"No such file"),
        (("forward", "--model", os.path.dirname(d), "--ids", "1"), b"config.json"),
        (("forward", "--model", d, "--ids", "1", "--text", "a"), b"exactly one"),
        (("generate", "--model", d, "--ids", ids_arg(range(17))), b"context"),
        (("generate", "--model", d, "--prompt", ""), b"empty"),
        (("generate", "--model", d, "--prompt", "a", "--top-p", "0"), b"top-p"),
        (("generate", "--model", d, "--prompt", "a", "--temperature", "-1"), b"temperature"),
    ]
    for args, msg in cases:
        cp = qkv(*args, check=False)
        assert cp.returncode != 0, args
        assert msg in cp.stderr, (args, cp.stderr)
        assert b"AddressSanitizer" not in cp.stderr and b"runtime error" not in cp.stderr


if __name__ == "__main__":
    run_all()
