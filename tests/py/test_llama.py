#!/usr/bin/python3
"""test_llama.py -- the Llama family in qkv (Llama, Mistral, Qwen2, Qwen3, SmolLM2-style,
Llama 3 rope scaling, MQA, partial rotary, head dim 80, llama2.c checkpoints) against an
independent float64 PyTorch implementation (llama_torch.py), as test_model.py / test_train.py
do for GPT-2:

* `qkv forward` logits and attention maps on one random checkpoint per family (written here
  in the Hugging Face layout: F32/F16/BF16, one file or shards + index);
* `qkv attend` JSON equal to forward's maps; the text path through the copied vocabulary;
* greedy `qkv generate --temperature 0 --ids-out` identical to torch's greedy decoding;
* `qkv grad` against autograd, and `qkv train` steps against torch.optim.AdamW;
* llama2.c files (legacy, version 1, version 2 Q8_0; shared and unshared classifier);
* malformed folders and files refused with a message (and no sanitizer report);
* aidreams260K (shared/data): the same tokens as upstream llama2.c run.c, all 8 references.

Tolerances (float32 C against a float64 reference):
  logits:    max |diff| <= 2e-5 * max(1, max |ref logit|)
  attention: max |diff| <= 2e-5 (probabilities; measured 4e-6 .. 1.2e-5: the random
             weights here make attention sharp and logits large, which float32 rounding in
             the scores feels more than GPT-2's milder ones in test_model.py)
  greedy generation: identical ids.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Skip, qkv, run_all, shared_data, test, tmpdir  # noqa: E402
import checkpoint  # noqa: E402
import llama_torch  # noqa: E402

torch.set_grad_enabled(False)
torch.set_num_threads(1)
LOGIT_TOL = 2e-5
ATTN_TOL = 2e-5
FAMILIES = list(llama_torch.FAMILIES)


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def rand_ids(n, vocab, seed):
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


_DIRS = {}


def family_dir(family):
    """The family's checkpoint folder, written once per run."""
    if family not in _DIRS:
        d = os.path.join(tmpdir(), family)
        llama_torch.write_family(d, family, seed=10 + FAMILIES.index(family))
        _DIRS[family] = d
    return _DIRS[family]


def run_forward(model, ids, *extra):
    out = tmpdir()
    lp, ap = os.path.join(out, "l.npy"), os.path.join(out, "a.npy")
    qkv("forward", "--model", model, "--ids", ids_arg(ids), "--logits", lp, "--attn", ap, *extra)
    return np.load(lp), np.load(ap)


def compare(model, ids, ref, what, temperature=1.0, causal=True, extra=()):
    logits, attn = run_forward(model, ids, *extra)
    with torch.no_grad():
        rl, ra = ref(ids, temperature=temperature, causal=causal, return_attn=True)
    rl, ra = rl.numpy(), torch.stack(ra).numpy()
    assert logits.shape == rl.shape, (what, logits.shape, rl.shape)
    assert attn.shape == ra.shape, (what, attn.shape, ra.shape)
    scale = max(1.0, float(np.abs(rl).max()))
    dl, da = float(np.abs(logits - rl).max()), float(np.abs(attn - ra).max())
    assert dl <= LOGIT_TOL * scale, "%s: logits differ by %g (scale %g)" % (what, dl, scale)
    assert da <= ATTN_TOL, "%s: attention differs by %g" % (what, da)
    return dl / scale, da


def refused(args, *needles):
    cp = qkv(*args, check=False)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode != 0, (args, "was accepted")
    assert b"AddressSanitizer" not in cp.stderr and b"runtime error" not in cp.stderr, err
    for n in needles:
        assert n in err, (args, n, err)


# ---- the oracle itself ------------------------------------------------------------------------

