/* fz_gguf.c -- the GGUF reader (qkv__gguf_parse, from memory) on arbitrary bytes:
 * reliability-anchors.md 4.2 F2. Properties on success:
 *   - every key, string, array and tensor lies inside the input; string arrays' elements (the
 *     O(1) index) too; version 2 or 3; the alignment a power of two up to the cap;
 *   - tensors: n_dims 1..4, dims >= 1, n_elems and n_bytes what ne and the type imply, offset
 *     aligned, data inside the data section, no two overlapping, names unique and found;
 *     converting each supported tensor to float32 reads only its own bytes;
 *   - reader -> writer -> reader is the identity: every kv (type and value) and tensor (name,
 *     type, ne, bytes) written again by qkv__gguf_writer reads back equal;
 *   - the model view (qkv__gguf_model_config, and the tensor source over a memory file when
 *     the config is accepted) answers or refuses, without crashing.
 * A failed parse leaves no tables and a message. */
#include "model/gguf.h"
#include "model/model.h"
#include "fuzz_common.h"

static fz_memfile mem;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fz_memfile_open(&mem, "fz_gguf");
    return 0;
}

static int in_buf(const void *p, uint64_t n, const uint8_t *lo, const uint8_t *hi) {
    const uint8_t *q = p;
    return q >= lo && q <= hi && n <= (uint64_t)(hi - q);
}

