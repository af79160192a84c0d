/*
 * tokx.c -- the general tokenizer engine behind tokenizer.json, GGUF and llama2.c vocabularies.
 *
 * Owns: the vocabulary tables, merges (ranked by a merges list, or by the merged token's score
 * as SentencePiece BPE and llama2.c do), added-token matching, normalizers, pre-tokenizers,
 * the BPE merge loop, the post-processor's special tokens, and decoding.
 *
 * DESIGN
 * encode(text) = [prefix] + for each stretch between added tokens (matched first, longest at
 * the leftmost position, special ones only with QKV_ENCODE_ALLOW_SPECIAL):
 *     normalize the stretch -> pre-tokenize it into pieces -> BPE each piece
 * + [suffix], where prefix/suffix (BOS, EOS...) come with QKV_ENCODE_ADD_SPECIAL only. This is
 * Hugging Face tokenizers' order (normalizers such as Prepend apply to each stretch) and
 * llama.cpp's (the SentencePiece space prefix goes on each stretch after a special token).
 * BPE: symbols start as bytes (byte-level) or characters (unknown characters become
 * <0xNN> byte tokens with byte fallback, else <unk>); adjacent pairs merge lowest rank
 * first, leftmost among equals, with a binary heap and lazy invalidation (O(n log n)).
 */
#include "tok_ext.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

qkv__tokx *qkv__tokx_new(void) {
    qkv__tokx *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->unk = x->bos = x->eos = x->eot = -1;
    for (int i = 0; i < 256; i++) x->byte_tok[i] = -1;
    x->kind = "tokenizer";
    return x;
}

void qkv__tokx_free(qkv__tokx *x) {
    if (!x) return;
    free(x->off);
    free(x->len);
    free(x->blob);
    free(x->doff);
    free(x->dlen);
    free(x->dblob);
    free(x->score);
    free(x->type);
    free(x->hidden);
    free(x->str_table);
    free(x->pairs);
    for (int i = 0; i < x->n_norm; i++) {
        free(x->norm[i].a);
        free(x->norm[i].b);
        qkv__re_free(x->norm[i].re);
    }
    free(x->norm);
    for (int i = 0; i < x->n_pre; i++) qkv__re_free(x->pre[i].re);
    free(x->pre);
    for (int i = 0; i < x->n_added; i++) free(x->added[i].s);
    free(x->added);
    free(x->prefix);
    free(x->suffix);
    free(x);
}

static uint32_t table_size_for(size_t n) {
    uint32_t cap = 16;
    while ((size_t)cap < 2 * n) cap <<= 1;
    return cap;
}

qkv_status qkv__tokx_set_vocab(qkv__tokx *x, int n, const char *const *s, const size_t *len,
                               const char *const *ds, const size_t *dlen) {
    if (n <= 0 || n > QKV__TOK_MAX_VOCAB)
        return qkv__fail(QKV_EFORMAT, "%d tokens (a vocabulary has 1 to %d)", n, QKV__TOK_MAX_VOCAB);
    size_t total = 0, dtotal = 0;
    for (int i = 0; i < n; i++) {
        if (len[i] > QKV__TOK_MAX_TOKEN_BYTES || dlen[i] > QKV__TOK_MAX_TOKEN_BYTES)
            return qkv__fail(QKV_EFORMAT, "token %d: %zu bytes (at most %d)", i, len[i],
                             QKV__TOK_MAX_TOKEN_BYTES);
        total += len[i];
        dtotal += dlen[i];
    }
    x->off = malloc((size_t)n * sizeof *x->off);
    x->len = malloc((size_t)n * sizeof *x->len);
    x->doff = malloc((size_t)n * sizeof *x->doff);
    x->dlen = malloc((size_t)n * sizeof *x->dlen);
    x->blob = malloc(total + 1);
    x->dblob = malloc(dtotal + 1);
    if (!x->score) x->score = calloc((size_t)n, sizeof *x->score);
    if (!x->type) {
        x->type = malloc((size_t)n);
        if (x->type) memset(x->type, QKV__TT_NORMAL, (size_t)n);
    }
    uint32_t cap = table_size_for((size_t)n);
    x->str_table = malloc((size_t)cap * sizeof *x->str_table);
    if (!x->off || !x->len || !x->doff || !x->dlen || !x->blob || !x->dblob || !x->score ||
        !x->type || !x->str_table)
        return qkv__fail(QKV_ENOMEM, "out of memory for %d tokens", n);
    size_t at = 0, dat = 0;
    for (int i = 0; i < n; i++) {
        x->off[i] = (uint32_t)at;
        x->len[i] = (uint32_t)len[i];
        if (len[i]) memcpy(x->blob + at, s[i], len[i]);
        at += len[i];
        x->doff[i] = (uint32_t)dat;
        x->dlen[i] = (uint32_t)dlen[i];
        if (dlen[i]) memcpy(x->dblob + dat, ds[i], dlen[i]);
        dat += dlen[i];
    }
    x->n_vocab = n;
    memset(x->str_table, 0xFF, (size_t)cap * sizeof *x->str_table);
    x->str_mask = cap - 1;
    for (int id = 0; id < n; id++) {
        if (x->hidden && x->hidden[id]) continue;
        if (qkv__tokx_lookup(x, x->blob + x->off[id], x->len[id]) >= 0) continue; /* first wins */
        uint32_t i = (uint32_t)qkv__hash_bytes(x->blob + x->off[id], x->len[id]) & x->str_mask;
        while (x->str_table[i] >= 0) i = (i + 1) & x->str_mask;
        x->str_table[i] = id;
    }
    return QKV_OK;
}

