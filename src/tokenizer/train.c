/*
 * train.c -- a GPT-2-style byte-level BPE trainer (`qkv vocab`).
 *
 * 1. The corpus is cut with GPT-2's pre-tokenizer (pretok.c) and each distinct piece is
 *    counted once in a hash map (pieces point into the corpus; nothing is copied).
 * 2. Each distinct piece becomes a word of byte tokens with its count as weight; the
 *    count of every adjacent pair is summed, and each pair keeps the list of words it
 *    occurs in.
 * 3. Repeatedly the most frequent pair (ties: the smaller left id, then the smaller right
 *    id) is merged in the words that hold it, and only the pairs next to each merged
 *    occurrence change count (incremental updates; a max-heap with lazy invalidation
 *    finds the next pair).
 * The vocabulary is the 256 byte tokens in GPT-2's order (id 0 = "!", as in GPT-2's own
 * vocabulary), then the merged tokens in the order they were made, then "<|endoftext|>".
 * A merge whose result already exists as a token (two merge paths to the same bytes) is
 * still written to merges.txt, with the existing id, and adds no token.
 */
#include "tok_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRAIN_MAX_TOKEN_BYTES 256 /* merged tokens longer than this are not made */

typedef struct vec_i32 {
    int32_t *v;
    uint32_t n, cap;
} vec_i32;

static int vec_push(vec_i32 *a, int32_t x) {
    if (a->n == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 4;
        int32_t *p = realloc(a->v, (size_t)cap * sizeof *p);
        if (!p) return 0;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 1;
}

typedef struct heap_entry {
    int64_t count;
    int32_t pair;
} heap_entry;

typedef struct trainer {
    /* words: distinct pieces as token sequences, in one pool */
    int32_t *sym;        /* pool of symbols */
    size_t *word_start;  /* [n_words] */
    uint32_t *word_len;  /* [n_words] current length (shrinks as merges apply) */
    int64_t *word_freq;  /* [n_words] */
    uint32_t *word_stamp;/* [n_words] last merge that visited the word */
    size_t n_words;
    /* pairs */
    int32_t *pa, *pb;    /* [n_pairs] */
    int64_t *pcount;
    vec_i32 *pwords;     /* words the pair was seen in (may hold stale entries) */
    uint8_t *pbanned;    /* never merge (result too long, or the special token's bytes) */
    uint32_t *pdirty;    /* last merge that raised the pair's count */
    vec_i32 dirty;       /* pairs raised during the current merge */
    uint32_t stamp;      /* current merge number (0 while counting) */
    size_t n_pairs, pairs_cap;
    uint64_t *pkey;      /* hash: (a << 32 | b) + 1 -> index in pidx; 0 = empty */
    int32_t *pidx;
    size_t pmask;
    /* tokens */
    qkv__buf blob;       /* bytes of every token */
    size_t *tok_off;
    uint32_t *tok_len;
    int n_tokens, tok_cap;
    int32_t *ttable;     /* bytes -> token id, open addressing, -1 empty */
    size_t tmask;
    /* merges made */
    int32_t *ma, *mb;
    int n_merges;
    /* heap */
    heap_entry *heap;
    size_t hn, hcap;
} trainer;

static void trainer_free(trainer *t) {
    free(t->sym);
    free(t->word_start);
    free(t->word_len);
    free(t->word_freq);
    free(t->word_stamp);
    free(t->pa);
    free(t->pb);
    free(t->pcount);
    if (t->pwords)
        for (size_t i = 0; i < t->n_pairs; i++) free(t->pwords[i].v);
    free(t->pwords);
    free(t->pbanned);
    free(t->pdirty);
    free(t->dirty.v);
    free(t->pkey);
    free(t->pidx);
    qkv__buf_free(&t->blob);
    free(t->tok_off);
    free(t->tok_len);
    free(t->ttable);
    free(t->ma);
    free(t->mb);
    free(t->heap);
}

/* heap order: more frequent first; ties by smaller (left id, right id) */
static int heap_before(const trainer *t, heap_entry x, heap_entry y) {
    if (x.count != y.count) return x.count > y.count;
    if (t->pa[x.pair] != t->pa[y.pair]) return t->pa[x.pair] < t->pa[y.pair];
    return t->pb[x.pair] < t->pb[y.pair];
}

static int heap_push(trainer *t, int32_t pair) {
    if (t->hn == t->hcap) {
        size_t cap = t->hcap ? t->hcap * 2 : 1024;
        heap_entry *p = realloc(t->heap, cap * sizeof *p);
        if (!p) return 0;
        t->heap = p;
        t->hcap = cap;
    }
    heap_entry e = {t->pcount[pair], pair};
    size_t i = t->hn++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(t, e, t->heap[parent])) break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = e;
    return 1;
}

