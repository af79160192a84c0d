/*
 * cmd_ablate.c -- `qkv ablate`: which heads matter, found by knocking them out.
 *
 *   qkv ablate [--model DIR] (--text T | --ids 1,2,3) [--target TOK] [--vs TOK]
 *              [--mode zero|mean|uniform] [--heads L.H,...] [--top K] [--json | --csv]
 *              [--logits L.npy] [--no-color] [--threads N]
 *
 * Without --heads: the which-heads-matter grid. grid[l][h] is the change in
 * log P(target) - log P(vs) (log P(target) without --vs) at the last position when head l.h
 * alone is ablated (qkv_model_ablation_grid). --mode zero (default) sets the head's output to
 * zero before the output projection; mean replaces it by its mean over the sentence; uniform
 * makes its attention uniform over the keys each token sees. The default target is the
 * unablated model's top prediction.
 * With --heads: those heads ablated together; the new predictions and the change.
 */
#include "cli/interp.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv ablate [--model DIR] (--text T | --ids 1,2,3) [--target TOK] [--vs TOK]\n"
            "                  [--mode zero|mean|uniform] [--heads L.H,...] [--top K]\n"
            "                  [--json | --csv] [--logits L.npy] [--no-color] [--threads N]\n"
            "\n"
            "Knocks heads out and measures the change in log P(target) - log P(vs) at the last\n"
            "position (log P(target) without --vs).\n"
            "  --target TOK   a token: its text, exactly one token of the vocabulary (GPT-2's\n"
            "                 pieces carry their leading space: \" were\"), or id:N. Default: the\n"
            "                 unablated model's top prediction\n"
            "  --vs TOK       the contrast token (\" was\")\n"
            "  --mode M       zero (default): the head's output is 0 before the output projection;\n"
            "                 mean: its mean over the sentence; uniform: uniform attention\n"
            "  --heads L.H,.. ablate these heads together (default: the grid, each head alone)\n"
            "  --top K        predictions to show (default 5)\n"
            "  --json         print a JSON object (grid: [n_layer][n_head])\n"
            "  --csv          print layer,head,delta rows\n"
            "  --logits L.npy with --heads: the ablated run's logits, float32 [N, vocab]\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n");
}

static int parse_mode(const char *s) {
    if (!strcmp(s, "zero")) return QKV_ABLATE_ZERO;
    if (!strcmp(s, "mean")) return QKV_ABLATE_MEAN;
    if (!strcmp(s, "uniform")) return QKV_ABLATE_UNIFORM;
    return -1;
}

static const char *mode_name(int m) {
    return m == QKV_ABLATE_MEAN ? "mean" : m == QKV_ABLATE_UNIFORM ? "uniform" : "zero";
}

/* "0.3,2.1" -> ab[l * H + h] = mode; 0 on success. */
static int parse_heads(const char *s, int L, int H, int mode, unsigned char *ab, int *count) {
    const char *p = s;
    *count = 0;
    while (*p) {
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || *end != '.') return -1;
        p = end + 1;
        long h = strtol(p, &end, 10);
        if (end == p || l < 0 || l >= L || h < 0 || h >= H) return -1;
        ab[l * H + h] = (unsigned char)mode;
        (*count)++;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return *count > 0 ? 0 : -1;
}

