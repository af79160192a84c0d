/*
 * hf.c -- Hugging Face tokenizer.json -> the engine in tokx.c.
 *
 * Owns: reading the file (jansson), checking every component against what tokx.c
 * implements, and refusing the rest by name ("normalizer \"Precompiled\" is not supported").
 *
 * Supported: model BPE (vocab, merges as "a b" strings or [a, b] pairs, byte_fallback,
 * unk_token, fuse_unk, ignore_merges); normalizers NFC NFD NFKC NFKD Lowercase Prepend Replace
 * Strip Sequence; pre-tokenizers Split (Regex or String; all five behaviors, invert),
 * ByteLevel (add_prefix_space, use_regex), Digits, Metaspace, WhitespaceSplit, Sequence;
 * post-processors TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence;
 * decoders ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence; added_tokens
 * (special, lstrip, rstrip, single_word). bos/eos: the post-processor's first/last special
 * token, else tokenizer_config.json beside the file, else the usual names.
 */
#include "tok_ext.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hf_ctx {
    const char *path;
    qkv__tokx *x;
    int dec_replace_meta; /* decoder turns U+2581 into a space */
    int dec_bytefallback;
    int dec_bytelevel;
} hf_ctx;

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    if (json_is_boolean(v)) return json_is_true(v);
    return dflt;
}

static qkv_status refuse(hf_ctx *c, const char *what, const char *type) {
    return qkv__fail(QKV_EFORMAT, "%s: %s \"%s\" is not supported by qkv", c->path, what,
                     type ? type : "(missing)");
}

/* A pattern object {"Regex": "..."} or {"String": "..."} compiled (a String is escaped). */
static qkv_status compile_pattern(hf_ctx *c, json_t *pat, qkv__re **re, const char **literal) {
    *re = NULL;
    if (literal) *literal = NULL;
    const char *rx = json_is_object(pat) ? jstr(pat, "Regex") : NULL;
    const char *lit = json_is_object(pat) ? jstr(pat, "String") : NULL;
    if (!rx && !lit) return qkv__fail(QKV_EFORMAT, "%s: a pattern needs \"Regex\" or \"String\"", c->path);
    if (lit && literal) {
        *literal = lit;
        return QKV_OK;
    }
    if (rx) {
        qkv_status st = qkv__re_compile(rx, strlen(rx), re);
        if (st) return qkv__tok_refail(st, c->path);
        return QKV_OK;
    }
    size_t n = strlen(lit);
    char *esc = malloc(2 * n + 1);
    if (!esc) return qkv__fail(QKV_ENOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\^$.|?*+()[]{}", lit[i])) esc[o++] = '\\';
        esc[o++] = lit[i];
    }
    qkv_status st = qkv__re_compile(esc, o, re);
    free(esc);
    if (st) return qkv__tok_refail(st, c->path);
    return QKV_OK;
}

