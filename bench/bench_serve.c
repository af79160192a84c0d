/* bench_serve.c -- `qkv bench serve` (not built yet: its issue replaces this file). */
#include "cli/cli.h"

int qkv__bench_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("bench serve", "not implemented yet");
}
