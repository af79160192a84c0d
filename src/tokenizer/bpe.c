/*
 * bpe.c -- GPT-2 byte-level BPE: loading vocab.json + merges.txt, encode, decode.
 *
 * Encoding: the pre-tokenizer (pretok.c) cuts the text into pieces; each piece starts as
 * one symbol per byte and merges adjacent pairs, lowest merge rank first (leftmost first
 * among equal ranks), until no adjacent pair has a merge. Short pieces use a plain scan
 * over a small array of pair ranks; long pieces a linked list of symbols plus a binary
 * min-heap keyed by (rank, position) with lazy invalidation (as Hugging Face tokenizers'
 * Word::merge_all), so a 1 MB word costs O(n log n), not O(n^2). A per-call cache maps each
 * piece already seen in this text to its ids, so shared tokenizers need no lock.
 */
#include "tok_ext.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qkv_tokenizer {
    int n_vocab;
    uint32_t *tok_off;   /* [V] offset of each token's bytes in blob */
    uint32_t *tok_len;   /* [V] */
    char *blob;          /* all token bytes */
    int32_t *str_table;  /* bytes -> id, open addressing, -1 = empty */
    uint32_t str_mask;
    int byte_id[256];    /* id of each single-byte token */
    /* merges: (left id, right id) -> rank and merged id, open addressing; one 16-byte
     * slot per pair so a probe touches one cache line */
    struct pair_slot {
        uint64_t key;    /* (a << 32 | b) + 1; 0 = empty */
        int32_t rank;
        int32_t merged;
    } *pairs;
    uint32_t pair_mask;
    int n_merges;
    int eot;
    qkv__tokx *ext; /* tokenizer.json, GGUF, llama2.c: everything goes to tokx.c */
};

/* ---- tables -------------------------------------------------------------------------- */

static uint32_t table_size_for(size_t n) { /* power of two >= 2n, at least 16 */
    uint32_t cap = 16;
    while ((size_t)cap < 2 * n) cap <<= 1;
    return cap;
}

static int lookup_bytes(const qkv_tokenizer *t, const void *bytes, size_t n) {
    uint32_t i = (uint32_t)qkv__hash_bytes(bytes, n) & t->str_mask;
    for (;;) {
        int32_t id = t->str_table[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->blob + t->tok_off[id], bytes, n) == 0) return id;
        i = (i + 1) & t->str_mask;
    }
}

/* Rank of merging (a, b), or INT_MAX when there is no such merge; *merged gets the id. */
static inline int pair_lookup(const qkv_tokenizer *t, int a, int b, int *merged) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)qkv__hash_u64(key) & t->pair_mask;
    for (;;) {
        const struct pair_slot *p = &t->pairs[i];
        if (p->key == 0) return INT_MAX;
        if (p->key == key) {
            *merged = p->merged;
            return p->rank;
        }
        i = (i + 1) & t->pair_mask;
    }
}

/* ---- loading ------------------------------------------------------------------------- */

void qkv_tokenizer_free(qkv_tokenizer *t) {
    if (!t) return;
    qkv__tokx_free(t->ext);
    free(t->tok_off);
    free(t->tok_len);
    free(t->blob);
    free(t->str_table);
    free(t->pairs);
    free(t);
}

/* Token string in GPT-2's alphabet -> raw bytes (out has room for n bytes: never longer).
 * Returns the byte count, or -1 with *bad_cp set when a character is outside the alphabet
 * or the string is not UTF-8 (bad_cp = 0xFFFFFFFF). */
static long alphabet_to_bytes(const qkv__bytemap *m, const uint8_t *s, size_t n, uint8_t *out,
                              uint32_t *bad_cp) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = qkv__utf8_decode(s + i, n - i, &cp);
        if (l == 0) {
            *bad_cp = 0xFFFFFFFFu;
            return -1;
        }
        if (cp >= 324 || m->byte_of_cp[cp] < 0) {
            *bad_cp = cp;
            return -1;
        }
        out[o++] = (uint8_t)m->byte_of_cp[cp];
        i += l;
    }
    return (long)o;
}