int qkv__tokx_lookup(const qkv__tokx *x, const void *s, size_t n) {
    uint32_t i = (uint32_t)qkv__hash_bytes(s, n) & x->str_mask;
    for (;;) {
        int32_t id = x->str_table[i];
        if (id < 0) return -1;
        if (x->len[id] == n && memcmp(x->blob + x->off[id], s, n) == 0) return id;
        i = (i + 1) & x->str_mask;
    }
}

qkv_status qkv__tokx_alloc_pairs(qkv__tokx *x, size_t n_max) {
    free(x->pairs);
    uint32_t cap = table_size_for(n_max);
    x->pairs = calloc(cap, sizeof *x->pairs);
    if (!x->pairs) return qkv__fail(QKV_ENOMEM, "out of memory for %zu merges", n_max);
    x->pair_mask = cap - 1;
    return QKV_OK;
}

int qkv__tokx_add_merge(qkv__tokx *x, int a, int b, int merged, int rank) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)qkv__hash_u64(key) & x->pair_mask, probes = 0;
    while (x->pairs[i].key) {
        if (x->pairs[i].key == key) return 0;
        i = (i + 1) & x->pair_mask;
        if (++probes > x->pair_mask) return -1;
    }
    x->pairs[i].key = key;
    x->pairs[i].rank = rank;
    x->pairs[i].merged = merged;
    x->n_merges++;
    return 1;
}

static inline int pair_rank(const qkv__tokx *x, int a, int b, int *merged) {
    if (!x->pairs) return INT_MAX;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)qkv__hash_u64(key) & x->pair_mask;
    for (;;) {
        const struct qkv__pair *p = &x->pairs[i];
        if (p->key == 0) return INT_MAX;
        if (p->key == key) {
            *merged = p->merged;
            return p->rank;
        }
        i = (i + 1) & x->pair_mask;
    }
}

typedef struct scored {
    float score;
    int id;
} scored;

static int cmp_scored(const void *pa, const void *pb) { /* best score first, then lower id */
    const scored *a = pa, *b = pb;
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return a->id - b->id;
}

/* SentencePiece BPE / llama2.c: any two tokens whose concatenation is a token merge into it;
 * the best score goes first (ties: leftmost). Every split of every token into two tokens is
 * a pair; its rank is the dense rank of the merged token's score. */
qkv_status qkv__tokx_score_merges(qkv__tokx *x) {
    int n = x->n_vocab;
    scored *order = malloc((size_t)n * sizeof *order);
    int *rank = malloc((size_t)n * sizeof *rank);
    if (!order || !rank) {
        free(order);
        free(rank);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        order[i].score = x->score[i];
        order[i].id = i;
    }
    qsort(order, (size_t)n, sizeof *order, cmp_scored);
    int r = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && order[i].score != order[i - 1].score) r++;
        rank[order[i].id] = r;
    }
    free(order);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += x->len[i] ? x->len[i] - 1 : 0;
    qkv_status st = qkv__tokx_alloc_pairs(x, total + 16);
    if (st) {
        free(rank);
        return st;
    }
    x->n_merges = 0;
    for (int t = 0; t < n; t++) {
        const char *s = x->blob + x->off[t];
        uint32_t l = x->len[t];
        if (qkv__tokx_lookup(x, s, l) != t) continue; /* a duplicate string */
        if (x->llama2c && !(x->score[t] > -1e10f)) continue; /* run.c starts from best = -1e10 */
        for (uint32_t k = 1; k < l; k++) {
            int a = qkv__tokx_lookup(x, s, k);
            if (a < 0) continue;
            int b = qkv__tokx_lookup(x, s + k, l - k);
            if (b < 0) continue;
            qkv__tokx_add_merge(x, a, b, t, rank[t]);
        }
    }
    free(rank);
    x->by_score = 1;
    return QKV_OK;
}
static int cmp_added_len(const void *pa, const void *pb) {
    const qkv__added *a = pa, *b = pb;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    return a->id - b->id;
}

