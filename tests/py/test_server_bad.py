# qkv-test: sanitize
"""test_server_bad.py -- every bad request the playground's API refuses, each with a JSON
{"error": ...} and the right 4xx, and the server still serving afterwards (it runs under
ASan+UBSan too): invalid JSON, wrong types and ranges for every field, unknown fields, empty
and too-long text, bodies over the limit (declared and chunked), wrong content type, unknown
routes, wrong methods, broken HTTP framing, a connection flood over the per-IP limit, and
idle connections past the timeout.
"""
import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import run_all, test  # noqa: E402
from test_server import CTX, Server, model_dir, strict_json  # noqa: E402

del harness._TESTS[:]  # importing test_server registered its tests; run only ours

_SERVER = None


def server():
    global _SERVER
    if _SERVER is None:
        # small connection limits and a short idle timeout so the abuse tests stay quick
        _SERVER = Server(model_dir(), "--max-per-ip", "12", "--timeout", "2")
    return _SERVER


def still_serving(s):
    assert s.alive(), "server died"
    j = s.api("/api/attend", {"text": "still here"})
    assert len(j["tokens"]) > 0


def expect_error(s, status, body, method="POST", path="/api/attend", headers=None, contains=None):
    st, hdr, data = s.request(method, path, body=body, headers=headers)
    assert st == status, "%s %s %r -> %d (want %d): %s" % (method, path, body if not isinstance(body, (bytes, str)) or len(body) < 200 else "<%d bytes>" % len(body), st, status, data[:300])
    j = strict_json(data)
    assert isinstance(j.get("error"), str) and j["error"], j
    assert hdr.get("content-type", "").startswith("application/json")
    if contains:
        assert contains in j["error"], j["error"]
    return j, hdr


@test
def invalid_json_bodies():
    s = server()
    for body in ["", "{", "}", "[]", "null", "\"text\"", "42", "{\"text\": }", "{'text': 'a'}",
                 "{\"text\": \"a\",}", "{\"text\": \"a\"} trailing", "\xff\xfe{}",
                 "{\"text\": \"a\", \"text\": \"b\"}",           # duplicate key
                 "{\"text\": \"a\\u0000b\"}",                   # NUL in a string
                 "{\"text\": \"\\ud800\"}",                     # lone surrogate
                 "{\"text\": \"a\", \"temperature\": 1e999}",   # number overflow
                 "[" * 5000 + "]" * 5000,                       # deep nesting
                 "{\"a\":" * 3000 + "1" + "}" * 3000]:
        raw = body.encode("latin-1") if body.startswith("\xff") else body.encode()
        expect_error(s, 400, raw)
    still_serving(s)


@test
def wrong_types_and_ranges():
    s = server()
    cases = [
        {}, {"text": 1}, {"text": None}, {"text": ["a"]}, {"text": {"a": 1}}, {"text": True},
        {"text": ""},
        {"text": "a", "temperature": "1"}, {"text": "a", "temperature": True},
        {"text": "a", "temperature": 0}, {"text": "a", "temperature": -1},
        {"text": "a", "temperature": 1000}, {"text": "a", "temperature": 0.001},
        {"text": "a", "causal": "yes"}, {"text": "a", "causal": 1}, {"text": "a", "causal": None},
        {"text": "a", "top_k": 1.5}, {"text": "a", "top_k": -1}, {"text": "a", "top_k": 100000},
        {"text": "a", "top_k": 2 ** 70}, {"text": "a", "top_k": "3"},
        {"text": "a", "layers": [99]}, {"text": "a", "layers": [-1]}, {"text": "a", "layers": "0"},
        {"text": "a", "layers": [0.5]}, {"text": "a", "layers": [0] * 100},
        {"text": "a", "scores": 1}, {"text": "a", "attention": "no"},
        {"text": "a", "scores": [9]}, {"text": "a", "scores": "x"}, {"text": "a", "scores": [0.5]},
        {"text": "a", "detail": "x"}, {"text": "a", "detail": {"layer": 99}},
        {"text": "a", "detail": {"head": -1}}, {"text": "a", "detail": {"layer": 0, "foo": 1}},
        {"text": "a", "detail": {"layer": "0"}}, {"text": "a", "detail": []},
        {"text": "a", "probe": "x"}, {"text": "a", "probe": [1]}, {"text": "a", "probe": [""]},
        {"text": "a", "probe": ["x" * 65]}, {"text": "a", "probe": ["a"] * 17},
        {"text": "a", "unknown_field": 1}, {"txt": "a"},
    ]
    for body in cases:
        expect_error(s, 400, body)
    j, _ = expect_error(s, 400, {"text": "a", "temperature": 0})
    assert "temperature" in j["error"]
    still_serving(s)