/* A short printable excerpt of a token for error messages. */
static const char *excerpt(const char *s, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127 && c != '"' && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        }
    }
    if (o >= cap) o = cap - 1;
    buf[o] = '\0';
    return buf;
}

static qkv_status parse_vocab(qkv_tokenizer *t, const qkv__bytemap *m, const char *path) {
    char *data = NULL;
    size_t len = 0;
    qkv_status st = qkv__read_file(path, QKV__TOK_MAX_FILE, &data, &len);
    if (st) return st;
    json_error_t err;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
    free(data);
    if (!root)
        return qkv__fail(QKV_EFORMAT, "%s: invalid JSON at line %d, column %d: %s", path,
                         err.line, err.column, err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return qkv__fail(QKV_EFORMAT, "%s: expected a JSON object {\"token\": id, ...}", path);
    }
    size_t n = json_object_size(root);
    if (n < 256 || n > QKV__TOK_MAX_VOCAB) {
        json_decref(root);
        return qkv__fail(QKV_EFORMAT, "%s: %zu entries; a byte-level vocabulary has 256 to %d",
                         path, n, QKV__TOK_MAX_VOCAB);
    }
    /* first pass: ids and total byte count */
    size_t total = 0;
    const char *key;
    json_t *val;
    char ebuf[96];
    t->tok_len = calloc(n, sizeof *t->tok_len);
    t->tok_off = calloc(n, sizeof *t->tok_off);
    if (!t->tok_len || !t->tok_off) {
        json_decref(root);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory for %zu tokens", path, n);
    }
    uint8_t *seen = calloc(n, 1);
    if (!seen) {
        json_decref(root);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    st = QKV_OK;
    json_object_foreach(root, key, val) {
        size_t klen = strlen(key);
        if (!json_is_integer(val)) {
            st = qkv__fail(QKV_EFORMAT, "%s: token \"%s\": id is not an integer", path,
                           excerpt(key, klen, ebuf, sizeof ebuf));
            break;
        }
        json_int_t id = json_integer_value(val);
        if (id < 0 || (size_t)id >= n) {
            st = qkv__fail(QKV_EFORMAT,
                           "%s: token \"%s\": id %lld out of range (%zu entries need ids 0..%zu)",
                           path, excerpt(key, klen, ebuf, sizeof ebuf), (long long)id, n, n - 1);
            break;
        }
        if (seen[id]) {
            st = qkv__fail(QKV_EFORMAT, "%s: id %lld appears twice (second: \"%s\")", path,
                           (long long)id, excerpt(key, klen, ebuf, sizeof ebuf));
            break;
        }
        seen[id] = 1;
        if (klen == 0 || klen > QKV__TOK_MAX_TOKEN_BYTES * 2) {
            st = qkv__fail(QKV_EFORMAT, "%s: id %lld: token of %zu bytes (allowed 1..%d)", path,
                           (long long)id, klen, QKV__TOK_MAX_TOKEN_BYTES * 2);
            break;
        }
        t->tok_len[id] = (uint32_t)klen; /* upper bound for now: bytes <= UTF-8 length */
        total += klen;
    }
    free(seen);
    if (st) {
        json_decref(root);
        return st;
    }
    /* second pass: decode each string through the byte alphabet into the blob */
    t->blob = malloc(total + 1);
    if (!t->blob) {
        json_decref(root);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) { /* offsets by id order */
        t->tok_off[i] = (uint32_t)at;
        at += t->tok_len[i];
    }
    json_object_foreach(root, key, val) {
        json_int_t id = json_integer_value(val);
        size_t klen = strlen(key);
        uint32_t bad = 0;
        long nb = alphabet_to_bytes(m, (const uint8_t *)key, klen,
                                    (uint8_t *)t->blob + t->tok_off[id], &bad);
        if (nb < 0) {
            st = bad == 0xFFFFFFFFu
                     ? qkv__fail(QKV_EFORMAT, "%s: id %lld: token is not valid UTF-8", path,
                                 (long long)id)
                     : qkv__fail(QKV_EFORMAT,
                                 "%s: token \"%s\" (id %lld): character U+%04X is not in GPT-2's "
                                 "byte-level alphabet",
                                 path, excerpt(key, klen, ebuf, sizeof ebuf), (long long)id,
                                 (unsigned)bad);
            break;
        }
        if (nb > QKV__TOK_MAX_TOKEN_BYTES) {
            st = qkv__fail(QKV_EFORMAT, "%s: id %lld: token of %ld bytes (at most %d)", path,
                           (long long)id, nb, QKV__TOK_MAX_TOKEN_BYTES);
            break;
        }
        t->tok_len[id] = (uint32_t)nb;
    }
    json_decref(root);
    if (st) return st;
    t->n_vocab = (int)n;
    /* bytes -> id table; distinct keys give distinct bytes (the alphabet is a bijection) */
    uint32_t cap = table_size_for(n);
    t->str_table = malloc((size_t)cap * sizeof *t->str_table);
    if (!t->str_table) return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    memset(t->str_table, 0xFF, (size_t)cap * sizeof *t->str_table);
    t->str_mask = cap - 1;
    for (size_t id = 0; id < n; id++) {
        uint32_t i = (uint32_t)qkv__hash_bytes(t->blob + t->tok_off[id], t->tok_len[id]) & t->str_mask;
        while (t->str_table[i] >= 0) i = (i + 1) & t->str_mask;
        t->str_table[i] = (int32_t)id;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        t->byte_id[b] = lookup_bytes(t, &byte, 1);
        if (t->byte_id[b] < 0)
            return qkv__fail(QKV_EFORMAT,
                             "%s: no token for byte 0x%02X (U+%04X); byte-level BPE needs all 256",
                             path, b, (unsigned)m->cp_of_byte[b]);
    }
    t->eot = lookup_bytes(t, "<|endoftext|>", 13);
    return QKV_OK;
}

/* Converts one merges.txt field to bytes in buf (cap >= field length). */
static qkv_status merge_field(const qkv_tokenizer *t, const qkv__bytemap *m, const char *path,
                              long line, const char *f, size_t n, uint8_t *buf, int *id,
                              long *nbytes) {
    uint32_t bad = 0;
    char ebuf[96];
    long nb = alphabet_to_bytes(m, (const uint8_t *)f, n, buf, &bad);
    if (nb < 0) {
        if (bad == 0xFFFFFFFFu)
            return qkv__fail(QKV_EFORMAT, "%s: line %ld: not valid UTF-8", path, line);
        return qkv__fail(QKV_EFORMAT,
                         "%s: line %ld: \"%s\": character U+%04X is not in GPT-2's byte alphabet",
                         path, line, excerpt(f, n, ebuf, sizeof ebuf), (unsigned)bad);
    }
    *id = lookup_bytes(t, buf, (size_t)nb);
    if (*id < 0)
        return qkv__fail(QKV_EFORMAT, "%s: line %ld: token \"%s\" is not in vocab.json", path,
                         line, excerpt(f, n, ebuf, sizeof ebuf));
    *nbytes = nb;
    return QKV_OK;
}

static qkv_status parse_merges(qkv_tokenizer *t, const qkv__bytemap *m, const char *path) {
    char *data = NULL;
    size_t len = 0;
    qkv_status st = qkv__read_file(path, QKV__TOK_MAX_FILE, &data, &len);
    if (st) return st;
    /* Size the table by what can actually be stored, not by the file's line count: 256 MiB
     * of blank lines would otherwise ask for a 2^30-slot (16 GiB) table (issue 14). A valid
     * merge (a, b) is a split of a vocabulary token m into two nonempty parts, and a, b are
     * fixed by m and the split point (bytes -> id is one-to-one), so there are at most
     * sum(len(m) - 1) distinct merges; duplicates are refused before they are stored. */
    size_t n_lines = 1, max_merges = 0;
    for (size_t i = 0; i < len; i++) n_lines += data[i] == '\n';
    for (int id = 0; id < t->n_vocab; id++) max_merges += t->tok_len[id] - 1; /* tok_len >= 1 */
    uint32_t cap = table_size_for(n_lines < max_merges ? n_lines : max_merges);
    t->pairs = calloc(cap, sizeof *t->pairs);
    uint8_t *buf = malloc(2 * QKV__TOK_MAX_TOKEN_BYTES + 16);
    if (!t->pairs || !buf) {
        free(data);
        free(buf);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory for %zu merges", path, n_lines);
    }
    t->pair_mask = cap - 1;
    size_t pos = 0;
    long line = 0;
    int rank = 0;
    char ebuf[96];
    while (pos < len && st == QKV_OK) {
        line++;
        char *s = data + pos;
        char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && s[n - 1] == '\r') n--;
        if (n == 0) continue;                                          /* blank lines */
        if (line == 1 && n >= 8 && memcmp(s, "#version", 8) == 0) continue; /* header */
        char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1))) {
            st = qkv__fail(QKV_EFORMAT, "%s: line %ld: \"%s\": expected two tokens separated by "
                                        "one space",
                           path, line, excerpt(s, n < 60 ? n : 60, ebuf, sizeof ebuf));
            break;
        }
        size_t na = (size_t)(sp - s), nb_ = n - na - 1;
        if (na + nb_ > 2 * QKV__TOK_MAX_TOKEN_BYTES) {
            st = qkv__fail(QKV_EFORMAT, "%s: line %ld: merge of %zu bytes is too long", path, line,
                           n);
            break;
        }
        int a, b;
        long la, lb;
        if ((st = merge_field(t, m, path, line, s, na, buf, &a, &la))) break;
        if ((st = merge_field(t, m, path, line, sp + 1, nb_, buf + la, &b, &lb))) break;
        /* buf now holds a's bytes then b's: the merged token */
        int merged = lookup_bytes(t, buf, (size_t)(la + lb));
        if (merged < 0) {
            st = qkv__fail(QKV_EFORMAT, "%s: line %ld: the merge of \"%s\" is not in vocab.json",
                           path, line, excerpt(s, n < 60 ? n : 60, ebuf, sizeof ebuf));
            break;
        }
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        uint32_t i = (uint32_t)qkv__hash_u64(key) & t->pair_mask;
        while (t->pairs[i].key != 0 && t->pairs[i].key != key) i = (i + 1) & t->pair_mask;
        if (t->pairs[i].key == key) {
            st = qkv__fail(QKV_EFORMAT, "%s: line %ld: merge \"%s\" appears twice", path, line,
                           excerpt(s, n < 60 ? n : 60, ebuf, sizeof ebuf));
            break;
        }
        t->pairs[i].key = key;
        t->pairs[i].rank = rank++;
        t->pairs[i].merged = merged;
    }
    t->n_merges = rank;
    free(buf);
    free(data);
    /* No merges means no token longer than a byte can ever be produced. That is right for a
     * bytes-only vocabulary (256 bytes, optionally <|endoftext|>, as `qkv vocab --size 257`
     * writes) and a sign of an empty or truncated file otherwise: refuse it rather than
     * silently encode every text one byte per token (issue 14). */
    if (st == QKV_OK && rank == 0) {
        int extra = t->n_vocab - 256 - (t->eot >= 0 ? 1 : 0);
        if (extra > 0)
            st = qkv__fail(QKV_EFORMAT,
                           "%s: no merges, but vocab.json has %d token%s beyond the 256 bytes%s; "
                           "an empty merges.txt fits only a bytes-only vocabulary (is the file "
                           "empty or truncated?)",
                           path, extra, extra == 1 ? "" : "s",
                           t->eot >= 0 ? " and <|endoftext|>" : "");
    }
    return st;
}

