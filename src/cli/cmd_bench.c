/* cmd_bench.c -- `qkv bench [attention|model|train|serve] [options]`: each benchmark checks
 * its results first, then times, and prints a table and JSON. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int qkv__cmd_bench(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } benches[] = {
        {"attention", qkv__bench_attention},
        {"model", qkv__bench_model},
        {"train", qkv__bench_train},
        {"serve", qkv__bench_serve},
    };
    const size_t n = sizeof benches / sizeof benches[0];
    if (argc >= 2 && argv[1][0] != '-') {
        for (size_t i = 0; i < n; i++)
            if (!strcmp(argv[1], benches[i].name)) return benches[i].run(argc - 1, argv + 1);
        return qkv__cli_usage_error("bench", "unknown benchmark '%s' (attention, model, train, serve)", argv[1]);
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char *sub[] = {(char *)benches[i].name, NULL};
        int r = benches[i].run(1, sub);
        if (r) rc = r;
    }
    return rc;
}
