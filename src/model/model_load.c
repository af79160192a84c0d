/*
 * model_load.c -- qkv_model_load: any family from any source. The path decides the source:
 *
 *   a folder            config.json (sources.h: hf_config.c) + model.safetensors or shards
 *                       (st_folder.c), with its tokenizer (tokenizer.json, or vocab.json +
 *                       merges.txt) when there is one;
 *   a GGUF file         hyperparameters, tensors and tokenizer inside it (gguf_model.c);
 *   a llama2.c .bin     karpathy's checkpoints (llama2c.c), with tokenizer.bin beside it.
 *
 * Then one loop fills the parameter block from the family's tensor table (params.h): every
 * tensor looked up by its Hugging Face name (GPT-2's with or without "transformer."),
 * checked against the shape the config implies, converted to float32 and transposed into
 * the block's [in, out] layout where the file has nn.Linear's [out, in].
 */
#include "model/gguf.h"
#include "model/model.h"
#include "model/sources.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void close_src(qkv__tensor_src *src) {
    if (src->close) src->close(src->ctx);
    memset(src, 0, sizeof *src);
}

/* The name the source has for entry name: as is, or without its "transformer." (GPT-2) or
 * "model." (Llama family) prefix, as base-model checkpoints store them. */
static qkv_status find_name(const qkv__tensor_src *src, const char *name, const char **found,
                            int *ndim, int64_t shape[QKV__ST_MAX_DIMS]) {
    int with = src->shape(src->ctx, name, ndim, shape);
    const char *bare = !strncmp(name, "transformer.", 12) ? name + 12 : !strncmp(name, "model.", 6) ? name + 6 : NULL;
    int64_t s2[QKV__ST_MAX_DIMS];
    int nd2 = 0, without = bare ? src->shape(src->ctx, bare, &nd2, s2) : 0;
    if (with && without)
        return qkv__fail(QKV_EFORMAT, "%s: tensor %s appears twice (with and without its prefix \"%.*s\")",
                         src->path, bare, (int)(bare - name), name);
    if (without) {
        *ndim = nd2;
        memcpy(shape, s2, sizeof s2);
    }
    *found = with ? name : without ? bare : NULL;
    return QKV_OK;
}