qkv_status qkv__tokx_add_added(qkv__tokx *x, int id, const char *s, size_t n, int special,
                               int lstrip, int rstrip, int single_word, int normalized) {
    if (n == 0) return qkv__fail(QKV_EFORMAT, "added token %d is empty", id);
    qkv__added *a = realloc(x->added, (size_t)(x->n_added + 1) * sizeof *a);
    if (!a) return qkv__fail(QKV_ENOMEM, "out of memory");
    x->added = a;
    qkv__added *t = &a[x->n_added];
    t->s = malloc(n + 1);
    if (!t->s) return qkv__fail(QKV_ENOMEM, "out of memory");
    memcpy(t->s, s, n);
    t->s[n] = '\0';
    t->n = n;
    t->id = id;
    t->special = special;
    t->lstrip = lstrip;
    t->rstrip = rstrip;
    t->single_word = single_word;
    t->normalized = normalized;
    t->pass = 0;
    x->n_added++;
    if (n > x->added_max) x->added_max = n;
    return QKV_OK;
}

static qkv_status normalize_added(qkv__tokx *x);

qkv_status qkv__tokx_finish(qkv__tokx *x) {
    qkv_status nst = normalize_added(x);
    if (nst) return nst;
    if (x->n_added > 1) qsort(x->added, (size_t)x->n_added, sizeof *x->added, cmp_added_len);
    for (int i = 0; i < x->n_added; i++)
        if (x->added[i].id < 0 || x->added[i].id >= x->n_vocab)
            return qkv__fail(QKV_EFORMAT, "added token \"%.40s\": id %d outside the vocabulary (%d)",
                             x->added[i].s, x->added[i].id, x->n_vocab);
    if (x->byte_level) {
        for (int b = 0; b < 256; b++) {
            uint8_t c = (uint8_t)b;
            x->byte_tok[b] = qkv__tokx_lookup(x, &c, 1);
        }
    } else if (x->byte_fallback || x->llama2c) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            x->byte_tok[b] = qkv__tokx_lookup(x, name, 6);
        }
    }
    return QKV_OK;
}

/* ---- growing buffers ----------------------------------------------------------------- */

typedef struct ibuf {
    int *v;
    size_t n, cap;
} ibuf;

static int ibuf_push(ibuf *b, int id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int *p = realloc(b->v, cap * sizeof *p);
        if (!p) return 0;
        b->v = p;
        b->cap = cap;
    }
    b->v[b->n++] = id;
    return 1;
}

/* Pieces: [off, off + len) of one shared byte buffer. */
typedef struct plist {
    size_t *off, *len;
    size_t n, cap;
} plist;

static int plist_add(plist *p, size_t off, size_t len) {
    if (len == 0) return 1;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        size_t *o = realloc(p->off, cap * sizeof *o);
        if (!o) return 0;
        p->off = o;
        size_t *l = realloc(p->len, cap * sizeof *l);
        if (!l) return 0;
        p->len = l;
        p->cap = cap;
    }
    p->off[p->n] = off;
    p->len[p->n] = len;
    p->n++;
    return 1;
}

typedef struct work {
    qkv__buf text;      /* every piece's bytes */
    plist a, b;
    qkv__re_work *rw;
    int *sym, *prev, *next;
    uint64_t *heap;
    size_t cap, heap_cap;
    ibuf out;
    int at_start;       /* the stretch being encoded starts the text (Metaspace "first") */
} work;

static void work_free(work *w) {
    qkv__buf_free(&w->text);
    free(w->a.off);
    free(w->a.len);
    free(w->b.off);
    free(w->b.len);
    qkv__re_work_free(w->rw);
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->heap);
}

#define OOM() qkv__fail(QKV_ENOMEM, "encode: out of memory")

/* ---- normalizers ----------------------------------------------------------------------- */

