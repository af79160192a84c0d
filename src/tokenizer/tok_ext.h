/*
 * tok_ext.h -- the general tokenizer behind tokenizer.json, GGUF vocabularies and llama2.c's
 * tokenizer.bin (bpe.c keeps the original GPT-2 vocab.json + merges.txt path and hands every
 * call on a tokenizer with `ext` set to tokx.c).
 *
 *   regex.c     the Split-pattern regex subset, matched by a Pike VM (no backtracking)
 *   tokx.c      the engine: vocabulary, merges (by rank or by score), added tokens,
 *               normalizers, pre-tokenizers, post-processor, decoders; encode / decode
 *   hf.c        tokenizer.json -> engine
 *   spm.c       llama2.c tokenizer.bin -> engine
 *   gguf_vocab.c  GGUF tokenizer.ggml.* -> engine
 *   open.c      qkv_tokenizer_open: decides what a path is
 */
#ifndef QKV_TOK_EXT_H
#define QKV_TOK_EXT_H

#include "tok_internal.h"

#include <stdio.h>

/* Re-raises the last error with a prefix (the message is copied first: qkv__fail writes
 * into the buffer qkv_last_error() points at). */
static inline qkv_status qkv__tok_refail(qkv_status st, const char *path) {
    char buf[768];
    snprintf(buf, sizeof buf, "%s", qkv_last_error());
    return qkv__fail(st, "%s: %s", path, buf);
}

/* ---- regex.c ----------------------------------------------------------------------- */
typedef struct qkv__re qkv__re;
typedef struct qkv__re_work qkv__re_work; /* per-caller scratch, grown on demand */
qkv_status qkv__re_compile(const char *pat, size_t len, qkv__re **out);
void qkv__re_free(qkv__re *re);
void qkv__re_work_free(qkv__re_work *w);
/* Leftmost-first match in s[from, n): 1 and [*ms, *me), 0 when none, -1 out of memory.
 * Assertions (^ $ lookahead) see the whole s[0, n). */
int qkv__re_find(const qkv__re *re, qkv__re_work **w, const uint8_t *s, size_t n, size_t from,
                 size_t *ms, size_t *me);

/* ---- tokx.c ------------------------------------------------------------------------ */
enum { QKV__TT_NORMAL = 1, QKV__TT_UNKNOWN = 2, QKV__TT_CONTROL = 3, QKV__TT_USER = 4,
       QKV__TT_UNUSED = 5, QKV__TT_BYTE = 6 };

enum { QKV__NORM_NFC, QKV__NORM_NFD, QKV__NORM_NFKC, QKV__NORM_NFKD, QKV__NORM_PREPEND,
       QKV__NORM_REPLACE, QKV__NORM_LOWERCASE, QKV__NORM_STRIP };

typedef struct qkv__norm {
    int kind;
    char *a; size_t na;   /* PREPEND: text; REPLACE: literal pattern (when re is NULL) */
    char *b; size_t nb;   /* REPLACE: replacement */
    qkv__re *re;          /* REPLACE with a regex pattern */
    int left, right;      /* STRIP */
} qkv__norm;

enum { QKV__PRE_SPLIT, QKV__PRE_BYTELEVEL, QKV__PRE_DIGITS, QKV__PRE_METASPACE,
       QKV__PRE_WHITESPACE_SPLIT, QKV__PRE_PUNCT };
enum { QKV__SPLIT_ISOLATED, QKV__SPLIT_REMOVED, QKV__SPLIT_MERGED_PREV, QKV__SPLIT_MERGED_NEXT,
       QKV__SPLIT_CONTIGUOUS };

typedef struct qkv__pre {
    int kind;
    qkv__re *re;            /* SPLIT (regex or escaped literal); BYTELEVEL with use_regex */
    int behavior, invert;   /* SPLIT */
    int add_prefix_space;   /* BYTELEVEL */
    int individual;         /* DIGITS */
    char repl[8]; size_t nrepl; /* METASPACE replacement */
    int prepend;            /* METASPACE: 0 never, 1 first, 2 always */
    int split;              /* METASPACE */
    int gpt2_fast;          /* BYTELEVEL use_regex: the hand-written GPT-2 splitter */
} qkv__pre;

