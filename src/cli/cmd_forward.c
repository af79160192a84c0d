/*
 * cmd_forward.c -- `qkv forward`: one forward pass of a GPT-2 model.
 *
 *   qkv forward [--model DIR] (--ids 1,2,3 | --text "...") [--logits L.npy] [--attn A.npy]
 *               [--json] [--top K] [--temperature T] [--no-causal] [--threads N]
 *
 * --logits writes float32 [N, V]; --attn float32 [n_layer, n_head, N, N] (the softmax
 * weights); either may be "-" (standard output, then the report below goes to stderr).
 * --json prints the tokens, ids and the top-K next-token predictions at every
 * position. Without --json it prints the top predictions after the last token.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv forward [--model DIR] (--ids 1,2,3 | --text \"...\") [--logits L.npy]\n"
            "                   [--attn A.npy] [--json] [--top K] [--temperature T] [--no-causal]\n"
            "\n"
            "Runs the model once over the tokens (ids, or text through the model's tokenizer).\n"
            "  --logits L.npy   write the logits, float32 [N, vocab]\n"
            "  --attn A.npy     write the attention weights, float32 [n_layer, n_head, N, N]\n"
            "                   ('-' for either: the .npy to stdout, the report to stderr)\n"
            "  --json           print tokens, ids and the top-K predictions at every position\n"
            "  --top K          predictions to show (default 5)\n"
            "  --temperature T  divide every attention logit by T (default 1)\n"
            "  --no-causal      let every token see every token (not how GPT-2 was trained)\n"
            "  --threads N      compute threads (default: all cores, or $QKV_THREADS)\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n");
}

/* "1,2, 3" -> ids; returns -1 with a message on anything else. */
static json_t *token_json(qkv_tokenizer *tok, int id) {
    const char *b;
    size_t len;
    if (!tok || qkv_tokenizer_token_bytes(tok, id, &b, &len)) return json_null();
    json_t *s = json_stringn(b, len); /* NULL when not valid UTF-8 (a partial character) */
    if (s) return s;
    /* show bytes of partial characters as U+FFFD */
    char *copy = malloc(len * 3 + 1);
    if (!copy) return json_null();
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c < 0x80) {
            copy[o++] = (char)c;
        } else { /* U+FFFD */
            copy[o++] = (char)0xEF;
            copy[o++] = (char)0xBF;
            copy[o++] = (char)0xBD;
        }
    }
    json_t *r = json_stringn(copy, o);
    free(copy);
    return r ? r : json_null();
}

