/* http.c -- the playground's HTTP side on GNU libmicrohttpd (0.9.75, Debian 12): static files
 * compiled into the binary (web_assets.h), the JSON API (api.c), and the limits of docs/HTTP.md.
 *
 * DESIGN. MHD's threads (an internal polling thread per pool worker, epoll) only parse requests,
 * answer cheap ones (the page's files, GET /api/model, /api/heads, /api/stats, every refusal)
 * and send responses; they never compute. A request that computes (POST /api/attend, compare,
 * ablate, patch, lens) is suspended and put on a bounded queue (full: 503 + Retry-After); a
 * fixed set of compute workers, at a lower CPU priority, takes it, computes, writes the JSON and
 * resumes the connection. Before computing, between forward passes and between the layers of a
 * long response the worker looks at the client's socket: a client that has gone cancels its
 * request (a suspended connection is not watched by MHD, so we peek ourselves).
 *
 * Defences against slow or hostile clients, each with its nginx counterpart:
 * - a deadline for receiving the whole request, headers and body, counted from accept or from
 *   the end of the previous request on the connection (client_header_timeout +
 *   client_body_timeout; MHD's own timeout is reset by every byte, so a drip feed never meets
 *   it): a watchdog thread shuts the socket down, MHD then closes it;
 * - connection limits in all and per client address, and the idle timeout (MHD);
 * - response bytes held at once are capped across connections (a client that does not read
 *   pins its response): over the budget, 503; the heap is trimmed after big responses and once
 *   things calm down (cmd_serve.c sets the malloc policy that makes that give memory back);
 * - ambiguous framing is refused: two Content-Length headers, Content-Length with
 *   Transfer-Encoding, a transfer coding other than chunked, two Host headers, and a Host or
 *   Content-Type that is not exactly what we serve;
 * - SIGTERM drains: the listening socket is closed at once (new connections are refused),
 *   requests in flight finish (bounded), then the daemon stops. */
#include "server/server.h"
#include "server/web_assets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* What the server counts (GET /api/stats); every field under srv->lock. */
typedef struct server_stats {
    long long computed;          /* requests computed and answered */
    long long cancelled_queued;  /* client gone before a worker took the request */
    long long cancelled_running; /* client gone while computing or writing: stopped early */
    long long abandoned_computed; /* computed to the end for a client that had gone */
    long long busy;              /* 503: the queue was full */
    long long over_budget;       /* 503: too many response bytes held already */
    long long deadline_closed;   /* connections shut by the request deadline */
    long long framing_refused;   /* 400: ambiguous framing, Host or Content-Type */
} server_stats;

/* One accepted connection (MHD's socket context), for the request deadline. */
typedef struct conn_state {
    struct conn_state *prev, *next;
    int fd;
    double t0; /* accept, or the end of the previous request */
    int busy;  /* the whole request is in (computing or answering): no deadline */
    int cut;   /* the deadline shut it down */
} conn_state;

/* Per-request state, kept by MHD between the calls of one request; also the work item. */
typedef struct request {
    qkv__buf body;
    int too_big;
    qkv__server *srv;
    struct MHD_Connection *conn;
    conn_state *cs;
    /* the work item */
    int job;              /* JOB_NONE, JOB_QUEUED (or running), JOB_DONE */
    char method[8];
    char *path;
    int status, cancelled;
    int want_binary, binary; /* the binary form asked for / given (POST /api/attend) */
    char *out;
    size_t out_len;
    const char *allow;
} request;

enum { JOB_NONE, JOB_QUEUED, JOB_DONE };

