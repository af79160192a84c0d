/*
 * export.c -- a tokenizer's vocabulary as other files store it (tok_export.h), for
 * `qkv convert`. The tokenizer's source is reopened with the loaders of tok_ext.h (whose
 * engine, qkv__tokx, holds the model strings, types, scores and the merge table), or, for
 * GPT-2's vocab.json + merges.txt, through the public API and merges.txt itself.
 *
 * Model strings back to file strings, the inverse of the loaders:
 *   byte-level BPE   normal and byte tokens whose loader mapped them out of GPT-2's alphabet
 *                    (not "hidden") go back through bytes_to_unicode; others as they are
 *   SentencePiece    as they are (GGUF, tokenizer.json); llama2.c's " " becomes "▁"
 * A tokenizer.json BPE with byte fallback (Llama 2, Mistral) becomes llama.cpp's SentencePiece
 * vocabulary with each merged token scored minus its merge rank; llama.cpp then merges in the
 * same order (checked against llama.cpp in tests/py/test_convert.py).
 */
#include "tok_export.h"
#include "tok_ext.h"
#include "model/gguf.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

void qkv__tok_vocab_free(qkv__tok_vocab *v) {
    if (!v) return;
    for (int i = 0; v->tok && i < v->n; i++) free(v->tok[i]);
    for (int i = 0; v->merge && i < v->n_merges; i++) free(v->merge[i]);
    free(v->tok);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->merge);
    memset(v, 0, sizeof *v);
}

static qkv_status alloc_vocab(qkv__tok_vocab *v, int n, int scores) {
    v->n = n;
    v->tok = calloc((size_t)n, sizeof *v->tok);
    v->len = calloc((size_t)n, sizeof *v->len);
    v->type = calloc((size_t)n, sizeof *v->type);
    v->score = scores ? calloc((size_t)n, sizeof *v->score) : NULL;
    if (!v->tok || !v->len || !v->type || (scores && !v->score))
        return qkv__fail(QKV_ENOMEM, "tokenizer export: out of memory");
    return QKV_OK;
}