static qkv_status normalize(const qkv__tokx *x, const char *s, size_t n, qkv__buf *out, work *w) {
    out->len = 0;
    if (!qkv__buf_reserve(out, n) || !qkv__buf_put(out, s, n)) return OOM(); /* allocated, even for "" */
    for (int k = 0; k < x->n_norm; k++) {
        const qkv__norm *nm = &x->norm[k];
        qkv__buf tmp = {0};
        switch (nm->kind) {
        case QKV__NORM_PREPEND:
            if (out->len == 0) continue;
            if (!qkv__buf_put(&tmp, nm->a, nm->na) || !qkv__buf_put(&tmp, out->data, out->len)) goto oom;
            break;
        case QKV__NORM_REPLACE:
            if (nm->re) {
                size_t at = 0, ms, me;
                while (at < out->len) {
                    int r = qkv__re_find(nm->re, &w->rw, (const uint8_t *)out->data, out->len, at, &ms, &me);
                    if (r < 0) goto oom;
                    if (r == 0 || me == ms) break;
                    if (!qkv__buf_put(&tmp, out->data + at, ms - at) || !qkv__buf_put(&tmp, nm->b, nm->nb))
                        goto oom;
                    at = me;
                }
                if (!qkv__buf_put(&tmp, out->data + at, out->len - at)) goto oom;
            } else {
                size_t i = 0;
                while (i < out->len) {
                    if (nm->na && i + nm->na <= out->len && memcmp(out->data + i, nm->a, nm->na) == 0) {
                        if (!qkv__buf_put(&tmp, nm->b, nm->nb)) goto oom;
                        i += nm->na;
                    } else {
                        if (!qkv__buf_put(&tmp, out->data + i, 1)) goto oom;
                        i++;
                    }
                }
            }
            break;
        case QKV__NORM_STRIP: {
            size_t a = 0, b = out->len;
            uint32_t c;
            size_t l;
            while (nm->left && a < b && (l = qkv__utf8_decode((const uint8_t *)out->data + a, b - a, &c)) &&
                   qkv__char_class(c) == QKV__CL_SPACE)
                a += l;
            while (nm->right && b > a) {
                size_t st = b - 1;
                while (st > a && ((uint8_t)out->data[st] & 0xC0) == 0x80) st--;
                l = qkv__utf8_decode((const uint8_t *)out->data + st, b - st, &c);
                if (l != b - st || qkv__char_class(c) != QKV__CL_SPACE) break;
                b = st;
            }
            if (!qkv__buf_put(&tmp, out->data + a, b - a)) goto oom;
            break;
        }
        default: {
            /* NFC / NFD / NFKC / NFKD / lowercase through utf8proc, on valid UTF-8 stretches;
             * invalid bytes pass through unchanged */
            int opt = UTF8PROC_STABLE;
            if (nm->kind == QKV__NORM_NFC) opt |= UTF8PROC_COMPOSE;
            else if (nm->kind == QKV__NORM_NFD) opt |= UTF8PROC_DECOMPOSE;
            else if (nm->kind == QKV__NORM_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
            else if (nm->kind == QKV__NORM_NFKD) opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
            size_t i = 0;
            while (i < out->len) {
                size_t j = i;
                uint32_t c;
                size_t l;
                while (j < out->len &&
                       (l = qkv__utf8_decode((const uint8_t *)out->data + j, out->len - j, &c)) && c != 0)
                    j += l;
                if (j > i) {
                    if (nm->kind == QKV__NORM_LOWERCASE) {
                        for (size_t q = i; q < j;) {
                            l = qkv__utf8_decode((const uint8_t *)out->data + q, j - q, &c);
                            uint8_t e[4];
                            size_t el = qkv__utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)c), e);
                            if (!qkv__buf_put(&tmp, e, el)) goto oom;
                            q += l;
                        }
                    } else {
                        utf8proc_uint8_t *r = NULL;
                        utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)out->data + i,
                                                           (utf8proc_ssize_t)(j - i), &r,
                                                           (utf8proc_option_t)opt);
                        if (rl < 0) {
                            free(r);
                            if (!qkv__buf_put(&tmp, out->data + i, j - i)) goto oom;
                        } else {
                            int ok = qkv__buf_put(&tmp, r, (size_t)rl);
                            free(r);
                            if (!ok) goto oom;
                        }
                    }
                }
                if (j < out->len) { /* an invalid byte or NUL: as is */
                    if (!qkv__buf_put(&tmp, out->data + j, 1)) goto oom;
                    j++;
                }
                i = j;
            }
            break;
        }
        }
        qkv__buf_free(out);
        *out = tmp;
        if (!out->data && !qkv__buf_reserve(out, 0)) return OOM();
        continue;
    oom:
        qkv__buf_free(&tmp);
        return OOM();
    }
    return QKV_OK;
}

/* Added tokens with normalized: true, when the file has a normalizer: matched after
 * normalization, against their own normalized content (HF's AddedVocabulary). */