@test
def oracle_rope_layouts_agree():
    """Meta's interleaved pairs on W equal HF's rotate_half on W with each head's rows permuted
    (transformers' convert_llama_weights_to_hf permute): the two RoPE codes check each other."""
    cfg = llama_torch.make_config("llama", hidden=64, heads=4, kv_heads=2, vocab=50, ctx=32,
                                  theta=500000.0, rope_scaling={
                                      "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8})
    p = llama_torch.random_params(cfg, 3)
    d = 16

    def permute(w, heads):
        return w.reshape(heads, d // 2, 2, -1).transpose(0, 2, 1, 3).reshape(heads * d, -1)
    hf = dict(p)
    for l in range(2):
        hf["model.layers.%d.self_attn.q_proj.weight" % l] = permute(p["model.layers.%d.self_attn.q_proj.weight" % l], 4)
        hf["model.layers.%d.self_attn.k_proj.weight" % l] = permute(p["model.layers.%d.self_attn.k_proj.weight" % l], 2)
    ids = rand_ids(30, 50, 1)
    a = llama_torch.from_params(cfg, p, interleaved=True)(ids)
    b = llama_torch.from_params(cfg, hf, interleaved=False)(ids)
    assert float((a - b).abs().max()) < 1e-10, float((a - b).abs().max())


# ---- forward ----------------------------------------------------------------------------------

@test
def forward_matches_torch_every_family():
    worst = []
    for i, fam in enumerate(FAMILIES):
        d = family_dir(fam)
        ref = llama_torch.load(d)
        n = min(120, ref.n_ctx())
        r = compare(d, rand_ids(n, ref.cfg["vocab_size"], i), ref, fam)
        worst.append("%s %.1e/%.1e" % (fam, r[0], r[1]))
    print("      logits (relative) / attention: " + ", ".join(worst))


@test
def forward_dials_temperature_and_no_causal():
    d = family_dir("qwen2")
    ref = llama_torch.load(d)
    ids = rand_ids(19, ref.cfg["vocab_size"], 7)
    compare(d, ids, ref, "qwen2 T=2.5", temperature=2.5, extra=("--temperature", "2.5"))
    compare(d, ids, ref, "qwen2 no-causal", causal=False, extra=("--no-causal",))


@test
def forward_full_context_mistral_window():
    """Mistral's sliding_window (96) below max_position_embeddings (256): n_ctx is the window."""
    d = family_dir("mistral")
    ref = llama_torch.load(d)
    assert ref.n_ctx() == 96
    compare(d, rand_ids(96, ref.cfg["vocab_size"], 3), ref, "mistral, 96 tokens")
    refused(("forward", "--model", d, "--ids", ids_arg(rand_ids(97, 100, 1))), "context")


@test
def forward_text_path_uses_the_copied_vocabulary():
    d = family_dir("llama")
    text = "The keys to the cabinet were on the table by the river bank."
    ids = json.loads(qkv("tokenize", "--model", d, input=text.encode()).stdout)
    out = json.loads(qkv("forward", "--model", d, "--text", text, "--json").stdout)
    assert out["ids"] == ids, (out["ids"], ids)
    assert "".join(out["tokens"]) == text
    compare(d, ids, llama_torch.load(d), "llama text")


@test
def attend_json_equals_forward_attn_with_gqa():
    d = family_dir("qwen2")  # 7 query heads over 1 KV head
    text = "the cat sat on the mat"
    p = os.path.join(tmpdir(), "a.npy")
    qkv("forward", "--model", d, "--text", text, "--attn", p)
    ref = np.load(p)
    j = json.loads(qkv("attend", "--model", d, text, "--format", "json").stdout)
    got = np.array(j["attention"], dtype=np.float32)
    assert got.shape == ref.shape and ref.shape[:2] == (2, 7), (got.shape, ref.shape)
    assert np.array_equal(got, ref), float(np.abs(got - ref).max())


# ---- generation -------------------------------------------------------------------------------

def eot_of(d):
    p = os.path.join(d, "vocab.json")
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f).get("<|endoftext|>")


@test
def generate_greedy_matches_torch():
    for fam, extra in (("llama", ()), ("mistral", ()), ("qwen2", ()), ("qwen3", ()),
                       ("llama3", ("--bf16",)), ("mqa", ()), ("partial", ()), ("hd80", ())):
        d = family_dir(fam)
        ref = llama_torch.load(d)
        prompt = rand_ids(6, ref.cfg["vocab_size"], 3)
        got = json.loads(qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--temperature", "0",
                             "--max-tokens", "24", "--ids-out", *extra).stdout)
        want = ref.generate_greedy(prompt, 24, eot=eot_of(d))
        assert got == want, "%s: %s vs torch %s" % (fam, got, want)


@test
def generate_stops_at_the_mistral_window():
    d = family_dir("mistral")
    ref = llama_torch.load(d)
    prompt = rand_ids(90, ref.cfg["vocab_size"], 5)
    got = json.loads(qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--temperature", "0",
                         "--max-tokens", "100", "--ids-out").stdout)
    want = ref.generate_greedy(prompt, 7, eot=eot_of(d))
    assert len(got) <= 96 - 90 + 1 and got == want, (got, want)


