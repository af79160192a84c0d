/*
 * cmd_patch.c -- `qkv patch`: activation patching between two sentences of the same length.
 *
 *   qkv patch [--model DIR] (--source T | --source-ids 1,2,3) (--text T | --ids 1,2,3)
 *             [--target TOK] [--vs TOK] [--what heads|positions|both] [--json | --csv]
 *             [--no-color] [--threads N]
 *
 * The source run's activations are copied into the destination run (--text/--ids), one at a
 * time: a head's output at every position (the layer x head map), or the residual stream
 * entering a block at one position (the layer x position map). Each cell is the metric
 * m = log P(target) - log P(vs) at the last position, and the fraction of the difference
 * between the two runs it restores, (m - m_dest) / (m_source - m_dest)
 * (qkv_model_patch_maps). Defaults: target = the source's top prediction, vs = the
 * destination's top prediction (when it differs).
 */
#include "cli/interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv patch [--model DIR] (--source T | --source-ids 1,2,3) (--text T | --ids 1,2,3)\n"
            "                 [--target TOK] [--vs TOK] [--what heads|positions|both]\n"
            "                 [--json | --csv] [--no-color] [--threads N]\n"
            "\n"
            "Copies one activation at a time from the source run into the destination run (same\n"
            "number of tokens) and measures m = log P(target) - log P(vs) at the last position.\n"
            "  --target TOK / --vs TOK  tokens as text (one vocabulary token, \" were\") or id:N;\n"
            "                 defaults: the source's and the destination's top predictions\n"
            "  --what W       heads: a head's output at every position (layer x head map);\n"
            "                 positions: the stream entering a block at one position (layer x\n"
            "                 position map); both (default)\n"
            "  --json / --csv machine-readable output (raw metric and the fraction restored)\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n");
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *sentence_json(qkv_tokenizer *tok, const int *ids, int n) {
    json_t *o = json_object(), *jt = json_array(), *ji = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(jt, qkv__cli_token_json(tok, ids[i]));
        json_array_append_new(ji, json_integer(ids[i]));
    }
    json_object_set_new(o, "tokens", jt);
    json_object_set_new(o, "ids", ji);
    return o;
}

static json_t *token_obj(qkv_tokenizer *tok, int id) {
    if (id < 0) return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "token", qkv__cli_token_json(tok, id));
    return o;
}

/* rows x cols metric -> {"metric": [[...]], "restored": [[...]]} arrays */
static json_t *map_json(const float *m, int rows, int cols, double ms, double md, int restored) {
    json_t *a = json_array();
    for (int r = 0; r < rows; r++) {
        json_t *row = json_array();
        for (int c = 0; c < cols; c++) {
            double v = m[(size_t)r * cols + c];
            json_array_append_new(row, restored ? num_or_null((v - md) / (ms - md)) : json_real(v));
        }
        json_array_append_new(a, row);
    }
    return a;
}

static void print_map(const char *title, const float *m, int rows, int cols, double ms, double md,
                      char **col_labels, int color) {
    float *f = malloc(sizeof(float) * (size_t)rows * cols);
    char **rl = calloc((size_t)rows, sizeof *rl);
    if (!f || !rl) goto out;
    int restored = ms != md;
    for (int i = 0; i < rows * cols; i++) f[i] = (float)(restored ? (m[i] - md) / (ms - md) : m[i] - md);
    printf("%s (%s)\n", title, restored ? "fraction of the difference restored" : "change from the destination");
    for (int r = 0; r < rows; r++) {
        rl[r] = malloc(24);
        if (!rl[r]) goto out;
        snprintf(rl[r], 24, "layer %d", r);
    }
    qkv__cli_heatmap(stdout, (const char *const *)rl, rows, (const char *const *)col_labels, cols, f, color);
out:
    if (rl)
        for (int r = 0; r < rows; r++) free(rl[r]);
    free(rl);
    free(f);
}

