/*
 * cmd_lens.c -- `qkv lens`: the logit lens. The residual stream entering every block (and
 * after the last) is read out through the final LayerNorm and the unembedding
 * (qkv_model_logit_lens): where in the depth does the answer appear?
 *
 *   qkv lens [--model DIR] (--text T | --ids 1,2,3) [--top K] [--target TOK]
 *            [--json | --csv] [--all-positions] [--threads N]
 *
 * State 0 is the embeddings, state l + 1 the stream after block l; the last state read this
 * way is exactly the model's output.
 */
#include "cli/interp.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv lens [--model DIR] (--text T | --ids 1,2,3) [--top K] [--target TOK]\n"
            "                [--json | --csv] [--all-positions] [--threads N]\n"
            "\n"
            "The top predictions read out after every layer (residual -> final LayerNorm ->\n"
            "unembedding), at every position.\n"
            "  --top K          predictions per layer and position (default 5)\n"
            "  --target TOK     also P(TOK) at every layer and position (text of one vocabulary\n"
            "                   token, \" were\", or id:N)\n"
            "  --json / --csv   machine-readable output\n"
            "  --all-positions  terminal table for every position (default: the last 6)\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n");
}

int qkv__cmd_lens(int argc, char **argv) {
    const char *model_dir = NULL, *ids_arg = NULL, *text = NULL, *target_s = NULL;
    int want_json = 0, want_csv = 0, top = 5, all_pos = 0;
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
        else if (!strcmp(a, "--json")) want_json = 1;
        else if (!strcmp(a, "--csv")) want_csv = 1;
        else if (!strcmp(a, "--all-positions")) all_pos = 1;
        else if (!strcmp(a, "--top") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 100, &v))
                return qkv__cli_usage_error("lens", "--top must be in [1, 100]");
            top = (int)v;
        } else if (!strcmp(a, "--threads") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1024, &v))
                return qkv__cli_usage_error("lens", "--threads must be in [1, 1024]");
            qkv_set_threads((int)v);
        } else {
            usage(stderr);
            return qkv__cli_usage_error("lens", "unknown or incomplete option '%s'", a);
        }
    }
    if (want_json && want_csv) return qkv__cli_usage_error("lens", "give --json or --csv, not both");
    if (!model_dir) model_dir = qkv__cli_default_model();
    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st) return qkv__cli_fail("lens", st);
    const qkv_model_config *cfg = qkv_model_get_config(model);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    int L = cfg->n_layer, V = cfg->vocab_size, S = L + 1;
    int *ids = NULL, n = 0, target = -1, rc, *top_ids = NULL;
    float *top_p = NULL, *tp = NULL;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    if ((rc = qkv__cli_sentence("lens", "--text and --ids", model, text, ids_arg, &ids, &n))) goto out;
    if (target_s && (rc = qkv__cli_token("lens", "--target", model, target_s, &target))) goto out;
    if (top > V) top = V;
    size_t rows = (size_t)S * n;
    top_ids = malloc(sizeof(int) * rows * top);
    top_p = malloc(sizeof(float) * rows * top);
    tp = malloc(sizeof(float) * rows);
    if (!top_ids || !top_p || !tp) {
        rc = qkv__cli_fail("lens", qkv__fail(QKV_ENOMEM, "out of memory"));
        goto out;
    }
    cap.want_hidden = 1;
    if ((st = qkv_model_forward(model, ids, n, NULL, NULL, NULL, &cap))) goto fail;
    if ((st = qkv_model_logit_lens(model, cap.hidden, S, n, top, top_ids, top_p, target, tp))) goto fail;
    if (want_json) {
        json_t *root = json_object(), *jt = json_array(), *ji = json_array(), *js = json_array();
        for (int i = 0; i < n; i++) {
            json_array_append_new(jt, qkv__cli_token_json(tok, ids[i]));
            json_array_append_new(ji, json_integer(ids[i]));
        }
        json_object_set_new(root, "model", json_string(qkv_model_name(model)));
        json_object_set_new(root, "n_tokens", json_integer(n));
        json_object_set_new(root, "n_layer", json_integer(L));
        json_object_set_new(root, "tokens", jt);
        json_object_set_new(root, "ids", ji);
        for (int s = 0; s < S; s++) {
            char name[32];
            if (s == 0) snprintf(name, sizeof name, "embeddings");
            else snprintf(name, sizeof name, "after layer %d", s - 1);
            json_array_append_new(js, json_string(name));
        }
        json_object_set_new(root, "states", js);
        json_t *jtop = json_array(), *jtp = json_array();
        for (int s = 0; s < S; s++) {
            json_t *srow = json_array(), *prow = json_array();
            for (int i = 0; i < n; i++) {
                size_t r = (size_t)s * n + i;
                json_t *cell = json_array();
                for (int k = 0; k < top; k++) {
                    json_t *e = json_object();
                    json_object_set_new(e, "id", json_integer(top_ids[r * top + k]));
                    json_object_set_new(e, "token", qkv__cli_token_json(tok, top_ids[r * top + k]));
                    json_object_set_new(e, "prob", json_real(top_p[r * top + k]));
                    json_array_append_new(cell, e);
                }
                json_array_append_new(srow, cell);
                if (target >= 0) json_array_append_new(prow, json_real(tp[r]));
            }
            json_array_append_new(jtop, srow);
            json_array_append_new(jtp, prow);
        }
        json_object_set_new(root, "top", jtop);
        if (target >= 0) {
            json_t *jtg = json_object();
            json_object_set_new(jtg, "id", json_integer(target));
            json_object_set_new(jtg, "token", qkv__cli_token_json(tok, target));
            json_object_set_new(root, "target", jtg);
            json_object_set_new(root, "target_probs", jtp);
        } else {
            json_decref(jtp);
            json_object_set_new(root, "target", json_null());
        }
        qkv__cli_print_json(root);
    } else if (want_csv) {
        printf("state,position,rank,id,prob%s\n", target >= 0 ? ",target_prob" : "");
        for (int s = 0; s < S; s++)
            for (int i = 0; i < n; i++)
                for (int k = 0; k < top; k++) {
                    size_t r = (size_t)s * n + i;
                    printf("%d,%d,%d,%d,%.9g", s, i, k, top_ids[r * top + k], (double)top_p[r * top + k]);
                    if (target >= 0) printf(",%.9g", (double)tp[r]);
                    printf("\n");
                }
    } else {
        int i0 = all_pos || n <= 6 ? 0 : n - 6;
        printf("logit lens: the top prediction (probability) read out after each layer%s\n",
               target >= 0 ? "; [P(target)]" : "");
        printf("%-15s", "");
        for (int i = i0; i < n; i++) {
            char *lab = qkv__cli_token_label(tok, ids[i]);
            printf(" %-20.20s", lab ? lab : "?");
            free(lab);
        }
        printf("\n");
        for (int s = 0; s < S; s++) {
            char name[32];
            if (s == 0) snprintf(name, sizeof name, "embeddings");
            else snprintf(name, sizeof name, "after layer %d", s - 1);
            printf("%-15s", name);
            for (int i = i0; i < n; i++) {
                size_t r = (size_t)s * n + i;
                char *lab = qkv__cli_token_label(tok, top_ids[r * top]);
                char cell[64];
                if (target >= 0) snprintf(cell, sizeof cell, "%.10s %.2f [%.2f]", lab ? lab : "?", (double)top_p[r * top], (double)tp[r]);
                else snprintf(cell, sizeof cell, "%.12s %.2f", lab ? lab : "?", (double)top_p[r * top]);
                printf(" %-20s", cell);
                free(lab);
            }
            printf("\n");
        }
    }
    rc = 0;
    goto out;
fail:
    rc = qkv__cli_fail("lens", st);
out:
    qkv_capture_free(&cap);
    free(ids);
    free(top_ids);
    free(top_p);
    free(tp);
    qkv_model_free(model);
    return rc;
}