static qkv_status add_norm(hf_ctx *c, json_t *n) {
    if (json_is_null(n) || !n) return QKV_OK;
    const char *type = json_is_object(n) ? jstr(n, "type") : NULL;
    if (!type) return qkv__fail(QKV_EFORMAT, "%s: normalizer without a type", c->path);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers");
        if (!json_is_array(arr)) return qkv__fail(QKV_EFORMAT, "%s: Sequence normalizer without a list", c->path);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            qkv_status st = add_norm(c, v);
            if (st) return st;
        }
        return QKV_OK;
    }
    qkv__norm nm;
    memset(&nm, 0, sizeof nm);
    if (!strcmp(type, "NFC")) nm.kind = QKV__NORM_NFC;
    else if (!strcmp(type, "NFD")) nm.kind = QKV__NORM_NFD;
    else if (!strcmp(type, "NFKC")) nm.kind = QKV__NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nm.kind = QKV__NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) nm.kind = QKV__NORM_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        nm.kind = QKV__NORM_STRIP;
        nm.left = jbool(n, "strip_left", 1);
        nm.right = jbool(n, "strip_right", 1);
    } else if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) return qkv__fail(QKV_EFORMAT, "%s: Prepend normalizer without \"prepend\"", c->path);
        nm.kind = QKV__NORM_PREPEND;
        nm.na = strlen(p);
        nm.a = strdup(p);
        if (!nm.a) return qkv__fail(QKV_ENOMEM, "out of memory");
    } else if (!strcmp(type, "Replace")) {
        const char *content = jstr(n, "content");
        if (!content) return qkv__fail(QKV_EFORMAT, "%s: Replace normalizer without \"content\"", c->path);
        nm.kind = QKV__NORM_REPLACE;
        const char *lit = NULL;
        qkv_status st = compile_pattern(c, json_object_get(n, "pattern"), &nm.re, &lit);
        if (st) return st;
        if (lit) {
            nm.a = strdup(lit);
            nm.na = strlen(lit);
        }
        nm.b = strdup(content);
        nm.nb = strlen(content);
        if ((lit && !nm.a) || !nm.b) {
            free(nm.a);
            free(nm.b);
            qkv__re_free(nm.re);
            return qkv__fail(QKV_ENOMEM, "out of memory");
        }
    } else {
        return refuse(c, "normalizer", type);
    }
    qkv__tokx *x = c->x;
    qkv__norm *p = realloc(x->norm, (size_t)(x->n_norm + 1) * sizeof *p);
    if (!p) {
        free(nm.a);
        free(nm.b);
        qkv__re_free(nm.re);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    x->norm = p;
    x->norm[x->n_norm++] = nm;
    return QKV_OK;
}

static int behavior_of(const char *b) {
    if (!b) return -1;
    if (!strcmp(b, "Isolated")) return QKV__SPLIT_ISOLATED;
    if (!strcmp(b, "Removed")) return QKV__SPLIT_REMOVED;
    if (!strcmp(b, "MergedWithPrevious")) return QKV__SPLIT_MERGED_PREV;
    if (!strcmp(b, "MergedWithNext")) return QKV__SPLIT_MERGED_NEXT;
    if (!strcmp(b, "Contiguous")) return QKV__SPLIT_CONTIGUOUS;
    return -1;
}

static qkv_status add_pre(hf_ctx *c, json_t *n) {
    if (json_is_null(n) || !n) return QKV_OK;
    const char *type = json_is_object(n) ? jstr(n, "type") : NULL;
    if (!type) return qkv__fail(QKV_EFORMAT, "%s: pre_tokenizer without a type", c->path);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "pretokenizers");
        if (!json_is_array(arr)) return qkv__fail(QKV_EFORMAT, "%s: Sequence pre_tokenizer without a list", c->path);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            qkv_status st = add_pre(c, v);
            if (st) return st;
        }
        return QKV_OK;
    }
    qkv__pre p;
    memset(&p, 0, sizeof p);
    if (!strcmp(type, "Split")) {
        p.kind = QKV__PRE_SPLIT;
        p.behavior = behavior_of(jstr(n, "behavior"));
        if (p.behavior < 0) return refuse(c, "Split behavior", jstr(n, "behavior"));
        p.invert = jbool(n, "invert", 0);
        qkv_status st = compile_pattern(c, json_object_get(n, "pattern"), &p.re, NULL);
        if (st) return st;
    } else if (!strcmp(type, "ByteLevel")) {
        p.kind = QKV__PRE_BYTELEVEL;
        p.add_prefix_space = jbool(n, "add_prefix_space", 0);
        p.gpt2_fast = jbool(n, "use_regex", 1);
        c->x->byte_level = 1;
    } else if (!strcmp(type, "Digits")) {
        p.kind = QKV__PRE_DIGITS;
        p.individual = jbool(n, "individual_digits", 0);
    } else if (!strcmp(type, "Metaspace")) {
        p.kind = QKV__PRE_METASPACE;
        const char *r = jstr(n, "replacement");
        if (!r) r = "\xE2\x96\x81";
        if (strlen(r) >= sizeof p.repl) return qkv__fail(QKV_EFORMAT, "%s: Metaspace replacement too long", c->path);
        memcpy(p.repl, r, strlen(r));
        p.nrepl = strlen(r);
        const char *scheme = jstr(n, "prepend_scheme");
        if (scheme) p.prepend = !strcmp(scheme, "always") ? 2 : !strcmp(scheme, "first") ? 1 : 0;
        else p.prepend = jbool(n, "add_prefix_space", 1) ? 2 : 0;
        p.split = jbool(n, "split", 1);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p.kind = QKV__PRE_WHITESPACE_SPLIT;
    } else {
        return refuse(c, "pre_tokenizer", type);
    }
    qkv__tokx *x = c->x;
    qkv__pre *q = realloc(x->pre, (size_t)(x->n_pre + 1) * sizeof *q);
    if (!q) {
        qkv__re_free(p.re);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    x->pre = q;
    x->pre[x->n_pre++] = p;
    return QKV_OK;
}

