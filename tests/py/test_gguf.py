# qkv-test: sanitize
"""test_gguf.py -- qkv's GGUF reader and writer against llama.cpp's own gguf-py.

gguf-py (pure Python + NumPy) comes from llama.cpp's source in the npm package
node-llama-cpp (tools/llama_cpp_src.sh clones its git bundle; the test skips, saying so,
when it is absent). Checked both ways:
  - files written by gguf-py's GGUFWriter (every metadata type, F32 / F16 / BF16 tensors and
    Q8_0 / Q4_0 tensors quantized by gguf-py's own quants.quantize, a custom alignment) read
    in qkv to the same metadata and the same values (F32/F16/BF16 exactly; quantized ones
    equal to gguf-py's quants.dequantize of the same blocks, and the blocks byte for byte);
  - files written by qkv's writer read by gguf-py's GGUFReader identically, BF16 / Q8_0 /
    Q4_0 blocks byte-identical to gguf-py's quantize of the same floats;
  - a two-layer GQA Llama written as convert_hf_to_gguf.py writes it (tensor_mapping names,
    q/k rows permuted by the converter's own LlamaModel.permute, taken from its source; one
    Q8_0 tensor) reads back through qkv's tensor source under Hugging Face names with the
    Hugging Face values and shapes, and the config from its llama.* keys;
  - llama.cpp's vocab GGUFs (those up to 2.5 MB; all 19 with QKV_GGUF_ALL=1, since gguf-py's
    reader is slow on the big ones): qkv's and gguf-py's readings agree on every key, every
    token, every score and every merge.
qkv is driven through a small C probe compiled here against $QKV_BUILD/libqkv.a (the
sanitizer build when that library is one).
"""
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Skip, run_all, test, tmpdir  # noqa: E402

import numpy as np  # noqa: E402

from llama_cpp import gguf_py, llama_cpp_permute, llama_src  # noqa: E402

BUILD = os.environ.get("QKV_BUILD", os.path.join(ROOT, "build"))
LIB = os.path.join(BUILD, "libqkv.a")
PKGS = ["libmicrohttpd", "jansson", "libutf8proc", "openblas"]

# ---- the probe: dump a GGUF as text lines + float32 files; write one from a spec -------------