static qkv_status fill_block(qkv_model *m, const qkv__tensor_src *src) {
    const qkv_model_config *c = &m->cfg;
    int n_ent = qkv__n_entries(c);
    qkv__tensor_entry *ents = malloc(sizeof *ents * (size_t)n_ent);
    float *tmp = NULL;
    size_t tmp_cap = 0;
    qkv_status st = QKV_OK;
    if (!ents) return qkv__fail(QKV_ENOMEM, "%s: out of memory", src->path);
    qkv__tensor_table(c, &m->p, ents);
    for (int i = 0; i < n_ent && !st; i++) {
        const qkv__tensor_entry *e = &ents[i];
        const char *name = NULL;
        int ndim = 0;
        int64_t shape[QKV__ST_MAX_DIMS] = {0};
        if ((st = find_name(src, e->name, &name, &ndim, shape))) break;
        if (!name) {
            st = qkv__fail(QKV_ENOTFOUND, "%s: tensor %s missing (config: %s, %d layers, width %d, "
                           "%d heads / %d KV heads, vocabulary %d)", src->path, e->name, c->family,
                           c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->vocab_size);
            break;
        }
        int ok = ndim == e->ndim;
        for (int d = 0; ok && d < ndim; d++) ok = shape[d] == e->shape[d];
        if (!ok) {
            char got[160] = "", want[64];
            size_t at = 0;
            for (int d = 0; d < ndim && at < sizeof got - 24; d++)
                at += (size_t)snprintf(got + at, sizeof got - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
            if (e->ndim == 2)
                snprintf(want, sizeof want, "%lld, %lld", (long long)e->shape[0], (long long)e->shape[1]);
            else
                snprintf(want, sizeof want, "%lld", (long long)e->shape[0]);
            st = qkv__fail(QKV_ESHAPE, "%s: tensor %s: shape [%s], expected [%s] from the config",
                           src->path, name, got, want);
            break;
        }
        if (!e->transpose) {
            st = src->read(src->ctx, name, e->data);
            continue;
        }
        if (e->count > tmp_cap) {
            qkv__free_aligned(tmp);
            tmp = qkv__alloc_aligned(e->count * sizeof(float));
            tmp_cap = tmp ? e->count : 0;
            if (!tmp) {
                st = qkv__fail(QKV_ENOMEM, "%s: out of memory for %s", src->path, name);
                break;
            }
        }
        if (!(st = src->read(src->ctx, name, tmp))) qkv__entry_from_file(e, tmp);
    }
    qkv__free_aligned(tmp);
    free(ents);
    return st;
}

/* GPT-2 checkpoints may carry lm_head.weight: equal to wte (tied, dropped) or not (kept). */
static qkv_status gpt2_lm_head(const qkv__tensor_src *src, qkv_model_config *cfg) {
    int ndim;
    int64_t shape[QKV__ST_MAX_DIMS];
    if (strcmp(cfg->family, "gpt2") || !src->shape(src->ctx, "lm_head.weight", &ndim, shape)) return QKV_OK;
    if (ndim != 2 || shape[0] != cfg->vocab_size || shape[1] != cfg->n_embd)
        return qkv__fail(QKV_ESHAPE, "%s: tensor lm_head.weight: expected shape [%d, %d]", src->path,
                         cfg->vocab_size, cfg->n_embd);
    cfg->untied = 1;
    return QKV_OK;
}

static void drop_tied_head(qkv_model *m) {
    size_t n = (size_t)m->cfg.vocab_size * (size_t)m->cfg.n_embd;
    if (!m->cfg.untied || strcmp(m->cfg.family, "gpt2") || memcmp(m->p.lm_head, m->p.wte, n * sizeof(float)))
        return;
    m->cfg.untied = 0; /* lm_head is the block's last kind: forget it */
    m->p.lm_head = NULL;
    m->n_block -= n;
}

/* Builds the model from cfg and src (taking neither). */
static qkv_status build(qkv_model_config *cfg, const qkv__tensor_src *src, const char *what,
                        qkv_model **out) {
    qkv_status st = gpt2_lm_head(src, cfg);
    if (st) return st;
    /* Allocate only what the file can back: a few bytes of config must not make us zero
     * gigabytes before the weights are even looked at. */
    qkv_model_config chk = *cfg;
    if ((st = qkv__check_config(&chk))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", qkv_last_error());
        return qkv__fail(st, "%s: %s", what, msg);
    }
    size_t sizes[QKV__N_KINDS], n_params = 0;
    qkv__param_sizes(&chk, sizes);
    for (int i = 0; i < QKV__N_KINDS; i++)
        if (!qkv__add_size(n_params, sizes[i], &n_params)) n_params = SIZE_MAX;
    uint64_t bytes = src->file_bytes ? src->file_bytes(src->ctx) : UINT64_MAX;
    if (bytes < (uint64_t)n_params) /* at least a byte each (Q8_0 holds ~1.06) */
        return qkv__fail(QKV_EFORMAT, "%s: %llu bytes of tensors cannot hold the %zu parameters %s "
                             "describes", src->path, (unsigned long long)bytes, n_params, what);
    qkv_model *m = NULL;
    if ((st = qkv__model_create(cfg, &m))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", qkv_last_error());
        return qkv__fail(st, "%s: %s", what, msg);
    }
    if ((st = fill_block(m, src))) {
        qkv_model_free(m);
        return st;
    }
    drop_tied_head(m);
    *out = m;
    return QKV_OK;
}

void qkv__model_set_tokenizer(qkv_model *model, qkv_tokenizer *tok) {
    if (model->tok && model->tok != tok) qkv_tokenizer_free(model->tok);
    model->tok = tok;
    model->free_tok = qkv_tokenizer_free;
}

qkv_status qkv_model_set_tokenizer(qkv_model *model, qkv_tokenizer *tok) {
    if (!model) return qkv__fail(QKV_EINVAL, "model: NULL");
    if (tok && qkv_tokenizer_vocab_size(tok) > model->cfg.vocab_size)
        return qkv__fail(QKV_ESHAPE, "tokenizer has %d tokens, more than the model's vocabulary of %d",
                         qkv_tokenizer_vocab_size(tok), model->cfg.vocab_size);
    qkv__model_set_tokenizer(model, tok);
    return QKV_OK;
}

/* Attaches the tokenizer at path (a file or folder qkv_tokenizer_open reads). */
static qkv_status attach_tokenizer(qkv_model *m, const char *path) {
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_open(path, &tok);
    if (st) return st;
    if ((st = qkv_model_set_tokenizer(m, tok))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", qkv_last_error());
        qkv_tokenizer_free(tok);
        return qkv__fail(st, "%s: %s", path, msg);
    }
    return QKV_OK;
}

static void set_name(qkv_model *m, const char *path) {
    size_t dl = strlen(path);
    while (dl > 1 && path[dl - 1] == '/') dl--;
    size_t b = dl;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(m->name, sizeof m->name, "%.*s", (int)(dl - b), path + b);
}

static int exists(const char *dir, const char *name) {
    char *p = qkv__path_join(dir, name);
    int ok = p && access(p, F_OK) == 0;
    free(p);
    return ok;
}

static qkv_status load_folder(const char *dir, qkv_model **out) {
    char *cpath = qkv__path_join(dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    qkv__tensor_src src = {0};
    qkv_model *m = NULL;
    qkv_status st = cpath ? QKV_OK : qkv__fail(QKV_ENOMEM, "model: out of memory");
    if (!st) st = qkv__read_file(cpath, 1 << 20, &text, &len);
    qkv_model_config cfg;
    if (!st) st = qkv__hf_parse_config(text, len, cpath, &cfg);
    if (!st) st = qkv__st_folder_open(dir, &src);
    if (!st) st = build(&cfg, &src, cpath, &m);
    close_src(&src);
    /* the tokenizer: tokenizer.json, else GPT-2's vocab.json + merges.txt */
    if (!st && (exists(dir, "tokenizer.json") || exists(dir, "vocab.json") || exists(dir, "merges.txt")))
        st = attach_tokenizer(m, dir);
    if (st) {
        qkv_model_free(m);
        m = NULL;
    } else {
        set_name(m, dir);
    }
    free(cpath);
    free(text);
    *out = m;
    return st;
}

static qkv_status load_file(const char *path, qkv_model **out) {
    uint8_t magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return qkv__fail(QKV_EIO, "%s: %s", path, strerror(errno));
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    qkv__tensor_src src = {0};
    qkv_model_config cfg;
    qkv_status st;
    int gguf = got == 4 && !memcmp(magic, "GGUF", 4);
    if (gguf)
        st = qkv__gguf_src_open(path, &src, &cfg);
    else if (got == 4 && (!memcmp(magic, "PK", 2) || magic[0] == 0x80))
        return qkv__fail(QKV_EUNSUPPORTED, "%s: a pickle / PyTorch file (executable code): qkv reads only "
                         "safetensors folders, GGUF and llama2.c checkpoints", path);
    else
        st = qkv__llama2c_open(path, &cfg, &src);
    qkv_model *m = NULL;
    if (!st) st = build(&cfg, &src, path, &m);
    close_src(&src);
    if (!st) {
        set_name(m, path);
        if (gguf) {
            /* the tokenizer inside, when the file has one (a bare-weights GGUF has none) */
            qkv__gguf g;
            int has_tok = 0;
            if (qkv__gguf_open(path, &g) == QKV_OK) {
                has_tok = qkv__gguf_find(&g, "tokenizer.ggml.model") != NULL;
                qkv__gguf_close(&g);
            }
            if (has_tok) st = attach_tokenizer(m, path);
        } else {
            /* llama2.c: tokenizer.bin beside the checkpoint, if there is one */
            char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
            if (slash) *slash = 0;
            char *tpath = dir ? qkv__path_join(slash ? dir : ".", "tokenizer.bin") : NULL;
            if (tpath && access(tpath, F_OK) == 0) {
                qkv_tokenizer *tok = NULL;
                st = qkv_tokenizer_load_llama2c(tpath, m->cfg.vocab_size, &tok);
                if (!st && (st = qkv_model_set_tokenizer(m, tok))) qkv_tokenizer_free(tok);
            }
            free(tpath);
            free(dir);
        }
    }
    if (st) {
        qkv_model_free(m);
        m = NULL;
    }
    *out = m;
    return st;
}

qkv_status qkv_model_load(const char *path, qkv_model **out) {
    *out = NULL;
    if (!path) return qkv__fail(QKV_EINVAL, "model: no path given");
    struct stat sb;
    if (stat(path, &sb) != 0) return qkv__fail(QKV_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return load_folder(path, out);
    if (!S_ISREG(sb.st_mode)) return qkv__fail(QKV_EINVAL, "%s: not a folder or a regular file", path);
    return load_file(path, out);
}
