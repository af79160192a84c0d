/* cmd_attend.c -- `qkv attend` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_attend(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("attend", "not implemented yet");
}
