/*
 * st_folder.c -- a Hugging Face weights folder as a qkv__tensor_src: DIR/model.safetensors, or
 * DIR/model.safetensors.index.json and the shards it names (transformers' order of
 * preference: the single file first).
 *
 * The index is {"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}.
 * Trusted only after checking: weight_map an object of strings; every shard name a plain
 * file name inside DIR (no '/', no '\\', not "." or "..": a hostile index must not make us
 * map files elsewhere); every shard opens and validates as safetensors (safetensors.c);
 * every tensor the index lists is in the shard it names; every tensor of a shard is one the
 * index assigns to that shard (a tensor in two shards, or one the index does not know, is
 * refused: which copy would be meant is a guess).
 *
 * Lookup is exact (a sorted table and binary search); values come out as float32.
 */
#include "model/sources.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INDEX_MAX_BYTES ((size_t)64 << 20) /* a 3000-tensor index is ~200 KB */
#define MAX_SHARDS 65536

typedef struct st_entry {
    const char *name;        /* the tensor's, owned by its shard */
    const qkv__st_tensor *t;
} st_entry;

typedef struct st_folder {
    char *dir;
    int n_files;
    int index_based;         /* shards named by model.safetensors.index.json */
    qkv__st_file *files;     /* the single file, or one per shard */
    char **paths;            /* files[i].path points here */
    int n_entries;
    st_entry *entries;       /* every tensor, sorted by name */
    uint64_t bytes;          /* the tensors' bytes in the files */
} st_folder;

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static const qkv__st_tensor *folder_find(const st_folder *f, const char *name) {
    st_entry key = {name, NULL};
    const st_entry *e = bsearch(&key, f->entries, (size_t)f->n_entries, sizeof *f->entries, cmp_entry);
    return e ? e->t : NULL;
}

static void folder_close(void *ctx) {
    st_folder *f = ctx;
    if (!f) return;
    for (int i = 0; i < f->n_files; i++) {
        qkv__st_close(&f->files[i]);
        free(f->paths[i]);
    }
    free(f->files);
    free(f->paths);
    free(f->entries);
    free(f->dir);
    free(f);
}

static int folder_shape(void *ctx, const char *name, int *ndim, int64_t shape[QKV__ST_MAX_DIMS]) {
    const qkv__st_tensor *t = folder_find(ctx, name);
    if (!t) return 0;
    *ndim = t->ndim;
    for (int d = 0; d < QKV__ST_MAX_DIMS; d++) shape[d] = d < t->ndim ? t->shape[d] : 0;
    return 1;
}

static qkv_status folder_read(void *ctx, const char *name, float *dst) {
    const st_folder *f = ctx;
    const qkv__st_tensor *t = folder_find(f, name);
    if (!t) return qkv__fail(QKV_ENOTFOUND, "%s: no tensor %s", f->dir, name);
    qkv__st_to_f32(t, dst);
    return QKV_OK;
}

static uint64_t folder_bytes(void *ctx) { return ((const st_folder *)ctx)->bytes; }

/* Opens path as files[n_files] (the folder owns path from here on, even on failure). */
static qkv_status add_file(st_folder *f, char *path) {
    f->paths[f->n_files] = path;
    qkv_status st = qkv__st_open(path, &f->files[f->n_files]);
    if (st) {
        free(path);
        f->paths[f->n_files] = NULL;
        return st;
    }
    f->n_files++;
    return QKV_OK;
}

/* A shard's name must name a file in the folder itself. */
static int plain_file_name(const char *s) {
    return *s && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') && !strchr(s, '\\');
}

/* The table of every tensor of every open file, sorted; duplicates are a bug upstream
 * (checked by the index validation), caught here all the same. */
static qkv_status build_table(st_folder *f, const char *what) {
    size_t n = 0;
    for (int i = 0; i < f->n_files; i++) n += (size_t)f->files[i].n_tensors;
    f->entries = malloc(sizeof *f->entries * (n ? n : 1));
    if (!f->entries) return qkv__fail(QKV_ENOMEM, "%s: out of memory", what);
    f->bytes = 0;
    for (int i = 0; i < f->n_files; i++)
        for (int j = 0; j < f->files[i].n_tensors; j++) {
            const qkv__st_tensor *t = &f->files[i].tensors[j];
            f->entries[f->n_entries++] = (st_entry){t->name, t};
            f->bytes += (uint64_t)t->count * (t->dtype == QKV__ST_F32 ? 4u : 2u);
        }
    qsort(f->entries, n, sizeof *f->entries, cmp_entry);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(f->entries[i - 1].name, f->entries[i].name))
            return qkv__fail(QKV_EFORMAT, "%s: tensor %s appears twice", what, f->entries[i].name);
    return QKV_OK;
}