typedef struct qkv__added {
    int id;
    char *s; size_t n;
    int special, lstrip, rstrip, single_word, normalized;
    int pass;  /* 0: matched in the raw text; 1: in the normalized text (normalized: true
                * with a normalizer; s is then the normalized content, as HF matches it) */
} qkv__added;

typedef struct qkv__tokx {
    int n_vocab;
    /* the model's strings (what merges concatenate): raw bytes for byte-level BPE, UTF-8
     * with the metaspace for SentencePiece-style vocabularies */
    uint32_t *off, *len; char *blob;
    /* what each token decodes to */
    uint32_t *doff, *dlen; char *dblob;
    float *score;
    uint8_t *type;
    uint8_t *hidden;      /* set by a loader before set_vocab: not found by string (a byte-level
                           * token whose string is outside GPT-2's alphabet) */
    int32_t *str_table; uint32_t str_mask;
    struct qkv__pair *pairs; uint32_t pair_mask; int n_merges;
    int byte_level;       /* symbols start as bytes (else as characters) */
    int byte_fallback;    /* unknown characters become <0xNN> tokens */
    int byte_tok[256];    /* BYTE-level: the token of each byte; fallback: <0xNN>; -1 none */
    int unk, fuse_unk, ignore_merges;
    int by_score;         /* merges ranked by the merged token's score (SentencePiece BPE) */
    qkv__norm *norm; int n_norm;
    qkv__pre *pre; int n_pre;
    qkv__added *added; int n_added; size_t added_max; int has_pass1;
    int *prefix, n_prefix, *suffix, n_suffix; /* post-processor's special tokens */
    int bos, eos, eot;
    int strip_lead;       /* decoder strips one leading space (Strip / Metaspace / llama2.c) */
    int llama2c;          /* run.c's encode: dummy prefix " " for the whole text */
    int spm_dummy_prefix; /* llama.cpp SPM: prefix "▁" and spaces -> "▁" (GGUF llama) */
    const char *kind;     /* "tokenizer.json", "gguf", "llama2.c" */
} qkv__tokx;

struct qkv__pair {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    int32_t rank, merged;
};

/* Building: tokx_new, then set vocab (strings, decoded strings, scores, types), then
 * merges by rank (qkv__tokx_add_merge) or by score (qkv__tokx_score_merges), then
 * qkv__tokx_finish. */
qkv__tokx *qkv__tokx_new(void);
void qkv__tokx_free(qkv__tokx *x);
qkv_status qkv__tokx_set_vocab(qkv__tokx *x, int n, const char *const *s, const size_t *len,
                               const char *const *ds, const size_t *dlen);
int qkv__tokx_lookup(const qkv__tokx *x, const void *s, size_t n);
qkv_status qkv__tokx_alloc_pairs(qkv__tokx *x, size_t n_max);
/* 1 added, 0 duplicate pair (kept the first), <0 table full */
int qkv__tokx_add_merge(qkv__tokx *x, int a, int b, int merged, int rank);
qkv_status qkv__tokx_score_merges(qkv__tokx *x);
qkv_status qkv__tokx_finish(qkv__tokx *x);
qkv_status qkv__tokx_add_added(qkv__tokx *x, int id, const char *s, size_t n, int special,
                               int lstrip, int rstrip, int single_word, int normalized);

qkv_status qkv__tokx_encode(const qkv__tokx *x, const char *text, size_t len, unsigned flags,
                            int **ids, size_t *n_ids);
qkv_status qkv__tokx_decode(const qkv__tokx *x, const int *ids, size_t n_ids, char **text,
                            size_t *len);

/* ---- loaders ----------------------------------------------------------------------- */
qkv_status qkv__hf_load(const char *path, qkv__tokx **out);
qkv_status qkv__llama2c_load(const char *path, int vocab_size, qkv__tokx **out);
qkv_status qkv__llama2c_parse(const uint8_t *d, size_t size, const char *path, int vocab_size,
                              qkv__tokx **out);
qkv_status qkv__gguf_vocab_load(const char *path, qkv__tokx **out);

/* bpe.c: wraps an engine in the public handle (takes ownership, frees it on failure). */
qkv_status qkv__tokenizer_wrap(qkv__tokx *x, qkv_tokenizer **out);

#endif /* QKV_TOK_EXT_H */
