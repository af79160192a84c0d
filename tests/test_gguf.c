/*
 * test_gguf.c -- the GGUF reader (src/model/gguf.c), writer (gguf_write.c) and model mapping
 * (gguf_model.c).
 *
 * Malformed files are built byte by byte here (gb_*: a little-endian builder), one per
 * public incident in ../shared/research/reliability-anchors.md (GGUF CVEs, ggml PR #1516,
 * gguf-py #27188, gguf-tools #25) and per cap of the anchors' GGUF list; each must be
 * refused with a message, never crash or allocate what the header asks for. Tensor
 * conversions are checked against blocks computed by hand. llama.cpp's own vocab GGUFs are
 * opened when its source is present (QKV_LLAMA_CPP_SRC, or tools/llama_cpp_src.sh's cache),
 * else skipped with a message.
 */
#include "model/gguf.h"
#include "model/model.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------
 * A byte builder for hand-made files
 * ------------------------------------------------------------------------------------- */

typedef struct gb {
    uint8_t *p;
    size_t n, cap;
} gb;

static void gb_put(gb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void gb_u8(gb *b, uint8_t v) { gb_put(b, &v, 1); }
static void gb_u16(gb *b, uint16_t v) { gb_put(b, &v, 2); }
static void gb_u32(gb *b, uint32_t v) { gb_put(b, &v, 4); }
static void gb_u64(gb *b, uint64_t v) { gb_put(b, &v, 8); }
static void gb_f32(gb *b, float v) { gb_put(b, &v, 4); }
static void gb_f64(gb *b, double v) { gb_put(b, &v, 8); }
static void gb_str(gb *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_put(b, s, strlen(s));
}
static void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_put(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}
static void gb_kv_u32(gb *b, const char *key, uint32_t v) {
    gb_str(b, key);
    gb_u32(b, QKV__GGUF_UINT32);
    gb_u32(b, v);
}
static void gb_kv_str(gb *b, const char *key, const char *v) {
    gb_str(b, key);
    gb_u32(b, QKV__GGUF_STRING);
    gb_str(b, v);
}
/* A tensor info with n_dims dims. */
static void gb_tinfo(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) gb_u64(b, ne[i]);
    gb_u32(b, type);
    gb_u64(b, offset);
}
static void gb_pad(gb *b, size_t align) {
    while (b->n % align) gb_u8(b, 0);
}
static void gb_free(gb *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Parses b; returns the status and leaves g open on success (caller closes). */
static qkv_status gb_parse(gb *b, qkv__gguf *g) {
    memset(g, 0, sizeof *g);
    return qkv__gguf_parse(b->p, b->n, "test.gguf", g);
}

/* Must be refused with QKV_EFORMAT (or want) and a message containing needle. */
#define REFUSED(b, want, needle)                                                        \
    do {                                                                                \
        qkv__gguf g__;                                                                  \
        qkv_status st__ = gb_parse((b), &g__);                                          \
        if (st__ == QKV_OK) {                                                           \
            qkv__gguf_close(&g__);                                                      \
            FAIL("accepted a file that must be refused (%s)", needle);                  \
        }                                                                               \
        ASSERT_MSG(st__ == (want), "status %d, want %d: %s", st__, (int)(want), qkv_last_error()); \
        ASSERT_MSG(strstr(qkv_last_error(), (needle)) != NULL, "message \"%s\" lacks \"%s\"", \
                   qkv_last_error(), needle);                                           \
        ASSERT(g__.kv == NULL && g__.tensors == NULL && g__.n_kv == 0 && g__.n_tensors == 0); \
    } while (0)

/* A valid file: one kv (general.architecture) and one F32 tensor of ne elements. */
static void gb_one_tensor(gb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                          size_t data_bytes) {
    gb_header(b, 3, 1, 1);
    gb_kv_str(b, "general.architecture", "llama");
    gb_tinfo(b, "w", n_dims, ne, type, offset);
    gb_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++) gb_u8(b, (uint8_t)i);
}

/* ---------------------------------------------------------------------------------------
 * Valid files: every metadata type, both versions
 * ------------------------------------------------------------------------------------- */

static void build_all_types(gb *b, uint32_t version) {
    gb_header(b, version, 2, 17);
    gb_str(b, "u8"); gb_u32(b, QKV__GGUF_UINT8); gb_u8(b, 200);
    gb_str(b, "i8"); gb_u32(b, QKV__GGUF_INT8); gb_u8(b, (uint8_t)-100);
    gb_str(b, "u16"); gb_u32(b, QKV__GGUF_UINT16); gb_u16(b, 60000);
    gb_str(b, "i16"); gb_u32(b, QKV__GGUF_INT16); gb_u16(b, (uint16_t)-30000);
    gb_kv_u32(b, "u32", 4000000000u);
    gb_str(b, "i32"); gb_u32(b, QKV__GGUF_INT32); gb_u32(b, (uint32_t)-2000000000);
    gb_str(b, "f32"); gb_u32(b, QKV__GGUF_FLOAT32); gb_f32(b, 1e-5f);
    gb_str(b, "bool"); gb_u32(b, QKV__GGUF_BOOL); gb_u8(b, 1);
    gb_kv_str(b, "general.architecture", "llama");
    gb_str(b, "u64"); gb_u32(b, QKV__GGUF_UINT64); gb_u64(b, 18000000000000000000ull);
    gb_str(b, "i64"); gb_u32(b, QKV__GGUF_INT64); gb_u64(b, (uint64_t)-9000000000000000000ll);
    gb_str(b, "f64"); gb_u32(b, QKV__GGUF_FLOAT64); gb_f64(b, 500000.25);
    /* arrays */
    gb_str(b, "tokenizer.ggml.tokens"); gb_u32(b, QKV__GGUF_ARRAY); gb_u32(b, QKV__GGUF_STRING);
    gb_u64(b, 4); gb_str(b, "a"); gb_str(b, ""); gb_str(b, "\xc4\xa0the"); gb_str(b, "<|endoftext|>");
    gb_str(b, "tokenizer.ggml.scores"); gb_u32(b, QKV__GGUF_ARRAY); gb_u32(b, QKV__GGUF_FLOAT32);
    gb_u64(b, 3); gb_f32(b, -1.5f); gb_f32(b, 0.0f); gb_f32(b, 2.25f);
    gb_str(b, "tokenizer.ggml.token_type"); gb_u32(b, QKV__GGUF_ARRAY); gb_u32(b, QKV__GGUF_INT32);
    gb_u64(b, 3); gb_u32(b, 1); gb_u32(b, (uint32_t)-3); gb_u32(b, 6);
    gb_str(b, "empty"); gb_u32(b, QKV__GGUF_ARRAY); gb_u32(b, QKV__GGUF_UINT64); gb_u64(b, 0);
    gb_kv_u32(b, "general.alignment", 64);
    /* tensors: F32 [3, 2] at 0 and F16 [4] at 64 */
    uint64_t ne0[2] = {3, 2}, ne1[1] = {4};
    gb_tinfo(b, "token_embd.weight", 2, ne0, QKV__GGML_F32, 0);
    gb_tinfo(b, "output_norm.weight", 1, ne1, QKV__GGML_F16, 64);
    gb_pad(b, 64);
    for (int i = 0; i < 6; i++) gb_f32(b, (float)i - 2.5f);
    gb_pad(b, 64);
    gb_u16(b, 0x3c00); gb_u16(b, 0xc000); gb_u16(b, 0x7bff); gb_u16(b, 0x0001);
}