static heap_entry heap_pop(trainer *t) {
    heap_entry top = t->heap[0], e = t->heap[--t->hn];
    size_t i = 0, n = t->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(t, t->heap[c + 1], t->heap[c])) c++;
        if (!heap_before(t, t->heap[c], e)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = e;
    return top;
}

static int pairs_grow_table(trainer *t) {
    size_t cap = (t->pmask + 1) * 2;
    uint64_t *k = calloc(cap, sizeof *k);
    int32_t *v = malloc(cap * sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        return 0;
    }
    for (size_t i = 0; i <= t->pmask; i++) {
        if (!t->pkey[i]) continue;
        size_t j = (size_t)qkv__hash_u64(t->pkey[i]) & (cap - 1);
        while (k[j]) j = (j + 1) & (cap - 1);
        k[j] = t->pkey[i];
        v[j] = t->pidx[i];
    }
    free(t->pkey);
    free(t->pidx);
    t->pkey = k;
    t->pidx = v;
    t->pmask = cap - 1;
    return 1;
}

/* Index of pair (a, b), created with count 0 when new; -1 when out of memory. */
static int32_t pair_get(trainer *t, int32_t a, int32_t b) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)qkv__hash_u64(key) & t->pmask;
    while (t->pkey[i]) {
        if (t->pkey[i] == key) return t->pidx[i];
        i = (i + 1) & t->pmask;
    }
    if (t->n_pairs == t->pairs_cap) {
        size_t cap = t->pairs_cap ? t->pairs_cap * 2 : 4096;
        int32_t *pa = realloc(t->pa, cap * sizeof *pa);
        if (pa) t->pa = pa;
        int32_t *pb = realloc(t->pb, cap * sizeof *pb);
        if (pb) t->pb = pb;
        int64_t *pc = realloc(t->pcount, cap * sizeof *pc);
        if (pc) t->pcount = pc;
        vec_i32 *pw = realloc(t->pwords, cap * sizeof *pw);
        if (pw) t->pwords = pw;
        uint8_t *pban = realloc(t->pbanned, cap);
        if (pban) t->pbanned = pban;
        uint32_t *pd = realloc(t->pdirty, cap * sizeof *pd);
        if (pd) t->pdirty = pd;
        if (!pa || !pb || !pc || !pw || !pban || !pd) return -1;
        t->pairs_cap = cap;
    }
    int32_t idx = (int32_t)t->n_pairs++;
    t->pa[idx] = a;
    t->pb[idx] = b;
    t->pcount[idx] = 0;
    t->pwords[idx] = (vec_i32){0};
    t->pbanned[idx] = 0;
    t->pdirty[idx] = 0;
    t->pkey[i] = key;
    t->pidx[i] = idx;
    if (t->n_pairs * 2 > t->pmask + 1 && !pairs_grow_table(t)) return -1;
    return idx;
}

/* count of (a, b) += delta for word w; a rise marks the pair for the heap (once a merge). */
static int pair_add(trainer *t, int32_t a, int32_t b, int64_t delta, int32_t w) {
    int32_t p = pair_get(t, a, b);
    if (p < 0) return 0;
    t->pcount[p] += delta;
    if (delta > 0) {
        vec_i32 *l = &t->pwords[p];
        if ((l->n == 0 || l->v[l->n - 1] != w) && !vec_push(l, w)) return 0;
        if (t->pdirty[p] != t->stamp) {
            t->pdirty[p] = t->stamp;
            if (!vec_push(&t->dirty, p)) return 0;
        }
    }
    return 1;
}