static qkv_status normalize_added(qkv__tokx *x) {
    if (x->n_norm == 0) return QKV_OK;
    work w;
    memset(&w, 0, sizeof w);
    qkv_status st = QKV_OK;
    for (int k = 0; k < x->n_added && !st; k++) {
        qkv__added *a = &x->added[k];
        if (!a->normalized || a->pass) continue;
        qkv__buf nb = {0};
        st = normalize(x, a->s, a->n, &nb, &w);
        if (!st && nb.len == 0)
            st = qkv__fail(QKV_EFORMAT, "added token \"%.40s\" normalizes to nothing", a->s);
        if (st) {
            qkv__buf_free(&nb);
            break;
        }
        free(a->s);
        a->s = nb.data;
        a->n = nb.len;
        a->pass = 1;
        x->has_pass1 = 1;
        if (a->n > x->added_max) x->added_max = a->n;
    }
    work_free(&w);
    return st;
}

/* ---- pre-tokenizers ------------------------------------------------------------------ */

/* Splits piece [off, off + len) of w->text by a regex into dst with one of HF's behaviors. */
static qkv_status split_piece(const qkv__pre *p, work *w, size_t off, size_t len, plist *dst) {
    /* spans: (start, end, is_match) in order, tiling the piece */
    size_t at = 0, ms, me;
    size_t pend_off = 0, pend_len = 0; /* MERGED_NEXT: matched text waiting for the next */
    int have_prev = 0;                 /* MERGED_PREV: dst's last piece is this piece's */
    int prev_match = 0;                /* CONTIGUOUS */
    for (;;) {
        const uint8_t *s = (const uint8_t *)w->text.data + off;
        int r = qkv__re_find(p->re, &w->rw, s, len, at, &ms, &me);
        if (r < 0) return OOM();
        if (r == 1 && me == ms) { /* empty match: skip one character */
            size_t from = ms;
            do {
                if (ms >= len) {
                    r = 0;
                    break;
                }
                uint32_t c;
                size_t l = qkv__utf8_decode(s + ms, len - ms, &c);
                ms += l ? l : 1;
                r = qkv__re_find(p->re, &w->rw, s, len, ms, &ms, &me);
                if (r < 0) return OOM();
            } while (r == 1 && me == ms);
            (void)from;
        }
        size_t gap_end = r ? ms : len;
        /* invert: matches and gaps swap roles */
        for (int part = 0; part < 2; part++) {
            size_t a = part == 0 ? at : ms, b = part == 0 ? gap_end : me;
            if (part == 1 && !r) break;
            if (b <= a) continue;
            int is_match = (part == 1) != (p->invert != 0);
            size_t po = off + a, pl = b - a;
            switch (p->behavior) {
            case QKV__SPLIT_REMOVED:
                if (!is_match && !plist_add(dst, po, pl)) return OOM();
                break;
            case QKV__SPLIT_ISOLATED:
                if (!plist_add(dst, po, pl)) return OOM();
                break;
            case QKV__SPLIT_MERGED_PREV:
                if (is_match && have_prev) dst->len[dst->n - 1] += pl;
                else if (!plist_add(dst, po, pl)) return OOM();
                have_prev = 1;
                break;
            case QKV__SPLIT_MERGED_NEXT:
                if (is_match) {
                    if (pend_len) {
                        if (!plist_add(dst, pend_off, pend_len)) return OOM();
                    }
                    pend_off = po;
                    pend_len = pl;
                } else if (pend_len) {
                    if (!plist_add(dst, pend_off, pend_len + pl)) return OOM();
                    pend_len = 0;
                } else if (!plist_add(dst, po, pl)) {
                    return OOM();
                }
                break;
            case QKV__SPLIT_CONTIGUOUS:
                if (is_match && prev_match && dst->n) dst->len[dst->n - 1] += pl;
                else if (!plist_add(dst, po, pl)) return OOM();
                prev_match = is_match;
                break;
            }
        }
        if (!r) break;
        at = me;
        if (at >= len) break;
    }
    if (pend_len && !plist_add(dst, pend_off, pend_len)) return OOM();
    return QKV_OK;
}

static int is_numeric(uint32_t c) { return qkv__char_class(c) == QKV__CL_NUMBER; }

