/* cmd_train.c -- `qkv train` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("train", "not implemented yet");
}