static qkv_status scan_decoder(hf_ctx *c, json_t *n) {
    if (json_is_null(n) || !n) return QKV_OK;
    const char *type = json_is_object(n) ? jstr(n, "type") : NULL;
    if (!type) return qkv__fail(QKV_EFORMAT, "%s: decoder without a type", c->path);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "decoders");
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            qkv_status st = scan_decoder(c, v);
            if (st) return st;
        }
        return QKV_OK;
    }
    if (!strcmp(type, "ByteLevel")) c->dec_bytelevel = 1;
    else if (!strcmp(type, "ByteFallback")) c->dec_bytefallback = 1;
    else if (!strcmp(type, "Fuse")) {
    } else if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(n, "pattern");
        const char *lit = json_is_object(pat) ? jstr(pat, "String") : NULL;
        const char *content = jstr(n, "content");
        if (lit && content && !strcmp(lit, "\xE2\x96\x81") && !strcmp(content, " ")) c->dec_replace_meta = 1;
        else return refuse(c, "decoder Replace other than U+2581 -> space; decoder", "Replace");
    } else if (!strcmp(type, "Strip")) {
        const char *content = jstr(n, "content");
        json_int_t start = json_integer_value(json_object_get(n, "start"));
        json_int_t stop = json_integer_value(json_object_get(n, "stop"));
        if (!content || strcmp(content, " ") || start > 1 || stop != 0)
            return refuse(c, "decoder Strip other than one leading space; decoder", "Strip");
        c->x->strip_lead = start == 1;
    } else if (!strcmp(type, "Metaspace")) {
        c->dec_replace_meta = 1;
        const char *scheme = jstr(n, "prepend_scheme");
        c->x->strip_lead = scheme ? strcmp(scheme, "never") != 0 : jbool(n, "add_prefix_space", 1);
    } else {
        return refuse(c, "decoder", type);
    }
    return QKV_OK;
}

/* Token ids of a post-processor's special token entry. */
static qkv_status push_ids(hf_ctx *c, json_t *special_tokens, const char *name, int **arr, int *n) {
    json_t *e = json_object_get(special_tokens, name);
    json_t *ids = json_is_object(e) ? json_object_get(e, "ids") : NULL;
    if (!json_is_array(ids))
        return qkv__fail(QKV_EFORMAT, "%s: post_processor: special token \"%s\" has no ids", c->path, name);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        int *p = realloc(*arr, (size_t)(*n + 1) * sizeof *p);
        if (!p) return qkv__fail(QKV_ENOMEM, "out of memory");
        *arr = p;
        p[(*n)++] = (int)json_integer_value(v);
    }
    return QKV_OK;
}

static qkv_status push_id(int **arr, int *n, int id) {
    int *p = realloc(*arr, (size_t)(*n + 1) * sizeof *p);
    if (!p) return qkv__fail(QKV_ENOMEM, "out of memory");
    *arr = p;
    p[(*n)++] = id;
    return QKV_OK;
}