static void check_all_types(qkv__gguf *g, uint32_t version) {
    ASSERT_EQ_INT(g->version, version);
    ASSERT_EQ_INT(g->n_kv, 17);
    ASSERT_EQ_INT(g->n_tensors, 2);
    ASSERT_EQ_INT(g->alignment, 64);
    uint64_t u;
    double f;
    qkv__gguf_str s;
    ASSERT_OK(qkv__gguf_get_u64(g, "u8", &u)); ASSERT_EQ_INT(u, 200);
    ASSERT_EQ_INT(qkv__gguf_find(g, "i8")->i, -100);
    ASSERT_OK(qkv__gguf_get_u64(g, "u16", &u)); ASSERT_EQ_INT(u, 60000);
    ASSERT_EQ_INT(qkv__gguf_find(g, "i16")->i, -30000);
    ASSERT_OK(qkv__gguf_get_u64(g, "u32", &u)); ASSERT_EQ_INT(u, 4000000000u);
    ASSERT_EQ_INT(qkv__gguf_find(g, "i32")->i, -2000000000);
    ASSERT_OK(qkv__gguf_get_f64(g, "f32", &f)); ASSERT_CLOSE(f, 1e-5, 1e-12);
    ASSERT_EQ_INT(qkv__gguf_find(g, "bool")->u, 1);
    ASSERT_EQ_INT(qkv__gguf_find(g, "bool")->type, QKV__GGUF_BOOL);
    ASSERT_OK(qkv__gguf_get_str(g, "general.architecture", &s));
    ASSERT(qkv__gguf_str_eq(s, "llama"));
    ASSERT_OK(qkv__gguf_get_u64(g, "u64", &u)); ASSERT(u == 18000000000000000000ull);
    ASSERT(qkv__gguf_find(g, "i64")->i == -9000000000000000000ll);
    ASSERT_OK(qkv__gguf_get_f64(g, "f64", &f)); ASSERT(f == 500000.25);
    /* getters refuse other types, naming the key; negative ints are not u64 */
    ASSERT(qkv__gguf_get_str(g, "u32", &s) == QKV_EFORMAT && strstr(qkv_last_error(), "u32"));
    ASSERT(qkv__gguf_get_u64(g, "general.architecture", &u) == QKV_EFORMAT);
    ASSERT(qkv__gguf_get_u64(g, "i8", &u) == QKV_ERANGE);
    ASSERT(qkv__gguf_get_u64(g, "nope", &u) == QKV_ENOTFOUND && strstr(qkv_last_error(), "nope"));
    ASSERT(qkv__gguf_find(g, "nope") == NULL);
    /* arrays */
    const qkv__gguf_kv *tok = qkv__gguf_find_arr(g, "tokenizer.ggml.tokens", QKV__GGUF_STRING);
    ASSERT(tok != NULL);
    ASSERT_EQ_INT(tok->arr_n, 4);
    ASSERT(qkv__gguf_str_eq(qkv__gguf_arr_str(tok, 0), "a"));
    ASSERT(qkv__gguf_arr_str(tok, 1).n == 0 && qkv__gguf_arr_str(tok, 1).s != NULL);
    ASSERT(qkv__gguf_str_eq(qkv__gguf_arr_str(tok, 2), "\xc4\xa0the"));
    ASSERT(qkv__gguf_str_eq(qkv__gguf_arr_str(tok, 3), "<|endoftext|>"));
    ASSERT(qkv__gguf_arr_str(tok, 4).s == NULL); /* out of range */
    /* PR #26690: a consumer asking for the wrong element type gets nothing */
    ASSERT(qkv__gguf_find_arr(g, "tokenizer.ggml.scores", QKV__GGUF_UINT8) == NULL);
    const qkv__gguf_kv *sc = qkv__gguf_find_arr(g, "tokenizer.ggml.scores", QKV__GGUF_FLOAT32);
    ASSERT(sc && sc->arr_n == 3);
    ASSERT(qkv__gguf_arr_f64(sc, 0) == -1.5 && qkv__gguf_arr_f64(sc, 2) == 2.25);
    ASSERT(qkv__gguf_arr_f64(sc, 3) == 0); /* out of range */
    ASSERT(qkv__gguf_arr_str(sc, 0).s == NULL); /* not a string array */
    const qkv__gguf_kv *tt = qkv__gguf_find(g, "tokenizer.ggml.token_type");
    ASSERT(qkv__gguf_arr_i64(tt, 1) == -3 && qkv__gguf_arr_i64(tt, 2) == 6);
    ASSERT(qkv__gguf_find(g, "empty")->arr_n == 0);
    /* tensors */
    const qkv__gguf_tensor *t = qkv__gguf_find_tensor(g, "token_embd.weight");
    ASSERT(t && t->n_dims == 2 && t->ne[0] == 3 && t->ne[1] == 2 && t->n_elems == 6 && t->n_bytes == 24);
    float v[6];
    ASSERT_OK(qkv__gguf_to_f32(t, v));
    for (int i = 0; i < 6; i++) ASSERT(v[i] == (float)i - 2.5f);
    t = qkv__gguf_find_tensor(g, "output_norm.weight");
    ASSERT(t && t->offset == 64 && t->data == g->data + 64);
    ASSERT_OK(qkv__gguf_to_f32(t, v));
    ASSERT(v[0] == 1.0f && v[1] == -2.0f && v[2] == 65504.0f && v[3] == ldexpf(1.0f, -24));
    ASSERT(qkv__gguf_find_tensor(g, "token_embd") == NULL);
}

static void test_every_type_v3(void) {
    gb b = {0};
    build_all_types(&b, 3);
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    check_all_types(&g, 3);
    qkv__gguf_close(&g);
    qkv__gguf_close(&g); /* twice is fine */
    gb_free(&b);
}

static void test_every_type_v2(void) {
    gb b = {0};
    build_all_types(&b, 2);
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    check_all_types(&g, 2);
    qkv__gguf_close(&g);
    gb_free(&b);
}

/* parse and open must not read the struct they are given (callers need not zero it). */
static void test_parse_ignores_garbage_struct(void) {
    gb b = {0};
    build_all_types(&b, 3);
    qkv__gguf g;
    memset(&g, 0xab, sizeof g);
    ASSERT_OK(qkv__gguf_parse(b.p, b.n, "garbage.gguf", &g));
    ASSERT(g.owns_map == 0 && g.map.data == b.p);
    check_all_types(&g, 3);
    qkv__gguf_close(&g);
    memset(&g, 0xab, sizeof g);
    ASSERT(qkv__gguf_parse(b.p, 10, "garbage.gguf", &g) != QKV_OK);
    ASSERT(g.kv == NULL && g.tensors == NULL);
    qkv__gguf_close(&g);
    gb_free(&b);
}

/* Through a real file (qkv__gguf_open maps it). */
static void test_open_file(void) {
    gb b = {0};
    build_all_types(&b, 3);
    char path[] = "/tmp/qkv_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, b.p, b.n) == (ssize_t)b.n);
    close(fd);
    qkv__gguf g;
    qkv_status st = qkv__gguf_open(path, &g);
    unlink(path);
    ASSERT_OK(st);
    check_all_types(&g, 3);
    qkv__gguf_close(&g);
    ASSERT(qkv__gguf_open("/nonexistent/x.gguf", &g) == QKV_EIO);
    gb_free(&b);
}

/* Every prefix of a valid file is refused cleanly (under ASan: no read past the end). */
static void test_every_truncation(void) {
    gb b = {0};
    build_all_types(&b, 3);
    for (size_t n = 0; n < b.n; n++) {
        qkv__gguf g;
        memset(&g, 0, sizeof g);
        qkv_status st = qkv__gguf_parse(b.p, n, "cut.gguf", &g);
        ASSERT_MSG(st != QKV_OK, "prefix of %zu of %zu bytes accepted", n, b.n);
        ASSERT(g.kv == NULL && g.tensors == NULL);
    }
    gb_free(&b);
}

/* Every single-byte change of a valid file is accepted or refused, never a crash; the ones
 * accepted still satisfy the invariants. */
static void test_every_byte_flip(void) {
    gb b = {0};
    build_all_types(&b, 3);
    uint8_t *copy = malloc(b.n);
    ASSERT(copy);
    static const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x40};
    int accepted = 0;
    for (size_t i = 0; i < b.n; i++)
        for (size_t k = 0; k < sizeof vals; k++) {
            memcpy(copy, b.p, b.n);
            copy[i] = vals[k];
            qkv__gguf g;
            memset(&g, 0, sizeof g);
            if (qkv__gguf_parse(copy, b.n, "flip.gguf", &g) != QKV_OK) continue;
            accepted++;
            for (uint64_t t = 0; t < g.n_tensors; t++) {
                const qkv__gguf_tensor *tt = &g.tensors[t];
                ASSERT(tt->data >= g.data && tt->data + tt->n_bytes <= copy + b.n);
                float *dst = malloc(tt->n_elems * sizeof(float));
                ASSERT(dst);
                (void)qkv__gguf_to_f32(tt, dst);
                free(dst);
            }
            qkv__gguf_close(&g);
        }
    ASSERT(accepted > 0);
    free(copy);
    gb_free(&b);
}

/* ---------------------------------------------------------------------------------------
 * Header: magic, version, counts
 * ------------------------------------------------------------------------------------- */

static void test_bad_magic_and_version(void) {
    gb b = {0};
    gb_put(&b, "GGUG", 4); gb_u32(&b, 3); gb_u64(&b, 0); gb_u64(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "magic");
    gb_free(&b);
    gb_put(&b, "GGU", 3);
    REFUSED(&b, QKV_EFORMAT, "magic");
    gb_free(&b);
    REFUSED(&b, QKV_EFORMAT, "magic"); /* empty */
    uint32_t versions[] = {0, 1, 4, 0x03000000u};
    const char *why[] = {"version 0", "version 1", "version 4", "big-endian"};
    for (int i = 0; i < 4; i++) {
        gb_header(&b, versions[i], 0, 0);
        REFUSED(&b, QKV_EUNSUPPORTED, why[i]);
        gb_free(&b);
    }
    /* an empty v3 file (no kv, no tensors) is valid */
    gb_header(&b, 3, 0, 0);
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    ASSERT(g.n_kv == 0 && g.n_tensors == 0 && g.data_size == 0);
    qkv__gguf_close(&g);
    gb_free(&b);
}

/* CVE-2024-23605 (Talos, header.n_kv integer overflow -> heap overflow): n_kv of 2^63 /
 * 2^64-1 / 2^61 (times sizeof = wraps) must be refused before anything is allocated; so must
 * n_tensors (the same batch covered it), and counts under the cap that the bytes left
 * cannot hold. */
static void test_cve_2024_23605_n_kv_overflow(void) {
    uint64_t counts[] = {UINT64_MAX, (uint64_t)1 << 63, UINT64_MAX / 32 + 1,
                         (uint64_t)1 << 61, QKV__GGUF_MAX_KV + 1};
    for (int i = 0; i < 5; i++) {
        gb b = {0};
        gb_header(&b, 3, 0, counts[i]);
        REFUSED(&b, QKV_EFORMAT, "metadata entries");
        gb_free(&b);
        gb_header(&b, 3, counts[i], 0);
        REFUSED(&b, QKV_EFORMAT, "tensors");
        gb_free(&b);
    }
    /* under the cap, but 3 entries cannot fit in 20 bytes */
    gb b = {0};
    gb_header(&b, 3, 0, 3);
    for (int i = 0; i < 20; i++) gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "metadata entries");
    gb_free(&b);
}

/* CVE-2024-21802 (Talos, info->ne heap overflow): dims whose product overflows 64 bits, and
 * a dim beyond INT64_MAX, refused. */
static void test_cve_2024_21802_ne_overflow(void) {
    uint64_t ne[4][4] = {
        {(uint64_t)1 << 32, (uint64_t)1 << 32, 1, 1}, /* 2^64 */
        {(uint64_t)1 << 62, 2, 1, 1},                 /* 2^63 > INT64_MAX */
        {UINT64_MAX, 1, 1, 1},                        /* one dim > INT64_MAX */
        {65536, 65536, 65536, 65536},                 /* 2^64 over four dims */
    };
    const char *why[] = {"element count overflows", "element count overflows", "ne[0]",
                         "element count overflows"};
    for (int i = 0; i < 4; i++) {
        gb b = {0};
        gb_one_tensor(&b, 4, ne[i], QKV__GGML_F32, 0, 64);
        REFUSED(&b, QKV_EFORMAT, why[i]);
        gb_free(&b);
    }
}

/* CVE-2025-53630 (GGUF size accumulation overflow): two tensors whose padded sizes sum past
 * 2^64, and offset + size wrapping, refused: each extent is checked on its own against the
 * data section with a checked add, so no sum is formed. */
