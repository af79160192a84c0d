/*
 * tok_export.h -- a tokenizer's vocabulary in the forms other files store it, for
 * `qkv convert` (src/cli/cmd_convert.c): GGUF's tokenizer.ggml.* keys and GPT-2's
 * vocab.json + merges.txt. Read-only over the tokenizer loaders (export.c reopens the
 * tokenizer's source with them; nothing in the encoder changes).
 */
#ifndef QKV_TOK_EXPORT_H
#define QKV_TOK_EXPORT_H

#include "qkv_internal.h"

#include <stddef.h>
#include <stdint.h>

struct qkv__gguf_writer;

typedef struct qkv__tok_vocab {
    const char *model;  /* tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece) */
    char pre[64];       /* tokenizer.ggml.pre (gpt2) */
    int n;              /* tokens */
    char **tok;         /* [n] in the file's form: GPT-2's byte alphabet (gpt2), "▁" for spaces (llama) */
    size_t *len;
    float *score;       /* [n] (llama), else NULL */
    int32_t *type;      /* [n] 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte */
    int n_merges;       /* gpt2: "a b" in rank order */
    char **merge;
    int bos, eos, unk;  /* -1 when none */
    int add_bos;        /* the tokenizer adds BOS (post-processor, llama2.c) */
    int add_space_prefix; /* llama: tokenizer.ggml.add_space_prefix, or -1 to leave it out */
    char note[256];     /* what was guessed (an unidentified split pattern), or "" */
} qkv__tok_vocab;

/* Reads the vocabulary of the tokenizer at path: a folder (tokenizer.json, vocab.json +
 * merges.txt, tokenizer.bin), a tokenizer.json, a GGUF file (its tokenizer.ggml.*), or a
 * llama2.c tokenizer.bin (vocab_size tokens; 0 = to the end). A tokenizer that is neither
 * byte-level BPE nor scored SentencePiece is refused with the reason. */
qkv_status qkv__tok_vocab_open(const char *path, int vocab_size, qkv__tok_vocab *v);
void qkv__tok_vocab_free(qkv__tok_vocab *v);

/* tokenizer.ggml.* into w, padded with "[PAD<i>]" tokens (type unused) up to n_model (the
 * model's embedding rows), as convert_hf_to_gguf.py does. */
qkv_status qkv__tok_vocab_to_gguf(const qkv__tok_vocab *v, int n_model, struct qkv__gguf_writer *w);

/* dir/vocab.json + dir/merges.txt (GPT-2's files) of a byte-level BPE vocabulary. */
qkv_status qkv__tok_vocab_save_gpt2(const qkv__tok_vocab *v, const char *dir);

#endif /* QKV_TOK_EXPORT_H */