static qkv_status pre_one(const qkv__pre *p, work *w, size_t off, size_t len, plist *dst) {
    switch (p->kind) {
    case QKV__PRE_SPLIT: return split_piece(p, w, off, len, dst);
    case QKV__PRE_BYTELEVEL: {
        if (p->add_prefix_space && !(len > 0 && w->text.data[off] == ' ')) {
            size_t no = w->text.len;
            if (!qkv__buf_put(&w->text, " ", 1)) return OOM();
            if (!qkv__buf_put(&w->text, w->text.data + off, len)) return OOM(); /* its own bytes */
            off = no;
            len += 1;
        }
        if (!p->gpt2_fast) return plist_add(dst, off, len) ? QKV_OK : OOM();
        qkv__pretok pt;
        qkv__pretok_init(&pt, w->text.data + off, len);
        size_t st, n;
        while (qkv__pretok_next(&pt, &st, &n))
            if (!plist_add(dst, off + st, n)) return OOM();
        return QKV_OK;
    }
    case QKV__PRE_DIGITS: {
        const uint8_t *s = (const uint8_t *)w->text.data + off;
        size_t i = 0, start = 0;
        int in_digits = 0;
        while (i < len) {
            uint32_t c;
            size_t l = qkv__utf8_decode(s + i, len - i, &c);
            int d = l && is_numeric(c);
            if (!l) l = 1;
            if (d && (p->individual || !in_digits)) {
                if (!plist_add(dst, off + start, i - start)) return OOM();
                start = i;
            } else if (!d && in_digits) {
                if (!plist_add(dst, off + start, i - start)) return OOM();
                start = i;
            }
            in_digits = d;
            i += l;
        }
        return plist_add(dst, off + start, len - start) ? QKV_OK : OOM();
    }
    case QKV__PRE_METASPACE: {
        /* spaces -> replacement; prepend it (always, or first piece only); split so each
         * replacement starts a piece */
        size_t no = w->text.len;
        int prep = p->prepend == 2 || (p->prepend == 1 && off == 0 && w->at_start);
        if (prep && !(len >= p->nrepl && memcmp(w->text.data + off, p->repl, p->nrepl) == 0))
            if (!qkv__buf_put(&w->text, p->repl, p->nrepl)) return OOM();
        for (size_t i = 0; i < len; i++) {
            char c = w->text.data[off + i];
            int ok = c == ' ' ? qkv__buf_put(&w->text, p->repl, p->nrepl) : qkv__buf_put(&w->text, &c, 1);
            if (!ok) return OOM();
        }
        size_t end = w->text.len;
        if (!p->split) return plist_add(dst, no, end - no) ? QKV_OK : OOM();
        size_t start = no;
        for (size_t i = no; i + p->nrepl <= end; i++) {
            if (i > start && memcmp(w->text.data + i, p->repl, p->nrepl) == 0) {
                if (!plist_add(dst, start, i - start)) return OOM();
                start = i;
            }
        }
        return plist_add(dst, start, end - start) ? QKV_OK : OOM();
    }
    case QKV__PRE_WHITESPACE_SPLIT: {
        const uint8_t *s = (const uint8_t *)w->text.data + off;
        size_t i = 0, start = 0;
        while (i < len) {
            uint32_t c;
            size_t l = qkv__utf8_decode(s + i, len - i, &c);
            if (l && qkv__char_class(c) == QKV__CL_SPACE) {
                if (!plist_add(dst, off + start, i - start)) return OOM();
                start = i + l;
            }
            i += l ? l : 1;
        }
        return plist_add(dst, off + start, len - start) ? QKV_OK : OOM();
    }
    }
    return plist_add(dst, off, len) ? QKV_OK : OOM();
}

/* ---- BPE ------------------------------------------------------------------------------ */


static int grow_sym(work *w, size_t n) {
    if (n <= w->cap) return 1;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < n) cap *= 2;
    int *a = realloc(w->sym, cap * sizeof *a);
    if (!a) return 0;
    w->sym = a;
    a = realloc(w->prev, cap * sizeof *a);
    if (!a) return 0;
    w->prev = a;
    a = realloc(w->next, cap * sizeof *a);
    if (!a) return 0;
    w->next = a;
    uint64_t *h = realloc(w->heap, 3 * cap * sizeof *h);
    if (!h) return 0;
    w->heap = h;
    w->cap = cap;
    return 1;
}