static void test_cve_2025_53630_size_accumulation(void) {
    gb b = {0};
    uint64_t big[1] = {((uint64_t)1 << 62)}; /* 2^62 bytes of I8 each */
    gb_header(&b, 3, 2, 0);
    gb_tinfo(&b, "a", 1, big, 24 /* I8 */, 0);
    gb_tinfo(&b, "b", 1, big, 24, 0xC000000000000020ull); /* + 2^62 wraps to 0x20 */
    gb_pad(&b, 32);
    gb_u64(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "past the end");
    gb_free(&b);
    /* offset + n_bytes wraps to a small number */
    uint64_t ne[1] = {8};
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, UINT64_MAX - 31, 64);
    REFUSED(&b, QKV_EFORMAT, "past the end");
    gb_free(&b);
}

/* CVE-2026-27940 (bypass of the 53630 fix through mem_size = overhead + ctx->size): ggml's
 * own test case ne = 0x7FFFFFFFFFFFFFC0 F32, whose byte size overflows while the element
 * count does not; and the same near SIZE_MAX after padding. */
static void test_cve_2026_27940_mem_size_bypass(void) {
    gb b = {0};
    uint64_t ne[1] = {0x7FFFFFFFFFFFFFC0ull};
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "byte count overflows");
    gb_free(&b);
    uint64_t ne2[2] = {0x7FFFFFFFFFFFFFC0ull / 32 * 32, 1}; /* I8: bytes fit int64, not the file */
    gb_one_tensor(&b, 2, ne2, 24 /* I8 */, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "past the end");
    gb_free(&b);
}

/* CVE-2026-33298 (ggml_nbytes overflow: exabytes logical, 4 MB allocated), with the PoCs the
 * anchors list: GGML_PAD wrapping at ne[0] = 2^63 - 3, and a zero dim (division by zero). */
static void test_cve_2026_33298_nbytes_overflow(void) {
    gb b = {0};
    uint64_t pad[1] = {((uint64_t)1 << 63) - 3};
    gb_one_tensor(&b, 1, pad, QKV__GGML_F32, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "byte count overflows");
    gb_free(&b);
    uint64_t q8[2] = {((uint64_t)1 << 63) - ((uint64_t)1 << 58), 1}; /* Q8_0: x 34/32 > 2^63 */
    gb_one_tensor(&b, 2, q8, QKV__GGML_Q8_0, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "byte count overflows");
    gb_free(&b);
    uint64_t zero[2] = {4, 0};
    gb_one_tensor(&b, 2, zero, QKV__GGML_F32, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "ne[1] = 0");
    gb_free(&b);
    uint64_t zero0[1] = {0};
    gb_one_tensor(&b, 1, zero0, QKV__GGML_Q8_0, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "ne[0] = 0");
    gb_free(&b);
}

/* Ollama CVE-2026-7482 "Bleeding Llama": offset + size past the end of the file (a heap
 * over-read that leaked other users' data). Also: offsets not aligned, overlaps, and a file
 * with tensors that ends before its data section. */
static void test_ollama_cve_2026_7482_extent(void) {
    gb b = {0};
    uint64_t ne[1] = {16}; /* 64 bytes */
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, 0, 63);
    REFUSED(&b, QKV_EFORMAT, "run past the end");
    gb_free(&b);
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, 32, 64);
    REFUSED(&b, QKV_EFORMAT, "run past the end");
    gb_free(&b);
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, 0, 64); /* exactly fits */
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    ASSERT(g.tensors[0].data + 64 == b.p + b.n);
    qkv__gguf_close(&g);
    gb_free(&b);
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, 4, 96);
    REFUSED(&b, QKV_EFORMAT, "not a multiple of the alignment");
    gb_free(&b);
    /* overlap: [0, 64) and [32, 96) */
    gb_header(&b, 3, 2, 0);
    gb_tinfo(&b, "a", 1, ne, QKV__GGML_F32, 0);
    gb_tinfo(&b, "b", 1, ne, QKV__GGML_F32, 32);
    gb_pad(&b, 32);
    for (int i = 0; i < 128; i++) gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "overlap");
    gb_free(&b);
    /* the same offset twice (a zero-size tensor reusing an offset cannot exist: dims >= 1) */
    gb_header(&b, 3, 2, 0);
    gb_tinfo(&b, "a", 1, ne, QKV__GGML_F32, 0);
    gb_tinfo(&b, "b", 1, ne, QKV__GGML_F32, 0);
    gb_pad(&b, 32);
    for (int i = 0; i < 128; i++) gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "overlap");
    gb_free(&b);
    /* tensor info present, file ends right after it (before the padded data start) */
    gb_header(&b, 3, 1, 0);
    gb_tinfo(&b, "a", 1, ne, QKV__GGML_F32, 0);
    if (b.n % 32 == 0) gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "ends before its data section");
    gb_free(&b);
}

/* ggml PR #1516: a ~160-byte file asked for GiB-sized allocations (1 GiB caps). Strings and
 * arrays are capped (1 MiB, 2^20 elements) and checked against the bytes left first. */
static void test_ggml_pr1516_huge_lengths(void) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k");
    gb_u32(&b, QKV__GGUF_STRING);
    gb_u64(&b, (uint64_t)1 << 30); /* a 1 GiB string in a tiny file */
    gb_str(&b, "tail");
    REFUSED(&b, QKV_EFORMAT, "bytes long");
    gb_free(&b);
    /* a key of 2^63 bytes */
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, (uint64_t)1 << 63);
    gb_put(&b, "kkkkkkkk", 8);
    REFUSED(&b, QKV_EFORMAT, "bytes long");
    gb_free(&b);
    /* an array of 2^30 u32 */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_UINT32); gb_u64(&b, (uint64_t)1 << 30);
    gb_u32(&b, 7);
    REFUSED(&b, QKV_EFORMAT, "elements");
    gb_free(&b);
    /* an array of strings under the cap but more than the bytes left (each needs 8) */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_STRING); gb_u64(&b, 1000);
    for (int i = 0; i < 100; i++) gb_str(&b, "x");
    REFUSED(&b, QKV_EFORMAT, "does not fit");
    gb_free(&b);
    /* alignment 2^30 (the PR's third cap) */
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "general.alignment", 1u << 30);
    REFUSED(&b, QKV_EFORMAT, "general.alignment");
    gb_free(&b);
}

/* gguf-py #27188: a 43-byte file with an array length of 2^63 hung GGUFReader and grew RAM at
 * ~120 MB/s. Refused at once here. */
static void test_gguf_py_27188_array_2_63(void) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a"); /* 9 bytes: 24 + 9 */
    gb_u32(&b, QKV__GGUF_ARRAY);
    gb_u32(&b, QKV__GGUF_UINT8);
    gb_u64(&b, (uint64_t)1 << 63);
    gb_u8(&b, 1); gb_u8(&b, 2);
    ASSERT_EQ_INT(b.n, 51);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    REFUSED(&b, QKV_EFORMAT, "elements");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ASSERT((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9 < 0.1);
    gb_free(&b);
    /* 2^63 strings: refused the same way */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_STRING); gb_u64(&b, (uint64_t)1 << 63);
    REFUSED(&b, QKV_EFORMAT, "elements");
    gb_free(&b);
}

/* antirez/gguf-tools #25: n_dims > 8 wrote past dim[8] (the only check was an assert). Here
 * n_dims must be 1..4, checked before any dim is read. */
static void test_gguf_tools_25_n_dims(void) {
    uint32_t bad[] = {0, 5, 9, 0xFFFFFFFFu};
    for (int i = 0; i < 4; i++) {
        gb b = {0};
        gb_header(&b, 3, 1, 0);
        gb_str(&b, "w");
        gb_u32(&b, bad[i]);
        for (int d = 0; d < 10; d++) gb_u64(&b, 1);
        gb_u32(&b, 0);
        gb_u64(&b, 0);
        gb_pad(&b, 32);
        gb_u64(&b, 0);
        REFUSED(&b, QKV_EFORMAT, "n_dims");
        gb_free(&b);
    }
}

/* The anchors' GGUF caps and the rest of ggml's checks: alignment type / power of two / cap,
 * nesting, duplicates, unknown types, bools, block divisibility, names. */
