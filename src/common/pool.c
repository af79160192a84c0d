/*
 * pool.c -- the thread pool behind generation's matrix-vector products: qkv__pool_for.
 *
 * Why not OpenMP here: a one-token step is ~50 short parallel loops, and an OpenMP loop ends in
 * a barrier that waits for *every* thread of the team to arrive. When another process shares a
 * core, the thread on that core is descheduled for milliseconds at a time and every barrier
 * waits for it: generation collapses. Here the work is cut into chunks that threads claim from
 * one atomic counter, the caller claims too, and the caller waits only for chunks that were
 * claimed and not finished. A worker that wakes late finds nothing left and goes back to sleep;
 * nobody waits for it. Workers spin briefly between jobs (a step's loops come microseconds
 * apart), then sleep on a condition variable, so an idle pool costs nothing.
 *
 * One job at a time: a second caller that finds the pool busy (the server runs requests on
 * several threads) runs its loop itself. QKV_POOL=omp selects the OpenMP static split instead
 * (the before/after comparison); QKV_SPIN_US sets the spin (default 200 microseconds).
 */
#include "qkv_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#define POOL_MAX 63 /* workers (the caller is one more) */

/* The job. `state` packs the job's epoch (high 32 bits) with the next unclaimed unit (low 32):
 * a claim is one compare-and-swap that fails if a newer job was published in between, so a
 * late worker can never run a chunk of one job with another job's function. */
static struct {
    pthread_mutex_t submit;  /* held by the caller for the whole job */
    pthread_mutex_t sleep_mu;
    pthread_cond_t wake;
    _Atomic uint64_t state;
    _Atomic int done;        /* units finished */
    _Atomic int sleepers;
    _Atomic int n_workers;   /* started */
    qkv__range_fn fn;        /* written by the caller before it publishes the epoch */
    void *arg;
    _Atomic int n, grain, allowed; /* allowed: workers that may take part (n_threads - 1) */
    _Atomic int team;              /* allowed + 1 (the caller) */
    long spin_ns;
    int mode;                /* 0: not yet read, 1: pool, 2: OpenMP */
} pool = {.submit = PTHREAD_MUTEX_INITIALIZER, .sleep_mu = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_read_env(void) {
    const char *m = getenv("QKV_POOL");
    pool.mode = m && !strcmp(m, "omp") ? 2 : 1;
    const char *s = getenv("QKV_SPIN_US");
    long us = s ? atol(s) : 200;
    pool.spin_ns = (us < 0 ? 0 : us > 100000 ? 100000 : us) * 1000L;
}

/* Claims and runs chunks of the job of `epoch` until none are left. */
static void run_chunks(uint32_t epoch) {
    uint64_t s = atomic_load_explicit(&pool.state, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(s >> 32) != epoch) return;
        uint32_t next = (uint32_t)s;
        /* n and grain may already be the next job's (the caller writes them once every unit of
         * this one is done): harmless, because it first closes this job (next = UINT32_MAX),
         * so a claim computed from them cannot succeed */
        uint32_t n = (uint32_t)atomic_load_explicit(&pool.n, memory_order_relaxed);
        uint32_t grain = (uint32_t)atomic_load_explicit(&pool.grain, memory_order_relaxed);
        if (next >= n) return;
        /* guided: a chunk is a share of what is left (half of it over the threads), at least
         * `grain`: the first chunks are long contiguous runs (what a weight stream wants), the
         * last ones short (what balancing wants) */
        uint32_t left = n - next, take = left / (2u * (uint32_t)atomic_load_explicit(&pool.team, memory_order_relaxed));
        if (take < grain) take = grain;
        uint32_t hi = left > take ? next + take : n;
        if (atomic_compare_exchange_weak_explicit(&pool.state, &s, ((uint64_t)epoch << 32) | hi,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            pool.fn(pool.arg, (int)next, (int)hi);
            atomic_fetch_add_explicit(&pool.done, (int)(hi - next), memory_order_release);
            s = atomic_load_explicit(&pool.state, memory_order_acquire);
        }
    }
}

static void *worker(void *p) {
    int index = (int)(intptr_t)p;
    uint32_t seen = (uint32_t)(atomic_load(&pool.state) >> 32);
    for (;;) {
        uint32_t e = (uint32_t)(atomic_load_explicit(&pool.state, memory_order_acquire) >> 32);
        if (e == seen) {
            /* spin a little: the next loop of the step is usually microseconds away */
            double until = qkv__now() + pool.spin_ns * 1e-9;
            int spins = 0;
            while ((e = (uint32_t)(atomic_load_explicit(&pool.state, memory_order_acquire) >> 32)) == seen) {
                cpu_relax();
                if (++spins % 256 == 0 && qkv__now() > until) break;
            }
            if (e == seen) {
                pthread_mutex_lock(&pool.sleep_mu);
                atomic_fetch_add(&pool.sleepers, 1); /* seq_cst: pairs with the caller's publish */
                while ((e = (uint32_t)(atomic_load(&pool.state) >> 32)) == seen)
                    pthread_cond_wait(&pool.wake, &pool.sleep_mu);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.sleep_mu);
            }
        }
        seen = e;
        if (index < atomic_load_explicit(&pool.allowed, memory_order_relaxed)) run_chunks(e); /* (a stale `allowed` only skips or adds a claim attempt) */
    }
    return NULL;
}