static int token_lookup(const trainer *t, const char *b, size_t n) {
    size_t i = (size_t)qkv__hash_bytes(b, n) & t->tmask;
    while (t->ttable[i] >= 0) {
        int id = t->ttable[i];
        if (t->tok_len[id] == n && memcmp(t->blob.data + t->tok_off[id], b, n) == 0) return id;
        i = (i + 1) & t->tmask;
    }
    return -1;
}

/* Adds a token (bytes a then b); returns its id, or -1 when out of memory. */
static int token_add(trainer *t, const char *a, size_t na, const char *b, size_t nb) {
    if (t->n_tokens == t->tok_cap) return -1; /* sized up front */
    size_t n = na + nb, off = t->blob.len;
    if (!qkv__buf_put(&t->blob, a, na) || !qkv__buf_put(&t->blob, b, nb)) return -1;
    int id = t->n_tokens++;
    t->tok_off[id] = off;
    t->tok_len[id] = (uint32_t)n;
    size_t i = (size_t)qkv__hash_bytes(t->blob.data + off, n) & t->tmask;
    while (t->ttable[i] >= 0) i = (i + 1) & t->tmask;
    t->ttable[i] = id;
    return id;
}

/* Merges every occurrence of pair p (a, b) -> id in word w, updating neighbour counts.
 * Sequential semantics: the left neighbour is the already-updated symbol, the right one
 * the original; summed over occurrences, this gives the exact change. */
static int merge_in_word(trainer *t, int32_t w, int32_t a, int32_t b, int32_t id) {
    int32_t *s = t->sym + t->word_start[w];
    uint32_t n = t->word_len[w], o = 0;
    int64_t f = t->word_freq[w];
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (!pair_add(t, a, b, -f, w)) return 0;
            if (o > 0) {
                if (!pair_add(t, s[o - 1], a, -f, w) || !pair_add(t, s[o - 1], id, f, w)) return 0;
            }
            if (i + 2 < n) {
                if (!pair_add(t, b, s[i + 2], -f, w) || !pair_add(t, id, s[i + 2], f, w)) return 0;
            }
            s[o++] = id;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    t->word_len[w] = o;
    return 1;
}

/* ---- writing ------------------------------------------------------------------------- */

/* Token bytes in GPT-2's alphabet, JSON-escaped when json. */
static void put_token(qkv__buf *b, const qkv__bytemap *m, const char *s, size_t n, int json) {
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = m->cp_of_byte[(uint8_t)s[i]];
        if (json && (cp == '"' || cp == '\\')) qkv__buf_put(b, "\\", 1);
        uint8_t u[4];
        qkv__buf_put(b, u, qkv__utf8_encode(cp, u));
    }
}