static void test_caps_and_structure(void) {
    gb b = {0};
    /* alignment: wrong type, zero, not a power of two, above 1 MiB; 1 MiB itself is fine */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "general.alignment"); gb_u32(&b, QKV__GGUF_UINT64); gb_u64(&b, 32);
    REFUSED(&b, QKV_EFORMAT, "must be UINT32");
    gb_free(&b);
    uint32_t aligns[] = {0, 3, 48, 0x80000000u, (1u << 20) * 2};
    for (int i = 0; i < 5; i++) {
        gb_header(&b, 3, 0, 1);
        gb_kv_u32(&b, "general.alignment", aligns[i]);
        REFUSED(&b, QKV_EFORMAT, "power of two");
        gb_free(&b);
    }
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "general.alignment", 1u << 20);
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    ASSERT_EQ_INT(g.alignment, 1u << 20);
    qkv__gguf_close(&g);
    gb_free(&b);
    /* arrays of arrays */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "nested");
    gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_ARRAY); gb_u64(&b, 1);
    gb_u32(&b, QKV__GGUF_UINT8); gb_u64(&b, 1); gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "arrays of arrays");
    gb_free(&b);
    /* unknown value type, unknown array element type */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k"); gb_u32(&b, 13); gb_u32(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "unknown value type 13");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "k"); gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, 99); gb_u64(&b, 1); gb_u32(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "unknown array element type 99");
    gb_free(&b);
    /* a bool of 2, in a scalar and in an array */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "flag"); gb_u32(&b, QKV__GGUF_BOOL); gb_u8(&b, 2);
    REFUSED(&b, QKV_EFORMAT, "BOOL value 2");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "flags"); gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_BOOL); gb_u64(&b, 2);
    gb_u8(&b, 1); gb_u8(&b, 7);
    REFUSED(&b, QKV_EFORMAT, "element 1 is BOOL 7");
    gb_free(&b);
    /* duplicate keys (not adjacent) and duplicate tensor names */
    gb_header(&b, 3, 0, 3);
    gb_kv_u32(&b, "llama.block_count", 2);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_u32(&b, "llama.block_count", 3);
    REFUSED(&b, QKV_EFORMAT, "llama.block_count appears twice");
    gb_free(&b);
    uint64_t ne[1] = {8};
    gb_header(&b, 3, 2, 0);
    gb_tinfo(&b, "blk.0.attn_q.weight", 1, ne, QKV__GGML_F32, 0);
    gb_tinfo(&b, "blk.0.attn_q.weight", 1, ne, QKV__GGML_F32, 32);
    gb_pad(&b, 32);
    for (int i = 0; i < 64; i++) gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "blk.0.attn_q.weight appears twice");
    gb_free(&b);
    /* unknown and retired tensor types (4 was Q4_2) */
    uint32_t types[] = {4, 31, 43, 0xFFFFFFFFu};
    for (int i = 0; i < 4; i++) {
        gb_one_tensor(&b, 1, ne, types[i], 0, 64);
        REFUSED(&b, QKV_EFORMAT, "unknown ggml type");
        gb_free(&b);
    }
    /* block divisibility: Q8_0 rows of 33, Q4_K rows of 128 */
    uint64_t ne33[2] = {33, 1}, ne128[1] = {128};
    gb_one_tensor(&b, 2, ne33, QKV__GGML_Q8_0, 0, 64);
    REFUSED(&b, QKV_EFORMAT, "not a multiple of Q8_0's block of 32");
    gb_free(&b);
    gb_one_tensor(&b, 1, ne128, QKV__GGML_Q4_K, 0, 256);
    REFUSED(&b, QKV_EFORMAT, "block of 256");
    gb_free(&b);
    /* names: empty key, key with a NUL, tensor name over the cap */
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 0); gb_u32(&b, QKV__GGUF_UINT8); gb_u8(&b, 0); gb_u64(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "empty");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 3); gb_put(&b, "a\0b", 3); gb_u32(&b, QKV__GGUF_UINT8); gb_u8(&b, 0); gb_u64(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "NUL");
    gb_free(&b);
    char longname[QKV__GGUF_MAX_NAME + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    gb_one_tensor(&b, 1, ne, QKV__GGML_F32, 0, 64);
    gb_free(&b);
    gb_header(&b, 3, 1, 0);
    gb_tinfo(&b, longname, 1, ne, QKV__GGML_F32, 0);
    gb_pad(&b, 32);
    for (int i = 0; i < 32; i++) gb_u8(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "at most 256");
    gb_free(&b);
}

/* The string cap (1 MiB) and the array cap (2^20 elements), at and past the limit. */
static void test_string_and_array_caps(void) {
    gb b = {0};
    size_t n = (size_t)QKV__GGUF_MAX_STRING;
    char *big = malloc(n + 2);
    ASSERT(big);
    memset(big, 'a', n + 1);
    big[n + 1] = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "tokenizer.chat_template", big); /* 1 MiB + 1 */
    REFUSED(&b, QKV_EFORMAT, "at most 1048576");
    gb_free(&b);
    big[n] = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "tokenizer.chat_template", big); /* exactly 1 MiB */
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    ASSERT_EQ_INT(g.kv[0].str.n, n);
    qkv__gguf_close(&g);
    gb_free(&b);
    free(big);
    /* 2^20 + 1 u8 elements; and exactly 2^20 */
    for (int over = 1; over >= 0; over--) {
        gb_header(&b, 3, 0, 1);
        gb_str(&b, "a");
        gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_UINT8);
        gb_u64(&b, QKV__GGUF_MAX_ARRAY + (uint64_t)over);
        for (uint64_t i = 0; i < QKV__GGUF_MAX_ARRAY + (uint64_t)over; i++) gb_u8(&b, 1);
        if (over) {
            REFUSED(&b, QKV_EFORMAT, "elements");
        } else {
            ASSERT_OK(gb_parse(&b, &g));
            ASSERT_EQ_INT(g.kv[0].arr_n, QKV__GGUF_MAX_ARRAY);
            qkv__gguf_close(&g);
        }
        gb_free(&b);
    }
    /* an element of a string array over the cap */
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "a");
    gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_STRING); gb_u64(&b, 2);
    gb_str(&b, "ok");
    gb_u64(&b, UINT64_MAX);
    gb_u64(&b, 0);
    REFUSED(&b, QKV_EFORMAT, "element 1");
    gb_free(&b);
}

/* A string array of 100,000 elements: element lookups are O(1) (an index built at open). */
static void test_string_array_index(void) {
    gb b = {0};
    const uint64_t n = 100000;
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "tokenizer.ggml.tokens");
    gb_u32(&b, QKV__GGUF_ARRAY); gb_u32(&b, QKV__GGUF_STRING); gb_u64(&b, n);
    char tmp[32];
    for (uint64_t i = 0; i < n; i++) {
        snprintf(tmp, sizeof tmp, "t%llu", (unsigned long long)i);
        gb_str(&b, tmp);
    }
    qkv__gguf g;
    ASSERT_OK(gb_parse(&b, &g));
    const qkv__gguf_kv *kv = qkv__gguf_find_arr(&g, "tokenizer.ggml.tokens", QKV__GGUF_STRING);
    ASSERT(kv && kv->arr_n == n);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t total = 0;
    for (int rep = 0; rep < 20; rep++)
        for (uint64_t i = n; i-- > 0;) total += qkv__gguf_arr_str(kv, i).n;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    ASSERT(total > 0);
    ASSERT_MSG(secs < 1.0, "2M lookups took %.3f s", secs); /* a linear walk would take minutes */
    snprintf(tmp, sizeof tmp, "t%llu", (unsigned long long)(n - 1));
    ASSERT(qkv__gguf_str_eq(qkv__gguf_arr_str(kv, n - 1), tmp));
    ASSERT(qkv__gguf_str_eq(qkv__gguf_arr_str(kv, 12345), "t12345"));
    qkv__gguf_close(&g);
    gb_free(&b);
}

/* ---------------------------------------------------------------------------------------
 * Numbers: half / bfloat16 conversions and blocks computed by hand
 * ------------------------------------------------------------------------------------- */

static void test_half_conversions(void) {
    /* every half round-trips through float (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qkv__f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            ASSERT(isnan(qkv__f16_to_f32(qkv__f32_to_f16(f))));
            continue;
        }
        ASSERT_MSG(qkv__f32_to_f16(f) == h, "half %#x -> %g -> %#x", h, f, qkv__f32_to_f16(f));
    }
    /* round to nearest even, overflow, underflow */
    ASSERT_EQ_INT(qkv__f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);          /* tie -> even */
    ASSERT_EQ_INT(qkv__f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);      /* tie -> even */
    ASSERT_EQ_INT(qkv__f32_to_f16(65519.0f), 0x7bff);
    ASSERT_EQ_INT(qkv__f32_to_f16(65520.0f), 0x7c00);
    ASSERT_EQ_INT(qkv__f32_to_f16(-1e10f), 0xfc00);
    ASSERT_EQ_INT(qkv__f32_to_f16(ldexpf(1, -25)), 0x0000);                 /* tie -> even 0 */
    ASSERT_EQ_INT(qkv__f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    ASSERT_EQ_INT(qkv__f32_to_f16(ldexpf(3, -25)), 0x0002);                 /* 1.5 units -> 2 */
    ASSERT_EQ_INT(qkv__f32_to_f16(-0.0f), 0x8000);
    /* bfloat16 */
    ASSERT(qkv__bf16_to_f32(0x3f80) == 1.0f && qkv__bf16_to_f32(0xc0a0) == -5.0f);
    ASSERT_EQ_INT(qkv__f32_to_bf16(1.0f), 0x3f80);
    ASSERT_EQ_INT(qkv__f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);          /* tie -> even */
    ASSERT_EQ_INT(qkv__f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82);
    ASSERT(isnan(qkv__bf16_to_f32(qkv__f32_to_bf16(NAN))));
}

static qkv__gguf_tensor mk_tensor(uint32_t type, int64_t n, const uint8_t *data) {
    qkv__gguf_tensor t;
    memset(&t, 0, sizeof t);
    t.name.s = "t";
    t.name.n = 1;
    t.n_dims = 1;
    t.ne[0] = n;
    t.ne[1] = t.ne[2] = t.ne[3] = 1;
    t.type = type;
    t.n_elems = (uint64_t)n;
    t.data = data;
    return t;
}

static void test_to_f32_blocks(void) {
    /* BF16 */
    uint8_t bf[4] = {0x80, 0x3f, 0x40, 0xc0}; /* 1.0, -3.0 */
    qkv__gguf_tensor t = mk_tensor(QKV__GGML_BF16, 2, bf);
    float out[256];
    ASSERT_OK(qkv__gguf_to_f32(&t, out));
    ASSERT(out[0] == 1.0f && out[1] == -3.0f);
    /* Q8_0: d = 0.5 (half 0x3800), qs = -128, -1, 0, 1, 127, then j - 16 */
    uint8_t q8[34] = {0x00, 0x38};
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    q8[2] = 0x80; q8[3] = 0xff; q8[4] = 0; q8[5] = 1; q8[6] = 127;
    t = mk_tensor(QKV__GGML_Q8_0, 32, q8);
    ASSERT_OK(qkv__gguf_to_f32(&t, out));
    ASSERT(out[0] == -64.0f && out[1] == -0.5f && out[2] == 0.0f && out[3] == 0.5f && out[4] == 63.5f);
    for (int j = 5; j < 32; j++) ASSERT(out[j] == 0.5f * (float)(j - 16));
    /* Q4_0: d = 2 (half 0x4000); byte j = lo | hi << 4 with lo = j, hi = 15 - j:
     * x[j] = 2 (j - 8), x[16 + j] = 2 (7 - j) */
    uint8_t q4[18] = {0x00, 0x40};
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    t = mk_tensor(QKV__GGML_Q4_0, 32, q4);
    ASSERT_OK(qkv__gguf_to_f32(&t, out));
    for (int j = 0; j < 16; j++) {
        ASSERT(out[j] == 2.0f * (float)(j - 8));
        ASSERT(out[16 + j] == 2.0f * (float)(7 - j));
    }
    /* Q4_K: d = 1 (0x3c00), dmin = 0.5 (0x3800). Sub-block scales/mins (6-bit, packed):
     * j < 4: sc = s[j] & 63, m = s[j+4] & 63; j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
     * m = (s[j+4] >> 4) | (s[j] >> 6) << 4. Choose sc = {1,2,3,4, 5,6,7,40}, m = {0,1,2,3,
     * 4,5,6,33}: s[0..3] = sc0..3 | hi bits of sc4..7 << 6, s[4..7] = m0..3 | hi bits of
     * m4..7 << 6, s[8..11] = sc4..7 low 4 | m4..7 low 4 << 4. */
    int sc[8] = {1, 2, 3, 4, 5, 6, 7, 40}, mn[8] = {0, 1, 2, 3, 4, 5, 6, 33};
    uint8_t qk[144] = {0x00, 0x3c, 0x00, 0x38};
    for (int j = 0; j < 4; j++) {
        qk[4 + j] = (uint8_t)(sc[j] | ((sc[4 + j] >> 4) << 6));
        qk[8 + j] = (uint8_t)(mn[j] | ((mn[4 + j] >> 4) << 6));
        qk[12 + j] = (uint8_t)((sc[4 + j] & 15) | ((mn[4 + j] & 15) << 4));
    }
    /* quants: byte l of the 32-byte group g holds sub-block 2g (low) and 2g+1 (high) */
    for (int i = 0; i < 128; i++) qk[16 + i] = (uint8_t)((i % 16) | (((i * 7) % 16) << 4));
    t = mk_tensor(QKV__GGML_Q4_K, 256, qk);
    ASSERT_OK(qkv__gguf_to_f32(&t, out));
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            int byte = g * 32 + l;
            int lo = byte % 16, hi = (byte * 7) % 16;
            float want_lo = 1.0f * (float)sc[2 * g] * (float)lo - 0.5f * (float)mn[2 * g];
            float want_hi = 1.0f * (float)sc[2 * g + 1] * (float)hi - 0.5f * (float)mn[2 * g + 1];
            ASSERT_MSG(out[g * 64 + l] == want_lo, "Q4_K[%d] = %g, want %g", g * 64 + l,
                       out[g * 64 + l], want_lo);
            ASSERT_MSG(out[g * 64 + 32 + l] == want_hi, "Q4_K[%d] = %g, want %g", g * 64 + 32 + l,
                       out[g * 64 + 32 + l], want_hi);
        }
    /* a known but unsupported type is refused by name */
    t = mk_tensor(14 /* Q6_K */, 256, qk);
    ASSERT(qkv__gguf_to_f32(&t, out) == QKV_EUNSUPPORTED && strstr(qkv_last_error(), "Q6_K"));
}