static qkv_status scan_post(hf_ctx *c, json_t *n) {
    if (json_is_null(n) || !n) return QKV_OK;
    const char *type = json_is_object(n) ? jstr(n, "type") : NULL;
    if (!type) return qkv__fail(QKV_EFORMAT, "%s: post_processor without a type", c->path);
    qkv__tokx *x = c->x;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "processors");
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            qkv_status st = scan_post(c, v);
            if (st) return st;
        }
        return QKV_OK;
    }
    if (!strcmp(type, "ByteLevel")) return QKV_OK;
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(n, "single");
        json_t *sp = json_object_get(n, "special_tokens");
        if (!json_is_array(single))
            return qkv__fail(QKV_EFORMAT, "%s: TemplateProcessing without \"single\"", c->path);
        int seen_seq = 0;
        size_t i;
        json_t *v;
        json_array_foreach(single, i, v) {
            json_t *stok = json_object_get(v, "SpecialToken");
            if (json_object_get(v, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const char *id = json_is_object(stok) ? jstr(stok, "id") : NULL;
            if (!id) return qkv__fail(QKV_EFORMAT, "%s: TemplateProcessing: bad item %zu", c->path, i);
            qkv_status st = seen_seq ? push_ids(c, sp, id, &x->suffix, &x->n_suffix)
                                     : push_ids(c, sp, id, &x->prefix, &x->n_prefix);
            if (st) return st;
        }
        return QKV_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(n, "cls"), *sep = json_object_get(n, "sep");
        if (!json_is_array(cls) || !json_is_array(sep) || json_array_size(cls) < 2 || json_array_size(sep) < 2)
            return qkv__fail(QKV_EFORMAT, "%s: %s without cls/sep", c->path, type);
        qkv_status st = push_id(&x->prefix, &x->n_prefix, (int)json_integer_value(json_array_get(cls, 1)));
        if (!st) st = push_id(&x->suffix, &x->n_suffix, (int)json_integer_value(json_array_get(sep, 1)));
        return st;
    }
    return refuse(c, "post_processor", type);
}

static long alphabet_bytes(const qkv__bytemap *m, const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = qkv__utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (l == 0 || cp >= 324 || m->byte_of_cp[cp] < 0) return -1;
        out[o++] = (char)m->byte_of_cp[cp];
        i += l;
    }
    return (long)o;
}

/* Model string of a vocabulary entry (alphabet -> bytes for byte-level; else as is; *raw
 * set when a byte-level string is outside the alphabet). */
static size_t model_string_r(hf_ctx *c, const qkv__bytemap *m, const char *s, size_t n, char *out, int *raw) {
    if (raw) *raw = 0;
    if (c->x->byte_level) {
        long b = alphabet_bytes(m, s, n, out);
        if (b >= 0) return (size_t)b;
        if (raw) *raw = 1;
    }
    memcpy(out, s, n);
    return n;
}

static size_t model_string(hf_ctx *c, const qkv__bytemap *m, const char *s, size_t n, char *out) {
    return model_string_r(c, m, s, n, out, NULL);
}

static int hexv(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* What a (non-added) token decodes to. */
static size_t decoded_string(hf_ctx *c, const char *ms, size_t n, char *out) {
    if (c->dec_bytefallback && n == 6 && !memcmp(ms, "<0x", 3) && ms[5] == '>' && hexv(ms[3]) >= 0 &&
        hexv(ms[4]) >= 0) {
        out[0] = (char)(hexv(ms[3]) * 16 + hexv(ms[4]));
        return 1;
    }
    if (!c->dec_replace_meta) {
        memcpy(out, ms, n);
        return n;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && !memcmp(ms + i, "\xE2\x96\x81", 3)) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = ms[i++];
        }
    }
    return o;
}

/* bos/eos from tokenizer_config.json beside the file, if any. */
static int config_token(qkv__tokx *x, json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    const char *s = json_is_string(v) ? json_string_value(v) : json_is_object(v) ? jstr(v, "content") : NULL;
    return s ? qkv__tokx_lookup(x, s, strlen(s)) : -1;
}