static qkv_status write_outputs(const trainer *t, const qkv__bytemap *m, const char *out_dir) {
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return qkv__fail(QKV_EIO, "%s: cannot create the folder: %s", out_dir, strerror(errno));
    struct stat st;
    if (stat(out_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return qkv__fail(QKV_EIO, "%s: not a folder", out_dir);
    qkv__buf v = {0}, mg = {0};
    char num[32];
    qkv__buf_put(&v, "{", 1);
    for (int id = 0; id < t->n_tokens; id++) {
        qkv__buf_put(&v, id ? ",\n\"" : "\"", id ? 3 : 1);
        put_token(&v, m, t->blob.data + t->tok_off[id], t->tok_len[id], 1);
        int k = snprintf(num, sizeof num, "\": %d", id);
        qkv__buf_put(&v, num, (size_t)k);
    }
    int k = snprintf(num, sizeof num, ": %d}\n", t->n_tokens);
    static const char eot_key[] = ",\n\"<|endoftext|>\"";
    qkv__buf_put(&v, eot_key, sizeof eot_key - 1);
    qkv__buf_put(&v, num, (size_t)k);
    qkv__buf_put(&mg, "#version: 0.2\n", 14);
    for (int i = 0; i < t->n_merges; i++) {
        put_token(&mg, m, t->blob.data + t->tok_off[t->ma[i]], t->tok_len[t->ma[i]], 0);
        qkv__buf_put(&mg, " ", 1);
        put_token(&mg, m, t->blob.data + t->tok_off[t->mb[i]], t->tok_len[t->mb[i]], 0);
        qkv__buf_put(&mg, "\n", 1);
    }
    qkv_status s;
    if (v.failed || mg.failed) {
        s = qkv__fail(QKV_ENOMEM, "out of memory writing the vocabulary");
    } else {
        char *pv = qkv__path_join(out_dir, "vocab.json"), *pm = qkv__path_join(out_dir, "merges.txt");
        s = (!pv || !pm) ? qkv__fail(QKV_ENOMEM, "out of memory") : qkv__write_file(pv, v.data, v.len);
        if (!s) s = qkv__write_file(pm, mg.data, mg.len);
        free(pv);
        free(pm);
    }
    qkv__buf_free(&v);
    qkv__buf_free(&mg);
    return s;
}

/* ---- training ------------------------------------------------------------------------ */

typedef struct piece_slot {
    uint64_t hash; /* 0 = empty */
    size_t off;
    uint32_t len;
    int32_t word;
} piece_slot;

/* Steps 1-2: distinct pieces -> words, with counts. */
static qkv_status count_pieces(trainer *t, const uint8_t *text, size_t len, const int byte_id[256]) {
    size_t cap = 1 << 16, used = 0;
    piece_slot *tab = calloc(cap, sizeof *tab);
    size_t wcap = 1 << 14, total_syms = 0;
    t->word_start = malloc(wcap * sizeof *t->word_start);
    t->word_len = malloc(wcap * sizeof *t->word_len);
    t->word_freq = malloc(wcap * sizeof *t->word_freq);
    if (!tab || !t->word_start || !t->word_len || !t->word_freq) {
        free(tab);
        return qkv__fail(QKV_ENOMEM, "vocab: out of memory counting pieces");
    }
    qkv__pretok pt;
    qkv__pretok_init(&pt, (const char *)text, len);
    size_t start, n;
    while (qkv__pretok_next(&pt, &start, &n)) {
        if (n < 2) continue; /* a single byte has no pair to merge */
        if (n > UINT32_MAX / 2) {
            free(tab);
            return qkv__fail(QKV_ETOOLONG, "vocab: one piece of %zu bytes is too long", n);
        }
        uint64_t h = qkv__hash_bytes(text + start, n) | 1;
        size_t i = (size_t)h & (cap - 1);
        while (tab[i].hash && !(tab[i].hash == h && tab[i].len == n &&
                                memcmp(text + tab[i].off, text + start, n) == 0))
            i = (i + 1) & (cap - 1);
        if (tab[i].hash) {
            t->word_freq[tab[i].word]++;
            continue;
        }
        if (t->n_words == wcap) {
            wcap *= 2;
            size_t *ws = realloc(t->word_start, wcap * sizeof *ws);
            if (ws) t->word_start = ws;
            uint32_t *wl = realloc(t->word_len, wcap * sizeof *wl);
            if (wl) t->word_len = wl;
            int64_t *wf = realloc(t->word_freq, wcap * sizeof *wf);
            if (wf) t->word_freq = wf;
            if (!ws || !wl || !wf) {
                free(tab);
                return qkv__fail(QKV_ENOMEM, "vocab: out of memory counting pieces");
            }
        }
        int32_t w = (int32_t)t->n_words++;
        t->word_start[w] = start; /* text offset for now; pool offset below */
        t->word_len[w] = (uint32_t)n;
        t->word_freq[w] = 1;
        total_syms += n;
        tab[i] = (piece_slot){h, start, (uint32_t)n, w};
        if (++used * 2 > cap) {
            size_t ncap = cap * 2;
            piece_slot *nt = calloc(ncap, sizeof *nt);
            if (!nt) {
                free(tab);
                return qkv__fail(QKV_ENOMEM, "vocab: out of memory counting pieces");
            }
            for (size_t j = 0; j < cap; j++) {
                if (!tab[j].hash) continue;
                size_t k = (size_t)tab[j].hash & (ncap - 1);
                while (nt[k].hash) k = (k + 1) & (ncap - 1);
                nt[k] = tab[j];
            }
            free(tab);
            tab = nt;
            cap = ncap;
        }
    }
    free(tab);
    t->sym = malloc((total_syms ? total_syms : 1) * sizeof *t->sym);
    t->word_stamp = calloc(t->n_words ? t->n_words : 1, sizeof *t->word_stamp);
    if (!t->sym || !t->word_stamp) return qkv__fail(QKV_ENOMEM, "vocab: out of memory");
    size_t at = 0;
    for (size_t w = 0; w < t->n_words; w++) {
        const uint8_t *p = text + t->word_start[w];
        for (uint32_t i = 0; i < t->word_len[w]; i++) t->sym[at + i] = byte_id[p[i]];
        t->word_start[w] = at;
        at += t->word_len[w];
    }
    return QKV_OK;
}

qkv_status qkv_bpe_train(const char *text, size_t len, int vocab_size, const char *out_dir) {
    if (!out_dir || !*out_dir) return qkv__fail(QKV_EINVAL, "vocab: no output folder");
    if (!text || len == 0) return qkv__fail(QKV_EINVAL, "vocab: the corpus is empty");
    if (vocab_size < 257 || vocab_size > QKV__TOK_MAX_VOCAB)
        return qkv__fail(QKV_ERANGE, "vocab: size %d out of range: at least 257 (256 byte tokens "
                                     "+ <|endoftext|>), at most %d", vocab_size, QKV__TOK_MAX_VOCAB);
    qkv__bytemap m;
    qkv__bytemap_init(&m);
    trainer t = {0};
    qkv_status st;
    /* tokens: 256 bytes in GPT-2's order */
    t.tok_cap = vocab_size;
    t.tok_off = malloc((size_t)vocab_size * sizeof *t.tok_off);
    t.tok_len = malloc((size_t)vocab_size * sizeof *t.tok_len);
    size_t tcap = 16;
    while (tcap < 2 * (size_t)vocab_size) tcap <<= 1;
    t.ttable = malloc(tcap * sizeof *t.ttable);
    t.tmask = tcap - 1;
    qkv__buf_reserve(&t.blob, 4096); /* so adding the 256 one-byte tokens below cannot fail */
    t.ma = malloc((size_t)vocab_size * 4 * sizeof *t.ma); /* merges <= 4x tokens, checked below */
    t.mb = malloc((size_t)vocab_size * 4 * sizeof *t.mb);
    t.pmask = (1 << 16) - 1;
    t.pkey = calloc(t.pmask + 1, sizeof *t.pkey);
    t.pidx = malloc((t.pmask + 1) * sizeof *t.pidx);
    if (!t.tok_off || !t.tok_len || !t.ttable || t.blob.failed || !t.ma || !t.mb || !t.pkey || !t.pidx) {
        trainer_free(&t);
        return qkv__fail(QKV_ENOMEM, "vocab: out of memory");
    }
    memset(t.ttable, 0xFF, tcap * sizeof *t.ttable);
    int byte_id[256];
    for (int i = 0; i < 256; i++) {
        char b = (char)m.order[i];
        byte_id[m.order[i]] = token_add(&t, &b, 1, "", 0);
    }
    if ((st = count_pieces(&t, (const uint8_t *)text, len, byte_id))) {
        trainer_free(&t);
        return st;
    }
    /* pair counts */
    for (size_t w = 0; w < t.n_words; w++) {
        const int32_t *s = t.sym + t.word_start[w];
        for (uint32_t i = 0; i + 1 < t.word_len[w]; i++) {
            int32_t p = pair_get(&t, s[i], s[i + 1]);
            if (p < 0) {
                trainer_free(&t);
                return qkv__fail(QKV_ENOMEM, "vocab: out of memory");
            }
            t.pcount[p] += t.word_freq[w];
            vec_i32 *l = &t.pwords[p];
            if ((l->n == 0 || l->v[l->n - 1] != (int32_t)w) && !vec_push(l, (int32_t)w)) {
                trainer_free(&t);
                return qkv__fail(QKV_ENOMEM, "vocab: out of memory");
            }
        }
    }
    for (size_t p = 0; p < t.n_pairs; p++)
        if (!heap_push(&t, (int32_t)p)) {
            trainer_free(&t);
            return qkv__fail(QKV_ENOMEM, "vocab: out of memory");
        }
    /* merge until the vocabulary (plus <|endoftext|>) is full */
    st = QKV_OK;
    while (t.n_tokens < vocab_size - 1) {
        if (t.hn == 0) {
            st = qkv__fail(QKV_ERANGE,
                           "vocab: the corpus supports at most %d tokens (256 bytes + %d merges + "
                           "<|endoftext|>); asked for %d. Use a smaller --size or more text",
                           t.n_tokens + 1, t.n_tokens - 256, vocab_size);
            break;
        }
        heap_entry e = heap_pop(&t);
        int32_t p = e.pair;
        if (t.pbanned[p] || t.pcount[p] <= 0) continue;
        if (e.count != t.pcount[p]) { /* stale: the count fell since this entry */
            if (!heap_push(&t, p)) goto oom;
            continue;
        }
        int32_t a = t.pa[p], b = t.pb[p];
        size_t na = t.tok_len[a], nb = t.tok_len[b];
        char tmp[TRAIN_MAX_TOKEN_BYTES];
        if (na + nb <= TRAIN_MAX_TOKEN_BYTES) {
            memcpy(tmp, t.blob.data + t.tok_off[a], na);
            memcpy(tmp + na, t.blob.data + t.tok_off[b], nb);
        }
        if (na + nb > TRAIN_MAX_TOKEN_BYTES || (na + nb == 13 && !memcmp(tmp, "<|endoftext|>", 13))) {
            t.pbanned[p] = 1; /* too long, or the special token's own bytes */
            continue;
        }
        if (t.n_merges == vocab_size * 4) {
            st = qkv__fail(QKV_ERANGE, "vocab: too many merges repeat existing tokens (%d merges "
                                       "for %d tokens)", t.n_merges, t.n_tokens);
            break;
        }
        /* the merged token: reuse an existing one with the same bytes */
        int id = token_lookup(&t, tmp, na + nb);
        if (id < 0 && (id = token_add(&t, tmp, na, tmp + na, nb)) < 0) goto oom;
        t.ma[t.n_merges] = a;
        t.mb[t.n_merges] = b;
        t.n_merges++;
        t.stamp++;
        t.dirty.n = 0;
        /* pwords may grow while we walk it (pair_add appends); walk by index */
        for (uint32_t i = 0; i < t.pwords[p].n; i++) {
            int32_t w = t.pwords[p].v[i];
            if (t.word_stamp[w] == t.stamp) continue;
            t.word_stamp[w] = t.stamp;
            if (!merge_in_word(&t, w, a, b, id)) goto oom;
        }
        free(t.pwords[p].v);
        t.pwords[p] = (vec_i32){0};
        t.pbanned[p] = 1; /* all its occurrences are gone; never merge it twice */
        for (uint32_t i = 0; i < t.dirty.n; i++) {
            int32_t q = t.dirty.v[i];
            if (!t.pbanned[q] && t.pcount[q] > 0 && !heap_push(&t, q)) goto oom;
        }
    }
    if (!st) st = write_outputs(&t, &m, out_dir);
    trainer_free(&t);
    return st;
oom:
    trainer_free(&t);
    return qkv__fail(QKV_ENOMEM, "vocab: out of memory while merging");
}