struct qkv__server {
    struct MHD_Daemon *daemon;
    qkv__api *api;
    int port;
    int loopback; /* bound to a loopback address: only loopback Host headers are served */
    double request_timeout_s;
    size_t max_inflight;
    double drain_s;

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t wake;  /* work queued, or stopping (the workers wait on it) */
    pthread_cond_t tick;  /* stopping (the watchdog waits on it) */
    conn_state *conns;    /* open connections */
    request **queue;      /* ring of queue_cap */
    int queue_cap, queue_head, queue_len, running;
    int draining;         /* SIGTERM: no new work, Connection: close on every answer */
    MHD_socket quiesced;  /* the listening socket MHD gave back (shut down), closed after MHD stops */
    int cancel_all;       /* the drain ran out of time: drop what is left */
    int stopping;         /* workers and watchdog end */
    int active;           /* requests between their first call and their completion */
    size_t inflight;      /* response bytes held by MHD */
    int since_trim;       /* connections closed and requests computed since the last trim */
    server_stats stats;

    pthread_t *workers;
    int n_workers;
    pthread_t watchdog;
    int watchdog_started;
};

void qkv__srv_lower_priority(void) {
    /* per thread on Linux: setpriority with a thread id; raising nice needs no privilege */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
}

static const char *content_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".json")) return "application/json; charset=utf-8";
    if (!strcmp(dot, ".ico")) return "image/x-icon";
    return "application/octet-stream";
}

static void common_headers(qkv__server *srv, struct MHD_Response *resp) {
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    pthread_mutex_lock(&srv->lock);
    int draining = srv->draining;
    pthread_mutex_unlock(&srv->lock);
    if (draining) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* ---- responses and the byte budget -------------------------------------------------------- */

/* A body MHD holds until it is sent (or the client goes): counted against max_inflight. */
typedef struct held_body {
    qkv__server *srv;
    char *data;
    size_t len;
} held_body;

#define TRIM_AFTER ((size_t)1 << 20) /* bodies from 1 MiB: give the heap back afterwards */

static void held_free(void *cls) {
    held_body *h = cls;
    qkv__server *srv = h->srv;
    pthread_mutex_lock(&srv->lock);
    srv->inflight -= h->len;
    pthread_mutex_unlock(&srv->lock);
    free(h->data);
    size_t len = h->len;
    free(h);
#ifdef __GLIBC__
    if (len >= TRIM_AFTER) malloc_trim(0); /* what writing it left in the heap */
#else
    (void)len;
#endif
}

static enum MHD_Result send_error(qkv__server *srv, struct MHD_Connection *conn, int status,
                                  const char *msg, const char *allow);

/* Queues a JSON response; takes ownership of body (malloc'ed). The body counts against the
 * server's byte budget until MHD has sent it or dropped it; over the budget the client gets 503
 * instead (a client that reads nothing keeps its response held until the idle timeout). */
static enum MHD_Result send_body(qkv__server *srv, struct MHD_Connection *conn, int status,
                                 char *body, size_t len, const char *allow, int binary) {
    pthread_mutex_lock(&srv->lock);
    int over = len > 4096 && srv->inflight + len > srv->max_inflight;
    if (over) srv->stats.over_budget++;
    else srv->inflight += len;
    pthread_mutex_unlock(&srv->lock);
    if (over) {
        free(body);
        return send_error(srv, conn, 503, "too many large responses are being sent; try again",
                          NULL);
    }
    held_body *h = malloc(sizeof *h);
    struct MHD_Response *resp = NULL;
    if (h) {
        *h = (held_body){srv, body, len};
        resp = MHD_create_response_from_buffer_with_free_callback_cls(len, body, held_free, h);
    }
    if (!resp) {
        if (h) held_free(h);
        else {
            free(body);
            pthread_mutex_lock(&srv->lock);
            srv->inflight -= len;
            pthread_mutex_unlock(&srv->lock);
        }
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            binary ? "application/octet-stream" : "application/json; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (allow) MHD_add_response_header(resp, "Allow", allow);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 400 || status == 413) /* the rest of the request may still be on its way */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    common_headers(srv, resp);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(qkv__server *srv, struct MHD_Connection *conn, int status,
                                 char *body, size_t len, const char *allow) {
    return send_body(srv, conn, status, body, len, allow, 0);
}

static enum MHD_Result send_error(qkv__server *srv, struct MHD_Connection *conn, int status,
                                  const char *msg, const char *allow) {
    char tmp[512];
    int n = snprintf(tmp, sizeof tmp, "{\"error\":\"%s\"}", msg); /* msg: our own text only */
    if (n < 0 || (size_t)n >= sizeof tmp) n = 0;
    char *body = malloc((size_t)n + 1);
    if (!body) return MHD_NO;
    memcpy(body, tmp, (size_t)n + 1);
    return send_json(srv, conn, status, body, (size_t)n, allow);
}

static enum MHD_Result send_asset(qkv__server *srv, struct MHD_Connection *conn,
                                  const qkv__web_asset *a) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type(a->name));
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    /* the page loads nothing from elsewhere; exports are built from blob:/data: URLs */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data: blob:; "
                            "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                            "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                            "frame-ancestors 'none'");
    common_headers(srv, resp);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static const qkv__web_asset *find_asset(const char *url) {
    const char *name = url[0] == '/' ? url + 1 : url;
    if (!*name) name = "index.html";
    for (size_t i = 0; i < qkv__web_assets_count; i++)
        if (!strcmp(qkv__web_assets[i].name, name)) return &qkv__web_assets[i];
    return NULL;
}

