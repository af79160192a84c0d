# qkv-test: sanitize
"""test_safetensors_bad.py -- malformed checkpoints are refused with a message naming the file
(and the tensor or key), a non-zero exit status and never a crash (this file also runs
against the ASan+UBSan build).

Each case starts from a valid small checkpoint (checkpoint.py) and breaks one thing.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import qkv, run_all, test, tmpdir  # noqa: E402
import checkpoint  # noqa: E402

L, H, C, T, V = 1, 2, 16, 8, 260


def good():
    d = tmpdir()
    cfg, params = checkpoint.write_checkpoint(d, L, H, C, T, V, "f32", seed=1, tokenizer="none")
    return d, cfg, params


def st_path(d):
    return os.path.join(d, "model.safetensors")


def read_parts(d):
    with open(st_path(d), "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_parts(d, header, body, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    with open(st_path(d), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + body)


def expect_refusal(d, *needles):
    cp = qkv("forward", "--model", d, "--ids", "1,2", check=False)
    err = cp.stderr
    assert cp.returncode == 1, "exit %d (want 1): %s" % (cp.returncode, err[-1500:])
    assert b"AddressSanitizer" not in err and b"runtime error" not in err, err[-1500:]
    for n in needles:
        assert n.encode() in err, "%r not in %r" % (n, err)


def mutate_header(fn, *needles):
    d, _, _ = good()
    header, body = read_parts(d)
    fn(header)
    write_parts(d, header, body)
    expect_refusal(d, "model.safetensors", *needles)


W = "transformer.h.0.attn.c_attn.weight"


@test
def valid_checkpoint_loads():
    d, _, _ = good()
    qkv("forward", "--model", d, "--ids", "1,2")


@test
def empty_and_tiny_files():
    for content in (b"", b"\x01\x00\x00", b"\x00" * 8, b"\x02\x00\x00\x00\x00\x00\x00\x00{}"):
        d, _, _ = good()
        with open(st_path(d), "wb") as f:
            f.write(content)
        expect_refusal(d, "model.safetensors")


@test
def truncated_file():
    d, _, _ = good()
    with open(st_path(d), "rb") as f:
        data = f.read()
    with open(st_path(d), "wb") as f:
        f.write(data[:len(data) - 100])
    expect_refusal(d, "model.safetensors", "outside the data area")


@test
def header_length_past_end_of_file():
    d, _, _ = good()
    with open(st_path(d), "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        f.write(struct.pack("<Q", size))
    expect_refusal(d, "model.safetensors", "past the end")


@test
def huge_header_length():
    for n in (100_000_001, 2 ** 63, 2 ** 64 - 1):
        d, _, _ = good()
        with open(st_path(d), "r+b") as f:
            f.write(struct.pack("<Q", n))
        expect_refusal(d, "model.safetensors", "exceeds the limit")


@test
def invalid_json_header():
    for raw in (b"{not json", b"{\"a\": 1,}", b"[1, 2]", b"{\"x\": 1}" + b"\x00\x00", b"\xff\xfe{}  "):
        d, _, _ = good()
        _, body = read_parts(d)
        write_parts(d, None, body, raw_header=raw)
        expect_refusal(d, "model.safetensors")


@test
def duplicate_keys():
    d, _, _ = good()
    header, body = read_parts(d)
    text = json.dumps(header)
    entry = json.dumps(header[W])
    raw = text[:-1] + ', "%s": %s}' % (W, entry)
    write_parts(d, None, body, raw_header=raw.encode())
    expect_refusal(d, "model.safetensors")


@test
def unknown_and_unsupported_dtypes():
    mutate_header(lambda h: h[W].update(dtype="F99"), W, "unknown dtype")
    mutate_header(lambda h: h[W].update(dtype="I32"), W, "not supported")
    mutate_header(lambda h: h[W].update(dtype=7), W, "dtype")


@test
def shape_overflow_and_bad_dims():
    mutate_header(lambda h: h[W].update(shape=[2 ** 40, 2 ** 40, 2 ** 40]), W, "overflow")
    mutate_header(lambda h: h[W].update(shape=[2 ** 62, 4]), W, "shape")
    mutate_header(lambda h: h[W].update(shape=[-16, 48]), W, "shape")
    mutate_header(lambda h: h[W].update(shape=[16.5, 48]), W, "shape")
    mutate_header(lambda h: h[W].update(shape=[1] * 9), W, "dimensions")


@test
def offsets_out_of_range():
    def far(h):
        b0, b1 = h[W]["data_offsets"]
        h[W]["data_offsets"] = [b0 + 10 ** 9, b1 + 10 ** 9]
    mutate_header(far, W, "outside the data area")
    mutate_header(lambda h: h[W].update(data_offsets=[-4, 3068]), W, "outside")
    mutate_header(lambda h: h[W].update(data_offsets=[100, 50]), W, "outside")
    mutate_header(lambda h: h[W].update(data_offsets=[0, 2 ** 64 + 5]))  # jansson: too big
    mutate_header(lambda h: h[W].update(data_offsets=[0]), W, "data_offsets")
    mutate_header(lambda h: h[W].pop("data_offsets"), W)


@test
def byte_count_mismatch():
    def short(h):
        b0, b1 = h[W]["data_offsets"]
        h[W]["data_offsets"] = [b0, b1 - 4]
    mutate_header(short, W, "bytes")
    mutate_header(lambda h: h[W].update(dtype="F16"), W, "bytes")


@test
def overlapping_tensors():
    def overlap(h):
        h["transformer.h.0.ln_1.bias"]["data_offsets"] = h["transformer.h.0.ln_1.weight"]["data_offsets"]
    mutate_header(overlap, "overlap")


@test
def missing_tensor():
    mutate_header(lambda h: h.pop("transformer.h.0.mlp.c_proj.bias"), "h.0.mlp.c_proj.bias", "missing")
    mutate_header(lambda h: h.pop("transformer.wte.weight"), "wte.weight", "missing")


@test
def wrong_shape():
    def transposed(h):
        h[W]["shape"] = [3 * C, C]  # same byte count, wrong layout
    mutate_header(transposed, W, "expected [16, 48]")
    mutate_header(lambda h: h["transformer.ln_f.weight"].update(shape=[4, 4]), "ln_f.weight", "shape")


@test
def unexpected_and_duplicated_tensors():
    def extra(h):
        h["transformer.h.0.attn.q_proj.weight"] = dict(h[W])
    mutate_header(extra, "q_proj")   # also overlaps, either message names the file

    d, cfg, params = good()  # the same tensor with and without the prefix
    tensors = {"transformer." + k: v for k, v in params.items()}
    tensors["h.0.ln_1.weight"] = params["h.0.ln_1.weight"]
    checkpoint.write_safetensors(st_path(d), tensors)
    expect_refusal(d, "h.0.ln_1.weight", "twice")


@test
def lm_head_wrong_shape():
    d, cfg, params = good()
    tensors = {k: v for k, v in params.items()}
    tensors["lm_head.weight"] = params["wpe.weight"]
    checkpoint.write_safetensors(st_path(d), tensors)
    expect_refusal(d, "lm_head.weight", "expected shape")


@test
def config_and_tensors_disagree():
    d, cfg, params = good()
    cfg["vocab_size"] = V + 1
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    expect_refusal(d, "wte.weight", "shape")


def bad_config(text, *needles):
    d, _, _ = good()
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(text)
    expect_refusal(d, "config.json", *needles)


@test
def bad_config_json():
    base = checkpoint.make_config(L, H, C, T, V)

    def with_(**kw):
        c = dict(base)
        c.update(kw)
        return json.dumps(c)
    bad_config("{", "invalid JSON")
    bad_config("[]", "not a JSON object")
    bad_config(with_(n_embd=15), "multiple of n_head")
    bad_config(with_(n_layer=0), "n_layer")
    bad_config(with_(n_head=-2), "n_head")
    bad_config(with_(n_embd=10 ** 9), "n_embd")
    bad_config(with_(vocab_size=2 ** 40), "vocab_size")
    bad_config(with_(n_positions="8"), "n_positions")
    bad_config(with_(n_layer=1.5), "n_layer")
    bad_config(with_(layer_norm_epsilon=-1), "layer_norm_epsilon")
    bad_config(with_(activation_function="relu"), "activation_function")
    bad_config(with_(model_type="bert"), "model_type")  # llama & co. are families now
    bad_config(with_(n_embd=2048, n_head=2), "head size")
    d, _, _ = good()
    os.remove(os.path.join(d, "config.json"))
    expect_refusal(d, "config.json")


@test
def missing_weights_file():
    d, _, _ = good()
    os.remove(st_path(d))
    expect_refusal(d, "model.safetensors")



@test
def json_value_count_is_bounded_before_parsing():
    """A 20 MB header of "[0,0,0,..." would cost the JSON parser ~600 MB before any check ran;
    it is refused from a scan of the raw bytes (issue 14), in little memory."""
    import subprocess
    import harness
    d, _, _ = good()
    n = 10 << 20
    write_parts(d, None, b"", raw_header=b'{"x": [' + b"0," * n + b'0]}')
    probe = ("import resource, subprocess, sys; cp = subprocess.run(sys.argv[1:], capture_output=True); "
             "sys.stderr.buffer.write(cp.stderr); "
             "print(cp.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cp = subprocess.run([sys.executable, "-c", probe, harness.QKV_BIN,
                         "forward", "--model", d, "--ids", "1,2"], capture_output=True, timeout=300)
    rc, maxrss_kib = map(int, cp.stdout.split())
    assert b"Sanitizer" not in cp.stderr, cp.stderr[-1500:]
    assert maxrss_kib < 300 << 10, "peak RSS %d MiB" % (maxrss_kib >> 10)
    assert rc == 1 and b"more than 1048576 JSON values" in cp.stderr, (rc, cp.stderr[-1500:])
    # a header with fewer values passes the count (and is refused for what it is)
    d, _, _ = good()
    header, body = read_parts(d)
    header["x"] = [0] * 1000
    write_parts(d, header, body)
    expect_refusal(d, "tensor x: header entry is not an object")

if __name__ == "__main__":
    run_all()