static int cmp_off(const void *a, const void *b) {
    const qkv__gguf_tensor *x = *(const qkv__gguf_tensor *const *)a;
    const qkv__gguf_tensor *y = *(const qkv__gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static size_t esize(uint32_t t) {
    switch (t) {
    case QKV__GGUF_UINT8: case QKV__GGUF_INT8: case QKV__GGUF_BOOL: return 1;
    case QKV__GGUF_UINT16: case QKV__GGUF_INT16: return 2;
    case QKV__GGUF_UINT32: case QKV__GGUF_INT32: case QKV__GGUF_FLOAT32: return 4;
    case QKV__GGUF_UINT64: case QKV__GGUF_INT64: case QKV__GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static void cstr(char *dst, qkv__gguf_str s) {
    memcpy(dst, s.s, (size_t)s.n);
    dst[s.n] = 0;
}

/* Writes g again with the writer; the result must parse and equal g. */
static void round_trip(const qkv__gguf *g) {
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    FZ_CHECK(w != NULL, "oom");
    char name[QKV__GGUF_MAX_NAME + 1];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const qkv__gguf_kv *kv = &g->kv[i];
        cstr(name, kv->key);
        qkv_status st;
        if (kv->type == QKV__GGUF_STRING) {
            st = qkv__gguf_w_strn(w, name, kv->str.s, (size_t)kv->str.n);
        } else if (kv->type == QKV__GGUF_ARRAY && kv->arr_type == QKV__GGUF_STRING) {
            const char **strs = malloc(sizeof *strs * (size_t)(kv->arr_n + 1));
            size_t *lens = malloc(sizeof *lens * (size_t)(kv->arr_n + 1));
            FZ_CHECK(strs && lens, "oom");
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                qkv__gguf_str s = qkv__gguf_arr_str(kv, j);
                strs[j] = s.s;
                lens[j] = (size_t)s.n;
            }
            st = qkv__gguf_w_arr_str(w, name, kv->arr_n, strs, lens);
            free(strs);
            free(lens);
        } else if (kv->type == QKV__GGUF_ARRAY) {
            st = qkv__gguf_w_arr(w, name, kv->arr_type, kv->arr_n, kv->arr);
        } else {
            uint8_t v[8];
            uint64_t u = kv->u;
            int64_t s64 = kv->i;
            float f32 = (float)kv->f;
            switch (kv->type) {
            case QKV__GGUF_INT8: case QKV__GGUF_INT16: case QKV__GGUF_INT32: case QKV__GGUF_INT64:
                memcpy(v, &s64, 8);
                break;
            case QKV__GGUF_FLOAT32: memcpy(v, &f32, 4); break;
            case QKV__GGUF_FLOAT64: memcpy(v, &kv->f, 8); break;
            default: memcpy(v, &u, 8);
            }
            st = qkv__gguf_w_scalar(w, name, kv->type, v);
        }
        FZ_CHECK(st == QKV_OK, "writer refused kv %s: %s", name, qkv_last_error());
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const qkv__gguf_tensor *t = &g->tensors[i];
        cstr(name, t->name);
        qkv_status st = qkv__gguf_w_tensor(w, name, t->type, t->n_dims, t->ne, t->data,
                                           (size_t)t->n_bytes);
        FZ_CHECK(st == QKV_OK, "writer refused tensor %s: %s", name, qkv_last_error());
    }
    uint8_t *buf;
    size_t len;
    FZ_CHECK(qkv__gguf_writer_bytes(w, &buf, &len) == QKV_OK, "writer: %s", qkv_last_error());
    qkv__gguf_writer_free(w);
    qkv__gguf h;
    memset(&h, 0, sizeof h);
    FZ_CHECK(qkv__gguf_parse(buf, len, "rewritten.gguf", &h) == QKV_OK, "rewritten file refused: %s",
             qkv_last_error());
    FZ_CHECK(h.n_kv == g->n_kv && h.n_tensors == g->n_tensors && h.alignment == g->alignment,
             "counts differ after a round trip");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const qkv__gguf_kv *a = &g->kv[i], *b = &h.kv[i];
        FZ_CHECK(a->key.n == b->key.n && !memcmp(a->key.s, b->key.s, (size_t)a->key.n) &&
                 a->type == b->type, "kv %llu differs", (unsigned long long)i);
        if (a->type == QKV__GGUF_STRING) {
            FZ_CHECK(a->str.n == b->str.n && (a->str.n == 0 || !memcmp(a->str.s, b->str.s, (size_t)a->str.n)),
                     "string kv %llu differs", (unsigned long long)i);
        } else if (a->type == QKV__GGUF_ARRAY) {
            FZ_CHECK(a->arr_type == b->arr_type && a->arr_n == b->arr_n, "array %llu differs",
                     (unsigned long long)i);
            for (uint64_t j = 0; j < a->arr_n; j++) {
                if (a->arr_type == QKV__GGUF_STRING) {
                    qkv__gguf_str x = qkv__gguf_arr_str(a, j), y = qkv__gguf_arr_str(b, j);
                    FZ_CHECK(x.n == y.n && (x.n == 0 || !memcmp(x.s, y.s, (size_t)x.n)),
                             "array %llu element %llu differs", (unsigned long long)i,
                             (unsigned long long)j);
                }
            }
            if (a->arr_type != QKV__GGUF_STRING)
                FZ_CHECK(!memcmp(a->arr, b->arr, (size_t)a->arr_n * esize(a->arr_type)),
                         "array %llu bytes differ", (unsigned long long)i);
        } else {
            FZ_CHECK(a->u == b->u && a->i == b->i &&
                     (memcmp(&a->f, &b->f, 8) == 0 || (a->f != a->f && b->f != b->f)),
                     "scalar kv %llu differs", (unsigned long long)i);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const qkv__gguf_tensor *a = &g->tensors[i], *b = &h.tensors[i];
        FZ_CHECK(a->name.n == b->name.n && !memcmp(a->name.s, b->name.s, (size_t)a->name.n) &&
                 a->type == b->type && a->n_dims == b->n_dims && !memcmp(a->ne, b->ne, sizeof a->ne) &&
                 a->n_bytes == b->n_bytes && !memcmp(a->data, b->data, (size_t)a->n_bytes),
                 "tensor %llu differs after a round trip", (unsigned long long)i);
    }
    qkv__gguf_close(&h);
    free(buf);
}

/* The model view: config, then (when accepted) the tensor source over a memory file. */
static void model_view(const qkv__gguf *g, const uint8_t *data, size_t size) {
    qkv_model_config cfg;
    if (qkv__gguf_model_config(g, &cfg) != QKV_OK) return;
    FZ_CHECK(cfg.n_layer >= 1 && cfg.n_head >= 1 && cfg.n_kv_head >= 1 && cfg.head_dim >= 1 &&
             cfg.n_head % cfg.n_kv_head == 0 && cfg.vocab_size >= 1, "config accepted with bad sizes");
    fz_memfile_set(&mem, data, size);
    qkv__tensor_src src;
    qkv_model_config c2;
    if (qkv__gguf_src_open(mem.path, &src, &c2) != QKV_OK) return;
    static const char *names[] = {
        "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.bias",
        "model.layers.1.self_attn.k_proj.bias", "model.layers.0.mlp.down_proj.weight",
        "model.norm.weight", "lm_head.weight", "wte.weight", "wpe.weight",
        "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias", "h.0.mlp.c_fc.weight",
        "h.1.attn.c_proj.weight", "ln_f.weight", "rope_freqs.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int nd = 0;
        int64_t shape[QKV__ST_MAX_DIMS];
        if (!src.shape(src.ctx, names[i], &nd, shape)) continue;
        uint64_t n = 1;
        for (int d = 0; d < nd; d++) n *= (uint64_t)shape[d];
        if (n > ((uint64_t)1 << 22)) continue;
        float *dst = malloc(sizeof *dst * (size_t)n);
        FZ_CHECK(dst != NULL, "oom");
        if (src.read(src.ctx, names[i], dst) == QKV_OK) fz_touch(dst, sizeof *dst * (size_t)n);
        free(dst);
    }
    (void)src.file_bytes(src.ctx);
    src.close(src.ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qkv__gguf g;
    memset(&g, 0, sizeof g);
    qkv_status st = qkv__gguf_parse(data, size, "fuzz.gguf", &g);
    fz_note(st == QKV_OK, qkv_last_error());
    if (st != QKV_OK) {
        FZ_CHECK(g.kv == NULL && g.tensors == NULL && g.n_kv == 0 && g.n_tensors == 0,
                 "failed parse left tables");
        FZ_CHECK(qkv_last_error()[0] != '\0', "status %d without a message", (int)st);
        return 0;
    }
    const uint8_t *lo = data, *hi = data + size;
    FZ_CHECK(g.version == 2 || g.version == 3, "version %u", g.version);
    FZ_CHECK(g.alignment && !(g.alignment & (g.alignment - 1)) &&
             g.alignment <= QKV__GGUF_MAX_ALIGNMENT, "alignment %llu", (unsigned long long)g.alignment);
    FZ_CHECK(g.n_kv <= QKV__GGUF_MAX_KV && g.n_tensors <= QKV__GGUF_MAX_TENSORS, "counts");
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const qkv__gguf_kv *kv = &g.kv[i];
        FZ_CHECK(kv->key.n >= 1 && kv->key.n <= QKV__GGUF_MAX_NAME && in_buf(kv->key.s, kv->key.n, lo, hi),
                 "key %llu outside the input", (unsigned long long)i);
        FZ_CHECK(!memchr(kv->key.s, 0, (size_t)kv->key.n), "key with NUL");
        if (kv->type == QKV__GGUF_STRING)
            FZ_CHECK(kv->str.n <= QKV__GGUF_MAX_STRING && in_buf(kv->str.s, kv->str.n, lo, hi),
                     "string value outside the input");
        if (kv->type == QKV__GGUF_ARRAY) {
            FZ_CHECK(kv->arr_n <= QKV__GGUF_MAX_ARRAY && kv->arr_type != QKV__GGUF_ARRAY, "array");
            if (kv->arr_type == QKV__GGUF_STRING) {
                for (uint64_t j = 0; j < kv->arr_n; j++) {
                    qkv__gguf_str s = qkv__gguf_arr_str(kv, j);
                    FZ_CHECK(s.s && in_buf(s.s, s.n, lo, hi) && s.n <= QKV__GGUF_MAX_STRING,
                             "string element %llu outside the input", (unsigned long long)j);
                }
            } else {
                size_t es = esize(kv->arr_type);
                FZ_CHECK(es && in_buf(kv->arr, kv->arr_n * es, lo, hi), "array outside the input");
                for (uint64_t j = 0; j < kv->arr_n; j++)
                    (void)(qkv__gguf_arr_f64(kv, j) + (double)qkv__gguf_arr_i64(kv, j));
            }
        }
        char key[QKV__GGUF_MAX_NAME + 1];
        cstr(key, kv->key);
        FZ_CHECK(qkv__gguf_find(&g, key) == kv, "find(%s) finds another kv", key);
    }
    const qkv__gguf_tensor **sorted = malloc(sizeof *sorted * (size_t)(g.n_tensors + 1));
    FZ_CHECK(sorted != NULL, "oom");
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const qkv__gguf_tensor *t = &g.tensors[i];
        char name[QKV__GGUF_MAX_NAME + 1];
        cstr(name, t->name);
        FZ_CHECK(t->n_dims >= 1 && t->n_dims <= QKV__GGUF_MAX_DIMS, "%s: n_dims %d", name, t->n_dims);
        uint64_t n = 1, blck, tsize;
        for (int d = 0; d < QKV__GGUF_MAX_DIMS; d++) {
            FZ_CHECK(t->ne[d] >= 1, "%s: ne[%d] %lld", name, d, (long long)t->ne[d]);
            FZ_CHECK(d < t->n_dims || t->ne[d] == 1, "%s: unused dim not 1", name);
            FZ_CHECK(!__builtin_mul_overflow(n, (uint64_t)t->ne[d], &n), "%s: overflow kept", name);
        }
        FZ_CHECK(n == t->n_elems, "%s: n_elems", name);
        FZ_CHECK(qkv__ggml_type_block(t->type, &blck, &tsize), "%s: type %u", name, t->type);
        FZ_CHECK((uint64_t)t->ne[0] % blck == 0 && t->n_bytes == n / blck * tsize, "%s: n_bytes", name);
        FZ_CHECK(t->offset % g.alignment == 0, "%s: unaligned offset", name);
        FZ_CHECK(t->data == g.data + t->offset && in_buf(t->data, t->n_bytes, g.data, hi) &&
                 g.data >= lo && g.data <= hi, "%s: data outside the data section", name);
        FZ_CHECK(qkv__gguf_find_tensor(&g, name) == t, "%s: find finds another tensor", name);
        sorted[i] = t;
        float *dst = malloc(sizeof *dst * (size_t)(n ? n : 1));
        FZ_CHECK(dst != NULL, "oom");
        if (qkv__gguf_to_f32(t, dst) == QKV_OK) fz_touch(dst, sizeof *dst * (size_t)n);
        free(dst);
    }
    qsort(sorted, (size_t)g.n_tensors, sizeof *sorted, cmp_off);
    for (uint64_t i = 1; i < g.n_tensors; i++)
        FZ_CHECK(sorted[i]->offset >= sorted[i - 1]->offset + sorted[i - 1]->n_bytes, "overlap");
    free(sorted);
    round_trip(&g);
    model_view(&g, data, size);
    qkv__gguf_close(&g);
    return 0;
}