# ---- llama2.c files -----------------------------------------------------------------------------

@test
def llama2c_files_match_torch():
    """Legacy (shared and unshared classifier), version 1 and version 2 (Q8_0) files: RoPE on
    interleaved pairs, GQA 4:2."""
    cases = [dict(version=0, shared=True), dict(version=0, shared=False),
             dict(version=1, shared=True), dict(version=1, shared=False),
             dict(version=2, shared=False), dict(version=2, shared=True, kv_heads=1)]
    for i, kw in enumerate(cases):
        path = os.path.join(tmpdir(), "m%d.bin" % i)
        cfg, params = llama_torch.random_llama2c(path, seed=20 + i, **kw)
        ref = llama_torch.from_params(cfg, params, interleaved=True)
        compare(path, rand_ids(40, cfg["vocab_size"], i), ref, "llama2.c %s" % kw)
        prompt = rand_ids(4, cfg["vocab_size"], 9 + i)
        got = json.loads(qkv("generate", "--model", path, "--ids", ids_arg(prompt), "--temperature", "0",
                             "--max-tokens", "16", "--ids-out").stdout)
        assert got == ref.generate_greedy(prompt, 16), (kw, got)


def aidreams_paths():
    data = shared_data()
    if data is None:
        raise Skip("../shared/data is absent (aidreams260K)")
    d = os.path.join(data, "aidreams260K")
    paths = [os.path.join(d, n) for n in ("aidreams260K.bin", "tok512.bin", "greedy-reference.jsonl")]
    for p in paths:
        if not os.path.isfile(p):
            raise Skip("%s is absent" % p)
    return paths


@test
def aidreams_logits_match_torch():
    """The real llama2.c weights through qkv and through the reference, BOS + a reference run."""
    model, _, refs = aidreams_paths()
    ref = llama_torch.load_llama2c(model)
    with open(refs) as f:
        first = json.loads(f.readline())
    compare(model, [1] + first["tokens_after_bos"][:100], ref, "aidreams260K")


