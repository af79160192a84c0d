# qkv-test: sanitize
"""test_interventions.py -- head ablation, activation patching and the logit lens (qkv ablate,
qkv patch, qkv lens; qkv_model_forward_iv and friends) against the same operations done with
PyTorch hooks on the independent GPT-2 of gpt2_torch.py (float64), on random checkpoints
written by checkpoint.py.

The hooks: a forward pre-hook on each layer's attn.c_proj edits its input, the heads' outputs
concatenated [N, C] (zero / mean over positions / uniform attention = causal running mean of
v, read from a forward hook on attn.c_attn; head patches); a pre-hook on each block (and on
ln_f) edits the residual stream entering it.

Tolerances (float32 C against float64): logits 2e-5 x max(1, max |logit|); log-probability
metrics 1e-4 (measured ~1e-6); lens probabilities 1e-5.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import qkv, run_all, test, tmpdir  # noqa: E402
import checkpoint  # noqa: E402
import gpt2_torch  # noqa: E402

torch.set_grad_enabled(False)
LOGIT_TOL = 2e-5
METRIC_TOL = 1e-4
PROB_TOL = 1e-5
MAXDIFF = {}  # name -> largest difference seen (printed at the end)


def note(name, d):
    MAXDIFF[name] = max(MAXDIFF.get(name, 0.0), float(d))


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def rand_ids(n, vocab, seed):
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


def make_model(L=3, H=4, C=64, T=32, V=300, seed=7):
    d = tmpdir()
    checkpoint.write_checkpoint(d, L, H, C, T, V, "f32", seed=seed)
    return d, gpt2_torch.load(d, torch.float64)


def torch_run(model, ids, ablate=None, head_patches=(), resid_patches=()):
    """Logits [N, V], head outputs [L, H, N, d] and hidden [L + 1, N, C] of one run with the
    interventions done by hooks. ablate: {(l, h): "zero" | "mean" | "uniform"};
    head_patches: [(l, h, pos or -1, values [N, d])]; resid_patches: [(l, pos or -1, values [N, C])]."""
    ablate = ablate or {}
    cfg = model.cfg
    L, H, C = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    d = C // H
    t = model.transformer
    hooks, heads_out, hidden = [], [None] * L, [None] * (L + 1)

    def resid_hook(layer):
        def hook(mod, args):
            x = args[0].clone()
            for pl, pos, vals in resid_patches:
                if pl == layer:
                    v = torch.as_tensor(np.asarray(vals), dtype=x.dtype)
                    if pos < 0:
                        x[:] = v
                    else:
                        x[pos] = v[pos]
            hidden[layer] = x.clone()
            return (x,) + tuple(args[1:])
        return hook

    for l, block in enumerate(t.h):
        store = {}

        def keep_qkv(mod, inp, out, store=store):
            store["qkv"] = out

        def edit_heads(mod, args, l=l, store=store):
            x = args[0].clone()
            N = x.shape[0]
            for h in range(H):
                m = ablate.get((l, h))
                sl = slice(h * d, (h + 1) * d)
                if m == "zero":
                    x[:, sl] = 0
                elif m == "mean":
                    x[:, sl] = x[:, sl].mean(0, keepdim=True)
                elif m == "uniform":
                    v = store["qkv"][:, 2 * C + h * d:2 * C + (h + 1) * d]
                    x[:, sl] = torch.cumsum(v, 0) / torch.arange(1, N + 1, dtype=x.dtype)[:, None]
                elif m is not None:
                    raise ValueError(m)
            for pl, ph, pos, vals in head_patches:
                if pl == l:
                    v = torch.as_tensor(np.asarray(vals), dtype=x.dtype)
                    sl = slice(ph * d, (ph + 1) * d)
                    if pos < 0:
                        x[:, sl] = v
                    else:
                        x[pos, sl] = v[pos]
            heads_out[l] = x.reshape(N, H, d).transpose(0, 1).clone()
            return (x,)

        hooks.append(block.attn.c_attn.register_forward_hook(keep_qkv))
        hooks.append(block.attn.c_proj.register_forward_pre_hook(edit_heads))
        hooks.append(block.register_forward_pre_hook(resid_hook(l)))
    hooks.append(t.ln_f.register_forward_pre_hook(resid_hook(L)))
    try:
        logits = model(ids)
    finally:
        for hk in hooks:
            hk.remove()
    return logits.numpy(), torch.stack(heads_out).numpy(), torch.stack(hidden).numpy()


def metric(logits_row, target, vs):
    lp = torch.log_softmax(torch.as_tensor(logits_row, dtype=torch.float64), -1).numpy()
    return lp[target] - (lp[vs] if vs is not None and vs >= 0 else 0.0)


def qkv_json(*args):
    return json.loads(qkv(*args).stdout)


@test
def ablation_sets_match_torch_every_mode():
    d, ref = make_model()
    ids = rand_ids(11, 300, 1)
    heads = {(0, 1), (1, 3), (2, 0), (2, 2)}
    for mode in ("zero", "mean", "uniform"):
        out = os.path.join(tmpdir(), "l.npy")
        got = qkv_json("ablate", "--model", d, "--ids", ids_arg(ids), "--mode", mode, "--heads",
                       ",".join("%d.%d" % lh for lh in sorted(heads)), "--logits", out, "--json")
        rl, _, _ = torch_run(ref, ids, ablate={lh: mode for lh in heads})
        cl = np.load(out)
        scale = max(1.0, np.abs(rl).max())
        dl = np.abs(cl - rl).max()
        note("ablated logits (%s), relative" % mode, dl / scale)
        assert dl <= LOGIT_TOL * scale, "%s: logits differ by %g" % (mode, dl)
        clean, _, _ = torch_run(ref, ids)
        assert np.abs(rl - clean).max() > 1e-3, "the ablation changed nothing"
        assert sorted(map(tuple, got["heads"])) == sorted(heads)
        target = got["target"]["id"]
        assert target == int(np.argmax(clean[-1])), "default target is the clean top prediction"
        dm = abs(got["delta"] - (metric(rl[-1], target, None) - metric(clean[-1], target, None)))
        note("ablation delta (%s)" % mode, dm)
        assert dm <= METRIC_TOL, dm


@test
def ablation_grid_contract_matches_torch():
    d, ref = make_model(L=3, H=4, C=64, V=300, seed=11)
    ids = rand_ids(12, 300, 2)
    clean, _, _ = torch_run(ref, ids)
    order = np.argsort(-clean[-1])
    target, vs = int(order[3]), int(order[0])
    for mode in ("zero", "mean", "uniform"):
        for with_vs in (True, False):
            args = ["ablate", "--model", d, "--ids", ids_arg(ids), "--target", "id:%d" % target, "--json"]
            if with_vs:
                args += ["--vs", "id:%d" % vs]
            if mode != "zero":
                args += ["--mode", mode]
            got = qkv_json(*args)
            g = np.array(got["grid"])
            assert g.shape == (3, 4), g.shape
            assert got["mode"] == mode and got["target"]["id"] == target
            assert (got["vs"] is not None) == with_vs
            v = vs if with_vs else None
            m0 = metric(clean[-1], target, v)
            assert abs(got["base"] - m0) <= METRIC_TOL
            want = np.zeros((3, 4))
            for l in range(3):
                for h in range(4):
                    rl, _, _ = torch_run(ref, ids, ablate={(l, h): mode})
                    want[l, h] = metric(rl[-1], target, v) - m0
            dg = np.abs(g - want).max()
            note("grid (%s)" % mode, dg)
            assert dg <= METRIC_TOL, "%s: grid differs by %g\n%s\n%s" % (mode, dg, g, want)
            assert np.abs(want).max() > 1e-3


@test
def ablation_grid_default_target_and_csv():
    d, ref = make_model(L=2, H=3, C=48, V=300, seed=5)
    ids = rand_ids(7, 300, 3)
    got = qkv_json("ablate", "--model", d, "--ids", ids_arg(ids), "--json")
    clean, _, _ = torch_run(ref, ids)
    target = int(np.argmax(clean[-1]))
    assert got["target"]["id"] == target and got["vs"] is None
    assert got["top"][0]["id"] == target
    csv = qkv("ablate", "--model", d, "--ids", ids_arg(ids), "--csv").stdout.decode().split()
    assert csv[0] == "layer,head,delta" and len(csv) == 1 + 2 * 3
    for row in csv[1:]:
        l, h, v = row.split(",")
        assert abs(float(v) - got["grid"][int(l)][int(h)]) <= 1e-6
    # text target: the tiny vocabulary's single-token strings
    tok = got["top"][0]["token"]
    by_text = qkv_json("ablate", "--model", d, "--ids", ids_arg(ids), "--target", tok, "--json")
    assert by_text["target"]["id"] == target
    term = qkv("ablate", "--model", d, "--ids", ids_arg(ids), "--no-color").stdout.decode()
    assert "layer 1" in term and "h2" in term, term


@test
def forward_iv_head_and_residual_patches_match_torch():
    # qkv patch's maps: each cell one patched run, compared with hooks doing the same patch
    d, ref = make_model(L=3, H=4, C=64, V=300, seed=21)
    src, dst = rand_ids(9, 300, 4), rand_ids(9, 300, 5)
    dst[:3] = src[:3]
    cs, hs, xs = torch_run(ref, src)
    cd, _, _ = torch_run(ref, dst)
    target, vs = int(np.argmax(cs[-1])), int(np.argmax(cd[-1]))
    if vs == target:
        vs = int(np.argsort(-cd[-1])[1])
    got = qkv_json("patch", "--model", d, "--source-ids", ids_arg(src), "--ids", ids_arg(dst),
                   "--target", "id:%d" % target, "--vs", "id:%d" % vs, "--json")
    ms, md = metric(cs[-1], target, vs), metric(cd[-1], target, vs)
    assert abs(got["source_metric"] - ms) <= METRIC_TOL and abs(got["dest_metric"] - md) <= METRIC_TOL
    hm, pm = np.array(got["head_metric"]), np.array(got["pos_metric"])
    assert hm.shape == (3, 4) and pm.shape == (3, 9)
    want_h = np.zeros((3, 4))
    for l in range(3):
        for h in range(4):
            rl, _, _ = torch_run(ref, dst, head_patches=[(l, h, -1, hs[l, h])])
            want_h[l, h] = metric(rl[-1], target, vs)
    want_p = np.zeros((3, 9))
    for l in range(3):
        for i in range(9):
            rl, _, _ = torch_run(ref, dst, resid_patches=[(l, i, xs[l])])
            want_p[l, i] = metric(rl[-1], target, vs)
    note("patch head map", np.abs(hm - want_h).max())
    note("patch position map", np.abs(pm - want_p).max())
    assert np.abs(hm - want_h).max() <= METRIC_TOL, (hm, want_h)
    assert np.abs(pm - want_p).max() <= METRIC_TOL, (pm, want_p)
    # sanity: patching the whole last position at layer 0 restores the source exactly? No: the
    # stream at the last position alone; but the first three positions are shared, so patching
    # one of them changes nothing
    assert np.abs(pm[:, :3] - md).max() <= METRIC_TOL
    rest = np.array(got["pos_restored"], dtype=float)
    assert np.allclose(rest, (want_p - md) / (ms - md), atol=1e-3)


@test
def logit_lens_matches_torch():
    d, ref = make_model(L=3, H=4, C=64, V=300, seed=31)
    ids = rand_ids(8, 300, 6)
    logits, _, hidden = torch_run(ref, ids)
    t = ref.transformer
    lens = torch.softmax(ref.lm_head(t.ln_f(torch.as_tensor(hidden))), -1).numpy()  # [L+1, N, V]
    target = int(np.argmax(logits[-1]))
    got = qkv_json("lens", "--model", d, "--ids", ids_arg(ids), "--top", "3", "--target",
                   "id:%d" % target, "--json")
    assert len(got["top"]) == 4 and len(got["top"][0]) == 8 and got["states"][0] == "embeddings"
    worst = 0.0
    for s in range(4):
        for i in range(8):
            order = np.argsort(-lens[s, i])[:3]
            cell = got["top"][s][i]
            assert [c["id"] for c in cell] == [int(o) for o in order], (s, i)
            worst = max(worst, max(abs(c["prob"] - lens[s, i, c["id"]]) for c in cell))
            worst = max(worst, abs(got["target_probs"][s][i] - lens[s, i, target]))
    note("lens probabilities", worst)
    assert worst <= PROB_TOL, worst
    # the last state is the model's output
    final = torch.softmax(torch.as_tensor(logits), -1).numpy()
    assert np.abs(lens[3] - final).max() < 1e-12
    csv = qkv("lens", "--model", d, "--ids", ids_arg(ids), "--csv", "--top", "2").stdout.decode().split()
    assert csv[0] == "state,position,rank,id,prob" and len(csv) == 1 + 4 * 8 * 2


@test
def bad_input_is_refused():
    d, _ = make_model(L=2, H=2, C=32, V=300, seed=3)
    ids = ids_arg(rand_ids(6, 300, 7))

    def refused(*args, want):
        cp = qkv(*args, check=False)
        err = cp.stderr.decode()
        assert cp.returncode == 2, (args, cp.returncode, err)
        assert want in err, (want, err)

    refused("ablate", "--model", d, "--ids", ids, "--target", "id:300", "--json", want="[0, 300)")
    refused("ablate", "--model", d, "--ids", ids, "--target", "id:x", want="--target")
    refused("ablate", "--model", d, "--ids", "1,2,999", want="outside the vocabulary")
    refused("ablate", "--model", d, "--ids", ids, "--mode", "half", want="--mode")
    refused("ablate", "--model", d, "--ids", ids, "--heads", "2.0", want="--heads")
    refused("ablate", "--model", d, "--ids", ids, "--heads", "0.x", want="--heads")
    refused("ablate", "--model", d, "--ids", ids, "--text", "a", want="exactly one")
    refused("ablate", "--model", d, "--ids", ids, "--target", "id:5", "--vs", "id:5", want="target itself")
    # a target of several tokens / not in the vocabulary
    refused("ablate", "--model", d, "--ids", ids, "--target", "zzzzqqqq", want="tokens")
    refused("patch", "--model", d, "--source-ids", "1,2,3", "--ids", "1,2", want="same length")
    refused("patch", "--model", d, "--source-ids", "1,2,3", "--ids", "1,2,300", want="outside")
    refused("patch", "--model", d, "--ids", "1,2", want="--source")
    refused("lens", "--model", d, "--ids", ids, "--top", "0", want="--top")
    refused("lens", "--model", d, "--ids", ",".join(["1"] * 33), want="context")


@test
def attention_timeline_matches_torch():
    """qkv generate --attn-timeline: step t's rows are the attention of the query that chose
    token t (position n_prompt - 1 + t) over every token before, as in PyTorch."""
    import base64
    d, ref = make_model(L=2, H=3, C=48, T=32, V=300, seed=41)
    prompt = rand_ids(5, 300, 8)
    out = os.path.join(tmpdir(), "tl.json")
    cp = qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--max-tokens", "6", "--temperature", "0",
             "--ids-out", "--attn-timeline", out)
    gen = json.loads(cp.stdout)
    assert b"float16 rows" in cp.stderr and b"bytes of attention" in cp.stderr, cp.stderr
    tl = json.load(open(out))
    assert tl["ids"] == gen and tl["prompt_ids"] == prompt and len(gen) >= 1
    assert tl["format"] == "f16" and len(tl["heads"]) == 6 and len(tl["steps"]) == len(gen)
    full = prompt + gen
    _, attn = ref(full[:-1], return_attn=True)
    worst, size = 0.0, 0
    for t, b64 in enumerate(tl["steps"]):
        raw = base64.b64decode(b64)
        size += len(raw)
        rows = np.frombuffer(raw, "<f2").reshape(6, len(prompt) + t).astype(np.float64)
        q = len(prompt) - 1 + t
        for k, (l, h) in enumerate(tl["heads"]):
            want = attn[l][h][q][:len(prompt) + t].numpy()
            worst = max(worst, np.abs(rows[k] - want).max())
    note("timeline (float16 rows)", worst)
    assert worst <= 1e-3, worst
    assert size == tl["payload_bytes"]
    # top-k of chosen heads
    out2 = os.path.join(tmpdir(), "tl2.json")
    qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--max-tokens", "6", "--temperature", "0",
        "--attn-timeline", out2, "--attn-heads", "1.2,0.0", "--attn-format", "topk", "--attn-topk", "2")
    tk = json.load(open(out2))
    assert tk["format"] == "topk" and tk["heads"] == [[1, 2], [0, 0]]
    worst = 0.0
    for t, step in enumerate(tk["steps"]):
        q = len(prompt) - 1 + t
        for k, (l, h) in enumerate(tk["heads"]):
            want = attn[l][h][q][:len(prompt) + t].numpy()
            order = np.argsort(-want)[:2]
            assert [e[0] for e in step[k]] == [int(o) for o in order], (t, k, step[k], want)
            worst = max(worst, max(abs(e[1] - want[e[0]]) for e in step[k]))
    note("timeline (top-k)", worst)
    assert worst <= 1e-5, worst
    bad = qkv("generate", "--model", d, "--ids", ids_arg(prompt), "--attn-timeline", out2, "--attn-heads", "2.0",
              check=False)
    assert bad.returncode == 2 and b"--attn-heads" in bad.stderr


@test
def built_in_model_grid_is_quick():
    """The contract on the built-in model, when it is there: the grid is [4][8] and each cell
    equals a --heads run of that one head."""
    cp = qkv("ablate", "--text", "The keys to the cabinet", "--target", " were", "--vs", " was",
             "--json", check=False)
    if cp.returncode != 0:
        return
    got = json.loads(cp.stdout)
    assert len(got["grid"]) == got["n_layer"] and len(got["grid"][0]) == got["n_head"]
    one = qkv_json("ablate", "--text", "The keys to the cabinet", "--target", " were", "--vs", " was",
                   "--heads", "0.3", "--json")
    assert abs(one["delta"] - got["grid"][0][3]) <= 1e-5, (one["delta"], got["grid"][0][3])
    print("      built-in grid: %.1f ms" % got["ms"])


if __name__ == "__main__":
    try:
        run_all()
    finally:
        for k, v in sorted(MAXDIFF.items()):
            print("      max diff %-34s %.3g" % (k, v))