int qkv__cmd_forward(int argc, char **argv) {
    const char *model_dir = NULL, *ids_arg = NULL, *text = NULL, *logits_path = NULL,
               *attn_path = NULL;
    int want_json = 0, top = 5, no_causal = 0;
    float temperature = 0.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--ids") && has) {
            ids_arg = argv[++i];
        } else if (!strcmp(a, "--text") && has) {
            text = argv[++i];
        } else if (!strcmp(a, "--logits") && has) {
            logits_path = argv[++i];
        } else if (!strcmp(a, "--attn") && has) {
            attn_path = argv[++i];
        } else if (!strcmp(a, "--json")) {
            want_json = 1;
        } else if (!strcmp(a, "--no-causal")) {
            no_causal = 1;
        } else if (!strcmp(a, "--top") && has) {
            long k;
            if (qkv__cli_read_long(argv[++i], 1, 1000, &k))
                return qkv__cli_usage_error("forward", "--top must be an integer in [1, 1000] (got '%s')", argv[i]);
            top = (int)k;
        } else if (!strcmp(a, "--temperature") && has) {
            if (qkv__cli_read_float(argv[++i], &temperature) || !(temperature >= 1e-6f && temperature <= 1e6f))
                return qkv__cli_usage_error("forward", "--temperature must be a number in [1e-6, 1e6] (got '%s')",
                                            argv[i]);
        } else if (!strcmp(a, "--threads") && has) {
            long t;
            if (qkv__cli_read_long(argv[++i], 1, 1024, &t))
                return qkv__cli_usage_error("forward", "--threads must be an integer in [1, 1024] (got '%s')", argv[i]);
            qkv_set_threads((int)t);
        } else {
            usage(stderr);
            return qkv__cli_usage_error("forward", "unknown or incomplete option '%s'", a);
        }
    }
    if (!!ids_arg == !!text) {
        usage(stderr);
        return qkv__cli_usage_error("forward", "give exactly one of --ids and --text");
    }
    int logits_out = logits_path && !strcmp(logits_path, "-"), attn_out = attn_path && !strcmp(attn_path, "-");
    if (logits_out && attn_out)
        return qkv__cli_usage_error("forward", "--logits and --attn cannot both be '-' (standard output)");
    FILE *report = logits_out || attn_out ? stderr : stdout; /* stdout carries the array */
    if (!model_dir) model_dir = qkv__cli_default_model();

    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st) return qkv__cli_fail("forward", st);
    const qkv_model_config *cfg = qkv_model_get_config(model);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    int *ids = NULL, n = 0, rc = 0;
    float *logits = NULL;
    qkv_capture cap = {0};
    if (ids_arg) {
        if (qkv__cli_read_ids(ids_arg, &ids, &n)) {
            qkv_model_free(model);
            return qkv__cli_usage_error("forward", "--ids wants numbers separated by commas");
        }
    } else {
        if (!tok) {
            qkv_model_free(model);
            return qkv__cli_usage_error("forward", "%s has no vocab.json + merges.txt: use --ids", model_dir);
        }
        size_t nn = 0;
        st = qkv_tokenizer_encode(tok, text, strlen(text), 0, &ids, &nn);
        if (st) goto fail;
        if (nn > (size_t)cfg->n_ctx) {
            st = qkv__fail(QKV_ETOOLONG, "the text is %zu tokens, more than the model's context of %d",
                           nn, cfg->n_ctx);
            goto fail;
        }
        n = (int)nn;
    }
    if (top > cfg->vocab_size) top = cfg->vocab_size;
    size_t nv = (size_t)(n > 0 ? n : 1) * (size_t)cfg->vocab_size;
    logits = malloc(nv * sizeof(float));
    if (!logits) {
        st = qkv__fail(QKV_ENOMEM, "out of memory for the logits");
        goto fail;
    }
    cap.want_probs = attn_path != NULL;
    qkv_forward_opts opts = {.attn_temperature = temperature, .no_causal_mask = no_causal};
    st = qkv_model_forward(model, ids, n, &opts, logits, NULL, attn_path ? &cap : NULL);
    if (st) goto fail;
    if (logits_path) {
        int64_t shape[2] = {n, cfg->vocab_size};
        if ((st = qkv__npy_save(logits_path, logits, 2, shape))) goto fail;
    }
    if (attn_path) {
        int64_t shape[4] = {cfg->n_layer, cfg->n_head, n, n};
        if ((st = qkv__npy_save(attn_path, cap.probs, 4, shape))) goto fail;
    }
    int *top_ids = malloc(sizeof(int) * (size_t)top);
    float *top_p = malloc(sizeof(float) * (size_t)top);
    if (!top_ids || !top_p) {
        free(top_ids);
        free(top_p);
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto fail;
    }
    if (want_json) {
        json_t *root = json_object(), *jt = json_array(), *ji = json_array(), *jp = json_array();
        for (int i = 0; i < n; i++) {
            json_array_append_new(ji, json_integer(ids[i]));
            json_array_append_new(jt, token_json(tok, ids[i]));
            qkv_top_k(logits + (size_t)i * cfg->vocab_size, cfg->vocab_size, top, top_ids, top_p);
            json_t *row = json_array();
            for (int k = 0; k < top; k++) {
                json_t *e = json_object();
                json_object_set_new(e, "id", json_integer(top_ids[k]));
                json_object_set_new(e, "token", token_json(tok, top_ids[k]));
                json_object_set_new(e, "prob", json_real(top_p[k]));
                json_array_append_new(row, e);
            }
            json_array_append_new(jp, row);
        }
        json_object_set_new(root, "model", json_string(qkv_model_name(model)));
        json_object_set_new(root, "n_tokens", json_integer(n));
        json_object_set_new(root, "ids", ji);
        json_object_set_new(root, "tokens", jt);
        json_object_set_new(root, "top", jp);
        char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(root);
        if (s) {
            fputs(s, report);
            fputc('\n', report);
            free(s);
        }
    } else {
        qkv_top_k(logits + (size_t)(n - 1) * cfg->vocab_size, cfg->vocab_size, top, top_ids, top_p);
        fprintf(report, "%d tokens; next-token predictions after the last:\n", n);
        for (int k = 0; k < top; k++) {
            json_t *t = token_json(tok, top_ids[k]);
            char *ts = json_is_null(t) ? NULL : json_dumps(t, JSON_ENCODE_ANY);
            fprintf(report, "  %6d  %-20s %.4f\n", top_ids[k], ts ? ts : "", (double)top_p[k]);
            free(ts);
            json_decref(t);
        }
    }
    free(top_ids);
    free(top_p);
    goto done;
fail:
    rc = qkv__cli_fail("forward", st);
done:
    qkv_capture_free(&cap);
    free(logits);
    free(ids);
    qkv_model_free(model);
    return rc;
}