int qkv__cmd_patch(int argc, char **argv) {
    const char *model_dir = NULL, *src_text = NULL, *src_ids_s = NULL, *text = NULL, *ids_s = NULL,
               *target_s = NULL, *vs_s = NULL;
    int want_json = 0, want_csv = 0, do_heads = 1, do_pos = 1, color = isatty(1);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) model_dir = argv[++i];
        else if (!strcmp(a, "--source") && has) src_text = argv[++i];
        else if (!strcmp(a, "--source-ids") && has) src_ids_s = argv[++i];
        else if (!strcmp(a, "--text") && has) text = argv[++i];
        else if (!strcmp(a, "--ids") && has) ids_s = argv[++i];
        else if (!strcmp(a, "--target") && has) target_s = argv[++i];
        else if (!strcmp(a, "--vs") && has) vs_s = argv[++i];
        else if (!strcmp(a, "--json")) want_json = 1;
        else if (!strcmp(a, "--csv")) want_csv = 1;
        else if (!strcmp(a, "--no-color")) color = 0;
        else if (!strcmp(a, "--what") && has) {
            const char *w = argv[++i];
            if (!strcmp(w, "heads")) do_heads = 1, do_pos = 0;
            else if (!strcmp(w, "positions")) do_heads = 0, do_pos = 1;
            else if (!strcmp(w, "both")) do_heads = do_pos = 1;
            else return qkv__cli_usage_error("patch", "--what must be heads, positions or both");
        } else if (!strcmp(a, "--threads") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1024, &v))
                return qkv__cli_usage_error("patch", "--threads must be in [1, 1024]");
            qkv_set_threads((int)v);
        } else {
            usage(stderr);
            return qkv__cli_usage_error("patch", "unknown or incomplete option '%s'", a);
        }
    }
    if (want_json && want_csv) return qkv__cli_usage_error("patch", "give --json or --csv, not both");
    if (!model_dir) model_dir = qkv__cli_default_model();
    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st) return qkv__cli_fail("patch", st);
    const qkv_model_config *cfg = qkv_model_get_config(model);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    int L = cfg->n_layer, H = cfg->n_head, V = cfg->vocab_size;
    int *sids = NULL, *dids = NULL, ns = 0, n = 0, target = -1, vs = -1, rc;
    float *logits = NULL, *hm = NULL, *pm = NULL;
    char **labels = NULL;
    if ((rc = qkv__cli_sentence("patch", "--source and --source-ids", model, src_text, src_ids_s, &sids, &ns)) ||
        (rc = qkv__cli_sentence("patch", "--text and --ids", model, text, ids_s, &dids, &n)))
        goto out;
    if (ns != n) {
        rc = qkv__cli_usage_error("patch", "the source is %d tokens and the destination %d: patching "
                                  "needs sentences of the same length", ns, n);
        goto out;
    }
    if (target_s && (rc = qkv__cli_token("patch", "--target", model, target_s, &target))) goto out;
    if (vs_s && (rc = qkv__cli_token("patch", "--vs", model, vs_s, &vs))) goto out;
    logits = malloc(sizeof(float) * (size_t)V);
    hm = malloc(sizeof(float) * (size_t)L * H);
    pm = malloc(sizeof(float) * (size_t)L * n);
    if (!logits || !hm || !pm) {
        rc = qkv__cli_fail("patch", qkv__fail(QKV_ENOMEM, "out of memory"));
        goto out;
    }
    float pdummy;
    if (target < 0) {
        if ((st = qkv_model_forward(model, sids, n, NULL, NULL, logits, NULL))) goto fail;
        qkv_top_k(logits, V, 1, &target, &pdummy);
    }
    if (vs < 0 && !vs_s) {
        if ((st = qkv_model_forward(model, dids, n, NULL, NULL, logits, NULL))) goto fail;
        qkv_top_k(logits, V, 1, &vs, &pdummy);
        if (vs == target) vs = -1;
    }
    if (vs == target) {
        rc = qkv__cli_usage_error("patch", "--vs is the target itself");
        goto out;
    }
    float msf = 0, mdf = 0;
    double t0 = qkv__now();
    st = qkv_model_patch_maps(model, sids, dids, n, NULL, target, vs, do_heads ? hm : NULL,
                              do_pos ? pm : NULL, &msf, &mdf);
    double ms_time = (qkv__now() - t0) * 1e3;
    if (st) goto fail;
    double ms = msf, md = mdf;
    if (want_json) {
        json_t *root = json_object();
        json_object_set_new(root, "model", json_string(qkv_model_name(model)));
        json_object_set_new(root, "n_tokens", json_integer(n));
        json_object_set_new(root, "n_layer", json_integer(L));
        json_object_set_new(root, "n_head", json_integer(H));
        json_object_set_new(root, "source", sentence_json(tok, sids, n));
        json_object_set_new(root, "dest", sentence_json(tok, dids, n));
        json_object_set_new(root, "target", token_obj(tok, target));
        json_object_set_new(root, "vs", token_obj(tok, vs));
        json_object_set_new(root, "metric", json_string(vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)"));
        json_object_set_new(root, "source_metric", json_real(ms));
        json_object_set_new(root, "dest_metric", json_real(md));
        if (do_heads) {
            json_object_set_new(root, "head_metric", map_json(hm, L, H, ms, md, 0));
            json_object_set_new(root, "head_restored", map_json(hm, L, H, ms, md, 1));
        }
        if (do_pos) {
            json_object_set_new(root, "pos_metric", map_json(pm, L, n, ms, md, 0));
            json_object_set_new(root, "pos_restored", map_json(pm, L, n, ms, md, 1));
        }
        json_object_set_new(root, "ms", json_real(ms_time));
        qkv__cli_print_json(root);
    } else if (want_csv) {
        printf("map,layer,index,metric,restored\n");
        for (int i = 0; do_heads && i < L * H; i++)
            printf("head,%d,%d,%.9g,%.9g\n", i / H, i % H, (double)hm[i], (hm[i] - md) / (ms - md));
        for (int i = 0; do_pos && i < L * n; i++)
            printf("position,%d,%d,%.9g,%.9g\n", i / n, i % n, (double)pm[i], (pm[i] - md) / (ms - md));
    } else {
        char *tl = qkv__cli_token_label(tok, target), *vl = vs >= 0 ? qkv__cli_token_label(tok, vs) : NULL;
        printf("target '%s'%s%s%s: %s = %.4f in the source, %.4f in the destination; %.1f ms\n",
               tl ? tl : "?", vl ? " vs '" : "", vl ? vl : "", vl ? "'" : "",
               vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)", ms, md, ms_time);
        free(tl);
        free(vl);
        int nl = H > n ? H : n;
        labels = calloc((size_t)nl, sizeof *labels);
        if (!labels) goto done;
        if (do_heads) {
            for (int h = 0; h < H; h++) {
                labels[h] = malloc(24);
                if (!labels[h]) goto done;
                snprintf(labels[h], 24, "h%d", h);
            }
            print_map("patching one head's output (all positions)", hm, L, H, ms, md, labels, color);
            for (int h = 0; h < H; h++) free(labels[h]), labels[h] = NULL;
        }
        if (do_pos) {
            for (int i = 0; i < n; i++) {
                char *dl = qkv__cli_token_label(tok, dids[i]);
                labels[i] = malloc(32);
                if (!labels[i]) {
                    free(dl);
                    goto done;
                }
                snprintf(labels[i], 32, "%s", dl ? dl : "?");
                free(dl);
            }
            print_map("patching the stream entering a layer at one position", pm, L, n, ms, md, labels, color);
        }
    }
done:
    rc = 0;
    goto out;
fail:
    rc = qkv__cli_fail("patch", st);
out:
    if (labels) {
        int nl = H > n ? H : n;
        for (int i = 0; i < nl; i++) free(labels[i]);
        free(labels);
    }
    free(sids);
    free(dids);
    free(logits);
    free(hm);
    free(pm);
    qkv_model_free(model);
    return rc;
}