@test
def aidreams_matches_upstream_run_c():
    """Greedy run.c (steps = positions after BOS, prompt tokens included) on 8 prompts: the
    same tokens from the model given BOS + run.c's encoding as ids, and from the prompt text
    (BOS and run.c's encoding done by qkv) with --tokenizer or tokenizer.bin beside the
    checkpoint. qkv prints only the generated ids, so the prompt's part of the reference is
    checked against run.c's encoding (llama_torch.llama2c_encode) and the rest against qkv."""
    model, tok, refs = aidreams_paths()
    vocab, scores = llama_torch.read_llama2c_tokenizer(tok, 512)
    with open(refs) as f:
        cases = [json.loads(line) for line in f if line.strip()]
    assert len(cases) == 8
    for c in cases:
        want_all = c["tokens_after_bos"]
        prompt = llama_torch.llama2c_encode(c["prompt"], vocab, scores)  # BOS first
        n_gen = c["steps"] - (len(prompt) - 1)
        # run.c echoes the prompt (after BOS), then generates
        assert want_all[:len(prompt) - 1] == prompt[1:], (c["prompt"], prompt, want_all[:8])
        want = want_all[len(prompt) - 1:]
        got = json.loads(qkv("generate", "--model", model, "--tokenizer", tok, "--ids", ids_arg(prompt),
                             "--temperature", "0", "--max-tokens", n_gen, "--ids-out").stdout)
        assert got == want, ("ids", c["prompt"], c["steps"], got[:10], want[:10])
        got = json.loads(qkv("generate", "--model", model, "--tokenizer", tok, "--prompt", c["prompt"],
                             "--temperature", "0", "--max-tokens", n_gen, "--ids-out").stdout)
        assert got == want, ("prompt", c["prompt"], c["steps"], got[:10], want[:10])
    # the tokenizer as tokenizer.bin beside the checkpoint, no --tokenizer
    d = tmpdir()
    os.symlink(model, os.path.join(d, "aidreams260K.bin"))
    os.symlink(tok, os.path.join(d, "tokenizer.bin"))
    c = cases[-1]
    n_prompt = len(llama_torch.llama2c_encode(c["prompt"], vocab, scores))
    got = json.loads(qkv("generate", "--model", os.path.join(d, "aidreams260K.bin"), "--prompt", c["prompt"],
                         "--temperature", "0", "--max-tokens", c["steps"] - (n_prompt - 1), "--ids-out").stdout)
    assert got == c["tokens_after_bos"][n_prompt - 1:], ("beside", c["prompt"], got[:10])


# ---- training ---------------------------------------------------------------------------------

def tiny(model_type, **kw):
    base = dict(hidden=64, heads=4, kv_heads=2, layers=2, ff=96, vocab=97, ctx=24)
    base.update(kw)
    return llama_torch.make_config(model_type, **base)


def grad_check(cfg, seed):
    d = tmpdir()
    ckpt = os.path.join(d, "ckpt")
    llama_torch.write_hf(ckpt, cfg, seed=seed, tokenizer=False)
    ids = rand_ids(20, cfg["vocab_size"], seed)
    out = os.path.join(d, "grads.safetensors")
    cp = qkv("grad", "--model", ckpt, "--ids", ids_arg(ids), "--out", out)
    c_loss = float(cp.stdout.decode().split()[1])
    m = llama_torch.load(ckpt)
    with torch.enable_grad():
        loss = torch.nn.functional.cross_entropy(m(ids[:-1]), torch.tensor(ids[1:]))
        loss.backward()
    assert abs(c_loss - loss.item()) < 1e-5 * max(1.0, loss.item()), (c_loss, loss.item())
    grads = {llama_torch.strip_prefix(k): v for k, v in checkpoint.read_safetensors(out).items()}
    names = {llama_torch.strip_prefix(n): p for n, p in m.named_parameters()}
    assert set(grads) == set(names), sorted(set(grads) ^ set(names))
    worst = 0.0
    for name, p in names.items():
        g_c, g_t = np.asarray(grads[name], np.float64), p.grad.numpy()
        assert g_c.shape == g_t.shape, (name, g_c.shape, g_t.shape)
        err = float(np.abs(g_c - g_t).max()) / max(float(np.abs(g_t).max()), 1e-3)
        worst = max(worst, err)
        assert err < 1e-4, "%s %s: max |dC - dtorch| / max|dtorch| = %.3g" % (cfg["model_type"], name, err)
    return c_loss, worst


