/* bench_train.c -- `qkv bench train` (not built yet: its issue replaces this file). */
#include "cli/cli.h"

int qkv__bench_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("bench train", "not implemented yet");
}