/* ggml's reference quantizers against values worked out by hand. */
static void test_quantize_reference(void) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f; /* -4 .. 3.75 */
    uint8_t q[34];
    qkv__quantize_q8_0(x, 32, q);
    /* amax 4 -> d = 4/127; q = round(x * 127 / 4) */
    ASSERT_EQ_INT(q[0] | q[1] << 8, qkv__f32_to_f16(4.0f / 127.0f));
    ASSERT_EQ_INT((int8_t)q[2], -127);
    ASSERT_EQ_INT((int8_t)q[2 + 16], 0);
    ASSERT_EQ_INT((int8_t)q[2 + 17], 8);   /* 0.25 * 31.75 = 7.9375 -> 8 */
    ASSERT_EQ_INT((int8_t)q[2 + 18], 16);  /* 15.875 -> 16 */
    ASSERT_EQ_INT((int8_t)q[2 + 31], 119); /* 3.75 * 31.75 = 119.06 -> 119 */
    float zero[32] = {0};
    qkv__quantize_q8_0(zero, 32, q);
    for (int j = 0; j < 34; j++) ASSERT(q[j] == 0);
    uint8_t q4[18];
    qkv__quantize_q4_0(x, 32, q4);
    /* max |x| is -4 -> d = -4 / -8 = 0.5, id = 2; q = (int)(x * 2 + 8.5) clamped to 15 */
    ASSERT_EQ_INT(q4[0] | q4[1] << 8, 0x3800);
    ASSERT_EQ_INT(q4[2] & 15, 0);          /* -4 * 2 + 8.5 = 0.5 -> 0 */
    ASSERT_EQ_INT(q4[2 + 15] >> 4, 15);    /* 3.75 * 2 + 8.5 = 16 -> clamp 15 */
    ASSERT_EQ_INT(q4[2 + 8] & 15, 4);      /* x[8] = -2: -4 + 8.5 = 4.5 -> 4 */
}

/* ---------------------------------------------------------------------------------------
 * llama.cpp's own vocab GGUFs
 * ------------------------------------------------------------------------------------- */

/* llama.cpp's source checkout: $QKV_LLAMA_CPP_SRC, else tools/llama_cpp_src.sh's cache
 * (which the script fills from node-llama-cpp's bundle when the npm package is there). */