@test
def grad_matches_torch_autograd():
    out = []
    for cfg in (tiny("llama"),                                   # GQA 2:1, tied
                tiny("qwen2", heads=4, kv_heads=1, eps=1e-6),    # q/k/v biases, MQA
                tiny("qwen3", head_dim_=32, tie=False),          # QK-norm, d apart from C / H, untied
                tiny("llama", partial_rotary_factor=0.5, theta=500000.0, rope_scaling={
                    "rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8})):
        loss, worst = grad_check(cfg, 3)
        out.append("%s %.1e" % (cfg["model_type"], worst))
    print("      worst relative gradient error: " + ", ".join(out))


B, ACCUM, STEPS, WARMUP, LR, MINF, WD, B1, B2, EPS, CLIP = 2, 2, 8, 3, 3e-3, 0.1, 0.1, 0.9, 0.95, 1e-8, 1.0


def lr_at(step):  # nanoGPT's get_lr, as qkv's trainer (test_train.py)
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    ratio = (step - WARMUP) / max(1, STEPS - WARMUP)
    return LR * MINF + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - LR * MINF)


def write_tokens(path, train, val, vocab):
    """A qkv token file (as test_train.py): 64-byte header, then uint16 tokens."""
    hdr = b"QKVTOKEN" + struct.pack("<IIII", 1, 2, vocab, 0) + struct.pack("<QQ", len(train), len(val))
    with open(path, "wb") as f:
        f.write(hdr + b"\0" * (64 - len(hdr)) + np.asarray(list(train) + list(val), dtype="<u2").tobytes())


def read_log(d):
    with open(os.path.join(d, "train_log.csv")) as f:
        head = f.readline().strip().split(",")
        return [dict(zip(head, line.strip().split(","))) for line in f]


@test
def training_steps_match_torch_adamw():
    d = tmpdir()
    vocab, ctx = 61, 16
    cfg = tiny("qwen2", hidden=32, heads=4, kv_heads=2, ff=48, vocab=vocab, ctx=ctx, tie=False)
    ckpt = os.path.join(d, "ckpt")
    llama_torch.write_hf(ckpt, cfg, seed=11, tokenizer=False)
    rng = np.random.default_rng(9)
    phrase = rng.integers(0, vocab, size=23)
    train = np.concatenate([np.where(rng.random(23) < 0.2, rng.integers(0, vocab, 23), phrase)
                            for _ in range(40)])
    tok = os.path.join(d, "tokens.bin")
    write_tokens(tok, train, rng.integers(0, vocab, size=200), vocab)
    out = os.path.join(d, "out")
    qkv("train", "--data", tok, "--init", ckpt, "--out", out, "--sequential", "--batch", B,
        "--accum", ACCUM, "--steps", STEPS, "--warmup", WARMUP, "--lr", LR, "--min-lr-frac", MINF,
        "--weight-decay", WD, "--beta1", B1, "--beta2", B2, "--clip", CLIP, "--eval-every", 4,
        "--eval-batches", 2, "--save-every", 0, "--threads", 2, "--no-final-eval")
    c_losses = [float(r["loss"]) for r in read_log(out)]
    assert len(c_losses) == STEPS, c_losses
    m = llama_torch.load(ckpt).train()
    params = dict(m.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": WD},
                             {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}],
                            lr=LR, betas=(B1, B2), eps=EPS)
    pos, t_losses = 0, []
    with torch.enable_grad():
        for step in range(STEPS):
            opt.zero_grad()
            total = 0.0
            for _ in range(ACCUM):
                if pos + B * ctx + 1 > len(train):
                    pos = 0
                loss = 0.0
                for b in range(B):
                    row = [int(x) for x in train[pos + b * ctx: pos + b * ctx + ctx + 1]]
                    loss = loss + torch.nn.functional.cross_entropy(m(row[:-1]), torch.tensor(row[1:]))
                pos += B * ctx
                loss = loss / B
                (loss / ACCUM).backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(m.parameters(), CLIP)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.step()
            t_losses.append(total / ACCUM)
    diffs = [abs(a - b) for a, b in zip(c_losses, t_losses)]
    print("      losses qkv   %s\n      losses torch %s" % (" ".join("%.5f" % x for x in c_losses),
                                                          " ".join("%.5f" % x for x in t_losses)))
    assert t_losses[-1] < t_losses[0] - 0.1, "the reference did not learn: a useless test"
    assert max(diffs) < 2e-4, diffs
    final = {llama_torch.strip_prefix(k): v
             for k, v in checkpoint.read_safetensors(os.path.join(out, "model.safetensors")).items()}
    worst = 0.0
    for name, p in params.items():
        k = llama_torch.strip_prefix(name)
        assert k in final, (k, sorted(final)[:8])
        worst = max(worst, float(np.abs(np.asarray(final[k], np.float64) - p.detach().numpy()).max()))
    assert worst < LR / 2, worst


@test
def training_resume_continues_exactly():
    """A Llama-style model (GQA, RoPE, SwiGLU, untied) trained from scratch with --stop-after
    and --resume gives the losses and bytes of an uninterrupted run."""
    d = tmpdir()
    vocab = 61
    rng = np.random.default_rng(4)
    tok = os.path.join(d, "tokens.bin")
    write_tokens(tok, rng.integers(0, vocab, size=2000), rng.integers(0, vocab, size=200), vocab)
    ckpt = os.path.join(d, "ckpt")
    llama_torch.write_hf(ckpt, tiny("llama", hidden=32, heads=4, kv_heads=2, ff=48, vocab=vocab, ctx=16,
                                    tie=False), seed=5, tokenizer=False)

    def args(out):
        return ["train", "--data", tok, "--init", ckpt, "--out", out, "--batch", 2, "--steps", 6,
                "--warmup", 2, "--lr", 3e-3, "--eval-every", 3, "--eval-batches", 2, "--save-every", 0,
                "--threads", 2]
    full, part = os.path.join(d, "full"), os.path.join(d, "part")
    qkv(*args(full))
    qkv(*(args(part) + ["--stop-after", 3]))
    qkv(*(args(part) + ["--resume"]))
    a, b = read_log(full), read_log(part)
    assert [r["loss"] for r in a] == [r["loss"] for r in b], (a, b)
    wa = open(os.path.join(full, "model.safetensors"), "rb").read()
    wb = open(os.path.join(part, "model.safetensors"), "rb").read()
    assert wa == wb, "resumed weights differ from the uninterrupted run's"
    # the trained folder loads back as the same family, and matches the reference
    with open(os.path.join(full, "config.json")) as f:
        saved = json.load(f)
    assert saved["model_type"] == "llama" and saved["num_key_value_heads"] == 2, saved
    ref = llama_torch.load(full)
    compare(full, rand_ids(16, vocab, 1), ref, "trained llama")


@test
def forward_tied_config_ignores_a_stored_lm_head():
    """tie_word_embeddings: true with an lm_head.weight in the file (some exporters write one):
    the head is the embedding, as transformers ties it after loading."""
    for scale in (1.0, 2.0):
        d = os.path.join(tmpdir(), "tied")
        cfg, params = llama_torch.write_family(d, "partial", seed=4, tokenizer=False)
        t = checkpoint.read_safetensors(os.path.join(d, "model.safetensors"))
        t["lm_head.weight"] = t["model.embed_tokens.weight"] * scale
        checkpoint.write_safetensors(os.path.join(d, "model.safetensors"), t)
        compare(d, rand_ids(12, cfg["vocab_size"], 2), llama_torch.from_params(cfg, params),
                "tied + stored head x%g" % scale)


# ---- refusals ---------------------------------------------------------------------------------

@test
def malformed_files_refused():
    base = family_dir("qwen3")  # 3 shards
    vocab = llama_torch.vocab_size_of()

    def variant(edit_index=None, edit_config=None, files=None):
        d = os.path.join(tmpdir(), "bad")
        os.makedirs(d)
        for n in os.listdir(base):
            os.link(os.path.join(base, n), os.path.join(d, n))
        if edit_index:
            with open(os.path.join(base, "model.safetensors.index.json")) as f:
                idx = json.load(f)
            edit_index(idx)
            os.unlink(os.path.join(d, "model.safetensors.index.json"))
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump(idx, f)
        if edit_config:
            with open(os.path.join(base, "config.json")) as f:
                cfg = json.load(f)
            edit_config(cfg)
            os.unlink(os.path.join(d, "config.json"))
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(cfg, f)
        if files:
            files(d)
        return d

    def fwd(d):
        return ("forward", "--model", d, "--ids", "1,2,3")

    def outside(idx):
        k = next(iter(idx["weight_map"]))
        idx["weight_map"][k] = "../" + idx["weight_map"][k]
    refused(fwd(variant(edit_index=outside)), "inside the folder")

    def absolute(idx):
        k = next(iter(idx["weight_map"]))
        idx["weight_map"][k] = "/etc/passwd"
    refused(fwd(variant(edit_index=absolute)), "inside the folder")

    def drop_shard(d):
        os.unlink(os.path.join(d, "model-00002-of-00003.safetensors"))
    refused(fwd(variant(files=drop_shard)), "model-00002-of-00003.safetensors")

    def wrong_type(idx):
        idx["weight_map"] = list(idx["weight_map"].items())
    refused(fwd(variant(edit_index=wrong_type)), "weight_map")

    def two_shards(d):
        # shard 3 also carries a tensor of shard 1
        p1 = checkpoint.read_safetensors(os.path.join(base, "model-00001-of-00003.safetensors"))
        p3 = checkpoint.read_safetensors(os.path.join(base, "model-00003-of-00003.safetensors"))
        p3["model.embed_tokens.weight"] = p1["model.embed_tokens.weight"]
        os.unlink(os.path.join(d, "model-00003-of-00003.safetensors"))
        checkpoint.write_safetensors(os.path.join(d, "model-00003-of-00003.safetensors"), p3)
    refused(fwd(variant(files=two_shards)), "two shards")

    def heads_not_dividing(cfg):
        cfg.pop("head_dim")
        cfg["num_attention_heads"] = 3
        cfg["num_key_value_heads"] = 1
    refused(fwd(variant(edit_config=heads_not_dividing)), "hidden_size")

    def kv_not_dividing(cfg):
        cfg["num_key_value_heads"] = 3
    refused(fwd(variant(edit_config=kv_not_dividing)), "num_key_value_heads")

    def yarn(cfg):
        cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    refused(fwd(variant(edit_config=yarn)), "yarn")

    def unknown_family(cfg):
        cfg["model_type"] = "gemma3"
    refused(fwd(variant(edit_config=unknown_family)), "gemma3")

    def wider(cfg):  # the config no longer matches the tensors
        cfg["intermediate_size"] += 8
    refused(fwd(variant(edit_config=wider)), "mlp")

    # a safetensors header that lies about its length
    d = os.path.join(tmpdir(), "lies")
    llama_torch.write_family(d, "llama", seed=1)
    p = os.path.join(d, "model.safetensors")
    raw = bytearray(open(p, "rb").read())
    raw[:8] = struct.pack("<Q", len(raw) + 100)
    open(p, "wb").write(bytes(raw))
    refused(("forward", "--model", d, "--ids", "1"), "header length")

    # llama2.c: a header that lies about the sizes (one more layer than the file holds)
    path = os.path.join(tmpdir(), "lies.bin")
    llama_torch.random_llama2c(path, seed=1)
    raw = bytearray(open(path, "rb").read())
    raw[8:12] = struct.pack("<i", 3)
    open(path, "wb").write(bytes(raw))
    refused(("forward", "--model", path, "--ids", "1"), "describes more bytes")
    raw[8:12] = struct.pack("<i", 2)
    open(path, "wb").write(bytes(raw[:-4]))
    refused(("forward", "--model", path, "--ids", "1"), "describes more bytes")
    raw[12:16] = struct.pack("<i", 3)  # 3 heads do not divide dim 64
    open(path, "wb").write(bytes(raw))
    refused(("forward", "--model", path, "--ids", "1"), "n_heads")
    assert vocab > 0


if __name__ == "__main__":
    run_all()
