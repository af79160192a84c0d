/*
 * gguf_vocab.c -- a GGUF file's tokenizer (tokenizer.ggml.*) -> the engine in tokx.c, as
 * llama.cpp's llama-vocab.cpp reads it. The container itself is src/model/gguf.c's.
 *
 *   tokenizer.ggml.model "gpt2"   byte-level BPE: tokens in GPT-2's alphabet, merges "a b",
 *                                 tokenizer.ggml.pre names the split regexes (table below,
 *                                 llama-vocab.cpp's, each applied as an Isolated Split)
 *   tokenizer.ggml.model "llama"  SentencePiece BPE: merges by score, "▁" for spaces and a
 *                                 "▁" prefix (add_space_prefix), <0xNN> byte fallback
 * (deepseek-llm's class is llama.cpp's with its three NFC-folded range ends restored:
 * U+1F7D, U+1FD3, U+1FDB, as in the model's tokenizer.json.)
 * token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control and
 * unknown tokens in text are matched only with QKV_ENCODE_ALLOW_SPECIAL; user-defined ones
 * always (llama.cpp's parse_special). Other tokenizer models and pre names are refused.
 */
#include "tok_ext.h"
#include "model/gguf.h"

#include <stdlib.h>
#include <string.h>

#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN35 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const struct pre_def {
    const char *names;   /* '|'-separated tokenizer.ggml.pre values */
    const char *rx[7];
    int ignore_merges;
} pre_defs[] = {
    {"default|gpt-2|mpt|olmo|jais|trillion", {RX_GPT2}, 0},
    {"llama3|llama-v3|llama-bpe|falcon3|pixtral|dbrx|smaug-bpe|chatglm-bpe", {RX_LLAMA3}, 1},
    {"qwen2|stablelm2|hunyuan|deepseek-r1-qwen|megrez|solar-open", {RX_QWEN2}, 0},
    {"qwen35", {RX_QWEN35}, 0},
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     0},
    {"deepseek-coder", {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}, 0},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]"}, 0},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva", {"\\p{N}", RX_GPT2}, 0},
};

