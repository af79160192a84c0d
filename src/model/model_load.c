/*
 * gpt2_load.c -- qkv_model_load: config.json + model.safetensors (+ tokenizer) into the
 * float32 parameter block, every tensor checked against the shape the config implies.
 *
 * Names: Hugging Face's, with or without "transformer."; "h.N.attn.bias" and
 * "h.N.attn.masked_bias" (causal-mask buffers some checkpoints carry) are ignored; any other
 * unknown name is refused (a checkpoint of another architecture). lm_head.weight: absent or
 * equal to wte -> tied; different -> kept as a separate [V, C] output matrix.
 */
#include "model/model.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Name without "transformer.". */
static const char *base_name(const char *name) {
    return strncmp(name, "transformer.", 12) ? name : name + 12;
}

static qkv_status load_weights(qkv_model *m, const char *path) {
    qkv__st_file f;
    qkv_status st = qkv__st_open(path, &f);
    if (st) return st;
    int n_ent = qkv__n_entries(m);
    qkv__tensor_entry *ents = malloc(sizeof *ents * (size_t)n_ent);
    char *used = calloc((size_t)(f.n_tensors ? f.n_tensors : 1), 1);
    if (!ents || !used) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    qkv__tensor_table(m, ents);
    const qkv_model_config *c = &m->cfg;
    for (int i = 0; i < n_ent; i++) {
        int idx = -1;
        for (int j = 0; j < f.n_tensors; j++) {
            if (strcmp(base_name(f.tensors[j].name), ents[i].name)) continue;
            if (idx >= 0) {
                st = qkv__fail(QKV_EFORMAT, "%s: tensor %s appears twice (with and without "
                               "\"transformer.\")", path, ents[i].name);
                goto done;
            }
            idx = j;
        }
        if (idx < 0) {
            st = qkv__fail(QKV_ENOTFOUND, "%s: tensor %s missing (config.json: n_layer %d, "
                           "n_embd %d, vocab_size %d, n_positions %d)", path, ents[i].name,
                           c->n_layer, c->n_embd, c->vocab_size, c->n_ctx);
            goto done;
        }
        const qkv__st_tensor *t = &f.tensors[idx];
        used[idx] = 1;
        int ok = t->ndim == ents[i].ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == ents[i].shape[d];
        if (!ok) {
            char got[160] = "", want[64];
            size_t at = 0;
            for (int d = 0; d < t->ndim && at < sizeof got - 24; d++)
                at += (size_t)snprintf(got + at, sizeof got - at, "%s%lld", d ? ", " : "",
                                       (long long)t->shape[d]);
            if (ents[i].ndim == 2)
                snprintf(want, sizeof want, "%lld, %lld", (long long)ents[i].shape[0],
                         (long long)ents[i].shape[1]);
            else
                snprintf(want, sizeof want, "%lld", (long long)ents[i].shape[0]);
            st = qkv__fail(QKV_ESHAPE, "%s: tensor %s: shape [%s], expected [%s] from config.json",
                           path, t->name, got, want);
            goto done;
        }
        qkv__st_to_f32(t, ents[i].data);
    }
    for (int j = 0; j < f.n_tensors; j++) {
        if (used[j]) continue;
        const char *nm = base_name(f.tensors[j].name);
        if (ends_with(nm, ".attn.bias") || ends_with(nm, ".attn.masked_bias")) continue;
        if (!strcmp(nm, "lm_head.weight")) {
            const qkv__st_tensor *t = &f.tensors[j];
            if (t->ndim != 2 || t->shape[0] != c->vocab_size || t->shape[1] != c->n_embd) {
                st = qkv__fail(QKV_ESHAPE, "%s: tensor %s: expected shape [%d, %d]", path, t->name,
                               c->vocab_size, c->n_embd);
                goto done;
            }
            float *lm = qkv__alloc_params(t->count);
            if (!lm) {
                st = qkv__fail(QKV_ENOMEM, "%s: out of memory for lm_head.weight", path);
                goto done;
            }
            qkv__st_to_f32(t, lm);
            if (!memcmp(lm, m->p.wte, t->count * sizeof(float))) {
                qkv__free_aligned(lm); /* tied, as GPT-2 is */
            } else {
                qkv__free_aligned(m->lm_head);
                m->lm_head = lm;
            }
            continue;
        }
        st = qkv__fail(QKV_EFORMAT, "%s: unexpected tensor %s (not part of a GPT-2 model)", path,
                       f.tensors[j].name);
        goto done;
    }
done:
    free(ents);
    free(used);
    qkv__st_close(&f);
    return st;
}