static qkv_status build(hf_ctx *c, json_t *root) {
    qkv__tokx *x = c->x;
    json_t *model = json_object_get(root, "model");
    const char *mtype = json_is_object(model) ? jstr(model, "type") : NULL;
    if (!json_is_object(model)) return qkv__fail(QKV_EFORMAT, "%s: no \"model\" object", c->path);
    if (!mtype && json_object_get(model, "merges")) mtype = "BPE";
    if (!mtype || strcmp(mtype, "BPE")) return refuse(c, "model", mtype);
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return refuse(c, "BPE option", csp && *csp ? "continuing_subword_prefix" : "end_of_word_suffix");
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0) return refuse(c, "BPE option", "dropout");
    qkv_status st;
    if ((st = add_norm(c, json_object_get(root, "normalizer")))) return st;
    if ((st = add_pre(c, json_object_get(root, "pre_tokenizer")))) return st;
    if ((st = scan_decoder(c, json_object_get(root, "decoder")))) return st;
    if ((st = scan_post(c, json_object_get(root, "post_processor")))) return st;
    if (c->dec_bytelevel && !x->byte_level) {
        /* a ByteLevel decoder without the pre-tokenizer still means byte-level strings */
        x->byte_level = 1;
    }
    x->byte_fallback = jbool(model, "byte_fallback", 0);
    x->fuse_unk = jbool(model, "fuse_unk", 0);
    x->ignore_merges = jbool(model, "ignore_merges", 0);
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) return qkv__fail(QKV_EFORMAT, "%s: model.vocab is not an object", c->path);
    if (added && !json_is_array(added) && !json_is_null(added))
        return qkv__fail(QKV_EFORMAT, "%s: added_tokens is not a list", c->path);
    /* ids: 0 .. max over vocab and added tokens */
    long long n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= QKV__TOK_MAX_VOCAB)
            return qkv__fail(QKV_EFORMAT, "%s: vocab entry \"%.40s\": id is not an integer in [0, %d)",
                             c->path, key, QKV__TOK_MAX_VOCAB);
        if (json_integer_value(val) + 1 > n) n = json_integer_value(val) + 1;
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *idv = json_object_get(val, "id");
        const char *content = jstr(val, "content");
        if (!json_is_integer(idv) || json_integer_value(idv) < 0 || json_integer_value(idv) >= QKV__TOK_MAX_VOCAB ||
            !content || !*content)
            return qkv__fail(QKV_EFORMAT, "%s: added_tokens[%zu]: needs an id in [0, %d) and a non-empty content",
                             c->path, i, QKV__TOK_MAX_VOCAB);
        if (json_integer_value(idv) + 1 > n) n = json_integer_value(idv) + 1;
    }
    if (n == 0) return qkv__fail(QKV_EFORMAT, "%s: empty vocabulary", c->path);
    char **ms = calloc((size_t)n, sizeof *ms), **ds = calloc((size_t)n, sizeof *ds);
    size_t *ml = calloc((size_t)n, sizeof *ml), *dl = calloc((size_t)n, sizeof *dl);
    x->type = malloc((size_t)n);
    x->hidden = calloc((size_t)n, 1);
    st = QKV_OK;
    if (!ms || !ds || !ml || !dl || !x->type || !x->hidden) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    memset(x->type, QKV__TT_UNUSED, (size_t)n);
    qkv__bytemap bm;
    qkv__bytemap_init(&bm);
    json_object_foreach(vocab, key, val) {
        int id = (int)json_integer_value(val);
        size_t kl = strlen(key);
        if (ms[id]) {
            st = qkv__fail(QKV_EFORMAT, "%s: vocab id %d appears twice", c->path, id);
            goto done;
        }
        ms[id] = malloc(kl + 1);
        ds[id] = malloc(kl + 1);
        if (!ms[id] || !ds[id]) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto done;
        }
        int raw = 0;
        ml[id] = model_string_r(c, &bm, key, kl, ms[id], &raw);
        x->hidden[id] = (uint8_t)raw;
        dl[id] = x->byte_level ? (memcpy(ds[id], ms[id], ml[id]), ml[id]) : decoded_string(c, ms[id], ml[id], ds[id]);
        x->type[id] = QKV__TT_NORMAL;
    }
    json_array_foreach(added, i, val) {
        int id = (int)json_integer_value(json_object_get(val, "id"));
        const char *content = jstr(val, "content");
        size_t kl = strlen(content);
        int special = jbool(val, "special", 0);
        if (!ms[id]) { /* not in the model's vocabulary: its text as is */
            ms[id] = strdup(content);
            if (!ms[id]) {
                st = qkv__fail(QKV_ENOMEM, "out of memory");
                goto done;
            }
            ml[id] = kl;
        }
        free(ds[id]);
        ds[id] = strdup(content);
        if (!ds[id]) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto done;
        }
        dl[id] = kl;
        x->hidden[id] = 0;
        x->type[id] = special ? QKV__TT_CONTROL : QKV__TT_USER;
    }
    for (long long k = 0; k < n; k++) {
        if (ml[k] > QKV__TOK_MAX_TOKEN_BYTES || dl[k] > QKV__TOK_MAX_TOKEN_BYTES) {
            st = qkv__fail(QKV_EFORMAT, "%s: token %lld: longer than %d bytes", c->path, k, QKV__TOK_MAX_TOKEN_BYTES);
            goto done;
        }
    }
    if ((st = qkv__tokx_set_vocab(x, (int)n, (const char *const *)ms, ml, (const char *const *)ds, dl))) {
        st = qkv__tok_refail(st, c->path);
        goto done;
    }
    json_array_foreach(added, i, val) {
        int id = (int)json_integer_value(json_object_get(val, "id"));
        const char *content = jstr(val, "content");
        if ((st = qkv__tokx_add_added(x, id, content, strlen(content), jbool(val, "special", 0),
                                      jbool(val, "lstrip", 0), jbool(val, "rstrip", 0),
                                      jbool(val, "single_word", 0), jbool(val, "normalized", 0))))
            goto done;
    }
    /* merges */
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_array(merges) && !json_is_null(merges)) {
        st = qkv__fail(QKV_EFORMAT, "%s: model.merges is not a list", c->path);
        goto done;
    }
    size_t nm = json_is_array(merges) ? json_array_size(merges) : 0;
    if ((st = qkv__tokx_alloc_pairs(x, nm + 16))) goto done;
    char *buf = malloc(2 * QKV__TOK_MAX_TOKEN_BYTES * 4 + 8);
    if (!buf) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t r = 0; r < nm && !st; r++) {
        json_t *e = json_array_get(merges, r);
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            const char *sp = strchr(s, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = s;
                al = (size_t)(sp - s);
                b = sp + 1;
                bl = strlen(b);
            }
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            al = strlen(a);
            bl = strlen(b);
        }
        if (!a || !al || !bl || al > 4 * QKV__TOK_MAX_TOKEN_BYTES || bl > 4 * QKV__TOK_MAX_TOKEN_BYTES) {
            st = qkv__fail(QKV_EFORMAT, "%s: merges[%zu] is not \"a b\" or [a, b]", c->path, r);
            break;
        }
        size_t ma = model_string(c, &bm, a, al, buf);
        size_t mb = model_string(c, &bm, b, bl, buf + ma);
        int ia = qkv__tokx_lookup(x, buf, ma), ib = qkv__tokx_lookup(x, buf + ma, mb);
        int im = qkv__tokx_lookup(x, buf, ma + mb);
        if (ia < 0 || ib < 0 || im < 0) {
            st = qkv__fail(QKV_EFORMAT, "%s: merges[%zu] (\"%.40s\" + \"%.40s\"): %s is not in the vocabulary",
                           c->path, r, a, b, ia < 0 ? "the left part" : ib < 0 ? "the right part" : "the merged token");
            break;
        }
        if (qkv__tokx_add_merge(x, ia, ib, im, (int)r) < 0) st = qkv__fail(QKV_ENOMEM, "merge table full");
    }
    free(buf);
    if (st) goto done;
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        x->unk = qkv__tokx_lookup(x, unk, strlen(unk));
        if (x->unk < 0) {
            st = qkv__fail(QKV_EFORMAT, "%s: unk_token \"%.40s\" is not in the vocabulary", c->path, unk);
            goto done;
        }
    }
    if ((st = qkv__tokx_finish(x))) {
        st = qkv__tok_refail(st, c->path);
        goto done;
    }
    if (x->byte_level) {
        for (int b = 0; b < 256; b++)
            if (x->byte_tok[b] < 0) {
                st = qkv__fail(QKV_EFORMAT, "%s: byte-level vocabulary without a token for byte 0x%02X",
                               c->path, b);
                goto done;
            }
    }
