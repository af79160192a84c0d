"""harness.py -- the Python tests' tiny harness (same output as tests/test.h).

    from harness import test, run_all, qkv, Skip
    @test
    def forward_matches_torch(): ...
    run_all()

QKV_BIN (set by tests/run.sh) is the qkv binary under test; QKV_SHARED_DATA or
../shared/data is the optional shared data (tests skip cleanly when it is absent).
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QKV_BIN = os.environ.get("QKV_BIN", os.path.join(ROOT, "build", "qkv"))
_TESTS = []


class Skip(Exception):
    """Raise to end a test as skipped, saying why."""


def test(fn):
    _TESTS.append(fn)
    return fn


def shared_data():
    """Path of shared/data, or None when it is absent (a user's clone)."""
    env = os.environ.get("QKV_SHARED_DATA")
    cands = [env] if env else []
    cands += [os.path.join(ROOT, "..", "shared", "data")]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "README.md")):
            return os.path.abspath(c)
    return None


def qkv(*args, input=None, check=True, timeout=600, env=None):
    """Runs the qkv binary; returns CompletedProcess with bytes stdout/stderr."""
    e = dict(os.environ)
    if env:
        e.update(env)
    cp = subprocess.run([QKV_BIN] + [a if isinstance(a, bytes) else str(a) for a in args], input=input, capture_output=True,
                        timeout=timeout, env=e)
    if check and cp.returncode != 0:
        raise AssertionError("qkv %s exited %d: %s" % (" ".join(map(str, args)), cp.returncode,
                                                        cp.stderr.decode(errors="replace")[-2000:]))
    return cp


_TMPDIRS = []


def tmpdir():
    """A fresh temporary folder, removed when the test program exits."""
    d = tempfile.mkdtemp(prefix="qkv-test-")
    _TMPDIRS.append(d)
    return d


@atexit.register
def _cleanup_tmpdirs():
    for d in _TMPDIRS:
        shutil.rmtree(d, ignore_errors=True)



def read_png(path):
    """Parses a PNG file: checks the signature and every chunk's CRC, joins the IDAT chunks and
    inflates them. Returns (width, height, bit depth, colour type, raw scanlines)."""
    import struct
    import zlib
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "%s: not a PNG" % path
    at, idat = 8, b""
    w = h = depth = colour = 0
    while at < len(data):
        (n,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + n]
        (crc,) = struct.unpack(">I", data[at + 8 + n:at + 12 + n])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    return w, h, depth, colour, zlib.decompress(idat)


def run_all():
    only = sys.argv[1:]
    passed = failed = skipped = 0
    for fn in _TESTS:
        if only and fn.__name__ not in only:
            continue
        try:
            fn()
        except Skip as s:
            skipped += 1
            print("skip  %s: %s" % (fn.__name__, s), flush=True)
        except Exception:  # noqa: BLE001 - any exception is a failed test
            failed += 1
            tb = traceback.format_exc().strip().splitlines()
            print("FAIL  %s: %s" % (fn.__name__, "\n      ".join(tb[-6:])), flush=True)
        else:
            passed += 1
            print("ok    %s" % fn.__name__, flush=True)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    sys.exit(1 if failed else 0)