@test
def compare_bad_inputs():
    s = server()
    for body in [{}, {"a": "x"}, {"a": "x", "b": "y"}, {"a": 1, "b": "y", "word": "x"},
                 {"a": "the bank", "b": "the river", "word": "bank"},     # word missing in b
                 {"a": "x", "b": "y", "index_a": 0, "index_b": 99},     # index past the end
                 {"a": "x", "b": "y", "index_a": -1, "index_b": 0},
                 {"a": "", "b": "y", "word": "y"}, {"a": "x", "b": "x", "word": ""},
                 {"a": "x", "b": "x", "word": "x", "extra": 1}]:
        expect_error(s, 400, body, path="/api/compare")
    still_serving(s)


@test
def too_long_text_and_body():
    s = server()
    j, _ = expect_error(s, 400, {"text": "ab " * (CTX + 10)}, contains="tokens")
    assert str(CTX) in j["error"]
    expect_error(s, 400, {"text": "a" * (32 * 1024 + 1)}, contains="bytes")
    expect_error(s, 413, {"text": "a" * (70 * 1024)})                   # Content-Length > 64 KiB
    # the same body sent chunked (no Content-Length): counted while it streams in
    c = s.conn()
    body = json.dumps({"text": "a" * (70 * 1024)}).encode()

    def chunks():
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]
    c.request("POST", "/api/attend", body=chunks(), headers={"Content-Type": "application/json"},
              encode_chunked=True)
    r = c.getresponse()
    assert r.status == 413, r.status
    assert "error" in strict_json(r.read())
    c.close()
    still_serving(s)


@test
def routes_methods_and_content_type():
    s = server()
    expect_error(s, 404, None, method="GET", path="/nope")
    expect_error(s, 404, None, method="GET", path="/api/nope")
    expect_error(s, 404, {"text": "a"}, path="/api/attendx")
    _, h = expect_error(s, 405, None, method="GET", path="/api/attend")
    assert h.get("allow") == "POST"
    _, h = expect_error(s, 405, {"text": "a"}, path="/api/model")
    assert "GET" in h.get("allow", "")
    expect_error(s, 405, None, method="DELETE", path="/api/compare")
    expect_error(s, 405, {"text": "a"}, method="PUT", path="/api/attend")
    expect_error(s, 405, None, method="POST", path="/index.html",
                 headers={"Content-Type": "application/json"})
    expect_error(s, 415, b'{"text": "a"}', headers={"Content-Type": "text/plain"})
    expect_error(s, 415, b'text=a', headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect_error(s, 403, None, method="GET", path="/api/model", headers={"Host": "attacker.example"})
    still_serving(s)


def raw_exchange(s, data, read=True, timeout=10):
    """Sends raw bytes on a fresh connection; returns what comes back (b"" if closed)."""
    c = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    try:
        c.sendall(data)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        c.close()


@test
def broken_http_framing():
    s = server()
    cases = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/attend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nContent-Length: 50\r\n\r\n{\"a\":",
        b"POST /api/attend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999999999999999\r\n\r\n",
        b"POST /api/attend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
        b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",                                       # no Host: fine
        b"POST /api/attend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ]
    for data in cases:
        out = raw_exchange(s, data, timeout=5)
        if out:
            status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.") else 0
            assert status in (200, 400, 413, 414, 431, 501, 505), (data[:80], out[:200])
        assert s.alive()
    # two pipelined requests on one connection are both answered
    out = raw_exchange(s, b"GET /api/model HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          b"GET /api/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 2, out[:300]
    still_serving(s)


@test
def connection_flood_and_idle_timeout():
    s = server()
    held = []
    try:
        for _ in range(40):  # more than --max-per-ip 12
            try:
                c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # never finish the headers
                held.append(c)
            except OSError:
                pass
        time.sleep(0.3)
        assert s.alive()
    finally:
        for c in held:
            c.close()
    # the idle connections time out (2 s) and the server serves again
    time.sleep(0.5)
    deadline = time.time() + 20
    while True:
        try:
            still_serving(s)
            break
        except Exception:  # noqa: BLE001
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    # a slow client that stops halfway through its headers is dropped after the timeout
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"POST /api/attend HTTP/1.1\r\nHost: local")
    t0 = time.time()
    got = c.recv(100)
    c.close()
    assert got == b"" or got.startswith(b"HTTP/1.1 4"), got
    assert time.time() - t0 < 9, "idle connection closed by the timeout"
    still_serving(s)


@test
def server_survived_everything_and_stops_cleanly():
    global _SERVER
    s = server()
    still_serving(s)
    s.stop(signal.SIGTERM)
    _SERVER = None


if __name__ == "__main__":
    try:
        run_all()
    finally:
        if _SERVER is not None and _SERVER.alive():
            _SERVER.p.kill()