static qkv_status bpe(const qkv__tokx *x, const uint8_t *s, size_t n, work *w) {
    if (n == 0) return QKV_OK;
    if (x->ignore_merges) {
        int id = qkv__tokx_lookup(x, s, n);
        if (id >= 0) return ibuf_push(&w->out, id) ? QKV_OK : OOM();
    }
    if (n > (size_t)INT32_MAX / 2) return qkv__fail(QKV_ETOOLONG, "encode: one piece of %zu bytes", n);
    if (!grow_sym(w, n)) return OOM();
    int *sym = w->sym, *prev = w->prev, *next = w->next;
    size_t m = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n;) {
        if (x->byte_level) {
            int id = x->byte_tok[s[i]];
            if (id >= 0) sym[m++] = id;
            i++;
            continue;
        }
        uint32_t c;
        size_t l = qkv__utf8_decode(s + i, n - i, &c);
        if (l == 0) l = 1;
        int id = qkv__tokx_lookup(x, s + i, l);
        if (id >= 0) {
            sym[m++] = id;
            last_unk = 0;
        } else {
            int ok = x->byte_fallback || x->llama2c;
            for (size_t k = 0; ok && k < l; k++) ok = x->byte_tok[s[i + k]] >= 0;
            if (ok) {
                for (size_t k = 0; k < l; k++) sym[m++] = x->byte_tok[s[i + k]];
                last_unk = 0;
            } else if (x->unk >= 0) {
                if (!(x->fuse_unk && last_unk)) sym[m++] = x->unk;
                last_unk = 1;
            }
        }
        i += l;
    }
    if (m == 0) return QKV_OK;
    size_t hn = 0;
    uint64_t *heap = w->heap;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int)i - 1;
        next[i] = i + 1 < m ? (int)i + 1 : -1;
    }
    int merged;
    for (size_t i = 0; i + 1 < m; i++) {
        int r = pair_rank(x, sym[i], sym[i + 1], &merged);
        if (r != INT_MAX) qkv__heap_push(heap, &hn, ((uint64_t)(uint32_t)r << 32) | i);
    }
    while (hn > 0) {
        uint64_t top = qkv__heap_pop(heap, &hn);
        int r = (int)(top >> 32), pos = (int)(uint32_t)top;
        if (sym[pos] < 0 || next[pos] < 0) continue;
        int right = next[pos];
        if (pair_rank(x, sym[pos], sym[right], &merged) != r) continue;
        sym[pos] = merged;
        sym[right] = -1;
        next[pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = pos;
        if (prev[pos] >= 0) {
            int rl = pair_rank(x, sym[prev[pos]], sym[pos], &merged);
            if (rl != INT_MAX) qkv__heap_push(heap, &hn, ((uint64_t)(uint32_t)rl << 32) | (uint32_t)prev[pos]);
        }
        if (next[pos] >= 0) {
            int rr = pair_rank(x, sym[pos], sym[next[pos]], &merged);
            if (rr != INT_MAX) qkv__heap_push(heap, &hn, ((uint64_t)(uint32_t)rr << 32) | (uint32_t)pos);
        }
    }
    for (int i = 0; i >= 0; i = next[i])
        if (!ibuf_push(&w->out, sym[i])) return OOM();
    return QKV_OK;
}

/* Normalize, pre-tokenize and BPE one stretch of text between added tokens. */
static const qkv__added *added_at(const qkv__tokx *x, const uint8_t *s, size_t n, size_t i,
                                  unsigned flags, int pass);
static int is_ws(uint8_t c);

/* Pre-tokenize and BPE n bytes of normalized text. */
static qkv_status pre_bpe(const qkv__tokx *x, const char *s, size_t n, work *w) {
    qkv_status st;
    if (n == 0) return QKV_OK;
    w->text.len = 0;
    if (!qkv__buf_put(&w->text, s, n)) return OOM();
    w->a.n = 0;
    if (!plist_add(&w->a, 0, w->text.len)) return OOM();
    for (int k = 0; k < x->n_pre; k++) {
        w->b.n = 0;
        for (size_t i = 0; i < w->a.n; i++)
            if ((st = pre_one(&x->pre[k], w, w->a.off[i], w->a.len[i], &w->b))) return st;
        plist t = w->a;
        w->a = w->b;
        w->b = t;
    }
    for (size_t i = 0; i < w->a.n; i++)
        if ((st = bpe(x, (const uint8_t *)w->text.data + w->a.off[i], w->a.len[i], w))) return st;
    return QKV_OK;
}

/* Normalize one stretch between (raw) added tokens, split it at the normalized added tokens,
 * pre-tokenize and BPE the rest. */
static qkv_status encode_stretch(const qkv__tokx *x, const char *s, size_t n, unsigned flags, work *w) {
    if (n == 0) return QKV_OK;
    qkv__buf norm = {0};
    qkv_status st = normalize(x, s, n, &norm, w);
    if (st) {
        qkv__buf_free(&norm);
        return st;
    }
    const uint8_t *u = (const uint8_t *)norm.data;
    size_t seg = 0, i = 0;
    while (!st && x->has_pass1 && i < norm.len) {
        const qkv__added *a = added_at(x, u, norm.len, i, flags, 1);
        if (!a) {
            i++;
            continue;
        }
        size_t end = i, next = i + a->n;
        if (a->lstrip)
            while (end > seg && is_ws(u[end - 1])) end--;
        if (a->rstrip)
            while (next < norm.len && is_ws(u[next])) next++;
        st = pre_bpe(x, norm.data + seg, end - seg, w);
        if (!st && !ibuf_push(&w->out, a->id)) st = OOM();
        seg = i = next;
    }
    if (!st) st = pre_bpe(x, norm.data + seg, norm.len - seg, w);
    qkv__buf_free(&norm);
    return st;
}

