#!/usr/bin/python3
# qkv-test: sanitize
"""test_attend.py -- `qkv attend` end to end on a random-weight checkpoint (checkpoint.py):
the JSON and CSV numbers equal `qkv forward --attn` (.npy) for the same text, bit for bit;
rows sum to 1 and the causal zeros are there; the SVG parses as XML with the token text
intact; the PNG's chunks and zlib stream check out; the terminal view honours --color,
NO_COLOR and the width; bad input is refused with a clear message (this file also runs
against the ASan+UBSan binary)."""
import csv
import io
import json
import os
import re
import sys
import unicodedata
import xml.etree.ElementTree as ET

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import QKV_BIN, Skip, read_png, run_all, test, tmpdir  # noqa: E402
import subprocess  # noqa: E402

try:
    import checkpoint  # noqa: E402  (tests/py/checkpoint.py, from the model's tests)
except ImportError:  # pragma: no cover - only before the model tests land
    checkpoint = None

SVG_NS = "{http://www.w3.org/2000/svg}"
# Byte-level BPE: every one of these bytes reaches a token, including the escape, the XML
# specials and a character cut in half (the tiny vocabulary has no 3-byte merges).
NASTY = b'The <a&"\'> bank \x1b[31m caf\xc3\xa9 \xe2\x80\x9cq\xe2\x80\x9d\nend'
PLAIN = "The bank by the river was steep."
_MODEL = {}


def qkv(*args, input=None, check=True, env=None):
    """harness.qkv, but byte-string arguments reach the binary as bytes (the sentences here
    carry an escape byte and invalid UTF-8, which str() would turn into their repr)."""
    e = dict(os.environ)
    e.update(env or {})
    argv = [QKV_BIN] + [a if isinstance(a, bytes) else str(a) for a in args]
    cp = subprocess.run(argv, input=input, capture_output=True, timeout=600, env=e)
    if check and cp.returncode != 0:
        raise AssertionError("qkv %r exited %d: %s" % (args, cp.returncode,
                                                       cp.stderr.decode(errors="replace")[-2000:]))
    return cp


def model(layers=2, heads=4):
    """A checkpoint folder (written once per shape)."""
    if checkpoint is None:
        raise Skip("tests/py/checkpoint.py is not there yet (the model's tests write it)")
    key = (layers, heads)
    if key not in _MODEL:
        d = os.path.join(tmpdir(), "attend-ck")
        checkpoint.write_checkpoint(d, layers=layers, heads=heads, embd=32, ctx=64, vocab=300,
                                    seed=3)
        _MODEL[key] = d
    return _MODEL[key]


def forward_attn(d, text, *extra):
    p = os.path.join(tmpdir(), "a.npy")
    qkv("forward", "--model", d, "--text", text, "--attn", p, *extra)
    return np.load(p)


def attend_json(d, text, *extra):
    cp = qkv("attend", "--model", d, text, "--format", "json", *extra)
    return json.loads(cp.stdout)


def plain_width(line):
    """Terminal columns of a line without its SGR sequences."""
    s = re.sub(r"\x1b\[[0-9;]*m", "", line)
    w = 0
    for ch in s:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return w


# ---- numbers ------------------------------------------------------------------------------

@test
def json_equals_forward_attn():
    d = model()
    for text in (PLAIN, NASTY):
        ref = forward_attn(d, text)
        j = attend_json(d, text)
        got = np.array(j["attention"], dtype=np.float32)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        assert np.array_equal(got, ref), float(np.abs(got - ref).max())
        n = ref.shape[-1]
        assert j["n_tokens"] == n and len(j["tokens"]) == n and len(j["ids"]) == n
        assert j["layers"] == [0, 1] and j["heads"] == [0, 1, 2, 3]
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
        assert np.all(got[..., np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] == 0)
        # the token bytes put back together are the sentence
        raw = text if isinstance(text, bytes) else text.encode()
        assert b"".join(bytes(t) for t in j["token_bytes"]) == raw