/* The sharded case: index_path's weight_map checked, its shards opened and cross-checked. */
static qkv_status open_index(st_folder *f, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    qkv_status st = qkv__read_file(index_path, INDEX_MAX_BYTES, &text, &len);
    if (st) return st;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return qkv__fail(QKV_EFORMAT, "%s: invalid JSON at line %d column %d: %s", index_path,
                         jerr.line, jerr.column, jerr.text);
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    const char **shards = NULL; /* distinct shard names, into root */
    size_t n_shards = 0;
    if (!json_is_object(root)) {
        st = qkv__fail(QKV_EFORMAT, "%s: not a JSON object", index_path);
        goto done;
    }
    if (!json_is_object(wm)) {
        st = qkv__fail(QKV_EFORMAT, "%s: \"weight_map\" must be an object of \"tensor\": \"shard "
                       "file\" (it is %s)", index_path, !wm ? "missing" : json_is_array(wm) ? "an array"
                       : json_is_string(wm) ? "a string" : "not an object");
        goto done;
    }
    size_t n_map = json_object_size(wm);
    if (n_map == 0) {
        st = qkv__fail(QKV_EFORMAT, "%s: \"weight_map\" is empty", index_path);
        goto done;
    }
    shards = malloc(sizeof *shards * n_map);
    if (!shards) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            st = qkv__fail(QKV_EFORMAT, "%s: weight_map[\"%.200s\"] must be a file name (a string)",
                           index_path, key);
            goto done;
        }
        const char *s = json_string_value(val);
        if (!plain_file_name(s)) {
            st = qkv__fail(QKV_EFORMAT, "%s: weight_map[\"%.200s\"] = \"%.200s\" is not a file name "
                           "inside the folder (no '/', no '..', no absolute paths)", index_path, key, s);
            goto done;
        }
        size_t k = 0;
        while (k < n_shards && strcmp(shards[k], s)) k++; /* few shards: a scan is enough */
        if (k == n_shards) {
            if (n_shards == MAX_SHARDS) {
                st = qkv__fail(QKV_ERANGE, "%s: more than %d shards", index_path, MAX_SHARDS);
                goto done;
            }
            shards[n_shards++] = s;
        }
    }
    f->files = calloc(n_shards, sizeof *f->files);
    f->paths = calloc(n_shards, sizeof *f->paths);
    if (!f->files || !f->paths) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (size_t k = 0; k < n_shards; k++) {
        char *p = qkv__path_join(f->dir, shards[k]);
        if (!p) {
            st = qkv__fail(QKV_ENOMEM, "%s: out of memory", index_path);
            goto done;
        }
        struct stat sb;
        if (stat(p, &sb) != 0) {
            st = qkv__fail(errno == ENOENT ? QKV_ENOTFOUND : QKV_EIO, "%s: shard %s (named in %s): %s",
                           f->dir, shards[k], index_path, strerror(errno));
            free(p);
            goto done;
        }
        if ((st = add_file(f, p))) goto done;
    }
    /* every tensor of every shard must be assigned to that shard */
    size_t matched = 0;
    for (int i = 0; i < f->n_files; i++) {
        const char *shard = shards[i];
        for (int j = 0; j < f->files[i].n_tensors; j++) {
            const char *name = f->files[i].tensors[j].name;
            json_t *v = json_object_get(wm, name);
            if (!v) {
                st = qkv__fail(QKV_EFORMAT, "%s: tensor %s is in shard %s, but weight_map does not "
                               "list it", index_path, name, shard);
                goto done;
            }
            const char *assigned = json_string_value(v);
            if (strcmp(assigned, shard)) {
                int k = 0;
                while (strcmp(shards[k], assigned)) k++;
                if (qkv__st_find(&f->files[k], name))
                    st = qkv__fail(QKV_EFORMAT, "%s: tensor %s is in two shards, %s and %s",
                                   index_path, name, assigned, shard);
                else
                    st = qkv__fail(QKV_EFORMAT, "%s: tensor %s is in shard %s, but weight_map "
                                   "assigns it to %s", index_path, name, shard, assigned);
                goto done;
            }
            matched++;
        }
    }
    /* ... and every tensor listed must be in its shard */
    if (matched != n_map) {
        json_object_foreach(wm, key, val) {
            size_t k = 0;
            while (strcmp(shards[k], json_string_value(val))) k++;
            if (!qkv__st_find(&f->files[k], key)) {
                st = qkv__fail(QKV_ENOTFOUND, "%s: weight_map puts tensor %s in shard %s, which "
                               "does not have it", index_path, key, shards[k]);
                goto done;
            }
        }
        st = qkv__fail(QKV_EFORMAT, "%s: weight_map and the shards disagree", index_path); /* unreachable */
        goto done;
    }
    st = build_table(f, index_path);
done:
    free(shards);
    json_decref(root);
    return st;
}

qkv_status qkv__st_folder_open(const char *dir, qkv__tensor_src *src) {
    memset(src, 0, sizeof *src);
    if (!dir) return qkv__fail(QKV_EINVAL, "model: no folder given");
    st_folder *f = calloc(1, sizeof *f);
    char *single = NULL, *index = NULL;
    qkv_status st = QKV_OK;
    if (!f || !(f->dir = strdup(dir)) || !(single = qkv__path_join(dir, "model.safetensors")) ||
        !(index = qkv__path_join(dir, "model.safetensors.index.json"))) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", dir);
        goto fail;
    }
    struct stat sb;
    if (stat(single, &sb) == 0) {
        f->files = calloc(1, sizeof *f->files);
        f->paths = calloc(1, sizeof *f->paths);
        if (!f->files || !f->paths) {
            st = qkv__fail(QKV_ENOMEM, "%s: out of memory", dir);
            goto fail;
        }
        st = add_file(f, single);
        single = NULL;
        if (st || (st = build_table(f, f->paths[0]))) goto fail;
    } else if (stat(index, &sb) == 0) {
        f->index_based = 1;
        if ((st = open_index(f, index))) goto fail;
    } else {
        char *bin = qkv__path_join(dir, "pytorch_model.bin");
        int has_bin = bin && stat(bin, &sb) == 0;
        free(bin);
        st = qkv__fail(QKV_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json%s", dir,
                       has_bin ? " (pytorch_model.bin is a pickle, which qkv does not run: convert it "
                                 "to safetensors)" : "");
        goto fail;
    }
    free(single);
    free(index);
    /* messages name the file itself when there is one */
    src->path = f->n_files == 1 && !f->index_based ? f->paths[0] : f->dir;
    src->ctx = f;
    src->shape = folder_shape;
    src->read = folder_read;
    src->file_bytes = folder_bytes;
    src->close = folder_close;
    return QKV_OK;
fail:
    free(single);
    free(index);
    folder_close(f);
    return st;
}
