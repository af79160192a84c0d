# qkv-test: sanitize
"""test_server.py -- `qkv serve` and its JSON API (docs/HTTP.md) on a random-weight checkpoint
(checkpoint.py): shapes, rows summing to 1, the causal zeros, equality with `qkv forward`,
the raw scores and one head's q/k/v against the weights, the word comparison, static files,
1000 requests from 16 concurrent clients, and a clean stop on SIGTERM/SIGINT.

The Server class is shared with test_server_bad.py (the bad-input tests).
"""
import atexit
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import QKV_BIN, Skip, qkv, run_all, test, tmpdir  # noqa: E402
import checkpoint  # noqa: E402

LAYERS, HEADS, EMBD, CTX = 2, 4, 64, 128


def strict_json(data):
    """Parses a response strictly: NaN/Infinity are not JSON."""
    def bad_constant(name):
        raise ValueError("non-JSON constant %s" % name)
    return json.loads(data.decode("utf-8"), parse_constant=bad_constant)


class Server:
    """A `qkv serve --port 0` process on model_dir; stop() checks it ends cleanly."""

    def __init__(self, model_dir, *extra):
        self.p = subprocess.Popen([QKV_BIN, "serve", "--model", model_dir, "--port", "0"] +
                                  [str(e) for e in extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = b""
        deadline = time.time() + 120
        while b"\n" not in line:
            r, _, _ = select.select([self.p.stdout], [], [], max(0.0, deadline - time.time()))
            if not r:
                self.p.kill()
                raise AssertionError("server did not print its address in time")
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                err = self.p.stderr.read().decode(errors="replace")
                raise AssertionError("server exited: %s" % err[-2000:])
            line += chunk
        self.banner = line.decode()
        assert self.banner.startswith("qkv: playground on http://127.0.0.1:"), self.banner
        self.port = int(self.banner.split("http://127.0.0.1:")[1].split("/")[0])
        assert self.port > 0

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, headers dict, body bytes)."""
        h = {"Content-Type": "application/json"} if body is not None else {}
        if headers:
            h.update(headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        c = conn or self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if conn is None:
                c.close()

    def api(self, path, body=None, method=None, expect=200):
        st, hdr, data = self.request(method or ("POST" if body is not None else "GET"), path, body)
        j = strict_json(data)
        assert st == expect, "%s %s -> %d %s" % (path, str(body)[:200], st, data[:300])
        assert hdr.get("content-type", "").startswith("application/json"), hdr
        return j

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("server did not stop on signal %d" % sig)
        err = self.p.stderr.read().decode(errors="replace")
        self.p.stdout.close()
        self.p.stderr.close()
        assert rc == 0, "server exited %d: %s" % (rc, err[-3000:])
        assert "Sanitizer" not in err, err[-3000:]
        return err


_MODEL = None


def model_dir():
    """One small checkpoint (2 layers, 4 heads, C=64, 128 positions, the tiny BPE) per run."""
    global _MODEL
    if _MODEL is None:
        top = tmpdir()
        atexit.register(shutil.rmtree, top, True)
        d = os.path.join(top, "model")
        checkpoint.write_checkpoint(d, layers=LAYERS, heads=HEADS, embd=EMBD, ctx=CTX, vocab=300,
                                    tokenizer="tiny", seed=3)
        _MODEL = d
    return _MODEL


_SERVER = None


def server():
    """A server shared by the tests of this file (started once)."""
    global _SERVER
    if _SERVER is None or not _SERVER.alive():
        _SERVER = Server(model_dir())
    return _SERVER


TEXT = "The bank of the river was steep, and the keys to the cabinet were lost."


def softmax_rows(s, T, causal):
    s = s / T
    n = s.shape[-1]
    if causal:
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def forward_attn(text, *extra):
    """`qkv forward --attn` for text: ([L,H,N,N] weights, last-position logits, ids)."""
    d = tmpdir()
    atexit.register(shutil.rmtree, d, True)
    a, lg = os.path.join(d, "a.npy"), os.path.join(d, "l.npy")
    cp = qkv("forward", "--model", model_dir(), "--text", text, "--attn", a, "--logits", lg,
             "--json", *extra)
    ids = json.loads(cp.stdout.decode())["ids"]
    return np.load(a), np.load(lg)[-1], ids


@test
def model_info():
    s = server()
    j = s.api("/api/model")
    assert (j["n_layer"], j["n_head"], j["n_embd"], j["n_ctx"], j["vocab_size"]) == \
        (LAYERS, HEADS, EMBD, CTX, 300), j
    assert j["head_dim"] == EMBD // HEADS and j["name"] == "model" and j["n_params"] > 0
    assert j["limits"]["max_tokens"] == CTX and j["limits"]["max_body_bytes"] == 65536
    assert "model model: 2 layers, 4 heads" in s.banner, s.banner


@test
def head_scores_and_tags():
    """GET /api/heads is the engine's probe (the same numbers as `qkv heads --json`)."""
    s = server()
    j = s.api("/api/heads")
    assert (j["n_layer"], j["n_head"]) == (LAYERS, HEADS) and len(j["heads"]) == LAYERS * HEADS, j
    cli = json.loads(qkv("heads", "--model", model_dir(), "--json").stdout)
    for a, b in zip(j["heads"], cli["heads"]):
        assert (a["layer"], a["head"], a["tags"]) == (b["layer"], b["head"], b["tags"]), (a, b)
        for k, v in a["scores"].items():
            assert abs(v - b["scores"][k]) < 1e-5 and 0 <= v <= 1.0 + 1e-6, (k, v, b["scores"][k])
    for h in j["heads"]:
        assert ("previous-token" in h["tags"]) == (h["scores"]["prev"] >= j["thresholds"]["prev"]), h
        assert ("uniform" in h["tags"]) == (h["scores"]["uniformity"] >= j["thresholds"]["uniformity"]), h
    st, hdr, body = s.request("POST", "/api/heads", b"{}")
    assert st == 405 and hdr.get("allow") == "GET, HEAD", (st, hdr, body)


@test
def attend_shapes_rows_and_causal_zeros():
    j = server().api("/api/attend", {"text": TEXT})
    n = len(j["tokens"])
    assert n == len(j["ids"]) == len(j["bytes"]) == len(j["partial"]) == j["n_tokens"] > 5
    a = np.array(j["attention"], dtype=np.float64)
    assert a.shape == (LAYERS, HEADS, n, n), a.shape
    assert np.abs(a.sum(-1) - 1).max() < 1e-5, "rows must sum to 1"
    upper = np.triu(np.ones((n, n), bool), 1)
    assert (a[..., upper] == 0).all(), "causal: the future gets exactly 0"
    assert (a[..., ~upper] > 0).all() and (a <= 1).all()
    # pieces concatenate to the text's bytes
    assert b"".join(bytes.fromhex(b) for b in j["bytes"]) == TEXT.encode()
    top = j["top"]
    assert len(top) == 10 and all(0 <= t["prob"] <= 1 for t in top)
    assert all(top[i]["prob"] >= top[i + 1]["prob"] for i in range(9)), "top sorted"
    assert j["temperature"] == 1 and j["causal"] is True and "scores" not in j


@test
def attend_equals_qkv_forward():
    for body, extra in [({}, ()), ({"temperature": 0.5}, ("--temperature", "0.5")),
                        ({"causal": False}, ("--no-causal",)),
                        ({"temperature": 3.0, "causal": False}, ("--temperature", "3", "--no-causal"))]:
        ref, logits, ids = forward_attn(TEXT, *extra)
        j = server().api("/api/attend", dict(body, text=TEXT, top_k=5))
        assert j["ids"] == ids, "same tokens as qkv forward"
        a = np.array(j["attention"])
        assert a.shape == ref.shape, (a.shape, ref.shape)
        diff = np.abs(a - ref).max()
        assert diff < 1e-6, "%s: max |api - forward| = %g" % (body, diff)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:5]
        assert [t["id"] for t in j["top"]] == list(order), (j["top"], order)
        for t in j["top"]:
            assert abs(t["prob"] - p[t["id"]]) < 1e-6