static int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_wordc(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }

/* The added token of this pass at s[i] (longest), or NULL. */
static const qkv__added *added_at(const qkv__tokx *x, const uint8_t *s, size_t n, size_t i,
                                  unsigned flags, int pass) {
    for (int k = 0; k < x->n_added; k++) {
        const qkv__added *a = &x->added[k];
        if (a->pass != pass) continue;
        if (a->special && !(flags & QKV_ENCODE_ALLOW_SPECIAL)) continue;
        if (a->n > n - i || (uint8_t)a->s[0] != s[i] || memcmp(a->s, s + i, a->n) != 0) continue;
        if (a->single_word && ((i > 0 && is_wordc(s[i - 1])) || (i + a->n < n && is_wordc(s[i + a->n]))))
            continue;
        return a;
    }
    return NULL;
}

qkv_status qkv__tokx_encode(const qkv__tokx *x, const char *text, size_t len, unsigned flags,
                            int **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    work w;
    memset(&w, 0, sizeof w);
    qkv_status st = QKV_OK;
    char *own = NULL;
    if (flags & QKV_ENCODE_ADD_SPECIAL)
        for (int i = 0; i < x->n_prefix; i++)
            if (!ibuf_push(&w.out, x->prefix[i])) st = OOM();
    if (x->llama2c && len > 0) { /* run.c: a dummy prefix " " when the text is not empty */
        own = malloc(len + 1);
        if (!own) {
            free(w.out.v);
            return OOM();
        }
        own[0] = ' ';
        memcpy(own + 1, text, len);
        text = own;
        len++;
    }
    const uint8_t *s = (const uint8_t *)text;
    /* first bytes any allowed added token starts with */
    uint8_t first[256] = {0};
    for (int k = 0; k < x->n_added; k++)
        if (x->added[k].pass == 0 && (!x->added[k].special || (flags & QKV_ENCODE_ALLOW_SPECIAL)))
            first[(uint8_t)x->added[k].s[0]] = 1;
    size_t seg = 0, i = 0;
    while (!st && i < len) {
        const qkv__added *a = first[s[i]] ? added_at(x, s, len, i, flags, 0) : NULL;
        if (!a) {
            i++;
            continue;
        }
        size_t end = i, next = i + a->n;
        if (a->lstrip)
            while (end > seg && is_ws(s[end - 1])) end--;
        if (a->rstrip)
            while (next < len && is_ws(s[next])) next++;
        w.at_start = seg == 0;
        st = encode_stretch(x, text + seg, end - seg, flags, &w);
        if (!st && !ibuf_push(&w.out, a->id)) st = OOM();
        seg = i = next;
    }
    w.at_start = seg == 0;
    if (!st) st = encode_stretch(x, text + seg, len - seg, flags, &w);
    if (!st && (flags & QKV_ENCODE_ADD_SPECIAL))
        for (int k = 0; k < x->n_suffix; k++)
            if (!ibuf_push(&w.out, x->suffix[k])) st = OOM();
    free(own);
    int *out = w.out.v;
    size_t n = w.out.n;
    w.out.v = NULL;
    work_free(&w);
    if (st) {
        free(out);
        return st;
    }
    if (!out) out = malloc(sizeof *out); /* an empty result is still a buffer to free */
    if (!out) return OOM();
    *ids = out;
    *n_ids = n;
    return QKV_OK;
}

qkv_status qkv__tokx_decode(const qkv__tokx *x, const int *ids, size_t n_ids, char **text,
                            size_t *len) {
    qkv__buf b = {0};
    for (size_t i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= x->n_vocab) {
            qkv__buf_free(&b);
            return qkv__fail(QKV_ERANGE, "token id %d (at position %zu) out of range (vocabulary of %d)",
                             id, i, x->n_vocab);
        }
        const char *p = x->dblob + x->doff[id];
        size_t l = x->dlen[id];
        int lead = i == 0 || (x->llama2c && ids[i - 1] == x->bos);
        if (x->strip_lead && lead && l > 0 && p[0] == ' ') {
            p++;
            l--;
        }
        qkv__buf_put(&b, p, l);
    }
    if (!(*text = qkv__buf_detach(&b, len))) return qkv__fail(QKV_ENOMEM, "decode: out of memory");
    return QKV_OK;
}