/* ---- POST /api/generate: newline-delimited JSON while the tokens are made ---------------- */

/* The connection is suspended while the generation has nothing new (no busy loop on the
 * polling threads) and resumed by the generation thread when it has (api.c calls these
 * under the stream's lock). A client that goes away ends the request: MHD destroys the
 * response, and stream_free cancels the generation. */
static void stream_sleep(void *conn) { MHD_suspend_connection(conn); }
static void stream_wake(void *conn) { MHD_resume_connection(conn); }

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    long n = qkv__gen_stream_read(cls, buf, max);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free(void *cls) { qkv__gen_stream_free(cls); }

static enum MHD_Result start_stream(qkv__server *srv, struct MHD_Connection *conn, request *req) {
    int status;
    char *out = NULL;
    size_t out_len = 0;
    qkv__gen_stream *gs =
        qkv__api_generate_start(srv->api, req->body.data, req->body.len, &status, &out, &out_len);
    if (!gs) return send_json(srv, conn, status, out, out_len, NULL);
    qkv__gen_stream_set_waker(gs, stream_sleep, stream_wake, conn);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, gs, stream_free);
    if (!resp) {
        qkv__gen_stream_free(gs);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/x-ndjson; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    common_headers(srv, resp);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- framing: refuse what two parsers could read differently ----------------------------- */

typedef struct header_scan {
    int n_host, n_length, n_te, n_type, bad_length;
    const char *host, *te, *type;
} header_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    header_scan *h = cls;
    if (!key) return MHD_YES;
    if (!strcasecmp(key, MHD_HTTP_HEADER_HOST)) {
        h->n_host++;
        h->host = value;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        h->n_length++;
        if (!value || !*value || strspn(value, "0123456789") != strlen(value)) h->bad_length = 1;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        h->n_te++;
        h->te = value;
    } else if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_TYPE)) {
        h->n_type++;
        h->type = value;
    }
    return MHD_YES;
}

/* Host names a loopback address (DNS rebinding: checked when we are bound to one). */
static int host_is_loopback(const char *host) {
    size_t n = strcspn(host, ":");
    if (host[0] == '[') n = strcspn(host, "]") + 1;
    if (host[n] == ':' && (!host[n + 1] || strspn(host + n + 1, "0123456789") != strlen(host + n + 1)))
        return 0; /* a port must be digits */
    if (host[n] && host[n] != ':') return 0;
    return (n == 9 && !strncasecmp(host, "localhost", 9)) || (n == 9 && !strncmp(host, "127.0.0.1", 9)) ||
           (n == 5 && !strncmp(host, "[::1]", 5));
}

/* application/json, optionally with ";charset=utf-8" (any case, optional spaces, the value
 * possibly quoted); nothing else (not application/jsonfoo, not another charset). */
