/*
 * test_pool.c -- the thread pool (src/common/pool.c): every unit runs exactly once, for every
 * size, chunk and thread count; thousands of jobs back to back; several callers at once (one
 * gets the pool, the others run their loops themselves); a chunk that stalls; workers that went
 * to sleep wake for the next job, and an idle pool does not spin. The Makefile also builds this
 * file under ThreadSanitizer (test_pool_tsan) on the pool alone.
 */
#include "test.h"

#include "qkv_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define MAXN 5000

typedef struct {
    _Atomic int hits[MAXN];
    _Atomic int calls;
    int stall_unit; /* a chunk holding this unit sleeps (-1: none) */
} counts;

static void count_units(void *arg, int lo, int hi) {
    counts *c = arg;
    atomic_fetch_add(&c->calls, 1);
    for (int i = lo; i < hi; i++) {
        if (i == c->stall_unit) usleep(3000);
        atomic_fetch_add(&c->hits[i], 1);
    }
}

static int all_once(counts *c, int n) {
    for (int i = 0; i < n; i++)
        if (atomic_load(&c->hits[i]) != 1) {
            fprintf(stderr, "unit %d of %d ran %d times\n", i, n, atomic_load(&c->hits[i]));
            return 0;
        }
    return 1;
}

static counts cs;

static void reset(counts *c, int n) {
    for (int i = 0; i < n; i++) atomic_store(&c->hits[i], 0);
    atomic_store(&c->calls, 0);
    c->stall_unit = -1;
}

static void test_every_unit_exactly_once(void) {
    static const int ns[] = {1, 2, 3, 7, 31, 32, 33, 100, 257, 1000, MAXN};
    static const int grains[] = {1, 3, 16, 64, 10000};
    static const int threads[] = {1, 2, 3, 8};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof grains / sizeof *grains; b++)
            for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
                int n = ns[a], g = grains[b];
                reset(&cs, n);
                qkv__pool_for(n, g, threads[t], count_units, &cs);
                ASSERT_MSG(all_once(&cs, n), "n %d grain %d threads %d: a unit ran != 1 times", n, g, threads[t]);
                int chunks = (n + g - 1) / g;
                ASSERT_MSG(atomic_load(&cs.calls) <= chunks, "n %d grain %d: %d calls for %d chunks", n, g,
                           atomic_load(&cs.calls), chunks);
            }
    /* nothing to do, and a grain of zero (taken as one) */
    reset(&cs, 10);
    qkv__pool_for(0, 1, 2, count_units, &cs);
    ASSERT_EQ_INT(atomic_load(&cs.calls), 0);
    qkv__pool_for(10, 0, 2, count_units, &cs);
    ASSERT(all_once(&cs, 10));
}

static void test_many_jobs_back_to_back(void) {
    for (int j = 0; j < 20000; j++) {
        int n = 1 + j % 97;
        reset(&cs, n);
        qkv__pool_for(n, 1 + j % 5, 2 + j % 3, count_units, &cs);
        ASSERT_MSG(all_once(&cs, n), "job %d (n %d): a unit ran != 1 times", j, n);
    }
}

/* Several callers at once: each job must still run every unit once, whoever runs it. */
typedef struct {
    int id, ok;
} caller_arg;

static void *caller(void *p) {
    caller_arg *a = p;
    static counts mine[4];
    counts *c = &mine[a->id];
    a->ok = 1;
    for (int j = 0; j < 2000 && a->ok; j++) {
        int n = 50 + (j * 7 + a->id) % 400;
        reset(c, n);
        qkv__pool_for(n, 4, 2, count_units, c);
        a->ok = all_once(c, n);
    }
    return NULL;
}

static void test_concurrent_callers(void) {
    pthread_t th[4];
    caller_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (caller_arg){i, 0};
        ASSERT(pthread_create(&th[i], NULL, caller, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) ASSERT_MSG(args[i].ok, "caller %d saw a unit run != 1 times", i);
}

/* A chunk that stalls (as a descheduled thread would): the job still completes, every unit once. */
static void test_stalled_chunk(void) {
    for (int rep = 0; rep < 20; rep++) {
        int n = 64;
        reset(&cs, n);
        cs.stall_unit = (rep * 13) % n;
        qkv__pool_for(n, 2, 2, count_units, &cs);
        ASSERT(all_once(&cs, n));
    }
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Workers spin at most QKV_SPIN_US (200 us) after a job, then sleep: 200 ms idle must cost far
 * less than 200 ms of CPU, and a job after the sleep still runs on the woken pool. */
static void test_idle_pool_sleeps_and_wakes(void) {
    reset(&cs, 1000);
    qkv__pool_for(1000, 10, 2, count_units, &cs);
    ASSERT(all_once(&cs, 1000));
    usleep(20000); /* past the spin */
    double c0 = cpu_seconds();
    usleep(200000);
    double used = cpu_seconds() - c0;
    ASSERT_MSG(used < 0.05, "an idle pool used %.3f s of CPU in 0.2 s", used);
    for (int j = 0; j < 50; j++) {
        reset(&cs, 1000);
        qkv__pool_for(1000, 10, 2, count_units, &cs);
        ASSERT(all_once(&cs, 1000));
        usleep(1000);
    }
}

/* A function that calls the pool from inside a chunk runs that inner loop itself. */
static counts inner;
static void nested(void *arg, int lo, int hi) {
    (void)arg;
    for (int i = lo; i < hi; i++) qkv__pool_for(10, 1, 2, count_units, &inner);
}

static void test_nested_call_runs_inline(void) {
    reset(&inner, 10);
    qkv__pool_for(1, 1, 2, nested, NULL); /* n <= grain: inline, then the inner one uses the pool */
    ASSERT(all_once(&inner, 10));
    for (int i = 0; i < 10; i++) atomic_store(&inner.hits[i], 0);
    qkv__pool_for(4, 1, 2, nested, NULL); /* inner calls while the pool is busy: inline */
    for (int i = 0; i < 10; i++) ASSERT_EQ_INT(atomic_load(&inner.hits[i]), 4);
}

int main(void) {
    RUN(test_every_unit_exactly_once);
    RUN(test_many_jobs_back_to_back);
    RUN(test_concurrent_callers);
    RUN(test_stalled_chunk);
    RUN(test_idle_pool_sleeps_and_wakes);
    RUN(test_nested_call_runs_inline);
    return test_summary();
}
