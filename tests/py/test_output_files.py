# qkv-test: sanitize
"""test_output_files.py -- what qkv does to the paths it writes (src/common/util.c,
qkv__write_file, the one writer behind every command's output files).

A regular file (or a new path) is replaced atomically: a temporary file beside it, then a
rename. Anything else already at the path -- a symbolic link, a FIFO, a directory, a device
-- is refused with a message naming the path and what it is, a non-zero exit, and nothing
changed (curl's refusal to clobber). "-" streams the .npy outputs to standard output. A
failed write (a full disk, a file-size limit) exits non-zero and leaves no temporary file.

The .npy inputs are written by hand (no NumPy needed); this file also runs against the
ASan+UBSan build."""
import os
import resource
import signal
import stat
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import test, run_all, qkv, tmpdir, Skip, QKV_BIN, ROOT  # noqa: E402

DIR = tmpdir()


def npy(name, shape, fill=0.25):
    """Writes a float32 .npy v1 file of constant value; returns its path."""
    path = os.path.join(DIR, name)
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join("%d, " % s for s in shape)
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    n = 1
    for s in shape:
        n *= s
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack("<f", fill) * n)
    return path


def parse_npy(data):
    """(shape, float count) of .npy bytes; fails on anything malformed."""
    assert data[:8] == b"\x93NUMPY\x01\x00", "not a .npy v1.0: %r" % data[:16]
    (hlen,) = struct.unpack("<H", data[8:10])
    hdr = data[10:10 + hlen].decode()
    shape = tuple(int(x) for x in hdr.split("'shape': (")[1].split(")")[0].replace(",", " ").split())
    n = 1
    for s in shape:
        n *= s
    assert len(data) == 10 + hlen + 4 * n, "%d bytes for shape %s" % (len(data), shape)
    return shape


Q = npy("q.npy", (1, 2, 5, 8))
K = npy("k.npy", (1, 2, 6, 8))
V = npy("v.npy", (1, 2, 6, 8), fill=0.5)
OUT_BYTES = 128 + 4 * 2 * 5 * 8


def attention(*extra, **kw):
    return qkv("attention", "--q", Q, "--k", K, "--v", V, *extra, check=False, timeout=60, **kw)


def refused(cp, path, kind):
    """Exit non-zero (not a signal), no sanitizer report, a message naming path and kind."""
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode > 0, "exit %d (expected a refusal): %s" % (cp.returncode, err)
    assert "Sanitizer" not in err and "runtime error" not in err, "sanitizer report: %s" % err
    assert path in err and kind in err and "refusing" in err, "message %r lacks %r / %r" % (err, path, kind)


def leftovers(d):
    """Temporary files qkv__write_file could have left in d."""
    return [n for n in os.listdir(d) if ".tmp" in n]


@test
def regular_file_replaced_atomically():
    d = tmpdir()
    out = os.path.join(d, "o.npy")
    with open(out, "w") as f:
        f.write("old contents\n")
    os.chmod(out, 0o640)
    before = os.stat(out)
    cp = attention("--out", out)
    assert cp.returncode == 0, cp.stderr
    after = os.stat(out)
    with open(out, "rb") as f:
        assert parse_npy(f.read()) == (1, 2, 5, 8)
    assert after.st_ino != before.st_ino, "written in place, not a new file renamed over the old"
    assert stat.S_IMODE(after.st_mode) == 0o640, "permissions %o not kept" % stat.S_IMODE(after.st_mode)
    assert leftovers(d) == [], leftovers(d)
    # a new path in the same folder
    new = os.path.join(d, "fresh.npy")
    assert attention("--lse", new).returncode == 0 and os.path.getsize(new) == 128 + 4 * 10
    assert sorted(os.listdir(d)) == ["fresh.npy", "o.npy"]


@test
def symlink_refused_target_untouched():
    d = tmpdir()
    target = os.path.join(d, "target.txt")
    with open(target, "w") as f:
        f.write("keep me\n")
    link = os.path.join(d, "link.npy")
    os.symlink(target, link)
    refused(attention("--out", link), link, "symbolic link")
    assert os.path.islink(link) and os.readlink(link) == target
    with open(target) as f:
        assert f.read() == "keep me\n"
    # a dangling link is refused too, and its target is not created
    dangling = os.path.join(d, "dangling.npy")
    os.symlink(os.path.join(d, "nowhere.npy"), dangling)
    refused(attention("--lse", dangling), dangling, "symbolic link")
    assert not os.path.exists(os.path.join(d, "nowhere.npy"))
    assert sorted(os.listdir(d)) == ["dangling.npy", "link.npy", "target.txt"]


