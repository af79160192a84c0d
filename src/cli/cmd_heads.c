/*
 * cmd_heads.c -- `qkv heads`: what each attention head does, from the model's own attention
 * on a probe set (qkv_model_head_scores): a table, or JSON with every score and tag.
 *
 *   qkv heads [--model DIR] [--json] [--threads N]
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv heads [--model DIR] [--json] [--threads N]\n"
            "\n"
            "Scores every attention head on a probe set (ordinary prose, and a random sequence\n"
            "of common words shown twice) and tags what it does: previous-token, induction,\n"
            "first-token sink, self, punctuation, uniform. Thresholds: prev >= %.2f, induction\n"
            ">= %.2f, sink >= %.2f, self >= %.2f, punctuation >= %.2f and %.1fx what uniform\n"
            "attention puts there, uniform: normalised entropy >= %.2f.\n"
            "  --json        every score and tag as JSON\n"
            "  --threads N   compute threads\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n",
            (double)QKV_HEAD_PREV_MIN, (double)QKV_HEAD_INDUCTION_MIN, (double)QKV_HEAD_SINK_MIN,
            (double)QKV_HEAD_SELF_MIN, (double)QKV_HEAD_PUNCT_MIN, (double)QKV_HEAD_PUNCT_RATIO,
            (double)QKV_HEAD_UNIFORM_MIN);
}

int qkv__cmd_heads(int argc, char **argv) {
    const char *model_dir = NULL;
    int want_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--json")) {
            want_json = 1;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long t;
            if (qkv__cli_read_long(argv[++i], 1, 1024, &t)) return qkv__cli_usage_error("heads", "--threads must be in [1, 1024]");
            qkv_set_threads((int)t);
        } else {
            usage(stderr);
            return qkv__cli_usage_error("heads", "unknown or incomplete option '%s'", a);
        }
    }
    if (!model_dir) model_dir = qkv__cli_default_model();
    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st) return qkv__cli_fail("heads", st);
    qkv_head_scores hs;
    st = qkv_model_head_scores(model, &hs);
    if (st) {
        qkv_model_free(model);
        return qkv__cli_fail("heads", st);
    }
    int L = hs.n_layer, H = hs.n_head;
    if (want_json) {
        json_t *root = json_object(), *jh = json_array(), *th = json_object();
        json_object_set_new(root, "model", json_string(qkv_model_name(model)));
        json_object_set_new(root, "n_layer", json_integer(L));
        json_object_set_new(root, "n_head", json_integer(H));
        json_object_set_new(root, "probe_tokens", json_integer(hs.n_probe_tokens));
        json_object_set_new(root, "punctuation_base", json_real(hs.punct_base));
        for (int k = 0; k < QKV_HEAD_TAG_COUNT; k++)
            if (k != QKV_HEAD_UNIFORM) json_object_set_new(th, qkv_head_score_key(k), json_real(qkv_head_threshold(k)));
        json_object_set_new(th, "punctuation_ratio", json_real(QKV_HEAD_PUNCT_RATIO));
        json_object_set_new(th, qkv_head_score_key(QKV_HEAD_UNIFORM), json_real(QKV_HEAD_UNIFORM_MIN));
        json_object_set_new(root, "thresholds", th);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const float *s = hs.score + ((size_t)l * H + h) * QKV_HEAD_TAG_COUNT;
                json_t *e = json_object(), *sc = json_object(), *tg = json_array();
                json_object_set_new(e, "layer", json_integer(l));
                json_object_set_new(e, "head", json_integer(h));
                for (int k = 0; k < QKV_HEAD_TAG_COUNT; k++) {
                    json_object_set_new(sc, qkv_head_score_key(k), json_real(s[k]));
                    if (hs.tags[l * H + h] >> k & 1) json_array_append_new(tg, json_string(qkv_head_tag_name(k)));
                }
                json_object_set_new(e, "scores", sc);
                json_object_set_new(e, "tags", tg);
                json_array_append_new(jh, e);
            }
        json_object_set_new(root, "heads", jh);
        char *txt = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        json_decref(root);
        if (txt) {
            puts(txt);
            free(txt);
        }
    } else {
        printf("%s: %d layers x %d heads, scored on %d tokens of prose and a repeated random sequence\n",
               qkv_model_name(model), L, H, hs.n_probe_tokens);
        printf("(uniform attention would put %.3f on punctuation)\n\n", (double)hs.punct_base);
        printf("head    prev  induct  sink   self   punct  uniform  tags\n");
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const float *s = hs.score + ((size_t)l * H + h) * QKV_HEAD_TAG_COUNT;
                printf("%2d.%-3d %5.3f  %5.3f  %5.3f  %5.3f  %5.3f  %5.3f    ", l, h, (double)s[0], (double)s[1],
                       (double)s[2], (double)s[3], (double)s[4], (double)s[5]);
                int any = 0;
                for (int k = 0; k < QKV_HEAD_TAG_COUNT; k++)
                    if (hs.tags[l * H + h] >> k & 1) printf("%s%s", any++ ? ", " : "", qkv_head_tag_name(k));
                printf("%s\n", any ? "" : "-");
            }
    }
    qkv_head_scores_free(&hs);
    qkv_model_free(model);
    return 0;
}