int qkv__cmd_ablate(int argc, char **argv) {
    const char *model_dir = NULL, *ids_arg = NULL, *text = NULL, *target_s = NULL, *vs_s = NULL,
               *heads_s = NULL, *logits_path = NULL;
    int want_json = 0, want_csv = 0, top = 5, mode = QKV_ABLATE_ZERO, color = isatty(1);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) model_dir = argv[++i];
        else if (!strcmp(a, "--ids") && has) ids_arg = argv[++i];
        else if (!strcmp(a, "--text") && has) text = argv[++i];
        else if (!strcmp(a, "--target") && has) target_s = argv[++i];
        else if (!strcmp(a, "--vs") && has) vs_s = argv[++i];
        else if (!strcmp(a, "--heads") && has) heads_s = argv[++i];
        else if (!strcmp(a, "--logits") && has) logits_path = argv[++i];
        else if (!strcmp(a, "--json")) want_json = 1;
        else if (!strcmp(a, "--csv")) want_csv = 1;
        else if (!strcmp(a, "--no-color")) color = 0;
        else if (!strcmp(a, "--mode") && has) {
            if ((mode = parse_mode(argv[++i])) < 0)
                return qkv__cli_usage_error("ablate", "--mode must be zero, mean or uniform");
        } else if (!strcmp(a, "--top") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1000, &v))
                return qkv__cli_usage_error("ablate", "--top must be in [1, 1000]");
            top = (int)v;
        } else if (!strcmp(a, "--threads") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1024, &v))
                return qkv__cli_usage_error("ablate", "--threads must be in [1, 1024]");
            qkv_set_threads((int)v);
        } else {
            usage(stderr);
            return qkv__cli_usage_error("ablate", "unknown or incomplete option '%s'", a);
        }
    }
    if (want_json && want_csv) return qkv__cli_usage_error("ablate", "give --json or --csv, not both");
    if (logits_path && !heads_s) return qkv__cli_usage_error("ablate", "--logits needs --heads");
    if (!model_dir) model_dir = qkv__cli_default_model();
    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st) return qkv__cli_fail("ablate", st);
    const qkv_model_config *cfg = qkv_model_get_config(model);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    int L = cfg->n_layer, H = cfg->n_head, V = cfg->vocab_size;
    int *ids = NULL, n = 0, target = -1, vs = -1, rc;
    float *logits = NULL, *grid = NULL;
    unsigned char *ab = NULL;
    if ((rc = qkv__cli_sentence("ablate", "--text and --ids", model, text, ids_arg, &ids, &n))) goto out;
    if (target_s && (rc = qkv__cli_token("ablate", "--target", model, target_s, &target))) goto out;
    if (vs_s && (rc = qkv__cli_token("ablate", "--vs", model, vs_s, &vs))) goto out;
    ab = calloc((size_t)L * H, 1);
    logits = malloc(sizeof(float) * (size_t)V * 2);
    grid = malloc(sizeof(float) * (size_t)L * H);
    if (!ab || !logits || !grid) {
        rc = qkv__cli_fail("ablate", qkv__fail(QKV_ENOMEM, "out of memory"));
        goto out;
    }
    int n_abl = 0;
    if (heads_s && parse_heads(heads_s, L, H, mode, ab, &n_abl)) {
        rc = qkv__cli_usage_error("ablate", "--heads wants LAYER.HEAD,... with layers in [0, %d) and "
                                  "heads in [0, %d): '%.80s'", L, H, heads_s);
        goto out;
    }
    if ((st = qkv_model_forward(model, ids, n, NULL, NULL, logits, NULL))) goto fail;
    if (target < 0) {
        qkv_top_k(logits, V, 1, &target, &logits[V]);
        if (vs == target) { /* as the API does: the default target is vs itself, compare with nothing */
            fprintf(stderr, "qkv ablate: the top prediction is the --vs token: measuring log P(target) alone\n");
            vs = -1;
        }
    }
    if (vs == target) {
        rc = qkv__cli_usage_error("ablate", "--vs is the target itself");
        goto out;
    }
    double m0 = qkv_logit_metric(logits, V, target, vs);
    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(qkv_model_name(model)));
    json_object_set_new(root, "n_tokens", json_integer(n));
    json_t *jt = json_array(), *ji = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(jt, qkv__cli_token_json(tok, ids[i]));
        json_array_append_new(ji, json_integer(ids[i]));
    }
    json_object_set_new(root, "tokens", jt);
    json_object_set_new(root, "ids", ji);
    json_object_set_new(root, "mode", json_string(mode_name(mode)));
    json_t *jtarget = json_object();
    json_object_set_new(jtarget, "id", json_integer(target));
    json_object_set_new(jtarget, "token", qkv__cli_token_json(tok, target));
    json_object_set_new(root, "target", jtarget);
    if (vs >= 0) {
        json_t *jvs = json_object();
        json_object_set_new(jvs, "id", json_integer(vs));
        json_object_set_new(jvs, "token", qkv__cli_token_json(tok, vs));
        json_object_set_new(root, "vs", jvs);
    } else {
        json_object_set_new(root, "vs", json_null());
    }
    json_object_set_new(root, "metric", json_string(vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)"));
    json_object_set_new(root, "base", json_real(m0));
    json_object_set_new(root, "n_layer", json_integer(L));
    json_object_set_new(root, "n_head", json_integer(H));
    json_object_set_new(root, "top", qkv__cli_top_json(tok, logits, V, top));

    char *tlab = qkv__cli_token_label(tok, target), *vlab = vs >= 0 ? qkv__cli_token_label(tok, vs) : NULL;
    if (heads_s) {
        float *al = logits_path ? malloc(sizeof(float) * (size_t)n * V) : NULL;
        if (logits_path && !al) {
            json_decref(root);
            free(tlab);
            free(vlab);
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto fail;
        }
        qkv_intervention iv = {.ablate = ab};
        st = qkv_model_forward_iv(model, ids, n, NULL, &iv, al, logits + V, NULL);
        if (!st && logits_path) {
            int64_t shape[2] = {n, V};
            st = qkv__npy_save(logits_path, al, 2, shape);
        }
        free(al);
        if (st) {
            json_decref(root);
            free(tlab);
            free(vlab);
            goto fail;
        }
        double m1 = qkv_logit_metric(logits + V, V, target, vs);
        json_t *jh = json_array();
        for (int i = 0; i < L * H; i++)
            if (ab[i]) json_array_append_new(jh, json_pack("[ii]", i / H, i % H));
        json_object_set_new(root, "heads", jh);
        json_object_set_new(root, "ablated", json_real(m1));
        json_object_set_new(root, "delta", json_real(m1 - m0));
        json_object_set_new(root, "top_ablated", qkv__cli_top_json(tok, logits + V, V, top));
        if (want_json) {
            qkv__cli_print_json(root);
        } else {
            if (want_csv) printf("metric,base,ablated,delta\n%s,%.9g,%.9g,%.9g\n", vs >= 0 ? "logp_diff" : "logp", m0, m1, m1 - m0);
            else {
                printf("%d heads ablated (%s); target '%s'%s%s%s\n", n_abl, mode_name(mode), tlab ? tlab : "?",
                       vlab ? " vs '" : "", vlab ? vlab : "", vlab ? "'" : "");
                printf("  %s: %.4f -> %.4f (change %+.4f)\n", vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)",
                       m0, m1, m1 - m0);
                int *t0 = malloc(sizeof(int) * (size_t)top), *t1 = malloc(sizeof(int) * (size_t)top);
                float *p0 = malloc(sizeof(float) * (size_t)top), *p1 = malloc(sizeof(float) * (size_t)top);
                int k = top > V ? V : top;
                if (t0 && t1 && p0 && p1 && !qkv_top_k(logits, V, k, t0, p0) && !qkv_top_k(logits + V, V, k, t1, p1)) {
                    printf("  %-24s %s\n", "before", "after");
                    for (int j = 0; j < k; j++) {
                        char *a0 = qkv__cli_token_label(tok, t0[j]), *a1 = qkv__cli_token_label(tok, t1[j]);
                        printf("  %-16s %.4f   %-16s %.4f\n", a0 ? a0 : "?", (double)p0[j], a1 ? a1 : "?", (double)p1[j]);
                        free(a0);
                        free(a1);
                    }
                }
                free(t0);
                free(t1);
                free(p0);
                free(p1);
            }
            json_decref(root);
        }
    } else {
        double t0 = qkv__now();
        st = qkv_model_ablation_grid(model, ids, n, NULL, (qkv_ablate_mode)mode, target, vs, grid, NULL);
        double ms = (qkv__now() - t0) * 1e3;
        if (st) {
            json_decref(root);
            free(tlab);
            free(vlab);
            goto fail;
        }
        json_t *jg = json_array();
        for (int l = 0; l < L; l++) {
            json_t *row = json_array();
            for (int h = 0; h < H; h++) json_array_append_new(row, json_real(grid[l * H + h]));
            json_array_append_new(jg, row);
        }
        json_object_set_new(root, "grid", jg);
        json_object_set_new(root, "ms", json_real(ms));
        if (want_json) {
            qkv__cli_print_json(root);
        } else if (want_csv) {
            json_decref(root);
            printf("layer,head,delta\n");
            for (int i = 0; i < L * H; i++) printf("%d,%d,%.9g\n", i / H, i % H, (double)grid[i]);
        } else {
            json_decref(root);
            printf("change in %s when one head is ablated (%s), target '%s'%s%s%s; clean %.4f; %.1f ms\n",
                   vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)", mode_name(mode),
                   tlab ? tlab : "?", vlab ? " vs '" : "", vlab ? vlab : "", vlab ? "'" : "", m0, ms);
            char **rl = calloc((size_t)L, sizeof *rl), **cl = calloc((size_t)H, sizeof *cl);
            if (rl && cl) {
                for (int l = 0; l < L; l++) {
                    rl[l] = malloc(24);
                    if (rl[l]) snprintf(rl[l], 24, "layer %d", l);
                }
                for (int h = 0; h < H; h++) {
                    cl[h] = malloc(24);
                    if (cl[h]) snprintf(cl[h], 24, "h%d", h);
                }
                int ok = 1;
                for (int l = 0; l < L; l++) ok &= rl[l] != NULL;
                for (int h = 0; h < H; h++) ok &= cl[h] != NULL;
                if (ok) qkv__cli_heatmap(stdout, (const char *const *)rl, L, (const char *const *)cl, H, grid, color);
                for (int l = 0; l < L; l++) free(rl[l]);
                for (int h = 0; h < H; h++) free(cl[h]);
            }
            free(rl);
            free(cl);
        }
    }
    free(tlab);
    free(vlab);
    rc = 0;
    goto out;
fail:
    rc = qkv__cli_fail("ablate", st);
out:
    free(ids);
    free(logits);
    free(grid);
    free(ab);
    qkv_model_free(model);
    return rc;
}