qkv_status qkv_tokenizer_load(const char *vocab_json_path, const char *merges_txt_path,
                              qkv_tokenizer **out) {
    if (!out) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_load: out is NULL");
    *out = NULL;
    if (!vocab_json_path || !merges_txt_path)
        return qkv__fail(QKV_EINVAL, "qkv_tokenizer_load: NULL path");
    qkv_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return qkv__fail(QKV_ENOMEM, "out of memory");
    qkv__bytemap m;
    qkv__bytemap_init(&m);
    qkv_status st = parse_vocab(t, &m, vocab_json_path);
    if (!st) st = parse_merges(t, &m, merges_txt_path);
    if (st) {
        qkv_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QKV_OK;
}

qkv_status qkv_tokenizer_load_dir(const char *dir, qkv_tokenizer **out) {
    if (!out) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_load_dir: out is NULL");
    *out = NULL;
    if (!dir) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_load_dir: dir is NULL");
    char *v = qkv__path_join(dir, "vocab.json");
    char *mg = qkv__path_join(dir, "merges.txt");
    qkv_status st = (v && mg) ? qkv_tokenizer_load(v, mg, out) : qkv__fail(QKV_ENOMEM, "out of memory");
    free(v);
    free(mg);
    return st;
}

int qkv_tokenizer_vocab_size(const qkv_tokenizer *t) {
    return t ? (t->ext ? t->ext->n_vocab : t->n_vocab) : 0;
}
int qkv_tokenizer_eot(const qkv_tokenizer *t) { return t ? (t->ext ? t->ext->eot : t->eot) : -1; }
int qkv_tokenizer_bos(const qkv_tokenizer *t) { return t && t->ext ? t->ext->bos : -1; }
int qkv_tokenizer_eos(const qkv_tokenizer *t) { return t ? (t->ext ? t->ext->eos : t->eot) : -1; }
int qkv__tokenizer_n_merges(const qkv_tokenizer *t) {
    return t ? (t->ext ? t->ext->n_merges : t->n_merges) : 0;
}

qkv_status qkv__tokenizer_wrap(qkv__tokx *x, qkv_tokenizer **out) {
    *out = NULL;
    qkv_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        qkv__tokx_free(x);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    t->ext = x;
    t->n_vocab = x->n_vocab;
    t->eot = x->eot;
    *out = t;
    return QKV_OK;
}

qkv_status qkv_tokenizer_token_bytes(const qkv_tokenizer *t, int id, const char **bytes,
                                     size_t *len) {
    if (!t || !bytes || !len) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_token_bytes: NULL argument");
    if (id < 0 || id >= t->n_vocab)
        return qkv__fail(QKV_ERANGE, "token id %d out of range (vocabulary of %d)", id, t->n_vocab);
    if (t->ext) {
        *bytes = t->ext->dblob + t->ext->doff[id];
        *len = t->ext->dlen[id];
        return QKV_OK;
    }
    *bytes = t->blob + t->tok_off[id];
    *len = t->tok_len[id];
    return QKV_OK;
}

qkv_status qkv_tokenizer_decode(const qkv_tokenizer *t, const int *ids, size_t n_ids, char **text,
                                size_t *len) {
    if (!t || !text || !len || (!ids && n_ids))
        return qkv__fail(QKV_EINVAL, "qkv_tokenizer_decode: NULL argument");
    *text = NULL;
    *len = 0;
    if (t->ext) return qkv__tokx_decode(t->ext, ids, n_ids, text, len);
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return qkv__fail(QKV_ERANGE, "token id %d (at position %zu) out of range (vocabulary of %d)",
                             ids[i], i, t->n_vocab);
        if (total > SIZE_MAX - QKV__TOK_MAX_TOKEN_BYTES - 1)
            return qkv__fail(QKV_ETOOLONG, "decode: %zu ids make too much text", n_ids);
        total += t->tok_len[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return qkv__fail(QKV_ENOMEM, "decode: cannot allocate %zu bytes", total + 1);
    size_t at = 0;
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(out + at, t->blob + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        at += t->tok_len[ids[i]];
    }
    out[at] = '\0';
    *text = out;
    *len = at;
    return QKV_OK;
}

/* ---- encoding ------------------------------------------------------------------------ */

typedef struct id_buf {
    int *ids;
    size_t n, cap;
} id_buf;

static int id_buf_reserve(id_buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap *= 2;
    int *p = realloc(b->ids, cap * sizeof *p);
    if (!p) return 0;
    b->ids = p;
    b->cap = cap;
    return 1;
}

/* Work space for long pieces, reused across pieces of one call. */
typedef struct bpe_work {
    int *sym, *prev, *next;
    uint64_t *heap; /* (rank << 32) | position: the min is the lowest rank, leftmost */
    size_t cap, heap_cap;
} bpe_work;

static void bpe_work_free(bpe_work *w) {
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->heap);
}


/* Counts merge steps, for the tests' check that long words stay near-linear. */
static _Thread_local uint64_t merge_work;
uint64_t qkv__tokenizer_merge_work(void) { return merge_work; }

#define SHORT_PIECE 48

/* BPE of one piece of n bytes; appends its ids to out. */
static qkv_status bpe_piece(const qkv_tokenizer *t, const uint8_t *s, size_t n, id_buf *out,
                            bpe_work *w) {
    if (!id_buf_reserve(out, n)) return qkv__fail(QKV_ENOMEM, "encode: out of memory");
    int *dst = out->ids + out->n;
    if (n == 1) {
        dst[0] = t->byte_id[s[0]];
        out->n += 1;
        return QKV_OK;
    }
    if (n <= SHORT_PIECE) {
        /* rank[i] is the rank of merging sym[i], sym[i + 1] */
        int sym[SHORT_PIECE], rank[SHORT_PIECE], merged[SHORT_PIECE];
        size_t m = n;
        for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[s[i]];
        for (size_t i = 0; i + 1 < m; i++) rank[i] = pair_lookup(t, sym[i], sym[i + 1], &merged[i]);
        while (m > 1) {
            size_t best = 0;
            for (size_t i = 1; i + 1 < m; i++)
                if (rank[i] < rank[best]) best = i;
            if (rank[best] == INT_MAX) break;
            merge_work += m;
            sym[best] = merged[best];
            for (size_t i = best + 1; i + 1 < m; i++) {
                sym[i] = sym[i + 1];
                rank[i] = rank[i + 1];
                merged[i] = merged[i + 1];
            }
            m--;
            if (best > 0) rank[best - 1] = pair_lookup(t, sym[best - 1], sym[best], &merged[best - 1]);
            if (best + 1 < m) rank[best] = pair_lookup(t, sym[best], sym[best + 1], &merged[best]);
        }
        memcpy(dst, sym, m * sizeof *sym);
        out->n += m;
        return QKV_OK;
    }
    if (n > (size_t)INT32_MAX)
        return qkv__fail(QKV_ETOOLONG, "encode: one piece of %zu bytes (at most 2^31)", n);
    if (n > w->cap) {
        free(w->sym);
        free(w->prev);
        free(w->next);
        w->sym = malloc(n * sizeof(int));
        w->prev = malloc(n * sizeof(int));
        w->next = malloc(n * sizeof(int));
        w->cap = w->sym && w->prev && w->next ? n : 0;
        if (!w->cap) return qkv__fail(QKV_ENOMEM, "encode: out of memory for a %zu-byte piece", n);
    }
    /* each merge pushes at most 2 entries: n initial + 2n pushes in all */
    size_t need_heap = 3 * n;
    if (need_heap > w->heap_cap) {
        free(w->heap);
        w->heap = malloc(need_heap * sizeof *w->heap);
        w->heap_cap = w->heap ? need_heap : 0;
        if (!w->heap) return qkv__fail(QKV_ENOMEM, "encode: out of memory for a %zu-byte piece", n);
    }
    int *sym = w->sym, *prev = w->prev, *next = w->next;
    uint64_t *heap = w->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        prev[i] = (int)i - 1;
        next[i] = i + 1 < n ? (int)i + 1 : -1;
    }
    int merged;
    for (size_t i = 0; i + 1 < n; i++) {
        int r = pair_lookup(t, sym[i], sym[i + 1], &merged);
        if (r != INT_MAX) qkv__heap_push(heap, &hn, ((uint64_t)(uint32_t)r << 32) | i);
    }
    while (hn > 0) {
        uint64_t top = qkv__heap_pop(heap, &hn);
        int r = (int)(top >> 32), pos = (int)(uint32_t)top;
        merge_work++;
        /* stale entries: the left symbol was absorbed, or the pair changed */
        if (sym[pos] < 0 || next[pos] < 0) continue;
        int right = next[pos];
        if (pair_lookup(t, sym[pos], sym[right], &merged) != r) continue;
        sym[pos] = merged;
        sym[right] = -1;
        next[pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = pos;
        if (prev[pos] >= 0) {
            int rl = pair_lookup(t, sym[prev[pos]], sym[pos], &merged);
            if (rl != INT_MAX) qkv__heap_push(heap, &hn, ((uint64_t)(uint32_t)rl << 32) | (uint32_t)prev[pos]);
        }
        if (next[pos] >= 0) {
            int rr = pair_lookup(t, sym[pos], sym[next[pos]], &merged);
            if (rr != INT_MAX) qkv__heap_push(heap, &hn, ((uint64_t)(uint32_t)rr << 32) | (uint32_t)pos);
        }
    }
    size_t m = 0;
    for (int i = 0; i >= 0; i = next[i]) dst[m++] = sym[i];
    out->n += m;
    return QKV_OK;
}

/* Per-call cache: piece bytes (pointing into the text) -> ids already written to out. */
typedef struct cache_entry {
    uint64_t hash;   /* 0 = empty */
    size_t text_off; /* the piece's first occurrence in the text */
    size_t out_off;  /* where its ids start in out */
    uint32_t len, n_ids;
} cache_entry;

typedef struct piece_cache {
    cache_entry *e;
    size_t cap, used;
} piece_cache;

#define CACHE_MAX_PIECE 256
#ifndef CACHE_MAX_SLOTS
#define CACHE_MAX_SLOTS (1 << 15) /* 32 bytes each: 1 MiB */
#endif

/* Encodes text[seg_start, seg_end) as a text of its own; cache offsets are into text. */
static qkv_status encode_plain(const qkv_tokenizer *t, const uint8_t *text, size_t seg_start,
                               size_t seg_end, id_buf *out, bpe_work *w, piece_cache *c) {
    qkv__pretok pt;
    qkv__pretok_init(&pt, (const char *)text + seg_start, seg_end - seg_start);
    size_t start, n;
    qkv_status st;
    while (qkv__pretok_next(&pt, &start, &n)) {
        start += seg_start;
        const uint8_t *p = text + start;
        if (n == 1) {
            if (!id_buf_reserve(out, 1)) return qkv__fail(QKV_ENOMEM, "encode: out of memory");
            out->ids[out->n++] = t->byte_id[p[0]];
            continue;
        }
        cache_entry *slot = NULL;
        uint64_t h = 0;
        if (c->e && n <= CACHE_MAX_PIECE) {
            h = qkv__hash_bytes(p, n) | 1;
            size_t i = (size_t)h & (c->cap - 1);
            for (;;) {
                cache_entry *e = &c->e[i];
                if (e->hash == 0) {
                    slot = e;
                    break;
                }
                if (e->hash == h && e->len == n && memcmp(text + e->text_off, p, n) == 0) {
                    if (!id_buf_reserve(out, e->n_ids)) return qkv__fail(QKV_ENOMEM, "encode: out of memory");
                    memcpy(out->ids + out->n, out->ids + e->out_off, e->n_ids * sizeof(int));
                    out->n += e->n_ids;
                    break;
                }
                i = (i + 1) & (c->cap - 1);
            }
            if (!slot) continue; /* cache hit */
        }
        size_t before = out->n;
        if ((st = bpe_piece(t, p, n, out, w))) return st;
        if (slot && c->used * 4 < c->cap * 3) { /* a full table keeps what it has */
            slot->hash = h;
            slot->text_off = start;
            slot->len = (uint32_t)n;
            slot->out_off = before;
            slot->n_ids = (uint32_t)(out->n - before);
            /* bounded: a table that outgrows the CPU caches costs more than it saves on
             * text with few repeats; the frequent pieces come early and stay */
            if (++c->used * 2 > c->cap && c->cap < CACHE_MAX_SLOTS) { /* grow: rehash */
                size_t ncap = c->cap * 2;
                cache_entry *ne = calloc(ncap, sizeof *ne);
                if (!ne) return qkv__fail(QKV_ENOMEM, "encode: out of memory");
                for (size_t i = 0; i < c->cap; i++) {
                    if (!c->e[i].hash) continue;
                    size_t j = (size_t)c->e[i].hash & (ncap - 1);
                    while (ne[j].hash) j = (j + 1) & (ncap - 1);
                    ne[j] = c->e[i];
                }
                free(c->e);
                c->e = ne;
                c->cap = ncap;
            }
        }
    }
    return QKV_OK;
}

qkv_status qkv_tokenizer_encode(qkv_tokenizer *t, const char *text, size_t len, int allow_special,
                                int **ids, size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len))
        return qkv__fail(QKV_EINVAL, "qkv_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (t->ext)
        return qkv__tokx_encode(t->ext, text, len, allow_special ? QKV_ENCODE_ALLOW_SPECIAL : 0,
                                ids, n_ids);
    id_buf out = {0};
    bpe_work w = {0};
    piece_cache c = {0};
    if (len >= 1024) { /* worth a cache */
        c.cap = 1024;
        c.e = calloc(c.cap, sizeof *c.e);
        if (!c.e) return qkv__fail(QKV_ENOMEM, "encode: out of memory");
    }
    if (!id_buf_reserve(&out, len / 4 + 16)) {
        free(c.e);
        return qkv__fail(QKV_ENOMEM, "encode: out of memory for %zu bytes of text", len);
    }
    qkv_status st = QKV_OK;
    const uint8_t *s = (const uint8_t *)text;
    static const char special[] = "<|endoftext|>";
    size_t at = 0;
    while (at < len && !st) {
        const uint8_t *hit = NULL;
        if (allow_special && t->eot >= 0)
            hit = memmem(s + at, len - at, special, sizeof special - 1);
        size_t end = hit ? (size_t)(hit - s) : len;
        /* the cache keys on text offsets, so one cache serves every segment */
        if ((st = encode_plain(t, s, at, end, &out, &w, &c))) break;
        if (hit) {
            if (!id_buf_reserve(&out, 1)) {
                st = qkv__fail(QKV_ENOMEM, "encode: out of memory");
                break;
            }
            out.ids[out.n++] = t->eot;
            at = end + sizeof special - 1;
        } else {
            at = len;
        }
    }
    bpe_work_free(&w);
    free(c.e);
    if (st) {
        free(out.ids);
        return st;
    }
    *ids = out.ids;
    *n_ids = out.n;
    return QKV_OK;
}

qkv_status qkv_tokenizer_encode_ex(qkv_tokenizer *t, const char *text, size_t len, unsigned flags,
                                   int **ids, size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len))
        return qkv__fail(QKV_EINVAL, "qkv_tokenizer_encode_ex: NULL argument");
    if (flags & ~(QKV_ENCODE_ALLOW_SPECIAL | QKV_ENCODE_ADD_SPECIAL))
        return qkv__fail(QKV_EINVAL, "qkv_tokenizer_encode_ex: unknown flags 0x%x", flags);
    *ids = NULL;
    *n_ids = 0;
    if (t->ext) return qkv__tokx_encode(t->ext, text, len, flags, ids, n_ids);
    /* GPT-2's files add nothing around the text */
    return qkv_tokenizer_encode(t, text, len, (flags & QKV_ENCODE_ALLOW_SPECIAL) != 0, ids, n_ids);
}
