/* cmd_grad.c -- `qkv grad` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_grad(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("grad", "not implemented yet");
}
