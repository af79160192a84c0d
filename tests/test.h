/*
 * test.h -- the tests' tiny harness (libuv TEST_IMPL / Redis test_cond style).
 *
 *   static void test_softmax_rows(void) { ASSERT(x == 1); ASSERT_CLOSE(a, b, 1e-5); }
 *   int main(void) { RUN(test_softmax_rows); return test_summary(); }
 *
 * A failed check records "file:line: message" and ends the current test; SKIP("why") ends
 * it as skipped. test_summary() prints "N passed, N failed, N skipped" (the line that
 * tests/run.sh and CI read) and returns the exit status.
 */
#ifndef QKV_TEST_H
#define QKV_TEST_H

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test__passed, test__failed, test__skipped;
static jmp_buf test__jmp;
static char test__msg[1024];
static int test__outcome; /* 0 pass, 1 fail, 2 skip */

#define TEST__END(outcome, ...)                                              \
    do {                                                                     \
        int n__ = snprintf(test__msg, sizeof test__msg, "%s:%d: ", __FILE__, __LINE__); \
        snprintf(test__msg + n__, sizeof test__msg - (size_t)n__, __VA_ARGS__); \
        test__outcome = (outcome);                                           \
        longjmp(test__jmp, 1);                                               \
    } while (0)

#define FAIL(...) TEST__END(1, __VA_ARGS__)
#define SKIP(...) TEST__END(2, __VA_ARGS__)

#define ASSERT(cond)                                  \
    do {                                              \
        if (!(cond)) FAIL("assertion failed: %s", #cond); \
    } while (0)

#define ASSERT_MSG(cond, ...)              \
    do {                                   \
        if (!(cond)) FAIL(__VA_ARGS__);    \
    } while (0)

#define ASSERT_EQ_INT(a, b)                                                             \
    do {                                                                                \
        long long a__ = (long long)(a), b__ = (long long)(b);                           \
        if (a__ != b__) FAIL("%s == %s: %lld != %lld", #a, #b, a__, b__);               \
    } while (0)

/* |a - b| <= tol, NaN never passes */
#define ASSERT_CLOSE(a, b, tol)                                                         \
    do {                                                                                \
        double a__ = (double)(a), b__ = (double)(b);                                    \
        if (!(fabs(a__ - b__) <= (tol)))                                                \
            FAIL("%s ~= %s: %.9g vs %.9g (diff %.3g > tol %.3g)", #a, #b, a__, b__,     \
                 fabs(a__ - b__), (double)(tol));                                       \
    } while (0)

/* A qkv_status call that must succeed. */
#define ASSERT_OK(call)                                                                 \
    do {                                                                                \
        int st__ = (int)(call);                                                         \
        if (st__ != 0) FAIL("%s -> %d (%s)", #call, st__, qkv_last_error());            \
    } while (0)

#define RUN(fn)                                                              \
    do {                                                                     \
        test__outcome = 0;                                                   \
        if (setjmp(test__jmp) == 0) fn();                                    \
        if (test__outcome == 0) {                                            \
            test__passed++;                                                  \
            printf("ok    %s\n", #fn);                                       \
        } else if (test__outcome == 1) {                                     \
            test__failed++;                                                  \
            printf("FAIL  %s: %s\n", #fn, test__msg);                        \
        } else {                                                             \
            test__skipped++;                                                 \
            printf("skip  %s: %s\n", #fn, test__msg);                        \
        }                                                                    \
        fflush(stdout);                                                      \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", test__passed, test__failed, test__skipped);
    return test__failed ? 1 : 0;
}

/* Deterministic pseudo-random numbers for test data (xorshift64*). */
static inline unsigned long long test_rand_u64(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}
static inline float test_rand_uniform(unsigned long long *s) { /* [-1, 1) */
    return (float)((double)(test_rand_u64(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* Path of shared/data, or NULL when absent (tests then SKIP, saying so). */
static inline const char *test_shared_data(void) {
    static const char *candidates[] = {"../shared/data", "../../shared/data", NULL};
    const char *env = getenv("QKV_SHARED_DATA");
    if (env && *env) return env;
    for (int i = 0; candidates[i]; i++) {
        FILE *f;
        char p[256];
        snprintf(p, sizeof p, "%s/README.md", candidates[i]);
        if ((f = fopen(p, "r"))) {
            fclose(f);
            return candidates[i];
        }
    }
    return NULL;
}

#endif /* QKV_TEST_H */
