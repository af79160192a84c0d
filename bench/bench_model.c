/* bench_model.c -- `qkv bench model` (not built yet: its issue replaces this file). */
#include "cli/cli.h"

int qkv__bench_model(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("bench model", "not implemented yet");
}