static int json_content_type(const char *ct) {
    if (!ct || strncasecmp(ct, "application/json", 16) != 0) return 0;
    const char *p = ct + 16;
    p += strspn(p, " \t");
    if (!*p) return 1;
    if (*p++ != ';') return 0;
    p += strspn(p, " \t");
    if (strncasecmp(p, "charset=", 8) != 0) return 0;
    p += 8;
    int quoted = *p == '"';
    p += quoted;
    if (strncasecmp(p, "utf-8", 5) != 0) return 0;
    p += 5;
    if (quoted && *p++ != '"') return 0;
    p += strspn(p, " \t");
    return *p == '\0';
}

/* NULL when the request's framing and headers are fine, else the refusal (status in *status). */
static const char *check_headers(qkv__server *srv, struct MHD_Connection *conn, const char *method,
                                 const char *url, int *status) {
    header_scan h;
    memset(&h, 0, sizeof h);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_header, &h);
    *status = 400;
    if (h.n_host > 1) return "more than one Host header";
    if (h.n_length > 1) return "more than one Content-Length header";
    if (h.bad_length) return "Content-Length must be a decimal number";
    if (h.n_te > 1) return "more than one Transfer-Encoding header";
    if (h.n_te && h.n_length) return "Content-Length and Transfer-Encoding together";
    if (h.n_te && strcasecmp(h.te, "chunked") != 0) {
        *status = 501;
        return "Transfer-Encoding: only chunked";
    }
    if (srv->loopback && h.n_host && !host_is_loopback(h.host)) {
        *status = 403;
        return "Host header must be localhost or 127.0.0.1";
    }
    if (!strcmp(method, "POST") && !strncmp(url, "/api/", 5)) {
        /* a JSON content type also keeps other sites' plain form posts out */
        if (h.n_type > 1) return "more than one Content-Type header";
        if (!json_content_type(h.type)) {
            *status = 415;
            return "Content-Type must be application/json";
        }
    }
    return NULL;
}

/* ---- the work queue ------------------------------------------------------------------------ */

/* Whether the client of a suspended request has gone: its socket is closed or reset (a read
 * would return end of file). A pipelined next request reads as data, not as gone. */