PROBE_C = r'''
#include "model/gguf.h"
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(FILE *o, const char *s, uint64_t n) {
    if (!n) { fputs("-", o); return; }
    for (uint64_t i = 0; i < n; i++) fprintf(o, "%02x", (unsigned char)s[i]);
}
static char *unhex(const char *h, size_t *n) {
    if (!strcmp(h, "-")) { *n = 0; return calloc(1, 1); }
    size_t len = strlen(h) / 2;
    char *s = malloc(len + 1);
    for (size_t i = 0; i < len; i++) { unsigned v; sscanf(h + 2 * i, "%2x", &v); s[i] = (char)v; }
    s[len] = 0; *n = len; return s;
}
static void num(FILE *o, uint32_t t, const qkv__gguf_kv *kv) {
    if (t == QKV__GGUF_FLOAT32 || t == QKV__GGUF_FLOAT64) fprintf(o, " %.17g", kv->f);
    else if (t == QKV__GGUF_INT8 || t == QKV__GGUF_INT16 || t == QKV__GGUF_INT32 || t == QKV__GGUF_INT64)
        fprintf(o, " %lld", (long long)kv->i);
    else fprintf(o, " %llu", (unsigned long long)kv->u);
}
static int dump(const char *path, const char *outdir) {
    qkv__gguf g;
    if (qkv__gguf_open(path, &g)) { fprintf(stderr, "%s\n", qkv_last_error()); return 1; }
    printf("version %u alignment %llu\n", g.version, (unsigned long long)g.alignment);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const qkv__gguf_kv *kv = &g.kv[i];
        printf("kv "); hex(stdout, kv->key.s, kv->key.n); printf(" %u", kv->type);
        if (kv->type == QKV__GGUF_STRING) { putchar(' '); hex(stdout, kv->str.s, kv->str.n); }
        else if (kv->type == QKV__GGUF_ARRAY) {
            printf(" %u %llu", kv->arr_type, (unsigned long long)kv->arr_n);
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                if (kv->arr_type == QKV__GGUF_STRING) {
                    qkv__gguf_str s = qkv__gguf_arr_str(kv, j);
                    putchar(' '); hex(stdout, s.s, s.n);
                } else if (kv->arr_type == QKV__GGUF_FLOAT32 || kv->arr_type == QKV__GGUF_FLOAT64)
                    printf(" %.17g", qkv__gguf_arr_f64(kv, j));
                else if (kv->arr_type == QKV__GGUF_UINT64)
                    printf(" %.0f", qkv__gguf_arr_f64(kv, j));
                else printf(" %lld", (long long)qkv__gguf_arr_i64(kv, j));
            }
        } else num(stdout, kv->type, kv);
        putchar('\n');
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const qkv__gguf_tensor *t = &g.tensors[i];
        printf("tensor "); hex(stdout, t->name.s, t->name.n);
        printf(" %u %d", t->type, t->n_dims);
        for (int d = 0; d < t->n_dims; d++) printf(" %lld", (long long)t->ne[d]);
        printf(" %llu %llu\n", (unsigned long long)t->offset, (unsigned long long)t->n_bytes);
        char p[4096];
        snprintf(p, sizeof p, "%s/%llu.bin", outdir, (unsigned long long)i);
        FILE *f = fopen(p, "wb"); fwrite(t->data, 1, (size_t)t->n_bytes, f); fclose(f);
        float *x = malloc(sizeof *x * (size_t)t->n_elems + 1);
        if (qkv__gguf_to_f32(t, x) == QKV_OK) {
            snprintf(p, sizeof p, "%s/%llu.f32", outdir, (unsigned long long)i);
            f = fopen(p, "wb"); fwrite(x, 4, (size_t)t->n_elems, f); fclose(f);
        }
        free(x);
    }
    qkv__gguf_close(&g);
    return 0;
}
/* spec lines: align N | s KEYHEX TYPE VALUE | str KEYHEX HEX | arr KEYHEX ETYPE N v... |
 * arrs KEYHEX N hex... | t NAMEHEX GGMLTYPE NDIMS ne... F32FILE */
static int write_spec(const char *spec, const char *out) {
    FILE *f = fopen(spec, "r");
    static char line[1 << 22];
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    while (fgets(line, sizeof line, f)) {
        char *tok[1 << 16]; int nt = 0;
        for (char *p = strtok(line, " \n"); p && nt < (1 << 16); p = strtok(NULL, " \n")) tok[nt++] = p;
        if (!nt) continue;
        size_t kn; char *key = nt > 1 ? unhex(tok[1], &kn) : NULL;
        if (!strcmp(tok[0], "align")) qkv__gguf_writer_set_alignment(w, (uint32_t)atoi(tok[1]));
        else if (!strcmp(tok[0], "s")) {
            int t = atoi(tok[2]); uint8_t v[8] = {0};
            if (t == QKV__GGUF_FLOAT32) { float x = strtof(tok[3], NULL); memcpy(v, &x, 4); }
            else if (t == QKV__GGUF_FLOAT64) { double x = strtod(tok[3], NULL); memcpy(v, &x, 8); }
            else if (t == QKV__GGUF_INT8 || t == QKV__GGUF_INT16 || t == QKV__GGUF_INT32 || t == QKV__GGUF_INT64) {
                long long x = strtoll(tok[3], NULL, 10); memcpy(v, &x, 8); }
            else { unsigned long long x = strtoull(tok[3], NULL, 10); memcpy(v, &x, 8); }
            qkv__gguf_w_scalar(w, key, (qkv__gguf_type)t, v);
        } else if (!strcmp(tok[0], "str")) {
            size_t n; char *s = unhex(tok[2], &n); qkv__gguf_w_strn(w, key, s, n); free(s);
        } else if (!strcmp(tok[0], "arr")) {
            int t = atoi(tok[2]); size_t n = strtoull(tok[3], NULL, 10);
            uint8_t *buf = calloc(n + 1, 8); size_t es = 0;
            for (size_t j = 0; j < n; j++) {
                const char *v = tok[4 + j];
                switch (t) {
                case QKV__GGUF_UINT8: case QKV__GGUF_INT8: case QKV__GGUF_BOOL: es = 1; buf[j] = (uint8_t)strtoll(v, NULL, 10); break;
                case QKV__GGUF_UINT16: case QKV__GGUF_INT16: { es = 2; uint16_t x = (uint16_t)strtoll(v, NULL, 10); memcpy(buf + 2 * j, &x, 2); break; }
                case QKV__GGUF_UINT32: case QKV__GGUF_INT32: { es = 4; uint32_t x = (uint32_t)strtoll(v, NULL, 10); memcpy(buf + 4 * j, &x, 4); break; }
                case QKV__GGUF_FLOAT32: { es = 4; float x = strtof(v, NULL); memcpy(buf + 4 * j, &x, 4); break; }
                case QKV__GGUF_FLOAT64: { es = 8; double x = strtod(v, NULL); memcpy(buf + 8 * j, &x, 8); break; }
                default: { es = 8; long long x = strtoll(v, NULL, 10); memcpy(buf + 8 * j, &x, 8); }
                }
            }
            (void)es;
            qkv__gguf_w_arr(w, key, (qkv__gguf_type)t, n, buf); free(buf);
        } else if (!strcmp(tok[0], "arrs")) {
            size_t n = strtoull(tok[2], NULL, 10);
            char **s = calloc(n + 1, sizeof *s); size_t *l = calloc(n + 1, sizeof *l);
            for (size_t j = 0; j < n; j++) s[j] = unhex(tok[3 + j], &l[j]);
            qkv__gguf_w_arr_str(w, key, n, (const char *const *)s, l);
            for (size_t j = 0; j < n; j++) free(s[j]);
            free(s); free(l);
        } else if (!strcmp(tok[0], "t")) {
            int type = atoi(tok[2]), nd = atoi(tok[3]); int64_t ne[4]; size_t n = 1;
            for (int d = 0; d < nd; d++) { ne[d] = strtoll(tok[4 + d], NULL, 10); n *= (size_t)ne[d]; }
            float *x = malloc(n * 4 + 4); FILE *tf = fopen(tok[4 + nd], "rb");
            if (fread(x, 4, n, tf) != n) return 3;
            fclose(tf);
            qkv__gguf_w_tensor_f32(w, key, (uint32_t)type, nd, ne, x); free(x);
        }
        free(key);
    }
    fclose(f);
    qkv_status st = qkv__gguf_writer_save(w, out);
    qkv__gguf_writer_free(w);
    if (st) { fprintf(stderr, "%s\n", qkv_last_error()); return 1; }
    return 0;
}
/* the model view: config fields, then each named tensor's shape and float32 values */
static int model(int argc, char **argv) {
    qkv__tensor_src src;
    qkv_model_config c;
    if (qkv__gguf_src_open(argv[2], &src, &c)) { fprintf(stderr, "%s\n", qkv_last_error()); return 1; }
    printf("config %s %d %d %d %d %d %d %d %d %d %d %d %d %d %d %.9g %.9g %d\n", c.family, c.n_layer,
           c.n_head, c.n_kv_head, c.n_embd, c.head_dim, c.n_ff, c.n_ctx, c.vocab_size, c.norm,
           c.mlp, c.pos, c.bias, c.qk_norm, c.untied, c.layer_norm_eps, c.rope_theta, c.rope_dim);
    for (int i = 4; i < argc; i++) {
        int nd; int64_t sh[QKV__ST_MAX_DIMS]; size_t n = 1;
        if (!src.shape(src.ctx, argv[i], &nd, sh)) { printf("absent %s\n", argv[i]); continue; }
        printf("shape %s", argv[i]);
        for (int d = 0; d < nd; d++) { printf(" %lld", (long long)sh[d]); n *= (size_t)sh[d]; }
        printf("\n");
        float *x = malloc(n * 4);
        if (src.read(src.ctx, argv[i], x)) { fprintf(stderr, "%s\n", qkv_last_error()); return 1; }
        char p[4096]; snprintf(p, sizeof p, "%s/%s.f32", argv[3], argv[i]);
        FILE *f = fopen(p, "wb"); fwrite(x, 4, n, f); fclose(f); free(x);
    }
    src.close(src.ctx);
    return 0;
}
int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "model")) return model(argc, argv);
    if (argc == 4 && !strcmp(argv[1], "dump")) return dump(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "write")) return write_spec(argv[2], argv[3]);
    return 2;
}
'''