@test
def json_one_head_mean_and_dials():
    d = model()
    ref = forward_attn(d, PLAIN)
    j = attend_json(d, PLAIN, "--layer", "1", "--head", "2")
    assert j["layers"] == [1] and j["heads"] == [2]
    assert np.array_equal(np.array(j["attention"], dtype=np.float32)[0, 0], ref[1, 2])
    j = attend_json(d, PLAIN, "--layer", "1", "--head", "0,2,avg")  # the lessons' lens
    assert j["heads"] == [0, 2, "avg"]
    got = np.array(j["attention"], dtype=np.float64)[0]
    assert np.array_equal(got[:2].astype(np.float32), ref[1, [0, 2]])
    np.testing.assert_allclose(got[2], ref[1].astype(np.float64).mean(0), atol=1e-7)
    j = attend_json(d, PLAIN, "--layer", "0", "--avg")
    assert j["heads"] == ["avg"]
    np.testing.assert_allclose(np.array(j["attention"])[0, 0], ref[0].astype(np.float64).mean(0),
                               atol=1e-7)
    # the focus dial and the mask switch: the same numbers as forward with the same dials
    for extra in (("--temperature", "0.5"), ("--no-causal",), ("--temperature", "3", "--no-causal")):
        ref2 = forward_attn(d, PLAIN, *extra)
        j = attend_json(d, PLAIN, *extra)
        assert np.array_equal(np.array(j["attention"], dtype=np.float32), ref2), extra
        assert j["causal"] == ("--no-causal" not in extra)
    assert np.any(ref2[..., 0, 1:] > 0)  # without the mask the first token sees the others
    # the attention-sink switch: key 0 left out, each row renormalised over the rest
    j = attend_json(d, PLAIN, "--ignore-first")
    got = np.array(j["attention"], dtype=np.float64)
    rest = ref.astype(np.float64)[..., 1:]
    want = np.zeros_like(got)
    with np.errstate(invalid="ignore", divide="ignore"):
        want[..., 1:] = np.nan_to_num(rest / rest.sum(-1, keepdims=True))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert j["drop_first"] is True and np.all(got[..., 0] == 0)
    assert "top" in j and len(j["top"]) == 5 and abs(sum(t["prob"] for t in j["top"])) <= 1.0 + 1e-6


@test
def csv_equals_forward_attn():
    d = model()
    ref = forward_attn(d, NASTY)
    L, H, n, _ = ref.shape
    cp = qkv("attend", "--model", d, NASTY, "--format", "csv")
    text = cp.stdout.decode("utf-8")  # valid UTF-8 whatever the tokens were
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["layer", "head", "query_index", "query_token", "key_index", "key_token",
                       "weight"]
    body = rows[1:]
    assert len(body) == L * H * n * n
    got = np.zeros_like(ref)
    tokens = {}
    for r in body:
        l, h, i, j = int(r[0]), int(r[1]), int(r[2]), int(r[4])
        got[l, h, i, j] = np.float32(r[6])
        tokens[i] = r[3]
        assert r[5] == tokens.get(j, r[5])
    assert np.array_equal(got, ref)
    joined = "".join(tokens[i] for i in range(n))
    assert '<a&"\'>' in joined and "\\x1b[31m" in joined and "\u21b5" in joined  # ↵ for \n
    assert "caf\\xc3\\xa9" in joined  # a character cut between tokens: its bytes
    assert "\x1b" not in text


@test
def stdin_and_out_file():
    d = model()
    a = qkv("attend", "--model", d, "-", "--format", "json", input=NASTY + b"\n").stdout
    b = qkv("attend", "--model", d, NASTY, "--format", "json").stdout
    assert a == b  # stdin's trailing newline is not part of the sentence
    out = os.path.join(tmpdir(), "view.svg")
    cp = qkv("attend", "--model", d, PLAIN, "--out", out)  # format from the suffix
    assert cp.stdout == b"" and open(out, "rb").read().startswith(b"<?xml")


# ---- pictures -----------------------------------------------------------------------------

@test
def svg_is_xml_with_labels():
    d = model()
    n_tok = len(attend_json(d, NASTY)["tokens"])
    for extra in ((), ("--head", "1"), ("--avg",), ("--layer", "all"), ("--head", "0", "--query", "-1")):
        cp = qkv("attend", "--model", d, NASTY, "--format", "svg", *extra)
        root = ET.fromstring(cp.stdout)  # raises on anything that is not well-formed XML
        assert root.tag == SVG_NS + "svg"
        texts = ["".join(t.itertext()) for t in root.iter(SVG_NS + "text")]
        alltext = "\n".join(texts)
        # the XML specials were escaped and parse back as text; the escape byte and the cut
        # character are shown as their bytes
        for piece in ("<", "&", '"', "'", ">", "\u00b7bank", "\\x1b", "\\xe2"):
            assert any(t.endswith(piece) or t.startswith(piece) for t in texts), (extra, piece)
        assert "weight" in alltext and "1.00" in alltext and "0.00" in alltext  # the scale
        title = root.find(SVG_NS + "title").text
        assert "attend-ck" in title
        if extra == ("--head", "1"):
            tips = [t.text for t in root.iter(SVG_NS + "title")][1:]
            assert len(tips) == n_tok * (n_tok + 1) // 2  # one per visible cell
            assert "head 1" in title


@test
def png_is_a_png():
    d = model()
    out = os.path.join(tmpdir(), "v.png")
    qkv("attend", "--model", d, PLAIN, "--png", "--out", out, "--head", "0")
    w, h, _, _, raw = read_png(out)
    assert len(raw) == h * (1 + 3 * w) and w > 100 and h > 100
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, 1 + 3 * w)[:, 1:].reshape(h, w, 3)
    # the scale's two ends are in the picture
    colours = {tuple(c) for c in rows.reshape(-1, 3)[::7]}
    assert (0x44, 0x01, 0x54) in colours or (0xfd, 0xe7, 0x25) in colours