/* bytes -> GPT-2's alphabet (UTF-8), malloc'ed */
static char *to_alphabet(const qkv__bytemap *bm, const char *s, size_t n, size_t *out_len) {
    char *o = malloc(2 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += qkv__utf8_encode(bm->cp_of_byte[(uint8_t)s[i]], (uint8_t *)o + k);
    o[k] = '\0';
    *out_len = k;
    return o;
}

static char *dup_n(const char *s, size_t n) {
    char *o = malloc(n + 1);
    if (!o) return NULL;
    memcpy(o, s, n);
    o[n] = '\0';
    return o;
}

/* llama2.c: " " -> "▁" */
static char *spaces_to_meta(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(3 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(o + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    *out_len = k;
    return o;
}

typedef struct rank_pair {
    int32_t rank;
    int a, b;
} rank_pair;

static int cmp_rank(const void *x, const void *y) {
    const rank_pair *p = x, *q = y;
    return (p->rank > q->rank) - (p->rank < q->rank);
}

/* llama.cpp's tokenizer.ggml.pre for a tokenizer.json's byte-level pre-tokenizer, from its
 * Split pattern (convert_hf_to_gguf.py identifies it by hashing the tokenization of a test
 * text; the patterns of the families qkv's reader knows name the same thing): "" when not
 * identified. */
static const struct {
    const char *rx, *pre;
} hf_pres[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"},
};

static void hf_pre_name(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) return;
    json_t *pre = json_object_get(root, "pre_tokenizer");
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (type && !strcmp(type, "ByteLevel") && json_is_true(json_object_get(pre, "use_regex"))) {
        snprintf(out, cap, "gpt-2");
    } else if (type && !strcmp(type, "Sequence")) {
        json_t *seq = json_object_get(pre, "pretokenizers");
        json_t *a = json_array_get(seq, 0), *b = json_array_get(seq, 1);
        const char *ta = json_string_value(json_object_get(a, "type"));
        const char *tb = json_string_value(json_object_get(b, "type"));
        const char *rx = json_string_value(json_object_get(json_object_get(a, "pattern"), "Regex"));
        const char *beh = json_string_value(json_object_get(a, "behavior"));
        if (json_array_size(seq) == 2 && ta && tb && rx && beh && !strcmp(ta, "Split") &&
            !strcmp(beh, "Isolated") && !json_is_true(json_object_get(a, "invert")) &&
            !strcmp(tb, "ByteLevel") && !json_is_true(json_object_get(b, "use_regex")))
            for (size_t k = 0; k < sizeof hf_pres / sizeof hf_pres[0]; k++)
                if (!strcmp(rx, hf_pres[k].rx)) snprintf(out, cap, "%s", hf_pres[k].pre);
    }
    json_decref(root);
}

/* From the engine. gguf: the source GGUF (its pre name and add_bos), or NULL; hf_path: the
 * tokenizer.json it came from, or NULL. */
static qkv_status from_tokx(const qkv__tokx *x, const qkv__gguf *gguf, const char *hf_path,
                            qkv__tok_vocab *v, const char *path) {
    int bpe = x->byte_level && !x->by_score;
    int spm = !x->byte_level && x->by_score;
    /* a tokenizer.json BPE with byte fallback and the metaspace (Llama 2, Mistral): written as
     * llama.cpp's SentencePiece vocabulary, each merged token scored by its merge rank (its
     * merges rank by SentencePiece's scores, which fall with the id) */
    int spm_hf = !x->byte_level && !x->by_score && x->byte_fallback && x->n_merges > 0 && hf_path;
    if (spm_hf) spm = 1;
    if (!bpe && !spm)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: this tokenizer is neither byte-level BPE, nor "
                         "SentencePiece with scores, nor a tokenizer.json BPE with byte fallback: qkv cannot "
                         "write it as a GGUF or GPT-2 vocabulary", path);
    qkv_status st = alloc_vocab(v, x->n_vocab, spm);
    if (st) return st;
    v->model = bpe ? "gpt2" : "llama";
    v->bos = x->bos;
    v->eos = x->eos >= 0 ? x->eos : x->eot;
    v->unk = x->unk;
    v->add_bos = x->n_prefix > 0 && x->bos >= 0 && x->prefix[0] == x->bos;
    v->add_space_prefix = -1;
    if (spm_hf) {
        v->add_space_prefix = 0;
        for (int k = 0; k < x->n_norm; k++)
            if (x->norm[k].kind == QKV__NORM_PREPEND) v->add_space_prefix = 1;
        for (int k = 0; k < x->n_pre; k++)
            if (x->pre[k].kind == QKV__PRE_METASPACE && x->pre[k].prepend) v->add_space_prefix = 1;
    }
    qkv__bytemap bm;
    qkv__bytemap_init(&bm);
    for (int i = 0; i < x->n_vocab; i++) {
        const char *s = x->blob + x->off[i];
        size_t n = x->len[i];
        int ty = x->type ? x->type[i] : QKV__TT_NORMAL;
        v->type[i] = ty;
        if (bpe && (ty == QKV__TT_NORMAL || ty == QKV__TT_BYTE) && !(x->hidden && x->hidden[i]))
            v->tok[i] = to_alphabet(&bm, s, n, &v->len[i]);
        else if (spm && x->llama2c && ty == QKV__TT_NORMAL)
            v->tok[i] = spaces_to_meta(s, n, &v->len[i]);
        else
            v->tok[i] = dup_n(s, v->len[i] = n);
        if (!v->tok[i]) return qkv__fail(QKV_ENOMEM, "tokenizer export: out of memory");
        if (spm) v->score[i] = x->score ? x->score[i] : 0.0f;
    }
    if (spm_hf) {
        /* a token's score: minus the rank of the merge that makes it (tokens no merge makes
         * keep 0, as SentencePiece's single characters rank first) */
        size_t cap = x->pairs ? (size_t)x->pair_mask + 1 : 0;
        for (size_t k = 0; k < cap; k++)
            if (x->pairs[k].key && x->pairs[k].merged >= 0 && x->pairs[k].merged < v->n) {
                float sc = -(float)x->pairs[k].rank - 1.0f;
                int m = x->pairs[k].merged;
                if (v->score[m] == 0.0f || sc > v->score[m]) v->score[m] = sc;
            }
    }
    if (spm) return QKV_OK;
    /* merges, by rank */
    size_t cap = x->pairs ? (size_t)x->pair_mask + 1 : 0, n_m = 0;
    rank_pair *rp = malloc(sizeof *rp * (cap ? cap : 1));
    if (!rp) return qkv__fail(QKV_ENOMEM, "tokenizer export: out of memory");
    for (size_t i = 0; i < cap; i++) {
        if (!x->pairs[i].key) continue;
        uint64_t k = x->pairs[i].key - 1;
        rp[n_m].rank = x->pairs[i].rank;
        rp[n_m].a = (int)(k >> 32);
        rp[n_m].b = (int)(k & 0xffffffffu);
        n_m++;
    }
    qsort(rp, n_m, sizeof *rp, cmp_rank);
    v->merge = calloc(n_m ? n_m : 1, sizeof *v->merge);
    if (!v->merge) st = qkv__fail(QKV_ENOMEM, "tokenizer export: out of memory");
    for (size_t i = 0; !st && i < n_m; i++) {
        int a = rp[i].a, b = rp[i].b;
        if (a < 0 || a >= v->n || b < 0 || b >= v->n) {
            st = qkv__fail(QKV_EFORMAT, "%s: merge %zu names token %d / %d outside the vocabulary", path, i, a, b);
            break;
        }
        size_t la = v->len[a], lb = v->len[b];
        char *m = malloc(la + lb + 2);
        if (!m) {
            st = qkv__fail(QKV_ENOMEM, "tokenizer export: out of memory");
            break;
        }
        memcpy(m, v->tok[a], la);
        m[la] = ' ';
        memcpy(m + la + 1, v->tok[b], lb);
        m[la + lb + 1] = '\0';
        v->merge[v->n_merges++] = m;
    }
    free(rp);
    if (st) return st;
    /* the pre-tokenizer's name */
    qkv__gguf_str pre;
    if (gguf && qkv__gguf_find(gguf, "tokenizer.ggml.pre") && !qkv__gguf_get_str(gguf, "tokenizer.ggml.pre", &pre) &&
        pre.n < sizeof v->pre) {
        memcpy(v->pre, pre.s, (size_t)pre.n);
        v->pre[pre.n] = '\0';
    } else if (x->n_pre == 1 && x->pre[0].kind == QKV__PRE_BYTELEVEL && x->pre[0].gpt2_fast) {
        snprintf(v->pre, sizeof v->pre, "gpt-2");
    } else if (hf_path && (hf_pre_name(hf_path, v->pre, sizeof v->pre), v->pre[0])) {
        /* identified from the tokenizer.json's Split pattern */
    } else {
        snprintf(v->pre, sizeof v->pre, "default");
        snprintf(v->note, sizeof v->note, "the tokenizer's split pattern is not GPT-2's and was not "
                 "identified: tokenizer.ggml.pre is \"default\" (llama.cpp may pre-tokenize differently)");
    }
    if (gguf && qkv__gguf_find(gguf, "tokenizer.ggml.add_bos_token")) {
        uint64_t b = 0;
        if (!qkv__gguf_get_u64(gguf, "tokenizer.ggml.add_bos_token", &b)) v->add_bos = b != 0;
    }
    return QKV_OK;
}

/* GPT-2's vocab.json + merges.txt in dir. */
static qkv_status from_gpt2_dir(const char *dir, qkv__tok_vocab *v) {
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_load_dir(dir, &tok);
    if (st) return st;
    char *mpath = qkv__path_join(dir, "merges.txt"), *data = NULL;
    size_t len = 0;
    if (!mpath) st = qkv__fail(QKV_ENOMEM, "out of memory");
    if (!st) st = qkv__read_file(mpath, QKV__TOK_MAX_FILE, &data, &len);
    int n = qkv_tokenizer_vocab_size(tok), eot = qkv_tokenizer_eot(tok);
    if (!st) st = alloc_vocab(v, n, 0);
    qkv__bytemap bm;
    qkv__bytemap_init(&bm);
    for (int i = 0; !st && i < n; i++) {
        const char *b;
        size_t bl;
        if ((st = qkv_tokenizer_token_bytes(tok, i, &b, &bl))) break;
        v->type[i] = i == eot ? QKV__TT_CONTROL : QKV__TT_NORMAL;
        v->tok[i] = i == eot ? dup_n(b, v->len[i] = bl) : to_alphabet(&bm, b, bl, &v->len[i]);
        if (!v->tok[i]) st = qkv__fail(QKV_ENOMEM, "out of memory");
    }
    /* merges.txt: lines "a b" after an optional "#version" line */
    size_t cap = 0;
    for (size_t i = 0; !st && i < len; i++) cap += data[i] == '\n';
    if (!st && !(v->merge = calloc(cap + 1, sizeof *v->merge))) st = qkv__fail(QKV_ENOMEM, "out of memory");
    for (size_t at = 0, line = 0; !st && at < len; line++) {
        size_t e = at;
        while (e < len && data[e] != '\n') e++;
        size_t l = e - at;
        while (l && (data[at + l - 1] == '\r')) l--;
        if (l && !(line == 0 && data[at] == '#')) {
            if (!(v->merge[v->n_merges] = dup_n(data + at, l))) st = qkv__fail(QKV_ENOMEM, "out of memory");
            else v->n_merges++;
        }
        at = e + 1;
    }
    v->model = "gpt2";
    snprintf(v->pre, sizeof v->pre, "gpt-2");
    v->bos = v->eos = eot;
    v->unk = -1;
    free(data);
    free(mpath);
    qkv_tokenizer_free(tok);
    return st;
}

qkv_status qkv__tok_vocab_open(const char *path, int vocab_size, qkv__tok_vocab *v) {
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->unk = -1;
    v->add_space_prefix = -1;
    struct stat sb;
    if (stat(path, &sb) != 0) return qkv__fail(QKV_EIO, "%s: no such file or folder", path);
    qkv_status st = QKV_OK;
    if (S_ISDIR(sb.st_mode)) {
        static const char *names[] = {"tokenizer.json", "vocab.json", "tokenizer.bin"};
        for (int k = 0; k < 3; k++) {
            char *p = qkv__path_join(path, names[k]);
            if (!p) return qkv__fail(QKV_ENOMEM, "out of memory");
            int ok = is_file(p);
            if (ok) st = k == 1 ? from_gpt2_dir(path, v) : qkv__tok_vocab_open(p, vocab_size, v);
            free(p);
            if (ok) {
                if (st) qkv__tok_vocab_free(v);
                return st;
            }
        }
        return qkv__fail(QKV_ENOTFOUND, "%s: no tokenizer.json, vocab.json or tokenizer.bin", path);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return qkv__fail(QKV_EIO, "cannot open %s", path);
    uint8_t head[16];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    qkv__tokx *x = NULL;
    qkv__gguf g;
    int have_g = 0;
    if (n >= 4 && !memcmp(head, "GGUF", 4)) {
        if (!(st = qkv__gguf_open(path, &g))) {
            have_g = 1;
            if (!qkv__gguf_find(&g, "tokenizer.ggml.model"))
                st = qkv__fail(QKV_ENOTFOUND, "%s: the GGUF file has no tokenizer (tokenizer.ggml.model)", path);
            else
                st = qkv__gguf_vocab_load(path, &x);
        }
    } else if (i < n && head[i] == '{') {
        st = qkv__hf_load(path, &x);
    } else {
        st = qkv__llama2c_load(path, vocab_size, &x);
    }
    if (!st) st = from_tokx(x, have_g ? &g : NULL, !have_g && i < n && head[i] == '{' ? path : NULL, v, path);
    if (x) qkv__tokx_free(x);
    if (have_g) qkv__gguf_close(&g);
    if (st) qkv__tok_vocab_free(v);
    return st;
}

qkv_status qkv__tok_vocab_to_gguf(const qkv__tok_vocab *v, int n_model, qkv__gguf_writer *w) {
    if (v->n > n_model)
        return qkv__fail(QKV_ESHAPE, "the tokenizer has %d tokens, more than the model's %d rows", v->n, n_model);
    int n = n_model;
    const char **s = calloc((size_t)n, sizeof *s);
    size_t *l = calloc((size_t)n, sizeof *l);
    int32_t *ty = calloc((size_t)n, sizeof *ty);
    float *sc = calloc((size_t)n, sizeof *sc);
    char *pads = malloc((size_t)(n - v->n) * 24 + 1);
    qkv_status st = QKV_OK;
    if (!s || !l || !ty || !sc || !pads) st = qkv__fail(QKV_ENOMEM, "out of memory");
    for (int i = 0; !st && i < n; i++) {
        if (i < v->n) {
            s[i] = v->tok[i];
            l[i] = v->len[i];
            ty[i] = v->type[i];
            sc[i] = v->score ? v->score[i] : 0.0f;
        } else {
            char *p = pads + (size_t)(i - v->n) * 24;
            l[i] = (size_t)snprintf(p, 24, "[PAD%d]", i);
            s[i] = p;
            ty[i] = QKV__TT_UNUSED;
            sc[i] = -1000.0f;
        }
    }
    if (!st) {
        qkv__gguf_w_str(w, "tokenizer.ggml.model", v->model);
        if (!strcmp(v->model, "gpt2")) qkv__gguf_w_str(w, "tokenizer.ggml.pre", v->pre[0] ? v->pre : "default");
        else qkv__gguf_w_str(w, "tokenizer.ggml.pre", "default");
        qkv__gguf_w_arr_str(w, "tokenizer.ggml.tokens", (uint64_t)n, s, l);
        if (v->score) qkv__gguf_w_arr(w, "tokenizer.ggml.scores", QKV__GGUF_FLOAT32, (uint64_t)n, sc);
        qkv__gguf_w_arr(w, "tokenizer.ggml.token_type", QKV__GGUF_INT32, (uint64_t)n, ty);
        if (v->n_merges)
            qkv__gguf_w_arr_str(w, "tokenizer.ggml.merges", (uint64_t)v->n_merges,
                                (const char *const *)v->merge, NULL);
        if (v->bos >= 0) qkv__gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
        if (v->eos >= 0) qkv__gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
        if (v->unk >= 0) qkv__gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
        if (v->add_space_prefix >= 0)
            qkv__gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
        st = qkv__gguf_w_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    }
    free(s);
    free(l);
    free(ty);
    free(sc);
    free(pads);
    return st;
}

qkv_status qkv__tok_vocab_save_gpt2(const qkv__tok_vocab *v, const char *dir) {
    if (strcmp(v->model, "gpt2"))
        return qkv__fail(QKV_EUNSUPPORTED, "a %s (SentencePiece) vocabulary has no vocab.json + merges.txt form",
                         v->model);
    json_t *o = json_object();
    qkv_status st = o ? QKV_OK : qkv__fail(QKV_ENOMEM, "out of memory");
    for (int i = 0; !st && i < v->n; i++) {
        char *k = dup_n(v->tok[i], v->len[i]);
        if (!k || strlen(k) != v->len[i]) {
            free(k);
            st = qkv__fail(QKV_EFORMAT, "token %d holds a NUL byte: not writable to vocab.json", i);
            break;
        }
        if (json_object_get(o, k)) {
            free(k);
            continue; /* a duplicate string keeps its first id, as vocab.json can hold only one */
        }
        if (json_object_set_new(o, k, json_integer(i))) st = qkv__fail(QKV_EFORMAT, "token %d is not valid UTF-8", i);
        free(k);
    }
    char *text = st ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!st && !text) st = qkv__fail(QKV_ENOMEM, "out of memory");
    char *vpath = qkv__path_join(dir, "vocab.json"), *mpath = qkv__path_join(dir, "merges.txt");
    if (!st && (!vpath || !mpath)) st = qkv__fail(QKV_ENOMEM, "out of memory");
    if (!st) st = qkv__write_file(vpath, text, strlen(text));
    size_t total = 16;
    for (int i = 0; i < v->n_merges; i++) total += strlen(v->merge[i]) + 1;
    char *m = st ? NULL : malloc(total);
    if (!st && !m) st = qkv__fail(QKV_ENOMEM, "out of memory");
    if (!st) {
        size_t at = (size_t)snprintf(m, total, "#version: 0.2\n");
        for (int i = 0; i < v->n_merges; i++) {
            size_t ml = strlen(v->merge[i]);
            memcpy(m + at, v->merge[i], ml);
            at += ml;
            m[at++] = '\n';
        }
        st = qkv__write_file(mpath, m, at);
    }
    free(m);
    free(text);
    free(vpath);
    free(mpath);
    json_decref(o);
    return st;
}