_probe = None


def sanitized():
    with open(LIB, "rb") as f:
        return b"__asan_report" in f.read()


def pkg_config(flag):
    try:
        return shlex.split(subprocess.run(["pkg-config", flag] + PKGS, capture_output=True,
                                          text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        return []


def probe():
    global _probe
    if _probe:
        return _probe
    if not os.path.isfile(LIB):
        raise Skip("%s not built" % LIB)
    d = tmpdir()
    src = os.path.join(d, "gguf_probe.c")
    with open(src, "w") as f:
        f.write(PROBE_C)
    exe = os.path.join(d, "gguf_probe")
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"] if sanitized() else []
    cmd = ([os.environ.get("CC", "cc"), "-std=c11", "-D_GNU_SOURCE", "-O1", "-g",
            "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "src")] +
           pkg_config("--cflags") + san + [src, LIB, "-fopenmp"] + pkg_config("--libs") +
           ["-lm", "-lpthread", "-o", exe])
    cp = subprocess.run(cmd, capture_output=True, text=True)
    assert cp.returncode == 0, "compiling the probe failed:\n" + cp.stderr[-3000:]
    _probe = exe
    return exe


def qkv_dump(path):
    """qkv's reading: {"version", "alignment", "kv": {key: (type, value)}, "tensors": [...]}."""
    d = tmpdir()
    cp = subprocess.run([probe(), "dump", path, d], capture_output=True)
    assert cp.returncode == 0, "qkv refused %s: %s" % (path, cp.stderr.decode(errors="replace"))
    out = {"kv": {}, "tensors": []}
    for line in cp.stdout.decode().splitlines():
        f = line.split(" ")
        if f[0] == "version":
            out["version"], out["alignment"] = int(f[1]), int(f[3])
        elif f[0] == "kv":
            key, t = unhex(f[1]).decode(), int(f[2])
            if t == 8:
                val = unhex(f[3])
            elif t == 9:
                et, n = int(f[3]), int(f[4])
                vals = f[5:5 + n]
                val = (et, [unhex(v) for v in vals] if et == 8 else
                       [float(v) for v in vals] if et in (6, 12) else [int(v) for v in vals])
            else:
                val = float(f[3]) if t in (6, 12) else int(f[3])
            out["kv"][key] = (t, val)
        elif f[0] == "tensor":
            i = len(out["tensors"])
            nd = int(f[3])
            t = {"name": unhex(f[1]).decode(), "type": int(f[2]), "ne": [int(x) for x in f[4:4 + nd]],
                 "offset": int(f[4 + nd]), "n_bytes": int(f[5 + nd]),
                 "raw": open(os.path.join(d, "%d.bin" % i), "rb").read()}
            fp = os.path.join(d, "%d.f32" % i)
            t["f32"] = np.fromfile(fp, dtype="<f4") if os.path.exists(fp) else None
            out["tensors"].append(t)
    return out


def unhex(h):
    return b"" if h == "-" else bytes.fromhex(h)


def hx(b):
    b = b.encode() if isinstance(b, str) else b
    return b.hex() if b else "-"


def reader_value(gguf, field):
    """gguf-py's GGUFReader field as (type, value) in the probe's terms."""
    VT = gguf.GGUFValueType
    t = field.types[0]
    if t == VT.STRING:
        return int(t), bytes(field.parts[field.data[0]])
    if t == VT.ARRAY:
        et = field.types[-1]
        if et == VT.STRING:
            return int(t), (int(et), [bytes(field.parts[i]) for i in field.data])
        vals = [field.parts[i][0].item() for i in field.data]
        return int(t), (int(et), [float(v) for v in vals] if et in (VT.FLOAT32, VT.FLOAT64)
                        else [int(v) for v in vals])
    v = field.parts[field.data[0]][0].item()
    return int(t), (float(v) if t in (VT.FLOAT32, VT.FLOAT64) else int(v))


# ---- gguf-py writes, qkv reads -----------------------------------------------------------------

@test
def gguf_py_writer_to_qkv():
    gguf = gguf_py()
    VT, QT = gguf.GGUFValueType, gguf.GGMLQuantizationType
    d = tmpdir()
    path = os.path.join(d, "py.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("llama.block_count", 2)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("llama.rope.freq_base", 500000.0)
    w.add_bool("t.bool", True)
    w.add_uint64("t.u64", 18000000000000000000)
    w.add_int64("t.i64", -9000000000000000000)
    w.add_float64("t.f64", 0.1)
    w.add_string("t.str", "h\u00e9llo \u65e5\u672c")
    w.add_key_value("tokenizer.ggml.tokens", ["a", "", "\u0120the", "<|endoftext|>"], VT.ARRAY,
                    sub_type=VT.STRING)
    w.add_key_value("tokenizer.ggml.scores", [-1.5, 0.0, 2.25, 1e-3], VT.ARRAY, sub_type=VT.FLOAT32)
    w.add_key_value("tokenizer.ggml.token_type", [1, -3, 6, 3], VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("t.arr_u64", [0, 1 << 40], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("t.arr_bool", [True, False], VT.ARRAY, sub_type=VT.BOOL)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 64)) * 2).astype(np.float32)
    w.add_tensor("t.f32", x)
    w.add_tensor("t.f16", x.astype(np.float16))
    bf = gguf.quants.quantize(x, QT.BF16)
    w.add_tensor("t.bf16", bf, raw_dtype=QT.BF16)
    q8 = gguf.quants.quantize(x, QT.Q8_0)
    w.add_tensor("t.q8_0", q8, raw_dtype=QT.Q8_0)
    q4 = gguf.quants.quantize(x, QT.Q4_0)
    w.add_tensor("t.q4_0", q4, raw_dtype=QT.Q4_0)
    w.add_tensor("t.3d", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    q = qkv_dump(path)
    r = gguf.GGUFReader(path)
    assert q["version"] == 3 and q["alignment"] == 64
    fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert set(q["kv"]) == set(fields), (sorted(q["kv"]), sorted(fields))
    for k, f in fields.items():
        assert q["kv"][k] == reader_value(gguf, f), (k, q["kv"][k], reader_value(gguf, f))
    assert q["kv"]["t.str"][1].decode() == "h\u00e9llo \u65e5\u672c"
    assert q["kv"]["t.u64"][1] == 18000000000000000000 and q["kv"]["t.i64"][1] == -9000000000000000000
    tq = {t["name"]: t for t in q["tensors"]}
    assert [t["name"] for t in q["tensors"]] == [t.name for t in r.tensors]
    for t in r.tensors:
        mine = tq[t.name]
        assert mine["type"] == int(t.tensor_type) and mine["ne"] == [int(v) for v in t.shape]
        assert mine["offset"] % 64 == 0 and mine["n_bytes"] == t.n_bytes
        assert mine["raw"] == t.data.tobytes(), t.name
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        assert np.array_equal(mine["f32"], ref), (t.name, np.abs(mine["f32"] - ref).max())
    assert np.array_equal(tq["t.f32"]["f32"], x.reshape(-1))
    assert np.array_equal(tq["t.f16"]["f32"], x.astype(np.float16).astype(np.float32).reshape(-1))
    assert np.abs(tq["t.q8_0"]["f32"] - x.reshape(-1)).max() < np.abs(x).max() / 127
    assert tq["t.3d"]["ne"] == [4, 3, 2]
    print("      gguf-py -> qkv: %d keys, %d tensors (F32 F16 BF16 Q8_0 Q4_0) identical" % (
        len(fields), len(r.tensors)))


# ---- qkv writes, gguf-py reads -----------------------------------------------------------------

@test
def qkv_writer_to_gguf_py():
    gguf = gguf_py()
    QT = gguf.GGMLQuantizationType
    d = tmpdir()
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 96)) * 3).astype(np.float32)
    xf = os.path.join(d, "x.f32")
    x.tofile(xf)
    toks = ["a", "", "\u0120the", "\u65e5\u672c", "<s>"]
    spec = [
        "align 128",
        "str %s %s" % (hx("general.architecture"), hx("llama")),
        "s %s 4 2" % hx("llama.block_count"),
        "s %s 0 200" % hx("t.u8"), "s %s 1 -100" % hx("t.i8"), "s %s 2 60000" % hx("t.u16"),
        "s %s 3 -30000" % hx("t.i16"), "s %s 5 -2000000000" % hx("t.i32"),
        "s %s 6 0.25" % hx("t.f32"), "s %s 7 1" % hx("t.bool"),
        "s %s 10 18000000000000000000" % hx("t.u64"), "s %s 11 -9000000000000000000" % hx("t.i64"),
        "s %s 12 0.1" % hx("t.f64"),
        "arrs %s %d %s" % (hx("tokenizer.ggml.tokens"), len(toks), " ".join(hx(t) for t in toks)),
        "arr %s 6 3 -1.5 0 2.25" % hx("tokenizer.ggml.scores"),
        "arr %s 5 3 1 -3 6" % hx("tokenizer.ggml.token_type"),
        "arr %s 10 2 0 1099511627776" % hx("t.arr_u64"),
        "t %s 0 2 96 5 %s" % (hx("t.f32"), xf),
        "t %s 1 2 96 5 %s" % (hx("t.f16"), xf),
        "t %s 30 2 96 5 %s" % (hx("t.bf16"), xf),
        "t %s 8 2 96 5 %s" % (hx("t.q8_0"), xf),
        "t %s 2 2 96 5 %s" % (hx("t.q4_0"), xf),
    ]
    sp = os.path.join(d, "spec.txt")
    with open(sp, "w") as f:
        f.write("\n".join(spec) + "\n")
    path = os.path.join(d, "qkv.gguf")
    cp = subprocess.run([probe(), "write", sp, path], capture_output=True)
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")
    r = gguf.GGUFReader(path)
    assert r.alignment == 128
    f = r.fields
    assert bytes(f["general.architecture"].parts[-1]) == b"llama"
    want = {"llama.block_count": 2, "t.u8": 200, "t.i8": -100, "t.u16": 60000, "t.i16": -30000,
            "t.i32": -2000000000, "t.f32": 0.25, "t.bool": True, "t.u64": 18000000000000000000,
            "t.i64": -9000000000000000000, "t.f64": 0.1, "general.alignment": 128}
    for k, v in want.items():
        got = f[k].parts[f[k].data[0]][0].item()
        assert got == v, (k, got, v)
    assert f["tokenizer.ggml.tokens"].contents() == toks
    assert f["tokenizer.ggml.scores"].contents() == [-1.5, 0.0, 2.25]
    assert f["tokenizer.ggml.token_type"].contents() == [1, -3, 6]
    assert f["t.arr_u64"].contents() == [0, 1 << 40]
    tensors = {t.name: t for t in r.tensors}
    assert list(tensors) == ["t.f32", "t.f16", "t.bf16", "t.q8_0", "t.q4_0"]
    for t in r.tensors:
        assert [int(v) for v in t.shape] == [96, 5] and t.data_offset % 128 == 0
    assert np.array_equal(tensors["t.f32"].data.reshape(-1), x.reshape(-1))
    assert np.array_equal(tensors["t.f16"].data.reshape(-1), x.astype(np.float16).reshape(-1))
    # BF16, Q8_0 and Q4_0: the bytes gguf-py's own quantizer makes from the same floats
    for name, qt in (("t.bf16", QT.BF16), ("t.q8_0", QT.Q8_0), ("t.q4_0", QT.Q4_0)):
        mine = tensors[name].data.tobytes()
        ref = gguf.quants.quantize(x, qt).tobytes()
        assert mine == ref, "%s: %d of %d bytes differ" % (
            name, sum(a != b for a, b in zip(mine, ref)), len(ref))
    # and qkv reads its own file back the same way gguf-py does
    q = qkv_dump(path)
    for t in q["tensors"]:
        ref = gguf.quants.dequantize(tensors[t["name"]].data, tensors[t["name"]].tensor_type)
        assert np.array_equal(t["f32"], ref.astype(np.float32).reshape(-1)), t["name"]
    print("      qkv -> gguf-py: 18 keys, 5 tensors identical (BF16 / Q8_0 / Q4_0 blocks "
          "byte-equal to gguf-py's quantize)")


# ---- a model written as llama.cpp's converter writes it, read back under HF names --------------

def qkv_model(path, names):
    d = tmpdir()
    cp = subprocess.run([probe(), "model", path, d] + names, capture_output=True)
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")
    cfg, shapes = None, {}
    for line in cp.stdout.decode().splitlines():
        f = line.split(" ")
        if f[0] == "config":
            cfg = f[1:]
        elif f[0] == "shape":
            shapes[f[1]] = [int(v) for v in f[2:]]
    vals = {n: np.fromfile(os.path.join(d, n + ".f32"), dtype="<f4").reshape(shapes[n])
            for n in shapes}
    return cfg, vals


@test
def llama_gguf_reads_as_hugging_face():
    gguf = gguf_py()
    QT = gguf.GGMLQuantizationType
    permute = llama_cpp_permute()
    C, H, KV, D, F, V, L = 32, 4, 2, 8, 64, 50, 2
    rng = np.random.default_rng(7)
    hf = {}
    for l in range(L):
        p = "model.layers.%d." % l
        hf[p + "self_attn.q_proj.weight"] = rng.standard_normal((H * D, C)).astype(np.float32)
        hf[p + "self_attn.k_proj.weight"] = rng.standard_normal((KV * D, C)).astype(np.float32)
        hf[p + "self_attn.v_proj.weight"] = rng.standard_normal((KV * D, C)).astype(np.float32)
        hf[p + "self_attn.o_proj.weight"] = rng.standard_normal((C, H * D)).astype(np.float32)
        hf[p + "mlp.gate_proj.weight"] = rng.standard_normal((F, C)).astype(np.float32)
        hf[p + "mlp.up_proj.weight"] = rng.standard_normal((F, C)).astype(np.float32)
        hf[p + "mlp.down_proj.weight"] = rng.standard_normal((C, F)).astype(np.float32)
        hf[p + "input_layernorm.weight"] = rng.standard_normal(C).astype(np.float32)
        hf[p + "post_attention_layernorm.weight"] = rng.standard_normal(C).astype(np.float32)
    hf["model.embed_tokens.weight"] = rng.standard_normal((V, C)).astype(np.float32)
    hf["model.norm.weight"] = rng.standard_normal(C).astype(np.float32)
    hf["lm_head.weight"] = rng.standard_normal((V, C)).astype(np.float32)
    # tensor_mapping.py's names, the converter's permute on q/k; down_proj as Q8_0
    gg = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
          "lm_head.weight": "output.weight"}
    sfx = {"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
           "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
           "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
           "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
           "post_attention_layernorm.weight": "ffn_norm.weight"}
    path = os.path.join(tmpdir(), "llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(L)
    w.add_embedding_length(C)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_feed_forward_length(F)
    w.add_context_length(256)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_rope_dimension_count(D)
    for name, x in hf.items():
        if name.startswith("model.layers."):
            l, rest = name[len("model.layers."):].split(".", 1)
            gname = "blk.%s.%s" % (l, sfx[rest])
        else:
            gname = gg[name]
        if name.endswith("q_proj.weight"):
            x = permute(x, H, H)
        elif name.endswith("k_proj.weight"):
            x = permute(x, H, KV)
        if "down_proj" in name:
            w.add_tensor(gname, gguf.quants.quantize(x, QT.Q8_0), raw_dtype=QT.Q8_0)
        else:
            w.add_tensor(gname, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cfg, vals = qkv_model(path, list(hf))
    assert cfg[:9] == ["llama", str(L), str(H), str(KV), str(C), str(D), str(F), "256", str(V)], cfg
    assert cfg[9:15] == ["1", "1", "1", "1", "0", "1"], cfg  # RMS, SwiGLU, RoPE, no bias, untied
    assert float(cfg[16]) == 500000.0 and cfg[17] == str(D)
    for name, x in hf.items():
        got = vals[name]
        assert list(got.shape) == list(x.shape), (name, got.shape, x.shape)
        if "down_proj" in name:
            ref = gguf.quants.dequantize(gguf.quants.quantize(x, QT.Q8_0), QT.Q8_0)
            assert np.array_equal(got, ref), name
        else:
            assert np.array_equal(got, x), name
    print("      %d tensors back in Hugging Face names and layout (q/k un-permuted against "
          "llama.cpp's own permute, GQA %d/%d)" % (len(hf), H, KV))


# ---- llama.cpp's vocab files, read by both ----------------------------------------------------

@test
def vocab_files_agree_with_gguf_py():
    gguf = gguf_py()
    models = os.path.join(llama_src(), "models")
    files = sorted(f for f in os.listdir(models) if f.startswith("ggml-vocab-") and f.endswith(".gguf"))
    assert len(files) >= 10, files
    # gguf-py's reader takes ~10-40 s on each of the 3-16 MB files (every string becomes a NumPy
    # array); those are compared with QKV_GGUF_ALL=1. tests/test_gguf.c opens all of them.
    big = [f for f in files if os.path.getsize(os.path.join(models, f)) > 2500000]
    if not os.environ.get("QKV_GGUF_ALL"):
        print("      not compared here (over 2.5 MB; QKV_GGUF_ALL=1 compares them): " + ", ".join(big))
        files = [f for f in files if f not in big]
    for fn in files:
        path = os.path.join(models, fn)
        q = qkv_dump(path)
        r = gguf.GGUFReader(path)
        fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
        assert set(q["kv"]) == set(fields), fn
        for k, f in fields.items():
            a, b = q["kv"][k], reader_value(gguf, f)
            assert a == b, "%s: %s differs (%s vs %s)" % (fn, k, str(a)[:200], str(b)[:200])
        n_tok = len(q["kv"]["tokenizer.ggml.tokens"][1][1])
        print("      %-34s %3d keys, %6d tokens: identical" % (fn, len(fields), n_tok))


if __name__ == "__main__":
    run_all()