static const char *llama_cpp_src(void) {
    static char buf[512], made[512];
    const char *env = getenv("QKV_LLAMA_CPP_SRC");
    FILE *p = popen("bash tools/llama_cpp_src.sh 2>/dev/null", "r");
    made[0] = 0;
    if (p) {
        if (!fgets(made, sizeof made, p)) made[0] = 0;
        made[strcspn(made, "\n")] = 0;
        pclose(p);
    }
    const char *cands[] = {env, made, "build/llama.cpp-src", "../build/llama.cpp-src"};
    for (int i = 0; i < 4; i++) {
        if (!cands[i] || !*cands[i]) continue;
        snprintf(buf, sizeof buf, "%s/models/ggml-vocab-gpt-2.gguf", cands[i]);
        struct stat st;
        if (stat(buf, &st) == 0) {
            snprintf(buf, sizeof buf, "%s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

static void test_llama_cpp_vocab_files(void) {
    const char *src = llama_cpp_src();
    if (!src)
        SKIP("llama.cpp source not found (run tools/llama_cpp_src.sh or set QKV_LLAMA_CPP_SRC)");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", src);
    DIR *d = opendir(dir);
    ASSERT(d);
    struct dirent *e;
    int n_files = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf") || strncmp(e->d_name, "ggml-vocab-", 11))
            continue;
        char path[900];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        qkv__gguf g;
        qkv_status st = qkv__gguf_open(path, &g);
        ASSERT_MSG(st == QKV_OK, "%s: %s", e->d_name, qkv_last_error());
        qkv__gguf_str model, arch;
        ASSERT_MSG(qkv__gguf_get_str(&g, "tokenizer.ggml.model", &model) == QKV_OK, "%s: %s",
                   e->d_name, qkv_last_error());
        ASSERT_OK(qkv__gguf_get_str(&g, "general.architecture", &arch));
        const qkv__gguf_kv *tok = qkv__gguf_find_arr(&g, "tokenizer.ggml.tokens", QKV__GGUF_STRING);
        ASSERT_MSG(tok && tok->arr_n > 100, "%s: no tokenizer.ggml.tokens", e->d_name);
        /* every token readable; scores and token types (when present) as long as tokens */
        uint64_t bytes = 0;
        for (uint64_t i = 0; i < tok->arr_n; i++) {
            qkv__gguf_str s = qkv__gguf_arr_str(tok, i);
            ASSERT(s.s != NULL);
            bytes += s.n;
        }
        ASSERT(bytes > 0);
        const qkv__gguf_kv *kv = qkv__gguf_find(&g, "tokenizer.ggml.scores");
        if (kv) ASSERT(kv->type == QKV__GGUF_ARRAY && kv->arr_type == QKV__GGUF_FLOAT32 &&
                       kv->arr_n == tok->arr_n);
        kv = qkv__gguf_find(&g, "tokenizer.ggml.token_type");
        if (kv) ASSERT(kv->type == QKV__GGUF_ARRAY && kv->arr_type == QKV__GGUF_INT32 &&
                       kv->arr_n == tok->arr_n);
        kv = qkv__gguf_find_arr(&g, "tokenizer.ggml.merges", QKV__GGUF_STRING);
        if (qkv__gguf_str_eq(model, "gpt2")) {
            ASSERT_MSG(kv && kv->arr_n > 0, "%s: BPE vocab without merges", e->d_name);
            qkv__gguf_str m = qkv__gguf_arr_str(kv, kv->arr_n - 1);
            ASSERT(m.s && memchr(m.s, ' ', (size_t)m.n));
        }
        ASSERT_EQ_INT(g.n_tensors, 0);
        printf("      %-36s %.*s/%.*s, %llu tokens, %llu merges, %llu kv\n", e->d_name,
               (int)arch.n, arch.s, (int)model.n, model.s, (unsigned long long)tok->arr_n,
               (unsigned long long)(kv ? kv->arr_n : 0), (unsigned long long)g.n_kv);
        qkv__gguf_close(&g);
        n_files++;
    }
    closedir(d);
    ASSERT_MSG(n_files >= 10, "only %d vocab files in %s", n_files, dir);
}

/* ---------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------- */

/* Every kv type and F32 / F16 / BF16 / Q8_0 / Q4_0 tensors through the writer, read back. */
static void test_writer_round_trip(void) {
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    ASSERT(w);
    ASSERT_OK(qkv__gguf_writer_set_alignment(w, 64));
    ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", "llama"));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.block_count", 2));
    ASSERT_OK(qkv__gguf_w_i32(w, "i32", -7));
    ASSERT_OK(qkv__gguf_w_u64(w, "u64", 1ull << 40));
    ASSERT_OK(qkv__gguf_w_f32(w, "llama.rope.freq_base", 500000.0f));
    ASSERT_OK(qkv__gguf_w_bool(w, "flag", 1));
    int16_t i16 = -300;
    double f64 = 0.1;
    int8_t i8 = -5;
    ASSERT_OK(qkv__gguf_w_scalar(w, "i16", QKV__GGUF_INT16, &i16));
    ASSERT_OK(qkv__gguf_w_scalar(w, "f64", QKV__GGUF_FLOAT64, &f64));
    ASSERT_OK(qkv__gguf_w_scalar(w, "i8", QKV__GGUF_INT8, &i8));
    const char *toks[] = {"a", "", "hello world"};
    ASSERT_OK(qkv__gguf_w_arr_str(w, "tokenizer.ggml.tokens", 3, toks, NULL));
    float scores[3] = {0.5f, -1.0f, 2.0f};
    ASSERT_OK(qkv__gguf_w_arr(w, "tokenizer.ggml.scores", QKV__GGUF_FLOAT32, 3, scores));
    int32_t types[3] = {1, 3, 6};
    ASSERT_OK(qkv__gguf_w_arr(w, "tokenizer.ggml.token_type", QKV__GGUF_INT32, 3, types));
    uint8_t bools[2] = {0, 1};
    ASSERT_OK(qkv__gguf_w_arr(w, "bools", QKV__GGUF_BOOL, 2, bools));
    /* tensors */
    enum { R = 3, C = 64 };
    float src[R * C];
    unsigned long long seed = 7;
    for (int i = 0; i < R * C; i++) src[i] = test_rand_uniform(&seed) * 3.0f;
    int64_t ne[2] = {C, R};
    uint32_t tt[5] = {QKV__GGML_F32, QKV__GGML_F16, QKV__GGML_BF16, QKV__GGML_Q8_0, QKV__GGML_Q4_0};
    const char *names[5] = {"t.f32", "t.f16", "t.bf16", "t.q8_0", "t.q4_0"};
    for (int k = 0; k < 5; k++) ASSERT_OK(qkv__gguf_w_tensor_f32(w, names[k], tt[k], 2, ne, src));
    uint8_t raw[5] = {1, 2, 3, 4, 5};
    int64_t ne5[1] = {5};
    ASSERT_OK(qkv__gguf_w_tensor(w, "t.i8", 24 /* I8 */, 1, ne5, raw, 5));
    static const uint8_t ref[4] = {9, 8, 7, 6};
    int64_t ne2[2] = {2, 2};
    ASSERT_OK(qkv__gguf_w_tensor_ref(w, "t.ref", 24 /* I8 */, 2, ne2, ref, 4));
    uint8_t *buf;
    size_t len;
    ASSERT_OK(qkv__gguf_writer_bytes(w, &buf, &len));
    qkv__gguf_writer_free(w);
    ASSERT(len % 64 == 0);

    qkv__gguf g;
    memset(&g, 0, sizeof g);
    ASSERT_OK(qkv__gguf_parse(buf, len, "written.gguf", &g));
    ASSERT_EQ_INT(g.version, 3);
    ASSERT_EQ_INT(g.alignment, 64);
    ASSERT_EQ_INT(g.n_kv, 14);
    ASSERT_EQ_INT(g.n_tensors, 7);
    uint64_t u;
    double f;
    qkv__gguf_str s;
    ASSERT_OK(qkv__gguf_get_str(&g, "general.architecture", &s));
    ASSERT(qkv__gguf_str_eq(s, "llama"));
    ASSERT_OK(qkv__gguf_get_u64(&g, "llama.block_count", &u)); ASSERT_EQ_INT(u, 2);
    ASSERT_EQ_INT(qkv__gguf_find(&g, "llama.block_count")->type, QKV__GGUF_UINT32);
    ASSERT_EQ_INT(qkv__gguf_find(&g, "i32")->i, -7);
    ASSERT_OK(qkv__gguf_get_u64(&g, "u64", &u)); ASSERT(u == 1ull << 40);
    ASSERT_OK(qkv__gguf_get_f64(&g, "llama.rope.freq_base", &f)); ASSERT(f == 500000.0);
    ASSERT_EQ_INT(qkv__gguf_find(&g, "flag")->u, 1);
    ASSERT_EQ_INT(qkv__gguf_find(&g, "i16")->i, -300);
    ASSERT(qkv__gguf_find(&g, "f64")->f == 0.1);
    ASSERT_EQ_INT(qkv__gguf_find(&g, "i8")->i, -5);
    const qkv__gguf_kv *kv = qkv__gguf_find_arr(&g, "tokenizer.ggml.tokens", QKV__GGUF_STRING);
    ASSERT(kv && kv->arr_n == 3);
    ASSERT(qkv__gguf_str_eq(qkv__gguf_arr_str(kv, 2), "hello world"));
    ASSERT(qkv__gguf_arr_str(kv, 1).n == 0);
    kv = qkv__gguf_find_arr(&g, "tokenizer.ggml.scores", QKV__GGUF_FLOAT32);
    ASSERT(kv && qkv__gguf_arr_f64(kv, 1) == -1.0);
    kv = qkv__gguf_find_arr(&g, "tokenizer.ggml.token_type", QKV__GGUF_INT32);
    ASSERT(kv && qkv__gguf_arr_i64(kv, 2) == 6);
    ASSERT(qkv__gguf_find_arr(&g, "bools", QKV__GGUF_BOOL)->arr_n == 2);
    /* tensor values: exact for F32; F16/BF16 as their conversions; Q8_0 within d / 2 */
    float back[R * C];
    for (int k = 0; k < 5; k++) {
        const qkv__gguf_tensor *t = qkv__gguf_find_tensor(&g, names[k]);
        ASSERT(t && t->type == tt[k] && t->n_dims == 2 && t->ne[0] == C && t->ne[1] == R);
        ASSERT(t->offset % 64 == 0);
        ASSERT_OK(qkv__gguf_to_f32(t, back));
        for (int i = 0; i < R * C; i++) {
            float want = src[i];
            if (tt[k] == QKV__GGML_F16) want = qkv__f16_to_f32(qkv__f32_to_f16(src[i]));
            if (tt[k] == QKV__GGML_BF16) want = qkv__bf16_to_f32(qkv__f32_to_bf16(src[i]));
            double tol = tt[k] == QKV__GGML_Q8_0 ? 3.0 / 127 * 0.51 + 1e-3
                       : tt[k] == QKV__GGML_Q4_0 ? 3.0 / 8 + 1e-2 : 0; /* q = 16 clamps to 15 */
            ASSERT_MSG(fabs(back[i] - want) <= tol, "%s[%d]: %g vs %g", names[k], i, back[i], want);
        }
    }
    const qkv__gguf_tensor *t = qkv__gguf_find_tensor(&g, "t.i8");
    ASSERT(t && t->n_bytes == 5 && !memcmp(t->data, raw, 5));
    t = qkv__gguf_find_tensor(&g, "t.ref");
    ASSERT(t && t->n_dims == 2 && t->n_bytes == 4 && !memcmp(t->data, ref, 4));
    qkv__gguf_close(&g);
    free(buf);
}

static void test_writer_refusals(void) {
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    ASSERT_OK(qkv__gguf_w_u32(w, "a", 1));
    ASSERT(qkv__gguf_w_u32(w, "a", 2) == QKV_EINVAL && strstr(qkv_last_error(), "twice"));
    /* the first error sticks */
    ASSERT(qkv__gguf_w_u32(w, "b", 2) == QKV_EINVAL && strstr(qkv_last_error(), "a written twice"));
    uint8_t *buf;
    size_t len;
    ASSERT(qkv__gguf_writer_bytes(w, &buf, &len) == QKV_EINVAL && buf == NULL);
    qkv__gguf_writer_free(w);

    float x[64] = {0};
    int64_t ne33[1] = {33}, ne0[2] = {32, 0}, ne32[1] = {32};
    for (int k = 0; k < 7; k++) {
        w = qkv__gguf_writer_new();
        qkv_status st = QKV_OK;
        switch (k) {
        case 0: st = qkv__gguf_w_tensor_f32(w, "q", QKV__GGML_Q8_0, 1, ne33, x); break;
        case 1: st = qkv__gguf_w_tensor_f32(w, "z", QKV__GGML_F32, 2, ne0, x); break;
        case 2: st = qkv__gguf_w_tensor_f32(w, "k", QKV__GGML_Q4_K, 1, ne32, x); break;
        case 3: st = qkv__gguf_w_tensor_f32(w, "", QKV__GGML_F32, 1, ne32, x); break;
        case 4: st = qkv__gguf_writer_set_alignment(w, 48); break;
        case 5: st = qkv__gguf_w_tensor(w, "r", QKV__GGML_F32, 1, ne32, x, 12); break;
        case 6:
            ASSERT_OK(qkv__gguf_w_tensor_f32(w, "d", QKV__GGML_F32, 1, ne32, x));
            st = qkv__gguf_w_tensor_f32(w, "d", QKV__GGML_F32, 1, ne32, x);
            break;
        }
        ASSERT_MSG(st != QKV_OK, "writer case %d accepted", k);
        qkv__gguf_writer_free(w);
    }
}

/* Saving goes through qkv__write_file: a regular file is replaced, a FIFO or a symbolic link
 * at the path is refused and left alone. */
static void test_writer_save(void) {
    char dir[] = "/tmp/qkv_test_gguf_dirXXXXXX";
    ASSERT(mkdtemp(dir));
    char path[256], fifo[256], link[256];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo.gguf", dir);
    snprintf(link, sizeof link, "%s/link.gguf", dir);
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", "gpt2"));
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ne[1] = {8};
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "t", QKV__GGML_F16, 1, ne, x));
    ASSERT_OK(qkv__gguf_writer_save(w, path));
    ASSERT_OK(qkv__gguf_writer_save(w, path)); /* replaces a regular file */
    qkv__gguf g;
    ASSERT_OK(qkv__gguf_open(path, &g));
    float back[8];
    ASSERT_OK(qkv__gguf_to_f32(qkv__gguf_find_tensor(&g, "t"), back));
    ASSERT(back[7] == 8.0f);
    qkv__gguf_close(&g);
    ASSERT(mkfifo(fifo, 0600) == 0);
    ASSERT(qkv__gguf_writer_save(w, fifo) == QKV_EIO && strstr(qkv_last_error(), "FIFO"));
    ASSERT(symlink(path, link) == 0);
    ASSERT(qkv__gguf_writer_save(w, link) == QKV_EIO && strstr(qkv_last_error(), "symbolic link"));
    qkv__gguf_writer_free(w);
    unlink(path);
    unlink(fifo);
    unlink(link);
    ASSERT(rmdir(dir) == 0); /* no temporary file left behind */
}