@test
def fifo_refused_without_blocking():
    d = tmpdir()
    fifo = os.path.join(d, "pipe.npy")
    os.mkfifo(fifo)
    # nobody reads the FIFO: opening it for writing would block; timeout=60 catches that
    refused(attention("--out", fifo), fifo, "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(d) == ["pipe.npy"]


@test
def directory_refused():
    d = tmpdir()
    sub = os.path.join(d, "out.npy")
    os.mkdir(sub)
    refused(attention("--out", sub), sub, "directory")
    refused(attention("--out", sub + "/"), sub, "directory")
    assert os.path.isdir(sub) and os.listdir(sub) == [] and os.listdir(d) == ["out.npy"]


@test
def device_refused():
    """A device node is refused (the rule: '-' is how to stream). The node is made in a
    temporary folder when we may (root); otherwise /dev/null, which a non-root qkv could
    not replace anyway. Never /dev/null as root: a regression would replace it."""
    d = tmpdir()
    node = os.path.join(d, "null.npy")
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        if os.geteuid() == 0:
            raise Skip("cannot make a device node here (mknod refused)")
        node = "/dev/null"
    refused(attention("--out", node), node, "character device")
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert "'-'" in attention("--out", node).stderr.decode(), "no hint about '-'"
    if node != "/dev/null":
        assert os.listdir(d) == ["null.npy"]


@test
def dash_streams_npy_to_stdout():
    cp = attention("--out", "-")
    assert cp.returncode == 0, cp.stderr
    assert parse_npy(cp.stdout) == (1, 2, 5, 8) and len(cp.stdout) == OUT_BYTES
    assert b"attention: B=1" in cp.stderr, "the summary line should move to stderr"
    cp = attention("--lse", "-", "--out", os.path.join(tmpdir(), "o.npy"))
    assert cp.returncode == 0 and parse_npy(cp.stdout) == (1, 2, 5)
    cp = attention("--out", "-", "--lse", "-")
    assert cp.returncode == 2 and b"only one output" in cp.stderr, cp.stderr
    assert not os.path.exists("-"), "wrote a file named '-'"


@test
def dash_to_a_full_disk_fails():
    with open("/dev/full", "wb") as full:
        cp = subprocess.run([QKV_BIN, "attention", "--q", Q, "--k", K, "--v", V, "--out", "-"],
                            stdout=full, stderr=subprocess.PIPE, timeout=60)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode > 0 and "standard output" in err and "No space left" in err, (cp.returncode, err)


def _small_file_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


@test
def write_error_fails_and_leaves_no_temp_file():
    """A write that fails half way (EFBIG under a 200-byte file-size limit, as ENOSPC
    would): non-zero exit, the old file as it was, no temporary file left."""
    d = tmpdir()
    out = os.path.join(d, "o.npy")
    with open(out, "w") as f:
        f.write("old\n")
    cp = subprocess.run([QKV_BIN, "attention", "--q", Q, "--k", K, "--v", V, "--out", out],
                        capture_output=True, timeout=60, preexec_fn=_small_file_limit)
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode > 0 and out in err and "cannot write" in err, (cp.returncode, err)
    with open(out) as f:
        assert f.read() == "old\n"
    assert os.listdir(d) == ["o.npy"], os.listdir(d)


@test
def missing_folder_is_an_error():
    out = os.path.join(tmpdir(), "no", "such", "o.npy")
    cp = attention("--out", out)
    assert cp.returncode == 1 and out.encode() in cp.stderr, cp.stderr


@test
def vocab_gets_the_same_policy():
    """Every command writes through the same function: `qkv vocab` refuses a symbolic link
    where vocab.json goes, and writes nothing through it."""
    d = tmpdir()
    corpus = os.path.join(d, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("the cat sat on the mat and the dog sat on the log\n" * 50)
    out = os.path.join(d, "vocab")
    os.mkdir(out)
    target = os.path.join(d, "precious.json")
    with open(target, "w") as f:
        f.write("{}\n")
    os.symlink(target, os.path.join(out, "vocab.json"))
    cp = qkv("vocab", "--data", corpus, "--size", "270", "--out", out, check=False, timeout=120)
    refused(cp, os.path.join(out, "vocab.json"), "symbolic link")
    with open(target) as f:
        assert f.read() == "{}\n"
    assert leftovers(out) == []
    os.remove(os.path.join(out, "vocab.json"))
    qkv("vocab", "--data", corpus, "--size", "270", "--out", out, timeout=120)
    assert sorted(os.listdir(out)) == ["merges.txt", "vocab.json"]


def model_dir():
    m = os.environ.get("QKV_MODEL") or os.path.join(ROOT, "models", "qkv-brown")
    if not os.path.isfile(os.path.join(m, "model.safetensors")):
        raise Skip("no built-in model at %s" % m)
    return m


@test
def forward_and_attend_stream_with_dash():
    m = model_dir()
    cp = qkv("forward", "--model", m, "--ids", "1,2,3", "--logits", "-", timeout=300)
    shape = parse_npy(cp.stdout)
    assert shape[0] == 3 and len(shape) == 2, shape
    assert b"next-token predictions" in cp.stderr, "the report should move to stderr"
    cp = qkv("forward", "--model", m, "--ids", "1,2,3", "--attn", "-", timeout=300)
    shape = parse_npy(cp.stdout)
    assert shape[2:] == (3, 3) and len(shape) == 4, shape
    cp = qkv("forward", "--model", m, "--ids", "1,2", "--logits", "-", "--attn", "-", check=False)
    assert cp.returncode == 2, cp.stderr
    link = os.path.join(tmpdir(), "l.npy")
    os.symlink("/etc/hostname", link)
    refused(qkv("forward", "--model", m, "--ids", "1,2", "--logits", link, check=False, timeout=300), link,
            "symbolic link")
    # attend: '-' is standard output, the default
    a = qkv("attend", "--model", m, "--json", "--out", "-", "the cat", timeout=300).stdout
    b = qkv("attend", "--model", m, "--json", "the cat", timeout=300).stdout
    assert a == b and a.startswith(b"{"), a[:80]
    link2 = os.path.join(tmpdir(), "view.svg")
    os.symlink("/etc/hostname", link2)
    refused(qkv("attend", "--model", m, "--out", link2, "the cat", check=False, timeout=300), link2,
            "symbolic link")


if __name__ == "__main__":
    run_all()