static int client_gone(const request *req) {
    if (!req->cs || req->cs->fd < 0) return 0;
    struct pollfd p = {req->cs->fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return 1;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(req->cs->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return 0;
}

static int job_cancelled(void *arg) {
    request *req = arg;
    qkv__server *srv = req->srv;
    pthread_mutex_lock(&srv->lock);
    int stop = srv->cancel_all;
    pthread_mutex_unlock(&srv->lock);
    return stop || client_gone(req);
}

static void run_job(qkv__server *srv, request *req) {
    long long *count = NULL;
    if (job_cancelled(req)) {
        req->cancelled = 1;
        count = &srv->stats.cancelled_queued;
    } else {
        qkv__api_call call = {.method = req->method, .path = req->path, .body = req->body.data,
                              .body_len = req->body.len, .want_binary = req->want_binary,
                              .cancel = job_cancelled, .cancel_arg = req};
        qkv__api_run(srv->api, &call);
        req->status = call.status;
        req->out = call.out;
        req->out_len = call.out_len;
        req->allow = call.allow;
        req->binary = call.binary;
        if (req->status == QKV__SRV_CANCELLED) {
            req->cancelled = 1;
            count = &srv->stats.cancelled_running;
        } else if (client_gone(req)) {
            req->cancelled = 1;
            count = &srv->stats.abandoned_computed;
        } else {
            count = &srv->stats.computed;
        }
        if (req->cancelled) {
            free(req->out);
            req->out = NULL;
        }
    }
    pthread_mutex_lock(&srv->lock);
    (*count)++;
    srv->since_trim++;
    pthread_mutex_unlock(&srv->lock);
}

static void *worker_main(void *arg) {
    qkv__server *srv = arg;
    qkv__srv_lower_priority();
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        while (!srv->queue_len && !srv->stopping) pthread_cond_wait(&srv->wake, &srv->lock);
        if (!srv->queue_len) {
            pthread_mutex_unlock(&srv->lock);
            return NULL;
        }
        request *req = srv->queue[srv->queue_head];
        srv->queue_head = (srv->queue_head + 1) % srv->queue_cap;
        srv->queue_len--;
        srv->running++;
        pthread_mutex_unlock(&srv->lock);
        run_job(srv, req);
        pthread_mutex_lock(&srv->lock);
        req->job = JOB_DONE;
        srv->running--;
        pthread_mutex_unlock(&srv->lock);
        MHD_resume_connection(req->conn); /* MHD calls on_request again: the answer goes out */
    }
}

/* Suspends the connection and queues its request; 503 when the queue is full or we stop. */
static enum MHD_Result queue_job(qkv__server *srv, struct MHD_Connection *conn, request *req,
                                 const char *method, const char *url) {
    snprintf(req->method, sizeof req->method, "%s", method);
    req->path = strdup(url);
    if (!req->path) return send_error(srv, conn, 500, "out of memory", NULL);
    req->conn = conn;
    req->srv = srv;
    pthread_mutex_lock(&srv->lock);
    const char *refuse = srv->draining ? "the server is stopping"
                         : srv->queue_len >= srv->queue_cap ? "the server is busy; try again"
                                                            : NULL;
    if (refuse) {
        if (!srv->draining) srv->stats.busy++;
        pthread_mutex_unlock(&srv->lock);
        return send_error(srv, conn, 503, refuse, NULL);
    }
    req->job = JOB_QUEUED;
    MHD_suspend_connection(conn);
    srv->queue[(srv->queue_head + srv->queue_len) % srv->queue_cap] = req;
    srv->queue_len++;
    pthread_cond_signal(&srv->wake);
    pthread_mutex_unlock(&srv->lock);
    return MHD_YES;
}

static int computes(const char *method, const char *url) {
    return !strcmp(method, "POST") &&
           (!strcmp(url, "/api/attend") || !strcmp(url, "/api/compare") ||
            !strcmp(url, "/api/ablate") || !strcmp(url, "/api/patch") || !strcmp(url, "/api/lens"));
}

/* ---- the request deadline ------------------------------------------------------------------- */

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    qkv__server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_state *cs = calloc(1, sizeof *cs);
        if (!cs) return; /* no deadline for this one; everything else still works */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        cs->fd = ci ? ci->connect_fd : -1;
        cs->t0 = qkv__now();
        pthread_mutex_lock(&srv->lock);
        cs->next = srv->conns;
        if (srv->conns) srv->conns->prev = cs;
        srv->conns = cs;
        pthread_mutex_unlock(&srv->lock);
        *socket_context = cs;
    } else if (*socket_context) {
        /* MHD closes the socket after this call: the watchdog no longer sees the fd */
        conn_state *cs = *socket_context;
        pthread_mutex_lock(&srv->lock);
        if (cs->prev) cs->prev->next = cs->next;
        else srv->conns = cs->next;
        if (cs->next) cs->next->prev = cs->prev;
        srv->since_trim++;
        pthread_mutex_unlock(&srv->lock);
        free(cs);
        *socket_context = NULL;
    }
}

static conn_state *conn_state_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_busy(qkv__server *srv, conn_state *cs, int busy) {
    if (!cs) return;
    pthread_mutex_lock(&srv->lock);
    cs->busy = busy;
    if (!busy) cs->t0 = qkv__now();
    pthread_mutex_unlock(&srv->lock);
}

/* Shuts down (not closes: MHD owns the descriptor) every connection still receiving its request
 * after the deadline; MHD then reads end of file and closes it. */