/* ---------------------------------------------------------------------------------------
 * GGUF as a model: config and Hugging Face names / layouts
 * ------------------------------------------------------------------------------------- */

/* convert_hf_to_gguf.py's LlamaModel.permute, written out: gguf[h*d + 2b + a] = hf[h*d + a*d/2 + b]. */
static void llama_permute(const float *hf, float *out, int heads, int rows, int row_len) {
    int d = rows / heads, half = d / 2;
    for (int h = 0; h < heads; h++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < half; b++)
                memcpy(out + (size_t)(h * d + 2 * b + a) * row_len,
                       hf + (size_t)(h * d + a * half + b) * row_len, sizeof(float) * (size_t)row_len);
}

static void write_tmp(qkv__gguf_writer *w, char *path, size_t cap) {
    snprintf(path, cap, "/tmp/qkv_test_gguf_model_%d.gguf", (int)getpid());
    if (qkv__gguf_writer_save(w, path) != QKV_OK) FAIL("save: %s", qkv_last_error());
    qkv__gguf_writer_free(w);
}

/* A two-layer Llama with GQA (H 4, KV 2, d 4, C 16): HF tensors permuted as the converter does,
 * written, read back through the source: the HF values and shapes come out. */
static void test_gguf_llama_source(void) {
    enum { C = 16, H = 4, KV = 2, D = 4, F = 32, V = 40, L = 2 };
    unsigned long long seed = 11;
    float q[H * D * C], k[KV * D * C], qb[H * D], emb[V * C], gate[F * C], tmp[F * C];
    for (int i = 0; i < H * D * C; i++) q[i] = test_rand_uniform(&seed);
    for (int i = 0; i < KV * D * C; i++) k[i] = test_rand_uniform(&seed);
    for (int i = 0; i < H * D; i++) qb[i] = test_rand_uniform(&seed);
    for (int i = 0; i < V * C; i++) emb[i] = test_rand_uniform(&seed);
    for (int i = 0; i < F * C; i++) gate[i] = test_rand_uniform(&seed);
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", "llama"));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.block_count", L));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.embedding_length", C));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.attention.head_count", H));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.attention.head_count_kv", KV));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.feed_forward_length", F));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.context_length", 128));
    ASSERT_OK(qkv__gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    ASSERT_OK(qkv__gguf_w_f32(w, "llama.rope.freq_base", 500000.0f));
    ASSERT_OK(qkv__gguf_w_u32(w, "llama.rope.dimension_count", D));
    int64_t ne_emb[2] = {C, V}, ne_q[2] = {C, H * D}, ne_k[2] = {C, KV * D}, ne_qb[1] = {H * D},
            ne_g[2] = {F, C}, ne_n[1] = {C}; /* ffn_down: [C, F], rows of F */
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "token_embd.weight", QKV__GGML_F32, 2, ne_emb, emb));
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "output_norm.weight", QKV__GGML_F32, 1, ne_n, emb));
    for (int l = 0; l < L; l++) {
        char nm[64];
        llama_permute(q, tmp, H, H * D, C);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l);
        ASSERT_OK(qkv__gguf_w_tensor_f32(w, nm, QKV__GGML_F32, 2, ne_q, tmp));
        llama_permute(k, tmp, KV, KV * D, C);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l);
        ASSERT_OK(qkv__gguf_w_tensor_f32(w, nm, QKV__GGML_F32, 2, ne_k, tmp));
        llama_permute(qb, tmp, H, H * D, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.bias", l);
        ASSERT_OK(qkv__gguf_w_tensor_f32(w, nm, QKV__GGML_F32, 1, ne_qb, tmp));
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);
        ASSERT_OK(qkv__gguf_w_tensor_f32(w, nm, QKV__GGML_Q8_0, 2, ne_g, gate));
    }
    char path[128];
    write_tmp(w, path, sizeof path);

    qkv__tensor_src src;
    qkv_model_config cfg;
    qkv_status st = qkv__gguf_src_open(path, &src, &cfg);
    unlink(path);
    ASSERT_OK(st);
    ASSERT(!strcmp(cfg.family, "llama"));
    ASSERT(cfg.n_layer == L && cfg.n_embd == C && cfg.n_head == H && cfg.n_kv_head == KV);
    ASSERT(cfg.head_dim == D && cfg.n_ff == F && cfg.n_ctx == 128 && cfg.vocab_size == V);
    ASSERT(cfg.norm == QKV_NORM_RMS && cfg.mlp == QKV_MLP_SWIGLU && cfg.pos == QKV_POS_ROPE);
    ASSERT(cfg.bias == QKV_BIAS_QKV); /* attn_q.bias present */
    ASSERT(cfg.rope_theta == 500000.0f && cfg.rope_dim == D && cfg.rope_interleaved == 0);
    ASSERT(cfg.untied == 0 && cfg.qk_norm == 0 && cfg.rope_factor == 0);
    ASSERT_CLOSE(cfg.layer_norm_eps, 1e-5, 1e-12);
    ASSERT_CLOSE(cfg.attn_scale, 0.5, 1e-7);
    int nd;
    int64_t shape[QKV__ST_MAX_DIMS];
    float out[V * C + F * C];
    ASSERT(src.shape(src.ctx, "model.layers.1.self_attn.q_proj.weight", &nd, shape));
    ASSERT(nd == 2 && shape[0] == H * D && shape[1] == C);
    ASSERT_OK(src.read(src.ctx, "model.layers.1.self_attn.q_proj.weight", out));
    for (int i = 0; i < H * D * C; i++) ASSERT_MSG(out[i] == q[i], "q[%d]: %g vs %g", i, out[i], q[i]);
    ASSERT(src.shape(src.ctx, "model.layers.0.self_attn.k_proj.weight", &nd, shape));
    ASSERT(nd == 2 && shape[0] == KV * D && shape[1] == C);
    ASSERT_OK(src.read(src.ctx, "model.layers.0.self_attn.k_proj.weight", out));
    for (int i = 0; i < KV * D * C; i++) ASSERT_MSG(out[i] == k[i], "k[%d]", i);
    ASSERT_OK(src.read(src.ctx, "model.layers.0.self_attn.q_proj.bias", out));
    for (int i = 0; i < H * D; i++) ASSERT(out[i] == qb[i]);
    ASSERT(src.shape(src.ctx, "model.embed_tokens.weight", &nd, shape) && nd == 2 && shape[0] == V &&
           shape[1] == C);
    ASSERT_OK(src.read(src.ctx, "model.embed_tokens.weight", out));
    ASSERT(!memcmp(out, emb, sizeof emb));
    ASSERT(src.shape(src.ctx, "model.norm.weight", &nd, shape) && nd == 1 && shape[0] == C);
    ASSERT(src.shape(src.ctx, "model.layers.1.mlp.down_proj.weight", &nd, shape) && shape[0] == C &&
           shape[1] == F);
    ASSERT_OK(src.read(src.ctx, "model.layers.1.mlp.down_proj.weight", out));
    for (int i = 0; i < F * C; i++) ASSERT_CLOSE(out[i], gate[i], 1.0 / 127 * 0.51 + 1e-3);
    /* absent and malformed names */
    ASSERT(!src.shape(src.ctx, "lm_head.weight", &nd, shape));
    ASSERT(!src.shape(src.ctx, "model.layers.2.self_attn.q_proj.weight", &nd, shape));
    ASSERT(!src.shape(src.ctx, "model.layers.01.self_attn.q_proj.weight", &nd, shape));
    ASSERT(!src.shape(src.ctx, "model.layers.-1.self_attn.q_proj.weight", &nd, shape));
    ASSERT(!src.shape(src.ctx, "model.layers.0.self_attn.q_proj", &nd, shape));
    ASSERT(!src.shape(src.ctx, "blk.0.attn_q.weight", &nd, shape)); /* GGUF names are not HF names */
    ASSERT(src.read(src.ctx, "lm_head.weight", out) == QKV_ENOTFOUND);
    ASSERT(src.file_bytes(src.ctx) > (uint64_t)(V * C * 4));
    src.close(src.ctx);
}

