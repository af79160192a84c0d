/* server.h -- the playground's HTTP server (libmicrohttpd) and its JSON API, private to
 * libqkv. The API is described in docs/HTTP.md. The request handler is a plain function
 * (qkv__api_handle) so the benchmark and the tests can call it without sockets. */
#ifndef QKV_SERVER_H
#define QKV_SERVER_H

#include "qkv_internal.h"

/* Limits (docs/HTTP.md lists them). */
#define QKV__SRV_MAX_BODY (64 * 1024)        /* request body bytes */
#define QKV__SRV_MAX_TEXT (32 * 1024)        /* bytes of "text" */
#define QKV__SRV_MAX_VALUES (16u * 1024 * 1024) /* floats in one response */
/* floats the forward may capture for one request ([L,H,N,N] per map kind: the model records
 * every layer even when fewer are returned): 1 GiB */
#define QKV__SRV_MAX_CAPTURE ((size_t)1 << 28)
#define QKV__SRV_MAX_TOP_K 50
#define QKV__SRV_MAX_PROBES 16
/* /api/ablate and /api/patch run one forward per cell (L x H, or L x N): at most this many
 * tokens; /api/lens reads at most this many (state, position) rows through the unembedding */
#define QKV__SRV_MAX_IV_TOKENS 128
#define QKV__SRV_MAX_LENS_ROWS 2048
#define QKV__SRV_MAX_GEN_TOKENS 256 /* tokens one /api/generate request may ask for */

typedef struct qkv__server_opts {
    const char *host;      /* "127.0.0.1" if NULL */
    int port;              /* 0 = any free port */
    int pool_threads;      /* MHD worker threads (0 = 4) */
    int compute_slots;     /* compute workers: forwards run at once (0 = 2) */
    int max_connections;   /* 0 = 1000 */
    int max_per_ip;        /* 0 = 64 */
    int timeout_s;         /* inactivity timeout (0 = 15) */
    double queue_wait_s;   /* how long a request waits for a compute slot before 503 (0 = 30) */
    int queue_len;         /* computing requests waiting for a worker; more get 503 (0 = 32) */
    double request_timeout_s; /* from accept (or the end of the previous request on the
                                 connection) to the whole request received (0 = 10) */
    size_t max_inflight;   /* response bytes held at once, all connections (0 = 256 MiB) */
    double drain_s;        /* on stop: how long requests in flight may take to finish (0 = 10) */
} qkv__server_opts;

typedef struct qkv__server qkv__server;

/* The API state shared by every request: the model (read-only after load) and the
 * compute-slot semaphore. */
typedef struct qkv__api qkv__api;

qkv_status qkv__api_create(qkv_model *model, int compute_slots, double queue_wait_s,
                           qkv__api **out);
void qkv__api_free(qkv__api *api);
/* At most n generations (POST /api/generate) at once, each a thread of its own; more get 503.
 * 0 = no limit (the default; the HTTP server sets its compute queue's length + workers). */
void qkv__api_set_max_streams(qkv__api *api, int n);

/* Asked by a cancellable request between units of work: nonzero = stop (the client has gone,
 * or the server is stopping). */
typedef int (*qkv__api_cancel_fn)(void *arg);
/* The status a cancelled request ends with (nginx's "client closed request"); never sent. */
#define QKV__SRV_CANCELLED 499

/* Handles one request. path has no query string. *body_out is malloc'ed JSON (free() it);
 * *status the HTTP status; *allow (for 405) the allowed methods, static. Never fails:
 * every error is a JSON {"error": ...} body with a 4xx/5xx status. */
void qkv__api_handle(qkv__api *api, const char *method, const char *path, const char *body,
                     size_t body_len, int *status, char **body_out, size_t *body_len_out,
                     const char **allow);
/* One request, with what the HTTP side adds: cancellation, asked before computing, before
 * each layer of every forward pass (qkv_forward_opts.cancel), between forward passes and
 * between the layers of a long response (when it says stop, status is QKV__SRV_CANCELLED and
 * the body an error to drop; see docs/HTTP.md), and the binary form of POST /api/attend. */
typedef struct qkv__api_call {
    const char *method, *path, *body; /* in */
    size_t body_len;
    int want_binary;            /* ?format=bin or Accept: application/octet-stream */
    qkv__api_cancel_fn cancel;  /* may be NULL */
    void *cancel_arg;
    int status;                 /* out, as qkv__api_handle */
    char *out;
    size_t out_len;
    const char *allow;
    int binary;                 /* out is the binary form (application/octet-stream) */
} qkv__api_call;
void qkv__api_run(qkv__api *api, qkv__api_call *call);
/* Lowers the calling thread's CPU priority (nice +10; the OpenMP threads it starts inherit it)
 * so that the HTTP threads answering cheap requests are scheduled first. */
void qkv__srv_lower_priority(void);

/* POST /api/generate: generation streamed as newline-delimited JSON while the tokens are
 * made (docs/HTTP.md). qkv__api_generate_start validates the body and starts the generation
 * on a thread of its own; NULL with *status / *body_out (a JSON error, malloc'ed) when the
 * request is refused. The HTTP side reads the stream with qkv__gen_stream_read: bytes, 0 when
 * nothing is ready yet (the stream then calls sleep(arg) before returning, under its lock,
 * and wake(arg) once there is more: suspend / resume the connection), or -1 at the end.
 * qkv__gen_stream_free cancels a generation still running (the client went away), joins its
 * thread and frees it. */
typedef struct qkv__gen_stream qkv__gen_stream;
qkv__gen_stream *qkv__api_generate_start(qkv__api *api, const char *body, size_t len, int *status,
                                         char **body_out, size_t *body_len_out);
void qkv__gen_stream_set_waker(qkv__gen_stream *s, void (*sleep)(void *), void (*wake)(void *),
                               void *arg);
long qkv__gen_stream_read(qkv__gen_stream *s, char *buf, size_t max);
void qkv__gen_stream_free(qkv__gen_stream *s);
/* Asks every running generation to stop and waits (up to timeout_s) for their streams to be
 * freed: the HTTP side must not stop with connections suspended. */
void qkv__api_stop_streams(qkv__api *api, double timeout_s);

/* Starts the server on the model (not owned; must outlive the server). */
qkv_status qkv__server_start(qkv_model *model, const qkv__server_opts *opts, qkv__server **out);
/* The port it listens on (useful after port 0). */
int qkv__server_port(const qkv__server *srv);
/* Stops accepting (new connections are refused), lets requests in flight finish (up to
 * drain_s; then queued ones are dropped and running ones stop at their next check), frees.
 * NULL is fine. */
void qkv__server_stop(qkv__server *srv);

#endif /* QKV_SERVER_H */