void qkv__model_set_tokenizer(qkv_model *model, qkv_tokenizer *tok) {
    if (model->tok && model->tok != tok) qkv_tokenizer_free(model->tok);
    model->tok = tok;
    model->free_tok = qkv_tokenizer_free;
}

qkv_status qkv_model_load(const char *dir, qkv_model **out) {
    *out = NULL;
    if (!dir) return qkv__fail(QKV_EINVAL, "model: no folder given");
    char *cpath = qkv__path_join(dir, "config.json");
    char *wpath = qkv__path_join(dir, "model.safetensors");
    char *vpath = qkv__path_join(dir, "vocab.json");
    char *mpath = qkv__path_join(dir, "merges.txt");
    char *text = NULL;
    size_t len = 0;
    qkv_model *m = NULL;
    qkv_status st = QKV_OK;
    if (!cpath || !wpath || !vpath || !mpath) {
        st = qkv__fail(QKV_ENOMEM, "model: out of memory");
        goto fail;
    }
    if ((st = qkv__read_file(cpath, 1 << 20, &text, &len))) goto fail;
    qkv_model_config cfg;
    if ((st = qkv__gpt2_parse_config(text, len, cpath, &cfg))) goto fail;
    /* Allocate only what the weights file can back: a few bytes of config.json must not make
     * us zero gigabytes before the safetensors file is even looked at. */
    {
        size_t sizes[QKV__N_KINDS], n_params = 0;
        qkv__param_sizes(&cfg, sizes);
        for (int i = 0; i < QKV__N_KINDS; i++)
            if (!qkv__add_size(n_params, sizes[i], &n_params)) n_params = SIZE_MAX;
        struct stat wst;
        if (stat(wpath, &wst) != 0) {
            st = qkv__fail(QKV_EIO, "%s: %s", wpath, strerror(errno));
            goto fail;
        }
        if ((uint64_t)wst.st_size / 2 < (uint64_t)n_params) {
            st = qkv__fail(QKV_EFORMAT,
                           "%s: %lld bytes cannot hold the %zu parameters %s describes (2+ bytes each)",
                           wpath, (long long)wst.st_size, n_params, cpath);
            goto fail;
        }
    }
    if ((st = qkv__model_create(&cfg, &m))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", qkv_last_error());
        st = qkv__fail(st, "%s: %s", cpath, msg);
        goto fail;
    }
    if ((st = load_weights(m, wpath))) goto fail;
    if (access(vpath, F_OK) == 0 || access(mpath, F_OK) == 0) {
        qkv_tokenizer *tok = NULL;
        if ((st = qkv_tokenizer_load(vpath, mpath, &tok))) goto fail;
        if (qkv_tokenizer_vocab_size(tok) > cfg.vocab_size) {
            st = qkv__fail(QKV_ESHAPE, "%s: tokenizer has %d tokens, more than the model's vocab_size %d",
                           vpath, qkv_tokenizer_vocab_size(tok), cfg.vocab_size);
            qkv_tokenizer_free(tok);
            goto fail;
        }
        qkv__model_set_tokenizer(m, tok);
    }
    /* display name: the folder's base name */
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    size_t b = dl;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(m->name, sizeof m->name, "%.*s", (int)(dl - b), dir + b);
    free(cpath);
    free(wpath);
    free(vpath);
    free(mpath);
    free(text);
    *out = m;
    return QKV_OK;
fail:
    qkv_model_free(m);
    free(cpath);
    free(wpath);
    free(vpath);
    free(mpath);
    free(text);
    return st;
}
