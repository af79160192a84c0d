# qkv-test: sanitize
"""test_server_interventions.py -- POST /api/ablate, /api/patch and /api/lens (docs/HTTP.md)
on test_server.py's random-weight checkpoint: every number equals the CLI's (qkv ablate /
patch / lens, themselves checked against PyTorch hooks in test_interventions.py) and the
independent PyTorch model's; bad fields are refused with 400/413 like the other endpoints.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import qkv, run_all, test  # noqa: E402
import gpt2_torch  # noqa: E402
from test_server import LAYERS, HEADS, model_dir, server  # noqa: E402
from test_interventions import metric, torch_run  # noqa: E402
import harness  # noqa: E402

harness._TESTS.clear()  # the imported files' tests are theirs to run

torch.set_grad_enabled(False)
TEXT = "the keys to the cabinet were"
SRC, DST = "the cat sat on the mat", "the cat sat on a mat"  # 9 tokens each in the tiny BPE
TOL = 2e-5  # the API prints 7 significant digits


def cli(*args):
    return json.loads(qkv(*args, "--model", model_dir()).stdout)


def close(a, b, tol=TOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    d = np.abs(a - b).max() if a.size else 0.0
    assert d <= tol * max(1.0, np.abs(b).max()), (d, a, b)
    return d


@test
def ablate_grid_equals_cli_and_torch():
    s = server()
    for mode in ("zero", "mean", "uniform"):
        j = s.api("/api/ablate", {"text": TEXT, "mode": mode})
        c = cli("ablate", "--text", TEXT, "--mode", mode, "--json")
        assert j["ids"] == c["ids"] and j["target"]["id"] == c["target"]["id"] and j["vs"] is None
        assert (j["n_layer"], j["n_head"], j["mode"]) == (LAYERS, HEADS, mode)
        close(j["grid"], c["grid"])
        close(j["base"], c["base"])
        assert [t["id"] for t in j["top"][:5]] == [t["id"] for t in c["top"]]
    # target and vs as text and as ids; the grid against hooks in PyTorch
    ref = gpt2_torch.load(model_dir(), torch.float64)
    ids = j["ids"]
    clean, _, _ = torch_run(ref, ids)
    order = np.argsort(-clean[-1])
    t_id, v_id = int(order[2]), int(order[0])
    j = s.api("/api/ablate", {"text": TEXT, "target": t_id, "vs": v_id, "mode": "mean"})
    want = np.zeros((LAYERS, HEADS))
    m0 = metric(clean[-1], t_id, v_id)
    for l in range(LAYERS):
        for h in range(HEADS):
            rl, _, _ = torch_run(ref, ids, ablate={(l, h): "mean"})
            want[l, h] = metric(rl[-1], t_id, v_id) - m0
    d = close(j["grid"], want, 1e-4)
    print("      api grid vs torch: max diff %.3g" % d)
    tok = j["top"][0]["token"]
    by_text = s.api("/api/ablate", {"text": TEXT, "target": tok})
    assert by_text["target"]["id"] == j["top"][0]["id"]


@test
def ablate_detail_pattern_and_new_predictions():
    s = server()
    j = s.api("/api/ablate", {"text": TEXT, "mode": "uniform", "detail": {"layer": 1, "head": 2},
                              "top_k": 4})
    det = j["detail"]
    n = j["n_tokens"]
    a = np.array(det["attention"])
    assert a.shape == (n, n)
    want = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    close(a, want, 1e-6)
    close(det["delta"], j["grid"][1][2])
    c = cli("ablate", "--text", TEXT, "--mode", "uniform", "--heads", "1.2", "--top", "4", "--json")
    assert [t["id"] for t in det["top"]] == [t["id"] for t in c["top_ablated"]]
    close([t["prob"] for t in det["top"]], [t["prob"] for t in c["top_ablated"]])
    # zero ablation: the head's own pattern is the clean one (its output is what is removed)
    z = s.api("/api/ablate", {"text": TEXT, "detail": {"layer": 0, "head": 1}})
    att = s.api("/api/attend", {"text": TEXT})["attention"][0][1]
    close(z["detail"]["attention"], att, 1e-6)


@test
def patch_maps_equal_cli():
    s = server()
    j = s.api("/api/patch", {"source": SRC, "text": DST})
    c = cli("patch", "--source", SRC, "--text", DST, "--json")
    assert j["n_tokens"] == c["n_tokens"] and j["target"]["id"] == c["target"]["id"]
    assert (j["vs"] or {}).get("id") == (c["vs"] or {}).get("id")
    close(j["head_metric"], c["head_metric"])
    close(j["pos_metric"], c["pos_metric"])
    close([j["source_metric"], j["dest_metric"]], [c["source_metric"], c["dest_metric"]])
    assert np.array(j["head_metric"]).shape == (LAYERS, HEADS)
    assert np.array(j["pos_metric"]).shape == (LAYERS, j["n_tokens"])
    r = np.array(j["pos_restored"], dtype=float)
    ms, md = j["source_metric"], j["dest_metric"]
    close(r, (np.array(j["pos_metric"]) - md) / (ms - md), 1e-4)
    only = s.api("/api/patch", {"source": SRC, "text": DST, "what": "heads", "target": j["target"]["id"]})
    assert "pos_metric" not in only and "head_metric" in only


@test
def lens_equals_cli():
    s = server()
    c = cli("lens", "--text", TEXT, "--top", "3", "--json")
    target = c["top"][-1][-1][0]["id"]
    j = s.api("/api/lens", {"text": TEXT, "top_k": 3, "target": target})
    c = cli("lens", "--text", TEXT, "--top", "3", "--target", "id:%d" % target, "--json")
    assert j["states"] == c["states"] and len(j["top"]) == LAYERS + 1
    assert j["positions"] == list(range(j["n_tokens"]))
    for s_ in range(LAYERS + 1):
        for i in range(j["n_tokens"]):
            assert [t["id"] for t in j["top"][s_][i]] == [t["id"] for t in c["top"][s_][i]]
            close([t["prob"] for t in j["top"][s_][i]], [t["prob"] for t in c["top"][s_][i]])
    close(j["target_probs"], c["target_probs"])
    last = s.api("/api/lens", {"text": TEXT, "positions": "last"})
    assert last["positions"] == [j["n_tokens"] - 1] and len(last["top"][0]) == 1
    assert [t["id"] for t in last["top"][2][0]][:3] == [t["id"] for t in j["top"][2][-1]]


@test
def bad_fields_are_refused():
    s = server()

    def refused(path, body, want, status=400):
        st, _, data = s.request("POST", path, body)
        msg = json.loads(data)["error"]
        assert st == status and want in msg, (path, body, st, msg)

    refused("/api/ablate", {"text": TEXT, "colour": 1}, "unknown field")
    refused("/api/ablate", {"text": TEXT, "mode": "half"}, "'mode'")
    refused("/api/ablate", {"text": TEXT, "target": 300}, "outside the vocabulary")
    refused("/api/ablate", {"text": TEXT, "target": -1}, "outside the vocabulary")
    refused("/api/ablate", {"text": TEXT, "target": "zzqqzzqq"}, "tokens")
    refused("/api/ablate", {"text": TEXT, "target": ""}, "'target'")
    refused("/api/ablate", {"text": TEXT, "target": 5, "vs": 5}, "target itself")
    refused("/api/ablate", {"text": TEXT, "detail": {"layer": LAYERS, "head": 0}}, "'layer'")
    refused("/api/ablate", {"text": TEXT, "detail": {"layer": 0}}, "'detail'")
    refused("/api/ablate", {"text": TEXT, "detail": {"layer": 0, "head": 0, "x": 1}}, "unknown field")
    refused("/api/ablate", {"text": TEXT, "top_k": 0}, "'top_k'")
    refused("/api/ablate", {"text": "a " * 200}, "at most 128")
    refused("/api/ablate", {}, "missing field 'text'")
    refused("/api/patch", {"source": SRC, "text": "the dog"}, "same number of tokens")
    refused("/api/patch", {"source": SRC}, "missing field 'text'")
    refused("/api/patch", {"source": SRC, "text": DST, "what": "all"}, "'what'")
    refused("/api/lens", {"text": TEXT, "positions": 3}, "'positions'")
    refused("/api/lens", {"text": TEXT, "top_k": 21}, "'top_k'")
    refused("/api/lens", {"text": TEXT, "target": [1]}, "'target'")
    for path in ("/api/ablate", "/api/patch", "/api/lens"):
        st, hdr, _ = s.request("GET", path)
        assert st == 405 and hdr.get("allow") == "POST", (path, st)
        refused(path, "[1]", "JSON object")


if __name__ == "__main__":
    try:
        run_all()
    finally:
        s = sys.modules["test_server"]._SERVER
        if s is not None:
            s.stop()
