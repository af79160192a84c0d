/* status.c -- status strings and the per-thread last-error message. */
#include "qkv_internal.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[1024];

const char *qkv_strerror(qkv_status status) {
    switch (status) {
#define QKV__CASE(name, value, text) \
    case name:                       \
        return text;
        QKV_STATUS_MAP(QKV__CASE)
#undef QKV__CASE
    }
    return "unknown status";
}

const char *qkv_last_error(void) { return last_error; }

void qkv__clear_error(void) { last_error[0] = '\0'; }

qkv_status qkv__fail(qkv_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void qkv__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "qkv: internal error: assertion `%s' failed at %s:%d\n", expr, file, line);
    abort();
}