static void *watchdog_main(void *arg) {
    qkv__server *srv = arg;
    double last_trim = qkv__now();
    pthread_mutex_lock(&srv->lock);
    while (!srv->stopping) {
        double now = qkv__now();
#ifdef __GLIBC__
        /* requests leave free heap behind, connections their 32 KiB pools: once things have
         * calmed down (a second since the last trim, nothing computing), give it back */
        if (srv->since_trim && now - last_trim > 1.0 && !srv->running && !srv->queue_len) {
            srv->since_trim = 0;
            last_trim = now;
            pthread_mutex_unlock(&srv->lock);
            malloc_trim(0);
            pthread_mutex_lock(&srv->lock);
            continue;
        }
#else
        (void)last_trim;
#endif
        for (conn_state *cs = srv->conns; cs; cs = cs->next) {
            if (!cs->busy && !cs->cut && cs->fd >= 0 && now - cs->t0 > srv->request_timeout_s) {
                shutdown(cs->fd, SHUT_RDWR);
                cs->cut = 1;
                srv->stats.deadline_closed++;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->tick, &srv->lock, &ts);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ---- GET /api/stats --------------------------------------------------------------------------- */

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static enum MHD_Result send_stats(qkv__server *srv, struct MHD_Connection *conn) {
    pthread_mutex_lock(&srv->lock);
    server_stats st = srv->stats;
    int qlen = srv->queue_len, running = srv->running, active = srv->active, open = 0;
    size_t inflight = srv->inflight;
    for (conn_state *cs = srv->conns; cs; cs = cs->next) open++;
    pthread_mutex_unlock(&srv->lock);
    char *body = malloc(1024);
    if (!body) return MHD_NO;
    int n = snprintf(body, 1024,
                     "{\"queue\":{\"waiting\":%d,\"capacity\":%d,\"running\":%d,\"workers\":%d},"
                     "\"connections\":{\"open\":%d,\"requests\":%d},"
                     "\"bytes_in_flight\":%zu,\"bytes_budget\":%zu,\"rss_kib\":%ld,"
                     "\"requests\":{\"computed\":%lld,\"cancelled_queued\":%lld,"
                     "\"cancelled_running\":%lld,\"abandoned_computed\":%lld,\"busy\":%lld,"
                     "\"over_budget\":%lld,\"deadline_closed\":%lld,\"framing_refused\":%lld}}",
                     qlen, srv->queue_cap, running, srv->n_workers, open, active, inflight,
                     srv->max_inflight, rss_kib(), st.computed, st.cancelled_queued,
                     st.cancelled_running, st.abandoned_computed, st.busy, st.over_budget,
                     st.deadline_closed, st.framing_refused);
    return send_json(srv, conn, 200, body, (size_t)(n < 1024 ? n : 1023), NULL);
}

/* ---- requests --------------------------------------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    qkv__server *srv = cls;
    request *req = *con_cls;
    if (!req) { /* first call: headers only */
        req = calloc(1, sizeof *req);
        if (!req) return MHD_NO;
        *con_cls = req;
        req->srv = srv;
        req->cs = conn_state_of(conn);
        pthread_mutex_lock(&srv->lock);
        srv->active++;
        pthread_mutex_unlock(&srv->lock);
        int status;
        const char *refuse = check_headers(srv, conn, method, url, &status);
        if (refuse) {
            pthread_mutex_lock(&srv->lock);
            srv->stats.framing_refused++;
            pthread_mutex_unlock(&srv->lock);
            set_busy(srv, req->cs, 1);
            return send_error(srv, conn, status, refuse, NULL);
        }
        if (!strcmp(method, "POST")) {
            const char *cl =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && (strlen(cl) > 12 || strtoull(cl, NULL, 10) > QKV__SRV_MAX_BODY)) {
                set_busy(srv, req->cs, 1);
                return send_error(srv, conn, 413, "request body too large (limit 65536 bytes)", NULL);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) { /* a chunk of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_big || req->body.len + n > QKV__SRV_MAX_BODY) {
            req->too_big = 1; /* keep reading (discarding) so we can answer 413 */
            return MHD_YES;
        }
        return qkv__buf_put(&req->body, upload_data, n) ? MHD_YES : MHD_NO;
    }
    /* the whole request is in: the deadline is met */
    set_busy(srv, req->cs, 1);
    if (req->job == JOB_DONE) { /* resumed by a worker */
        if (req->cancelled) return MHD_NO; /* the client has gone: close */
        char *out = req->out;
        req->out = NULL;
        return send_body(srv, conn, req->status, out, req->out_len, req->allow, req->binary);
    }
    if (req->job == JOB_QUEUED) return MHD_YES; /* not ours yet (should not be called) */
    if (req->too_big) return send_error(srv, conn, 413, "request body too large (limit 65536 bytes)", NULL);
    if (!strcmp(url, "/api/generate") && !strcmp(method, "POST")) return start_stream(srv, conn, req);
    if (computes(method, url)) {
        /* the binary form of the maps: ?format=bin, or Accept: application/octet-stream */
        const char *fmt = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
        const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        if (fmt && strcmp(fmt, "bin") && strcmp(fmt, "json"))
            return send_error(srv, conn, 400, "format must be json or bin", NULL);
        req->want_binary = fmt ? !strcmp(fmt, "bin")
                               : accept && strstr(accept, "application/octet-stream") != NULL;
        return queue_job(srv, conn, req, method, url);
    }
    if (!strcmp(url, "/api/stats")) {
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            return send_error(srv, conn, 405, "/api/stats: use GET", "GET, HEAD");
        return send_stats(srv, conn);
    }
    if (!strncmp(url, "/api/", 5) || !strcmp(url, "/api")) {
        /* cheap: /api/model, /api/heads and the refusals (wrong method, unknown route) */
        int status;
        char *out;
        size_t out_len;
        const char *allow;
        qkv__api_handle(srv->api, method, url, req->body.data, req->body.len, &status, &out, &out_len,
                        &allow);
        return send_json(srv, conn, status, out, out_len, allow);
    }
    const qkv__web_asset *a = find_asset(url);
    if (!a) return send_error(srv, conn, 404, "not found", NULL);
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_error(srv, conn, 405, "static files: use GET", "GET, HEAD");
    return send_asset(srv, conn, a);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    qkv__server *srv = cls;
    request *req = *con_cls;
    if (!req) return;
    /* the next request on this connection gets a deadline of its own */
    set_busy(srv, conn_state_of(conn), 0);
    pthread_mutex_lock(&srv->lock);
    srv->active--;
    pthread_mutex_unlock(&srv->lock);
    qkv__buf_free(&req->body);
    free(req->path);
    free(req->out);
    free(req);
    *con_cls = NULL;
}

/* ---- start and stop --------------------------------------------------------------------------- */

static void server_free(qkv__server *srv) {
    if (!srv) return;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = 1;
    pthread_cond_broadcast(&srv->wake);
    pthread_cond_broadcast(&srv->tick);
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < srv->n_workers; i++) pthread_join(srv->workers[i], NULL);
    if (srv->watchdog_started) pthread_join(srv->watchdog, NULL);
    if (srv->daemon) MHD_stop_daemon(srv->daemon);
    if (srv->quiesced != MHD_INVALID_SOCKET) close(srv->quiesced);
    qkv__api_free(srv->api);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->wake);
    pthread_cond_destroy(&srv->tick);
    free(srv->workers);
    free(srv->queue);
    free(srv);
}

