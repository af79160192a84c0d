/* bench_attention.c -- `qkv bench attention` (not built yet: its issue replaces this file). */
#include "cli/cli.h"

int qkv__bench_attention(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("bench attention", "not implemented yet");
}