static int name_in(const char *names, const char *s, size_t n) {
    const char *p = names;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !memcmp(p, s, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int hexv(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

static int get_bool(const qkv__gguf *g, const char *key, int dflt) {
    uint64_t v;
    if (!qkv__gguf_find(g, key)) return dflt;
    if (qkv__gguf_get_u64(g, key, &v)) return dflt;
    return v != 0;
}

static int get_id(const qkv__gguf *g, const char *key, int n) {
    uint64_t v;
    if (!qkv__gguf_find(g, key) || qkv__gguf_get_u64(g, key, &v) || v >= (uint64_t)n) return -1;
    return (int)v;
}

static qkv_status add_pre(qkv__tokx *x, const char *rx) {
    qkv__pre p;
    memset(&p, 0, sizeof p);
    p.kind = QKV__PRE_SPLIT;
    p.behavior = QKV__SPLIT_ISOLATED;
    qkv_status st = qkv__re_compile(rx, strlen(rx), &p.re);
    if (st) return st;
    qkv__pre *q = realloc(x->pre, (size_t)(x->n_pre + 1) * sizeof *q);
    if (!q) {
        qkv__re_free(p.re);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    x->pre = q;
    x->pre[x->n_pre++] = p;
    return QKV_OK;
}

static qkv_status add_norm(qkv__tokx *x, int kind, const char *a, const char *b) {
    qkv__norm nm;
    memset(&nm, 0, sizeof nm);
    nm.kind = kind;
    nm.a = strdup(a);
    nm.na = strlen(a);
    nm.b = b ? strdup(b) : NULL;
    nm.nb = b ? strlen(b) : 0;
    qkv__norm *q = realloc(x->norm, (size_t)(x->n_norm + 1) * sizeof *q);
    if (!q || !nm.a || (b && !nm.b)) {
        free(q ? NULL : nm.a);
        if (q) x->norm = q;
        free(nm.b);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    x->norm = q;
    x->norm[x->n_norm++] = nm;
    return QKV_OK;
}

static qkv_status build(const qkv__gguf *g, const char *path, qkv__tokx *x) {
    qkv__gguf_str model;
    qkv_status st = qkv__gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (st) return qkv__tok_refail(st, path);
    int bpe = model.n == 4 && !memcmp(model.s, "gpt2", 4);
    int spm = model.n == 5 && !memcmp(model.s, "llama", 5);
    if (!bpe && !spm)
        return qkv__fail(QKV_EFORMAT, "%s: tokenizer.ggml.model \"%.*s\" is not supported by qkv "
                                      "(gpt2 and llama are)", path, (int)(model.n > 40 ? 40 : model.n), model.s);
    const qkv__gguf_kv *toks = qkv__gguf_find_arr(g, "tokenizer.ggml.tokens", QKV__GGUF_STRING);
    if (!toks) return qkv__fail(QKV_EFORMAT, "%s: no tokenizer.ggml.tokens string array", path);
    if (toks->arr_n == 0 || toks->arr_n > QKV__TOK_MAX_VOCAB)
        return qkv__fail(QKV_EFORMAT, "%s: %llu tokens (1 to %d)", path, (unsigned long long)toks->arr_n,
                         QKV__TOK_MAX_VOCAB);
    int n = (int)toks->arr_n;
    const qkv__gguf_kv *types = qkv__gguf_find(g, "tokenizer.ggml.token_type");
    const qkv__gguf_kv *scores = qkv__gguf_find(g, "tokenizer.ggml.scores");
    if (types && (types->type != QKV__GGUF_ARRAY || types->arr_n != (uint64_t)n))
        return qkv__fail(QKV_EFORMAT, "%s: tokenizer.ggml.token_type is not an array of %d", path, n);
    if (scores && (scores->type != QKV__GGUF_ARRAY || scores->arr_n != (uint64_t)n))
        return qkv__fail(QKV_EFORMAT, "%s: tokenizer.ggml.scores is not an array of %d", path, n);
    const struct pre_def *pd = NULL;
    if (bpe) {
        qkv__gguf_str pre = {"default", 7};
        if (qkv__gguf_find(g, "tokenizer.ggml.pre") && (st = qkv__gguf_get_str(g, "tokenizer.ggml.pre", &pre)))
            return qkv__tok_refail(st, path);
        for (size_t k = 0; k < sizeof pre_defs / sizeof pre_defs[0] && !pd; k++)
            if (name_in(pre_defs[k].names, pre.s, (size_t)pre.n)) pd = &pre_defs[k];
        if (!pd)
            return qkv__fail(QKV_EFORMAT, "%s: tokenizer.ggml.pre \"%.*s\" is not supported by qkv", path,
                             (int)(pre.n > 40 ? 40 : pre.n), pre.s);
    }
    const char **s = calloc((size_t)n, sizeof *s), **ds = calloc((size_t)n, sizeof *ds);
    size_t *l = calloc((size_t)n, sizeof *l), *dl = calloc((size_t)n, sizeof *dl);
    char *buf = NULL, *dbuf = NULL;
    x->type = malloc((size_t)n);
    x->score = calloc((size_t)n, sizeof *x->score);
    x->hidden = calloc((size_t)n, 1);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += qkv__gguf_arr_str(toks, (uint64_t)i).n + 1;
    buf = malloc(total + 1);
    dbuf = malloc(total + 1);
    st = QKV_OK;
    if (!s || !ds || !l || !dl || !x->type || !x->score || !x->hidden || !buf || !dbuf) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    qkv__bytemap bm;
    qkv__bytemap_init(&bm);
    size_t at = 0, dat = 0;
    for (int i = 0; i < n; i++) {
        qkv__gguf_str t = qkv__gguf_arr_str(toks, (uint64_t)i);
        int ty = types ? (int)qkv__gguf_arr_i64(types, (uint64_t)i) : QKV__TT_NORMAL;
        if (ty < 1 || ty > 6) ty = QKV__TT_NORMAL;
        x->type[i] = (uint8_t)ty;
        if (scores) x->score[i] = (float)qkv__gguf_arr_f64(scores, (uint64_t)i);
        if (t.n > QKV__TOK_MAX_TOKEN_BYTES) {
            st = qkv__fail(QKV_EFORMAT, "%s: token %d: %llu bytes (at most %d)", path, i,
                           (unsigned long long)t.n, QKV__TOK_MAX_TOKEN_BYTES);
            goto done;
        }
        s[i] = buf + at;
        ds[i] = dbuf + dat;
        /* model string */
        size_t o = 0;
        int conv = bpe && (ty == QKV__TT_NORMAL || ty == QKV__TT_BYTE);
        if (conv) {
            size_t k = 0;
            while (k < t.n) {
                uint32_t cp;
                size_t cl = qkv__utf8_decode((const uint8_t *)t.s + k, (size_t)t.n - k, &cp);
                if (cl == 0 || cp >= 324 || bm.byte_of_cp[cp] < 0) {
                    conv = 0;
                    break;
                }
                buf[at + o++] = (char)bm.byte_of_cp[cp];
                k += cl;
            }
        }
        if (!conv) {
            if (bpe && (ty == QKV__TT_NORMAL || ty == QKV__TT_BYTE)) x->hidden[i] = 1;
            memcpy(buf + at, t.s, (size_t)t.n);
            o = (size_t)t.n;
        }
        l[i] = o;
        at += o;
        /* decoded string */
        size_t d = 0;
        if (spm && ty == QKV__TT_BYTE && t.n == 6 && hexv(t.s[3]) >= 0 && hexv(t.s[4]) >= 0) {
            dbuf[dat + d++] = (char)(hexv(t.s[3]) * 16 + hexv(t.s[4]));
        } else if (spm) {
            for (size_t k = 0; k < t.n;) {
                if (k + 3 <= t.n && !memcmp(t.s + k, "\xE2\x96\x81", 3)) {
                    dbuf[dat + d++] = ' ';
                    k += 3;
                } else {
                    dbuf[dat + d++] = t.s[k++];
                }
            }
        } else {
            memcpy(dbuf + dat, buf + at - o, o);
            d = o;
        }
        dl[i] = d;
        dat += d;
    }
    if ((st = qkv__tokx_set_vocab(x, n, s, l, ds, dl))) {
        st = qkv__tok_refail(st, path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int ty = x->type[i];
        if ((ty == QKV__TT_CONTROL || ty == QKV__TT_USER || ty == QKV__TT_UNKNOWN) && l[i] > 0)
            if ((st = qkv__tokx_add_added(x, i, s[i], l[i], ty != QKV__TT_USER, 0, 0, 0, 0))) goto done;
    }
    x->kind = "gguf";
    x->bos = get_id(g, "tokenizer.ggml.bos_token_id", n);
    x->eos = get_id(g, "tokenizer.ggml.eos_token_id", n);
    x->unk = get_id(g, "tokenizer.ggml.unknown_token_id", n);
    x->eot = qkv__tokx_lookup(x, "<|endoftext|>", 13);
    if (bpe) {
        x->byte_level = 1;
        x->ignore_merges = pd->ignore_merges;
        for (int k = 0; k < 7 && pd->rx[k]; k++)
            if ((st = add_pre(x, pd->rx[k]))) {
                st = qkv__tok_refail(st, path);
                goto done;
            }
        const qkv__gguf_kv *merges = qkv__gguf_find_arr(g, "tokenizer.ggml.merges", QKV__GGUF_STRING);
        if (!merges) {
            st = qkv__fail(QKV_EFORMAT, "%s: a gpt2 tokenizer without tokenizer.ggml.merges", path);
            goto done;
        }
        if ((st = qkv__tokx_alloc_pairs(x, (size_t)merges->arr_n + 16))) goto done;
        char *mb = malloc(2 * QKV__TOK_MAX_TOKEN_BYTES + 8);
        if (!mb) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto done;
        }
        for (uint64_t r = 0; r < merges->arr_n && !st; r++) {
            qkv__gguf_str m = qkv__gguf_arr_str(merges, r);
            /* "a b": split at the first space after the first character (a may not be empty) */
            size_t sp = 1;
            while (sp < m.n && m.s[sp] != ' ') sp++;
            size_t o = 0, cut = 0;
            int ok = sp < m.n && m.n <= 2 * QKV__TOK_MAX_TOKEN_BYTES;
            for (size_t k = 0; ok && k < m.n;) {
                if (k == sp) {
                    cut = o;
                    k++;
                    continue;
                }
                uint32_t cp;
                size_t cl = qkv__utf8_decode((const uint8_t *)m.s + k, (size_t)m.n - k, &cp);
                if (cl == 0 || cp >= 324 || bm.byte_of_cp[cp] < 0) ok = 0;
                else mb[o++] = (char)bm.byte_of_cp[cp];
                k += cl ? cl : 1;
            }
            int a = ok ? qkv__tokx_lookup(x, mb, cut) : -1, b = ok ? qkv__tokx_lookup(x, mb + cut, o - cut) : -1;
            int mg = ok ? qkv__tokx_lookup(x, mb, o) : -1;
            if (a < 0 || b < 0 || mg < 0) {
                st = qkv__fail(QKV_EFORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\": not two tokens whose "
                                            "concatenation is a token", path, (unsigned long long)r,
                               (int)(m.n > 40 ? 40 : m.n), m.s);
                break;
            }
            qkv__tokx_add_merge(x, a, b, mg, (int)r);
        }
        free(mb);
        if (st) goto done;
    } else {
        x->byte_fallback = 1;
        x->strip_lead = 1;
        if (get_bool(g, "tokenizer.ggml.add_space_prefix", 1) &&
            (st = add_norm(x, QKV__NORM_PREPEND, "\xE2\x96\x81", NULL)))
            goto done;
        if ((st = add_norm(x, QKV__NORM_REPLACE, " ", "\xE2\x96\x81"))) goto done;
        if ((st = qkv__tokx_score_merges(x))) goto done;
    }
    if ((st = qkv__tokx_finish(x))) goto done;
    if (get_bool(g, "tokenizer.ggml.add_bos_token", spm) && x->bos >= 0) {
        x->prefix = malloc(sizeof *x->prefix);
        if (!x->prefix) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto done;
        }
        x->prefix[0] = x->bos;
        x->n_prefix = 1;
    }
    if (get_bool(g, "tokenizer.ggml.add_eos_token", 0) && x->eos >= 0) {
        x->suffix = malloc(sizeof *x->suffix);
        if (!x->suffix) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto done;
        }
        x->suffix[0] = x->eos;
        x->n_suffix = 1;
    }
done:
    free(s);
    free(ds);
    free(l);
    free(dl);
    free(buf);
    free(dbuf);
    return st;
}

qkv_status qkv__gguf_vocab_load(const char *path, qkv__tokx **out) {
    *out = NULL;
    qkv__gguf g;
    memset(&g, 0, sizeof g);
    qkv_status st = qkv__gguf_open(path, &g);
    if (st) return st;
    qkv__tokx *x = qkv__tokx_new();
    if (!x) {
        qkv__gguf_close(&g);
        return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    st = build(&g, path, x);
    qkv__gguf_close(&g);
    if (st) {
        qkv__tokx_free(x);
        return st;
    }
    *out = x;
    return QKV_OK;
}