/* Starts workers up to `want` (the pool only grows). Returns how many there are. */
static int ensure_workers(int want) {
    int have = atomic_load(&pool.n_workers);
    while (have < want) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_t th;
        int rc = pthread_create(&th, &at, worker, (void *)(intptr_t)have);
        pthread_attr_destroy(&at);
        if (rc != 0) break; /* fewer threads: the caller does more of the work */
        atomic_store(&pool.n_workers, ++have);
    }
    return have;
}

static void run_omp(int n, int grain, int n_threads, qkv__range_fn fn, void *arg) {
    int n_chunks = (n + grain - 1) / grain;
    if (n_threads > n_chunks) n_threads = n_chunks;
#pragma omp parallel num_threads(n_threads)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int lo = (int)((long)n_chunks * t / T) * grain, hi = (int)((long)n_chunks * (t + 1) / T) * grain;
        if (hi > n) hi = n;
        if (lo < hi) fn(arg, lo, hi);
    }
}

void qkv__pool_set_omp(int on) {
    pthread_once(&pool_once, pool_read_env);
    pool.mode = on ? 2 : 1;
}

void qkv__pool_for(int n, int grain, int n_threads, qkv__range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    pthread_once(&pool_once, pool_read_env);
    if (n_threads > POOL_MAX + 1) n_threads = POOL_MAX + 1;
    if (n_threads <= 1 || n <= grain) {
        fn(arg, 0, n);
        return;
    }
    if (pool.mode == 2) {
        run_omp(n, grain, n_threads, fn, arg);
        return;
    }
#ifdef _OPENMP
    if (omp_in_parallel()) { /* inside someone's team: its threads are the parallelism */
        fn(arg, 0, n);
        return;
    }
#endif
    if (pthread_mutex_trylock(&pool.submit) != 0) { /* another caller's job is running */
        fn(arg, 0, n);
        return;
    }
    int workers = ensure_workers(n_threads - 1);
    /* close the last job before touching its fields: a worker still holding its state (a
     * claim computed from the old "next" and the new n) must fail its compare-and-swap */
    uint32_t epoch = (uint32_t)(atomic_load(&pool.state) >> 32);
    atomic_store(&pool.state, ((uint64_t)epoch << 32) | UINT32_MAX);
    pool.fn = fn;
    pool.arg = arg;
    atomic_store_explicit(&pool.n, n, memory_order_relaxed);
    atomic_store_explicit(&pool.grain, grain, memory_order_relaxed);
    int allowed = workers < n_threads - 1 ? workers : n_threads - 1;
    atomic_store_explicit(&pool.allowed, allowed, memory_order_relaxed);
    atomic_store_explicit(&pool.team, allowed + 1, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    epoch++;
    atomic_store(&pool.state, (uint64_t)epoch << 32); /* publish (seq_cst: before reading sleepers) */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_mu);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_mu);
    }
    run_chunks(epoch);
    /* what is left is claimed and running on a worker (or that worker is descheduled) */
    for (int spins = 0; atomic_load_explicit(&pool.done, memory_order_acquire) < n;) {
        cpu_relax();
        if (++spins % 1024 == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool.submit);
}
