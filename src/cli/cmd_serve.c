/* cmd_serve.c -- `qkv serve [--model DIR] [--host H] [--port P]`: the playground, a web page
 * and a JSON API in one process (src/server/, docs/HTTP.md). Runs until SIGINT/SIGTERM. */
#include "cli.h"
#include "server/server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: qkv serve [--model DIR] [--host 127.0.0.1] [--port 8080] [options]\n\n"
            "Serves the attention playground (page + JSON API, docs/HTTP.md) on one model.\n\n"
            "  --model DIR      model folder (default: $QKV_MODEL, else the built-in model)\n"
            "  --host H         address to listen on (default 127.0.0.1; loopback only unless\n"
            "                   you name another address)\n"
            "  --port P         port (default 8080; 0 picks a free port and prints it)\n"
            "  --workers N      compute workers: forward passes computed at once (default 2)\n"
            "  --queue N        computing requests that may wait for a worker; more get 503\n"
            "                   (default 32)\n"
            "  --pool N         HTTP threads (default 4)\n"
            "  --max-conn N     open connections in all (default 1000)\n"
            "  --max-per-ip N   open connections per client address (default 64)\n"
            "  --timeout S      close connections idle for S seconds (default 15)\n"
            "  --request-timeout S  the whole request (headers and body) must arrive within S\n"
            "                   seconds of the connection (or of its previous request); default 10\n"
            "  --max-inflight-mb M  response bytes held at once across connections; over it,\n"
            "                   503 (default 256)\n"
            "  --drain S        on SIGTERM/SIGINT: seconds requests in flight may take to finish\n"
            "                   (default 10)\n"
            "  --threads N      compute threads per forward pass (default: cores / workers,\n"
            "                   or $QKV_THREADS)\n");
}

/* 1 on success; 0 after printing a message that states the valid range. */
static int parse_int(const char *opt, const char *s, int lo, int hi, int *out) {
    long v;
    if (qkv__cli_read_long(s, lo, hi, &v)) {
        qkv__cli_usage_error("serve", "%s must be an integer in [%d, %d] (got '%s')", opt, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int qkv__cmd_serve(int argc, char **argv) {
    const char *model_dir = NULL;
    qkv__server_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) return qkv__cli_usage_error("serve", "unknown option or missing value: %s", a);
        const char *v = argv[++i];
        int ok = 1, n = 0;
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) ok = parse_int(a, v, 0, 65535, &o.port);
        else if (!strcmp(a, "--workers")) ok = parse_int(a, v, 1, 64, &o.compute_slots);
        else if (!strcmp(a, "--pool")) ok = parse_int(a, v, 1, 256, &o.pool_threads);
        else if (!strcmp(a, "--max-conn")) ok = parse_int(a, v, 1, 10000, &o.max_connections);
        else if (!strcmp(a, "--max-per-ip")) ok = parse_int(a, v, 1, 10000, &o.max_per_ip);
        else if (!strcmp(a, "--timeout")) ok = parse_int(a, v, 1, 3600, &o.timeout_s);
        else if (!strcmp(a, "--queue")) ok = parse_int(a, v, 1, 100000, &o.queue_len);
        else if (!strcmp(a, "--request-timeout")) {
            ok = parse_int(a, v, 1, 3600, &n);
            o.request_timeout_s = n;
        } else if (!strcmp(a, "--max-inflight-mb")) {
            ok = parse_int(a, v, 1, 1 << 20, &n);
            o.max_inflight = (size_t)n << 20;
        } else if (!strcmp(a, "--drain")) {
            ok = parse_int(a, v, 1, 3600, &n);
            o.drain_s = n;
        }
        else if (!strcmp(a, "--threads")) ok = parse_int(a, v, 1, 1024, &threads);
        else return qkv__cli_usage_error("serve", "unknown option %s (see qkv serve --help)", a);
        if (!ok) return 2;
    }
    if (!model_dir) model_dir = qkv__cli_default_model();
    /* Block the stop signals before any thread exists (loading the model may start OpenMP's
     * workers; MHD starts its own later): threads inherit the mask, so a signal can only be
     * taken by sigwait below. A worker that did not block it would die of SIGINT's default
     * action, or drop it where a background shell set SIGINT to be ignored. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    /* Requests run side by side, so each forward gets its share of the cores: two forwards
     * of two OpenMP threads each on two cores stall at every barrier when the machine is
     * busy (measured: 1-2 ms become 200 ms). --threads or $QKV_THREADS override. */
    if (!threads && !getenv("QKV_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int workers = o.compute_slots > 0 ? o.compute_slots : 2;
        threads = cores > workers ? (int)(cores / workers) : 1;
    }
    if (threads) qkv_set_threads(threads);

#ifdef __GLIBC__
    /* The server's memory policy (docs/HTTP.md), the process's to set, not the library's.
     * Big responses and captures (from 1 MiB) come from mmap and go back to the system when
     * freed: a fixed threshold stops glibc from raising it after the first big free (it then
     * serves them from the heap, which kept 760 MB resident after a burst of 9 MB replies,
     * issue 14). Smaller scratch stays in the heap and is reused: 256 KiB measured 0.5 -> 8 ms
     * for a short request (fresh pages and munmap on every call). A worker arena's free top is
     * given back by free() beyond M_TRIM_THRESHOLD; below it, malloc_trim after large replies
     * and once things calm down. One arena: malloc_trim gives back the main arena's free top
     * but not the other arenas' (measured: 1 MB of 10 stayed after each attack); the threads
     * that allocate are few (workers, HTTP threads) and allocate per request, not per number. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_ARENA_MAX, 1);
#endif

    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st != QKV_OK) return qkv__cli_fail("serve", st);

    signal(SIGPIPE, SIG_IGN);
    /* one descriptor per connection: let --max-conn be reached */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    qkv__server *srv = NULL;
    st = qkv__server_start(model, &o, &srv);
    if (st != QKV_OK) {
        qkv_model_free(model);
        return qkv__cli_fail("serve", st);
    }
    const qkv_model_config *c = qkv_model_get_config(model);
    int v6 = strchr(o.host, ':') != NULL;
    printf("qkv: playground on http://%s%s%s:%d/ (model %s: %d layers, %d heads, %d tokens of "
           "context)\n",
           v6 ? "[" : "", o.host, v6 ? "]" : "", qkv__server_port(srv), qkv_model_name(model),
           c->n_layer, c->n_head, c->n_ctx);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "qkv serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    qkv__server_stop(srv);
    qkv_model_free(model);
    return 0;
}