# ---- the terminal -------------------------------------------------------------------------

@test
def ansi_colour_switches_and_width():
    d = model()
    never = qkv("attend", "--model", d, NASTY, "--color", "never").stdout.decode()
    assert "\x1b" not in never  # and the token's own ESC is shown as text
    assert "\\x1b" in never and "\u00b7bank" in never
    always = qkv("attend", "--model", d, NASTY, "--color", "always",
                 env={"COLORTERM": "truecolor"}).stdout.decode()
    assert "\x1b[48;2;" in always
    # the same picture: the colour legend is one line longer (bar, then its numbers)
    assert re.sub(r"\x1b\[[0-9;]*m", "", always).count("\n") == never.count("\n") + 1
    c256 = qkv("attend", "--model", d, NASTY, "--color", "256").stdout.decode()
    assert "\x1b[48;5;" in c256 and "48;2;" not in c256
    # auto: not a terminal here, so no colour; NO_COLOR is honoured too
    auto = qkv("attend", "--model", d, NASTY, env={"NO_COLOR": "1"}).stdout.decode()
    assert "\x1b" not in auto
    for cols in ("30", "60", "120"):
        for extra in ((), ("--head", "1"), ("--query", "-1")):
            out = qkv("attend", "--model", d, NASTY, "--color", "always", *extra,
                      env={"COLUMNS": cols}).stdout.decode()
            for line in out.splitlines():
                assert plain_width(line) <= int(cols), (cols, extra, line)
            out2 = qkv("attend", "--model", d, NASTY, "--color", "always", "--width", cols,
                       *extra).stdout.decode()
            assert out2 == out


@test
def ansi_query_bars_show_the_numbers():
    d = model()
    j = attend_json(d, PLAIN, "--layer", "1", "--head", "3")
    row = j["attention"][0][0][-1]
    out = qkv("attend", "--model", d, PLAIN, "--layer", "1", "--head", "3", "--query", "-1",
              "--color", "never").stdout.decode()
    for w in row:
        assert " %.4f" % w in out, w
    heat = qkv("attend", "--model", d, PLAIN, "--layer", "1", "--head", "3", "--color", "never",
               "--width", "200").stdout.decode()
    m = j["attention"][0][0]
    assert ("%3d%3d" % (round(m[1][0] * 100), round(m[1][1] * 100))) in heat


# ---- bad input ----------------------------------------------------------------------------

def refused(args, *needles, input=None):
    cp = qkv(*args, check=False, input=input)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode not in (0,) and cp.returncode < 128, (args, cp.returncode, err)
    assert "AddressSanitizer" not in err and "runtime error" not in err, err
    for n in needles:
        assert n in err, (args, n, err)
    return err


@test
def bad_input_refused():
    d = model()
    missing = os.path.join(tmpdir(), "no-such-model")
    refused(("attend", "--model", missing, PLAIN), "no-such-model")
    refused(("attend", "--model", d, PLAIN, "--layer", "2"), "--layer 2", "2 layers")
    refused(("attend", "--model", d, PLAIN, "--head", "4"), "--head 4", "4 heads")
    refused(("attend", "--model", d, PLAIN, "--head", "-1"), "--head")
    refused(("attend", "--model", d, PLAIN, "--head", "0,7,avg"), "--head 7", "4 heads")
    refused(("attend", "--model", d, PLAIN, "--head", "0,,1"), "--head")
    refused(("attend", "--model", d, PLAIN, "--layer", "x"), "--layer")
    refused(("attend", "--model", d, PLAIN, "--query", "99"), "--query 99", "tokens")
    refused(("attend", "--model", d, ""), "empty")
    refused(("attend", "--model", d, "-"), "empty", input=b"")
    refused(("attend", "--model", d, " word" * 100), "context of 64")
    refused(("attend", "--model", d), "no sentence")
    refused(("attend", "--model", d, PLAIN, "second"), "one argument")
    refused(("attend", "--model", d, PLAIN, "--format", "gif"), "--format")
    refused(("attend", "--model", d, PLAIN, "--temperature", "0"), "--temperature")
    refused(("attend", "--model", d, PLAIN, "--temperature", "nan"), "--temperature")
    refused(("attend", "--model", d, PLAIN, "--width", "5"), "--width")
    refused(("attend", "--model", d, PLAIN, "--color", "sometimes"), "--color")
    refused(("attend", "--model", d, PLAIN, "--bogus"), "unknown option")
    refused(("attend", "--model", d, PLAIN, "--layer"), "needs a value")
    refused(("attend", "--model", d, PLAIN, "--out", "/no/such/dir/x.svg"), "/no/such/dir")
    # a model folder without a tokenizer cannot read text
    bare = os.path.join(tmpdir(), "bare")
    checkpoint.write_checkpoint(bare, layers=1, heads=2, embd=16, ctx=16, vocab=300, seed=1,
                                tokenizer="none")
    refused(("attend", "--model", bare, PLAIN), "tokenizer")


run_all()