def parse_binary(data):
    """The binary form of POST /api/attend (docs/HTTP.md): (header dict, {name: array})."""
    import struct
    assert data[:8] == b"QKVATTN1", data[:16]
    (j,) = struct.unpack("<I", data[8:12])
    head = strict_json(data[12:12 + j])
    assert (12 + j) % 4 == 0
    arrays = {}
    for name in ("attention", "scores"):
        d = head.get(name)
        if d is None:
            continue
        assert d["dtype"] == "float32" and d["bytes"] == 4 * int(np.prod(d["shape"])), d
        at = 12 + j + d["offset"]
        arrays[name] = np.frombuffer(data[at:at + d["bytes"]], "<f4").reshape(d["shape"])
    assert len(data) == 12 + j + sum(head[n]["bytes"] for n in arrays), "no bytes left over"
    return head, arrays


@test
def attend_binary_form_equals_json():
    """?format=bin and Accept: application/octet-stream: the same numbers as the JSON, float32."""
    s = server()
    req = {"text": TEXT, "scores": [1], "layers": [0, 1], "top_k": 3}
    j = s.api("/api/attend", req)
    st, hdr, data = s.request("POST", "/api/attend?format=bin", req)
    assert st == 200 and hdr["content-type"] == "application/octet-stream", (st, hdr)
    head, arrays = parse_binary(data)
    assert head["tokens"] == j["tokens"] and head["top"] == j["top"], head
    assert head["attention"]["layers"] == [0, 1] and head["scores"]["layers"] == [1]
    a = np.array(j["attention"], np.float64)
    assert np.abs(arrays["attention"] - a).max() < 1e-6, np.abs(arrays["attention"] - a).max()
    sc = np.array(j["scores"][1], np.float64)
    assert np.abs(arrays["scores"][0] - sc).max() <= 1e-6 * max(1.0, np.abs(sc).max())
    assert len(data) < len(json.dumps(j)), (len(data), len(json.dumps(j)))
    st, hdr, data2 = s.request("POST", "/api/attend", req, headers={"Accept": "application/octet-stream"})
    assert st == 200 and data2[:8] == b"QKVATTN1"
    assert parse_binary(data2)[1]["attention"].tobytes() == arrays["attention"].tobytes()
    # errors stay JSON; an unknown format is refused
    st, hdr, data = s.request("POST", "/api/attend?format=bin", {"text": ""})
    assert st == 400 and hdr["content-type"].startswith("application/json"), (st, hdr)
    st, _, _ = s.request("POST", "/api/attend?format=xml", req)
    assert st == 400