/* GPT-2: Conv1D weights come back [in, out] as Hugging Face stores them; no prefix. */
static void test_gguf_gpt2_source(void) {
    enum { C = 8, V = 10, P = 6 };
    unsigned long long seed = 5;
    float c_attn[C * 3 * C], t_attn[3 * C * C], bias[3 * C], wpe[P * C], wte[V * C];
    for (int i = 0; i < C * 3 * C; i++) c_attn[i] = test_rand_uniform(&seed);
    for (int i = 0; i < 3 * C; i++) bias[i] = test_rand_uniform(&seed);
    for (int i = 0; i < P * C; i++) wpe[i] = test_rand_uniform(&seed);
    for (int i = 0; i < V * C; i++) wte[i] = test_rand_uniform(&seed);
    for (int i = 0; i < C; i++) /* HF [in C][out 3C] -> GGUF rows [out][in] */
        for (int o = 0; o < 3 * C; o++) t_attn[o * C + i] = c_attn[i * 3 * C + o];
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", "gpt2"));
    ASSERT_OK(qkv__gguf_w_u32(w, "gpt2.block_count", 1));
    ASSERT_OK(qkv__gguf_w_u32(w, "gpt2.embedding_length", C));
    ASSERT_OK(qkv__gguf_w_u32(w, "gpt2.attention.head_count", 2));
    ASSERT_OK(qkv__gguf_w_u32(w, "gpt2.context_length", P));
    ASSERT_OK(qkv__gguf_w_u32(w, "gpt2.feed_forward_length", 4 * C));
    ASSERT_OK(qkv__gguf_w_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f));
    int64_t ne_a[2] = {C, 3 * C}, ne_b[1] = {3 * C}, ne_p[2] = {C, P}, ne_e[2] = {C, V};
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "token_embd.weight", QKV__GGML_F32, 2, ne_e, wte));
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "position_embd.weight", QKV__GGML_F32, 2, ne_p, wpe));
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "output.weight", QKV__GGML_F32, 2, ne_e, wte)); /* a copy */
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "blk.0.attn_qkv.weight", QKV__GGML_F32, 2, ne_a, t_attn));
    ASSERT_OK(qkv__gguf_w_tensor_f32(w, "blk.0.attn_qkv.bias", QKV__GGML_F32, 1, ne_b, bias));
    char path[128];
    write_tmp(w, path, sizeof path);
    qkv__tensor_src src;
    qkv_model_config cfg;
    qkv_status st = qkv__gguf_src_open(path, &src, &cfg);
    unlink(path);
    ASSERT_OK(st);
    ASSERT(!strcmp(cfg.family, "gpt2") && cfg.n_layer == 1 && cfg.n_embd == C && cfg.n_head == 2);
    ASSERT(cfg.n_ctx == P && cfg.vocab_size == V && cfg.n_ff == 4 * C && cfg.head_dim == C / 2);
    ASSERT(cfg.norm == QKV_NORM_LAYER && cfg.mlp == QKV_MLP_GELU_TANH && cfg.pos == QKV_POS_LEARNED);
    ASSERT(cfg.bias == QKV_BIAS_ALL && cfg.untied == 0); /* output.weight equals token_embd */
    int nd;
    int64_t shape[QKV__ST_MAX_DIMS];
    float out[C * 3 * C];
    ASSERT(src.shape(src.ctx, "h.0.attn.c_attn.weight", &nd, shape));
    ASSERT(nd == 2 && shape[0] == C && shape[1] == 3 * C);
    ASSERT_OK(src.read(src.ctx, "h.0.attn.c_attn.weight", out));
    ASSERT(!memcmp(out, c_attn, sizeof c_attn));
    ASSERT_OK(src.read(src.ctx, "h.0.attn.c_attn.bias", out));
    ASSERT(!memcmp(out, bias, sizeof bias));
    ASSERT(src.shape(src.ctx, "wpe.weight", &nd, shape) && shape[0] == P && shape[1] == C);
    ASSERT_OK(src.read(src.ctx, "wpe.weight", out));
    ASSERT(!memcmp(out, wpe, sizeof wpe));
    ASSERT(!src.shape(src.ctx, "transformer.wte.weight", &nd, shape)); /* the loader strips it */
    src.close(src.ctx);
}

/* Config: Qwen3's head dim apart from C / H and QK-norm; Qwen2's biases; refusals by name. */
static void test_gguf_model_config(void) {
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", "qwen3"));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.block_count", 28));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.embedding_length", 1024));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.attention.head_count", 16));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.attention.head_count_kv", 8));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.attention.key_length", 128));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.attention.value_length", 128));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.feed_forward_length", 3072));
    ASSERT_OK(qkv__gguf_w_u32(w, "qwen3.context_length", 40960));
    ASSERT_OK(qkv__gguf_w_f32(w, "qwen3.attention.layer_norm_rms_epsilon", 1e-6f));
    ASSERT_OK(qkv__gguf_w_f32(w, "qwen3.rope.freq_base", 1000000.0f));
    const char *toks[3] = {"a", "b", "c"};
    ASSERT_OK(qkv__gguf_w_arr_str(w, "tokenizer.ggml.tokens", 3, toks, NULL));
    uint8_t *buf;
    size_t len;
    ASSERT_OK(qkv__gguf_writer_bytes(w, &buf, &len));
    qkv__gguf_writer_free(w);
    qkv__gguf g;
    memset(&g, 0, sizeof g);
    ASSERT_OK(qkv__gguf_parse(buf, len, "qwen3.gguf", &g));
    qkv_model_config cfg;
    ASSERT_OK(qkv__gguf_model_config(&g, &cfg));
    ASSERT(!strcmp(cfg.family, "qwen3") && cfg.head_dim == 128 && cfg.n_kv_head == 8);
    ASSERT(cfg.qk_norm == 1 && cfg.bias == QKV_BIAS_NONE && cfg.rope_dim == 128);
    ASSERT(cfg.vocab_size == 3 && cfg.n_ctx == 40960 && cfg.rope_theta == 1e6f);
    qkv__gguf_close(&g);
    free(buf);

    /* refusals: another architecture (by name), a missing key, GQA not dividing, rope yarn */
    const char *arch[4] = {"phi3", "llama", "llama", "llama"};
    const char *want[4] = {"\"phi3\" is not supported", "llama.block_count missing",
                           "does not divide", "yarn"};
    for (int k = 0; k < 4; k++) {
        w = qkv__gguf_writer_new();
        ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", arch[k]));
        if (k != 1) ASSERT_OK(qkv__gguf_w_u32(w, "llama.block_count", 2));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.embedding_length", 64));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.attention.head_count", 4));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.attention.head_count_kv", k == 2 ? 3 : 2));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.feed_forward_length", 128));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.context_length", 256));
        if (k == 3) {
            ASSERT_OK(qkv__gguf_w_str(w, "llama.rope.scaling.type", "yarn"));
            ASSERT_OK(qkv__gguf_w_f32(w, "llama.rope.scaling.factor", 4.0f));
        }
        ASSERT_OK(qkv__gguf_w_arr_str(w, "tokenizer.ggml.tokens", 3, toks, NULL));
        ASSERT_OK(qkv__gguf_writer_bytes(w, &buf, &len));
        qkv__gguf_writer_free(w);
        memset(&g, 0, sizeof g);
        ASSERT_OK(qkv__gguf_parse(buf, len, "bad.gguf", &g));
        qkv_status st = qkv__gguf_model_config(&g, &cfg);
        ASSERT_MSG(st != QKV_OK && strstr(qkv_last_error(), want[k]), "case %d: %d %s", k, st,
                   qkv_last_error());
        qkv__gguf_close(&g);
        free(buf);
    }
}

/* Llama 3.1's rope scaling, stored by the converter as a rope_freqs.weight tensor, read back
 * as factor 8, low 1, high 4, original context 8192. */
static void test_gguf_llama3_rope_freqs(void) {
    enum { D = 64 };
    float f[D / 2];
    double theta = 500000, factor = 8, low = 1, high = 4, orig = 8192;
    for (int i = 0; i < D / 2; i++) {
        double freq = 1.0 / pow(theta, (2.0 * i) / D), wl = 2 * M_PI / freq;
        if (wl < orig / high) f[i] = 1;
        else if (wl > orig / low) f[i] = (float)factor;
        else {
            double smooth = (orig / wl - low) / (high - low);
            f[i] = (float)(1 / ((1 - smooth) / factor + smooth));
        }
    }
    for (int bad = 0; bad < 2; bad++) {
        qkv__gguf_writer *w = qkv__gguf_writer_new();
        ASSERT_OK(qkv__gguf_w_str(w, "general.architecture", "llama"));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.block_count", 1));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.embedding_length", 2 * D));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.attention.head_count", 2));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.feed_forward_length", 256));
        ASSERT_OK(qkv__gguf_w_u32(w, "llama.context_length", 131072));
        ASSERT_OK(qkv__gguf_w_f32(w, "llama.rope.freq_base", (float)theta));
        const char *toks[2] = {"a", "b"};
        ASSERT_OK(qkv__gguf_w_arr_str(w, "tokenizer.ggml.tokens", 2, toks, NULL));
        float g2[D / 2];
        memcpy(g2, f, sizeof f);
        if (bad) g2[D / 4] *= 1.5f;
        int64_t ne[1] = {D / 2};
        ASSERT_OK(qkv__gguf_w_tensor_f32(w, "rope_freqs.weight", QKV__GGML_F32, 1, ne, g2));
        uint8_t *buf;
        size_t len;
        ASSERT_OK(qkv__gguf_writer_bytes(w, &buf, &len));
        qkv__gguf_writer_free(w);
        qkv__gguf g;
        memset(&g, 0, sizeof g);
        ASSERT_OK(qkv__gguf_parse(buf, len, "llama3.gguf", &g));
        qkv_model_config cfg;
        qkv_status st = qkv__gguf_model_config(&g, &cfg);
        if (!bad) {
            ASSERT_OK(st);
            ASSERT(cfg.rope_factor == 8.0f && cfg.rope_low_freq_factor == 1.0f &&
                   cfg.rope_high_freq_factor == 4.0f && cfg.rope_orig_ctx == 8192);
        } else {
            ASSERT(st == QKV_EUNSUPPORTED && strstr(qkv_last_error(), "rope_freqs"));
        }
        qkv__gguf_close(&g);
        free(buf);
    }
}

int main(void) {
    RUN(test_every_type_v3);
    RUN(test_every_type_v2);
    RUN(test_parse_ignores_garbage_struct);
    RUN(test_open_file);
    RUN(test_every_truncation);
    RUN(test_every_byte_flip);
    RUN(test_bad_magic_and_version);
    RUN(test_cve_2024_23605_n_kv_overflow);
    RUN(test_cve_2024_21802_ne_overflow);
    RUN(test_cve_2025_53630_size_accumulation);
    RUN(test_cve_2026_27940_mem_size_bypass);
    RUN(test_cve_2026_33298_nbytes_overflow);
    RUN(test_ollama_cve_2026_7482_extent);
    RUN(test_ggml_pr1516_huge_lengths);
    RUN(test_gguf_py_27188_array_2_63);
    RUN(test_gguf_tools_25_n_dims);
    RUN(test_caps_and_structure);
    RUN(test_string_and_array_caps);
    RUN(test_string_array_index);
    RUN(test_half_conversions);
    RUN(test_to_f32_blocks);
    RUN(test_quantize_reference);
    RUN(test_llama_cpp_vocab_files);
    RUN(test_writer_round_trip);
    RUN(test_writer_refusals);
    RUN(test_writer_save);
    RUN(test_gguf_llama_source);
    RUN(test_gguf_gpt2_source);
    RUN(test_gguf_model_config);
    RUN(test_gguf_llama3_rope_freqs);
    return test_summary();
}
