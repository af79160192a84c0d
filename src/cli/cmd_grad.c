/*
 * cmd_grad.c -- `qkv grad`: the loss and the gradient of every weight for one id sequence,
 * a tool to check training against any other implementation (PyTorch autograd in the tests).
 *
 *   qkv grad --model DIR --ids 1,2,3,... --out GRADS.safetensors
 *
 * Loss: mean next-token cross-entropy of ids[1:] given ids[:-1]. The file holds one F32
 * tensor per weight, under the weight's own Hugging Face name and shape.
 */
#include "cli.h"
#include "train_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv grad [--model DIR] --ids ID,ID,... --out GRADS.safetensors [--threads N]\n"
            "\n"
            "Prints the mean next-token cross-entropy of ids[1:] given ids[:-1] (at least 2 ids,\n"
            "at most the model's context + 1) and writes d loss / d weight for every weight,\n"
            "named as in the model's safetensors. Default model: the built-in one.\n");
}

/* "1,2, 3" -> ids; refuses anything else with a message naming the bad piece. */
static int parse_ids(const char *cmd, const char *s, int **ids, int *n) {
    if (qkv__cli_read_ids(s, ids, n))
        return qkv__cli_usage_error(cmd, "--ids: '%.40s' is not a token id list (non-negative integers separated by commas)", s);
    return 0;
}

int qkv__cmd_grad(int argc, char **argv) {
    const char *cmd = "grad";
    const char *model_dir = NULL, *ids_arg = NULL, *out = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return qkv__cli_usage_error(cmd, "%s needs a value", a);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--ids")) ids_arg = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--threads")) {
            int rc = qkv__cli_parse_int(cmd, a, v, 1, 4096, &threads);
            if (rc) return rc;
        } else {
            usage(stderr);
            return qkv__cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!ids_arg || !out) {
        usage(stderr);
        return qkv__cli_usage_error(cmd, "--ids and --out are required");
    }
    int *ids = NULL, n = 0;
    int rc = parse_ids(cmd, ids_arg, &ids, &n);
    if (rc) return rc;
    if (n < 2) {
        free(ids);
        return qkv__cli_usage_error(cmd, "--ids: need at least 2 ids (the loss predicts ids[1:] "
                                         "from ids[:-1])");
    }
    qkv__cli_blas_reexec(NULL, argc, argv);
    if (threads) qkv_set_threads(threads);
    if (!model_dir) model_dir = qkv__cli_default_model();
    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    float *grads = NULL;
    float loss = 0.0f;
    if (!st) {
        grads = malloc(qkv_model_n_params(model) * sizeof(float));
        if (!grads) st = qkv__fail(QKV_ENOMEM, "grad: cannot allocate %zu gradients",
                                   qkv_model_n_params(model));
    }
    if (!st) st = qkv_model_grad(model, ids, n, &loss, grads);
    if (!st) st = qkv_model_grad_save(model, grads, out);
    if (!st) printf("loss %.7f (%d positions) -> %s\n", loss, n - 1, out);
    free(grads);
    free(ids);
    qkv_model_free(model);
    return st ? qkv__cli_fail(cmd, st) : 0;
}