qkv_status qkv__server_start(qkv_model *model, const qkv__server_opts *opts_in,
                             qkv__server **out) {
    *out = NULL;
    qkv__server_opts o = {0};
    if (opts_in) o = *opts_in;
    if (!o.host) o.host = "127.0.0.1";
    if (o.pool_threads <= 0) o.pool_threads = 4;
    if (o.compute_slots <= 0) o.compute_slots = 2;
    if (o.max_connections <= 0) o.max_connections = 1000;
    if (o.max_per_ip <= 0) o.max_per_ip = 64;
    if (o.timeout_s <= 0) o.timeout_s = 15;
    if (o.queue_len <= 0) o.queue_len = 32;
    if (o.request_timeout_s <= 0) o.request_timeout_s = 10;
    if (o.max_inflight == 0) o.max_inflight = (size_t)256 << 20;
    if (o.drain_s <= 0) o.drain_s = 10;
    if (o.port < 0 || o.port > 65535) return qkv__fail(QKV_ERANGE, "port %d is not in [0, 65535]", o.port);

    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", o.port);
    int gai = getaddrinfo(o.host, port_s, &hints, &ai);
    if (gai != 0 || !ai)
        return qkv__fail(QKV_EINVAL, "cannot resolve host '%s': %s", o.host, gai_strerror(gai));

    qkv__server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        freeaddrinfo(ai);
        return qkv__fail(QKV_ENOMEM, "server: out of memory");
    }
    srv->quiesced = MHD_INVALID_SOCKET;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->wake, NULL);
    pthread_cond_init(&srv->tick, NULL);
    srv->request_timeout_s = o.request_timeout_s;
    srv->max_inflight = o.max_inflight;
    srv->drain_s = o.drain_s;
    srv->queue_cap = o.queue_len;
    srv->queue = calloc((size_t)o.queue_len, sizeof *srv->queue);
    srv->workers = calloc((size_t)o.compute_slots, sizeof *srv->workers);
    if (!srv->queue || !srv->workers) {
        freeaddrinfo(ai);
        server_free(srv);
        return qkv__fail(QKV_ENOMEM, "server: out of memory");
    }
    qkv_status st = qkv__api_create(model, o.compute_slots, o.queue_wait_s, &srv->api);
    if (st != QKV_OK) {
        freeaddrinfo(ai);
        server_free(srv);
        return st;
    }
    /* generations run on threads of their own: as many as the compute queue holds, at most */
    qkv__api_set_max_streams(srv->api, o.queue_len + o.compute_slots);
    for (int i = 0; i < o.compute_slots; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) break;
        srv->n_workers++;
    }
    srv->watchdog_started = pthread_create(&srv->watchdog, NULL, watchdog_main, srv) == 0;
    if (srv->n_workers < o.compute_slots || !srv->watchdog_started) {
        freeaddrinfo(ai);
        server_free(srv);
        return qkv__fail(QKV_EIO, "server: cannot start its threads");
    }
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
        srv->loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;
        srv->loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    }
    /* suspend/resume: queued requests and the streamed /api/generate wait without polling;
     * ITC: MHD_quiesce_daemon on stop */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)o.port, NULL, NULL, on_request, srv,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o.pool_threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o.max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        server_free(srv);
        return qkv__fail(QKV_EIO, "cannot listen on %s:%d (in use, or not allowed)", o.host, o.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : o.port;
    *out = srv;
    return QKV_OK;
}