@test
def scores_and_head_detail_agree_with_attention():
    s = server()
    j = s.api("/api/attend", {"text": TEXT, "scores": True, "detail": {"layer": 1, "head": 2}})
    a, sc = np.array(j["attention"]), np.array(j["scores"])
    assert sc.shape == a.shape and np.isfinite(sc).all(), "raw scores, unmasked, finite"
    assert np.abs(softmax_rows(sc, 1.0, True) - a).max() < 2e-6
    # a temperature-T forward differs from softmax(scores/T) from layer 1 on, but layer 0's
    # scores do not depend on the dial
    jt = s.api("/api/attend", {"text": TEXT, "temperature": 0.25, "scores": True})
    assert np.abs(np.array(jt["scores"])[0] - sc[0]).max() < 1e-5
    assert np.abs(softmax_rows(sc[0], 0.25, True) - np.array(jt["attention"])[0]).max() < 2e-6
    d = j["detail"]
    q, k, v, out = (np.array(d[x]) for x in ("q", "k", "v", "out"))
    n, hd = q.shape
    assert (d["layer"], d["head"], d["head_dim"]) == (1, 2, EMBD // HEADS) and k.shape == (n, hd)
    assert abs(d["scale"] - 1 / np.sqrt(hd)) < 1e-7
    assert np.abs(q @ k.T * d["scale"] - sc[1, 2]).max() < 1e-4, "scores = q.k / sqrt(d)"
    assert np.abs(a[1, 2] @ v - out).max() < 1e-5, "head output = weights @ values"


@test
def layers_subset_top_k_and_probe():
    s = server()
    j = s.api("/api/attend", {"text": TEXT, "layers": [1], "top_k": 3, "scores": True,
                              "probe": ["the", " the", "zzz"]})
    assert j["attention"][0] is None and j["scores"][0] is None
    assert np.array(j["attention"][1]).shape[0] == HEADS
    assert len(j["top"]) == 3
    _, logits, _ = forward_attn(TEXT)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    for pr in j["probe"]:
        assert abs(pr["prob"] - p[pr["id"]]) < 1e-6, pr
    j1 = s.api("/api/attend", {"text": TEXT, "scores": [0]})
    assert j1["scores"][1] is None and np.array(j1["scores"][0]).shape[0] == HEADS
    assert all(x is not None for x in j1["attention"])
    j0 = s.api("/api/attend", {"text": "hi", "attention": False, "top_k": 0})
    assert "attention" not in j0 and j0["top"] == []


@test
def partial_utf8_pieces_give_valid_json():
    text = "emoji 🤗 日本語 ü"
    j = server().api("/api/attend", {"text": text})
    assert b"".join(bytes.fromhex(b) for b in j["bytes"]) == text.encode()
    for t, b, part in zip(j["tokens"], j["bytes"], j["partial"]):
        raw = bytes.fromhex(b)
        try:
            ok = raw.decode("utf-8") == t
        except UnicodeDecodeError:
            ok = False
        assert part == (not ok) or (part and "\ufffd" in t), (t, b, part)
    assert any(j["partial"]), "byte-level BPE splits these characters"


@test
def compare_word_in_two_sentences():
    s = server()
    a, b = "I sat on the bank of the river.", "I put my money in the bank."
    j = s.api("/api/compare", {"a": a, "b": b, "word": "bank"})
    sim = j["similarity"]
    assert len(sim) == LAYERS + 1 and all(-1.0001 <= x <= 1.0001 for x in sim)
    for side, text in (("a", a), ("b", b)):
        x = j[side]
        pieces = [bytes.fromhex(h) for h in x["bytes"]]
        start = sum(len(p) for p in pieces[:x["index"]])
        end = start + len(pieces[x["index"]])
        at = text.encode().find(b"bank")
        assert start <= at + 3 < end, "index holds the word's last byte"
        att = np.array(x["attention"])
        assert att.shape == (LAYERS, HEADS, len(pieces))
        assert np.abs(att.sum(-1) - 1).max() < 1e-5
    same = s.api("/api/compare", {"a": a, "b": a, "word": "river"})
    assert all(abs(x - 1) < 1e-5 for x in same["similarity"]), "identical contexts"
    idx = s.api("/api/compare", {"a": a, "b": b, "index_a": 0, "index_b": 0})
    assert idx["a"]["index"] == 0 and abs(idx["similarity"][0] - 1) < 1e-5, "same token, position"


@test
def static_files_headers():
    s = server()
    st, h, body = s.request("GET", "/")
    assert st == 200 and h["content-type"].startswith("text/html")
    assert b'<script type="module" src="main.js">' in body, "the page is ES modules (web/*.js)"
    assert "default-src 'self'" in h["content-security-policy"]
    assert "script-src 'self'" in h["content-security-policy"]  # same-origin modules
    assert h["x-content-type-options"] == "nosniff"
    # module scripts need a JavaScript MIME type; every module the page imports is served
    mods = sorted(f for f in os.listdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web"))
                  if f.endswith(".js"))
    assert "main.js" in mods and "api.js" in mods and "app.js" not in mods, mods
    for name, ctype in [("/" + m, "text/javascript") for m in mods] + [("/style.css", "text/css")]:
        st, h, body = s.request("GET", name)
        assert st == 200 and h["content-type"].startswith(ctype) and len(body) > 100
    st, h, body = s.request("HEAD", "/index.html")
    assert st == 200 and body == b""
    st, h, body = s.request("GET", "/../../etc/passwd")
    assert st == 404
    st, h, _ = s.request("GET", "/api/model", headers={"Host": "evil.example:80"})
    assert st == 403, "Host must be loopback (DNS rebinding)"
    st, h, _ = s.request("GET", "/api/model", headers={"Host": "localhost:%d" % s.port})
    assert st == 200


@test
def concurrent_clients_1000_requests():
    s = server()
    texts = ["The keys to the cabinet", TEXT, "a b c d e f g", "river bank", "x" * 40]
    want = {t: s.api("/api/attend", {"text": t, "top_k": 3}) for t in texts}
    n_clients, per_client = 16, 63  # 1008 requests
    errors, done = [], [0]
    lock = threading.Lock()

    def client(k):
        c = s.conn(timeout=120)
        try:
            for r in range(per_client):
                if r % 7 == 3:
                    st, _, data = s.request("GET", "/api/model", conn=c)
                    ok = st == 200 and strict_json(data)["n_layer"] == LAYERS
                elif r % 11 == 5:  # bad input mixed in: must not disturb the others
                    st, _, data = s.request("POST", "/api/attend", body={"text": ""}, conn=c)
                    ok = st == 400 and "error" in strict_json(data)
                else:
                    t = texts[(k + r) % len(texts)]
                    st, _, data = s.request("POST", "/api/attend", body={"text": t, "top_k": 3}, conn=c)
                    j = strict_json(data) if st == 200 else None
                    ok = j is not None and j["ids"] == want[t]["ids"] and \
                        j["attention"] == want[t]["attention"] and j["top"] == want[t]["top"]
                if not ok:
                    with lock:
                        errors.append("client %d request %d: status %d" % (k, r, st))
                with lock:
                    done[0] += 1
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append("client %d: %r" % (k, e))
        finally:
            c.close()

    t0 = time.time()
    th = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=600)
    assert not errors, "%d errors, first: %s" % (len(errors), errors[:3])
    assert done[0] == n_clients * per_client, done
    print("      %d requests from %d clients in %.2f s" % (done[0], n_clients, time.time() - t0))
    assert s.alive()


@test
def stops_cleanly_on_sigterm_and_sigint():
    global _SERVER
    if _SERVER is not None:
        err = _SERVER.stop(signal.SIGTERM)
        assert "SIGTERM" in err
        _SERVER = None
    s2 = Server(model_dir())
    s2.api("/api/attend", {"text": "hello"})
    assert "SIGINT" in s2.stop(signal.SIGINT)


@test
def port_in_use_and_bad_options():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    try:
        cp = qkv("serve", "--model", model_dir(), "--port", port, check=False, timeout=60)
        assert cp.returncode == 1 and b"cannot listen" in cp.stderr, cp.stderr
    finally:
        sock.close()
    cp = qkv("serve", "--model", model_dir(), "--port", "70000", check=False)
    assert cp.returncode == 2 and b"--port" in cp.stderr
    cp = qkv("serve", "--model", "/nonexistent/model", "--port", "0", check=False, timeout=60)
    assert cp.returncode == 1 and b"error" in cp.stderr
    cp = qkv("serve", "--bogus", "1", check=False)
    assert cp.returncode == 2


if __name__ == "__main__":
    try:
        run_all()
    finally:
        if _SERVER is not None and _SERVER.alive():
            _SERVER.p.kill()