done:
    if (ms)
        for (long long k = 0; k < n; k++) free(ms[k]);
    if (ds)
        for (long long k = 0; k < n; k++) free(ds[k]);
    free(ms);
    free(ds);
    free(ml);
    free(dl);
    return st;
}

static void find_bos_eos(qkv__tokx *x, const char *path) {
    if (x->n_prefix > 0) x->bos = x->prefix[0];
    if (x->n_suffix > 0) x->eos = x->suffix[x->n_suffix - 1];
    /* tokenizer_config.json beside tokenizer.json */
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 0;
    char *cfgp = malloc(dl + 32);
    if (cfgp) {
        if (slash) {
            memcpy(cfgp, path, dl);
            strcpy(cfgp + dl, "/tokenizer_config.json");
        } else {
            strcpy(cfgp, "tokenizer_config.json");
        }
        char *data = NULL;
        size_t len = 0;
        if (qkv__read_file(cfgp, (size_t)16 << 20, &data, &len) == QKV_OK) {
            json_t *cfg = json_loadb(data, len, 0, NULL);
            if (json_is_object(cfg)) {
                int b = config_token(x, cfg, "bos_token"), e = config_token(x, cfg, "eos_token");
                if (x->bos < 0) x->bos = b;
                if (x->eos < 0) x->eos = e;
            }
            json_decref(cfg);
            free(data);
        }
        free(cfgp);
    }
    static const char *bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"};
    static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"};
    for (size_t k = 0; k < 4 && x->bos < 0; k++) {
        int id = qkv__tokx_lookup(x, bos_names[k], strlen(bos_names[k]));
        if (id >= 0 && x->type[id] == QKV__TT_CONTROL) x->bos = id;
    }
    for (size_t k = 0; k < 4 && x->eos < 0; k++) {
        int id = qkv__tokx_lookup(x, eos_names[k], strlen(eos_names[k]));
        if (id >= 0 && x->type[id] == QKV__TT_CONTROL) x->eos = id;
    }
    x->eot = qkv__tokx_lookup(x, "<|endoftext|>", 13);
}

qkv_status qkv__hf_load(const char *path, qkv__tokx **out) {
    *out = NULL;
    char *data = NULL;
    size_t len = 0;
    qkv_status st = qkv__read_file(path, QKV__TOK_MAX_FILE, &data, &len);
    if (st) return st;
    json_error_t err;
    json_t *root = json_loadb(data, len, 0, &err);
    free(data);
    if (!root)
        return qkv__fail(QKV_EFORMAT, "%s: invalid JSON at line %d, column %d: %s", path, err.line,
                         err.column, err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return qkv__fail(QKV_EFORMAT, "%s: not a tokenizer.json (expected a JSON object)", path);
    }
    hf_ctx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.x = qkv__tokx_new();
    if (!c.x) {
        json_decref(root);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    c.x->kind = "tokenizer.json";
    st = build(&c, root);
    json_decref(root);
    if (st) {
        qkv__tokx_free(c.x);
        return st;
    }
    find_bos_eos(c.x, path);
    *out = c.x;
    return QKV_OK;
}