int qkv__server_port(const qkv__server *srv) { return srv ? srv->port : 0; }

void qkv__server_stop(qkv__server *srv) {
    if (!srv) return;
    /* 1. no new connections: the listening socket goes (connect is refused), no new work */
    pthread_mutex_lock(&srv->lock);
    srv->draining = 1;
    pthread_mutex_unlock(&srv->lock);
    /* shut down, not closed: MHD's epoll threads drop the socket from their sets lazily, and
     * one that finds it already closed aborts the process ("Failed to remove listen FD from
     * epoll set"); a shut-down listening socket refuses connections and stays a valid fd until
     * server_free closes it after MHD_stop_daemon */
    srv->quiesced = MHD_quiesce_daemon(srv->daemon);
    if (srv->quiesced != MHD_INVALID_SOCKET) shutdown(srv->quiesced, SHUT_RDWR);
    /* 2. requests in flight finish, within drain_s: running generations end at their next
     * token and finish their streams (MHD must not stop with a connection suspended) */
    double deadline = qkv__now() + srv->drain_s;
    qkv__api_stop_streams(srv->api, srv->drain_s);
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        int busy = srv->active > 0;
        pthread_mutex_unlock(&srv->lock);
        if (!busy || qkv__now() >= deadline) break;
        nanosleep(&(struct timespec){0, 20000000L}, NULL);
    }
    /* 3. what is left is dropped: queued requests are cancelled, running ones stop at their
     * next check; every suspended connection is resumed before the daemon stops */
    pthread_mutex_lock(&srv->lock);
    srv->cancel_all = 1;
    srv->stopping = 1;
    pthread_cond_broadcast(&srv->wake);
    pthread_mutex_unlock(&srv->lock);
    server_free(srv);
}
