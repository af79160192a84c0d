# qkv-test: sanitize
"""test_server_generate.py -- POST /api/generate (docs/HTTP.md): newline-delimited JSON streamed
while the tokens are made (chunked), the same tokens as `qkv generate`, every step's attention
equal to the independent PyTorch GPT-2's, a client that goes away mid-stream (the generation is
cancelled, the server keeps serving and stops cleanly), and bad fields refused.
"""
import json
import os
import socket
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import qkv, run_all, test  # noqa: E402
import gpt2_torch  # noqa: E402
from test_server import Server, model_dir  # noqa: E402
import harness  # noqa: E402

harness._TESTS.clear()  # test_server's own tests are its to run
torch.set_grad_enabled(False)
_S = None


def server():
    global _S
    if _S is None or not _S.alive():
        _S = Server(model_dir())
    return _S


def stream(s, body, keep=None):
    """POSTs body and reads the NDJSON lines as they come: (status, headers, [objects])."""
    c = s.conn(timeout=120)
    c.request("POST", "/api/generate", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    hdr = {k.lower(): v for k, v in r.getheaders()}
    if r.status != 200:
        out = (r.status, hdr, [json.loads(r.read())])
        c.close()
        return out
    lines = []
    while True:
        line = r.readline()
        if not line:
            break
        lines.append(json.loads(line))
        if keep is not None and len(lines) >= keep:
            break
    c.close()
    return r.status, hdr, lines


@test
def streams_the_tokens_of_qkv_generate_and_their_attention():
    s = server()
    prompt = "the cat sat on the mat"
    st, hdr, lines = stream(s, {"prompt": prompt, "max_tokens": 6, "heads": [[1, 2], [0, 0]]})
    assert st == 200 and hdr.get("content-type", "").startswith("application/x-ndjson"), hdr
    assert hdr.get("transfer-encoding") == "chunked", hdr
    first, steps, done = lines[0], lines[1:-1], lines[-1]
    assert done["done"] is True and done["n_generated"] == len(steps) >= 1, done
    assert [x["step"] for x in steps] == list(range(len(steps)))
    ids = [x["id"] for x in steps]
    cli = json.loads(qkv("generate", "--model", model_dir(), "--prompt", prompt, "--max-tokens", "6",
                         "--temperature", "0", "--ids-out").stdout)
    assert ids == cli, (ids, cli)
    ref = gpt2_torch.load(model_dir(), torch.float64)
    full = first["ids"] + ids
    _, attn = ref(full[:-1], return_attn=True)
    assert done["heads"] == [[1, 2], [0, 0]]
    n = len(first["ids"])
    worst = 0.0
    for t in range(len(ids)):
        for k, (l, h) in enumerate(done["heads"]):
            got = np.array(done["attention"][t][k])
            want = attn[l][h][n - 1 + t][:n + t].numpy()
            assert got.shape == want.shape, (t, got.shape, want.shape)
            worst = max(worst, np.abs(got - want).max())
    print("      streamed attention vs torch: max diff %.3g" % worst)
    assert worst <= 2e-6, worst
    # all heads by default; no attention on request
    _, _, lines = stream(s, {"prompt": prompt, "max_tokens": 2})
    assert len(lines[-1]["heads"]) == 8 and len(lines[-1]["attention"][0]) == 8
    _, _, lines = stream(s, {"prompt": prompt, "max_tokens": 2, "attention": False})
    assert "attention" not in lines[-1] and lines[-1]["n_generated"] == 2


@test
def a_client_that_goes_away_cancels_and_the_server_carries_on():
    s = server()
    for _ in range(3):
        st, _, lines = stream(s, {"prompt": "the", "max_tokens": 256, "temperature": 1.0, "seed": 3}, keep=3)
        assert st == 200 and len(lines) == 3 and lines[1]["step"] == 0
    # half-written request bodies and abrupt closes do not hurt either
    sk = socket.create_connection(("127.0.0.1", s.port))
    sk.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 60\r\n\r\n{\"prompt\": \"the cat\", \"max")
    sk.close()
    time.sleep(0.5)
    j = s.api("/api/model")
    assert j["n_layer"] == 2
    st, _, lines = stream(s, {"prompt": "the cat", "max_tokens": 3})
    assert st == 200 and lines[-1]["n_generated"] == 3
    # a stop while a generation streams: it ends its stream, the server exits 0
    c = s.conn(timeout=60)
    c.request("POST", "/api/generate", body=json.dumps({"prompt": "the", "max_tokens": 256, "temperature": 1.0}).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200 and r.readline()
    err = s.stop()
    assert "Sanitizer" not in err


@test
def bad_fields_are_refused():
    s = server()
    cases = [({"prompt": "the", "colour": 1}, "unknown field"), ({}, "missing field 'prompt'"),
             ({"prompt": "the", "max_tokens": 0}, "'max_tokens'"), ({"prompt": "the", "max_tokens": 257}, "'max_tokens'"),
             ({"prompt": "the", "heads": [[2, 0]]}, "'heads'"), ({"prompt": "the", "heads": "some"}, "'heads'"),
             ({"prompt": "the", "heads": []}, "'heads'"), ({"prompt": "the", "temperature": -1}, "'temperature'"),
             ({"prompt": "the", "attention": 1}, "'attention'"), ({"prompt": ""}, "empty")]
    for body, want in cases:
        st, _, lines = stream(s, body)
        assert st == 400 and want in lines[0]["error"], (body, st, lines)
    st, hdr, data = s.request("GET", "/api/generate")
    assert st == 405 and hdr.get("allow") == "POST", (st, hdr)
    st, _, data = s.request("POST", "/api/generate", "[1]")
    assert st == 400 and b"JSON object" in data


if __name__ == "__main__":
    try:
        run_all()
    finally:
        if _S is not None and _S.alive():
            _S.stop()
