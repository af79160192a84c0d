/* http.c -- the playground's HTTP side on GNU libmicrohttpd: static files compiled into the
 * binary (web_assets.h), the JSON API (api.c), and the limits of docs/HTTP.md: an internal
 * polling thread with a worker pool, global and per-IP connection limits, an inactivity
 * timeout, a body cap enforced while the body streams in, a Host check against DNS
 * rebinding when bound to loopback, and the streamed POST /api/generate. */
#include "server/server.h"
#include "server/web_assets.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct qkv__server {
    struct MHD_Daemon *daemon;
    qkv__api *api;
    int port;
    int loopback; /* bound to a loopback address: only loopback Host headers are served */
};

/* Per-request state, kept by MHD between the calls of one request. */
typedef struct request {
    char *body;
    size_t len, cap;
    int too_big;
} request;

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

static void common_headers(struct MHD_Response *resp) {
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
}

/* Queues a JSON response; takes ownership of body (malloc'ed). */
static enum MHD_Result send_json(struct MHD_Connection *conn, int status, char *body, size_t len,
                                 const char *allow) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (allow) MHD_add_response_header(resp, "Allow", allow);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    common_headers(resp);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *msg,
                                  const char *allow) {
    char tmp[512];
    int n = snprintf(tmp, sizeof tmp, "{\"error\":\"%s\"}", msg); /* msg: our own text only */
    char *body = malloc((size_t)n + 1);
    if (!body) return MHD_NO;
    memcpy(body, tmp, (size_t)n + 1);
    return send_json(conn, status, body, (size_t)n, allow);
}

static enum MHD_Result send_asset(struct MHD_Connection *conn, const qkv__web_asset *a) {
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
    common_headers(resp);
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

/* Host header must name a loopback address when we are bound to one (DNS rebinding). */
static int host_ok(struct MHD_Connection *conn) {
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (!host) return 1; /* HTTP/1.0 without Host: nothing to rebind */
    size_t n = strcspn(host, ":");
    if (host[0] == '[') n = strcspn(host, "]") + 1;
    return (n == 9 && !strncasecmp(host, "localhost", 9)) || (n == 9 && !strncmp(host, "127.0.0.1", 9)) ||
           (n == 5 && !strncmp(host, "[::1]", 5));
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
    qkv__gen_stream *gs = qkv__api_generate_start(srv->api, req->body, req->len, &status, &out, &out_len);
    if (!gs) return send_json(conn, status, out, out_len, NULL);
    qkv__gen_stream_set_waker(gs, stream_sleep, stream_wake, conn);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, gs, stream_free);
    if (!resp) {
        qkv__gen_stream_free(gs);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/x-ndjson; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    common_headers(resp);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

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
        if (srv->loopback && !host_ok(conn))
            return send_error(conn, 403, "Host header must be localhost or 127.0.0.1", NULL);
        if (!strcmp(method, "POST")) {
            const char *cl =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > QKV__SRV_MAX_BODY)
                return send_error(conn, 413, "request body too large (limit 65536 bytes)", NULL);
            if (!strncmp(url, "/api/", 5)) {
                const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_CONTENT_TYPE);
                /* a JSON content type also keeps other sites' plain form posts out */
                if (!ct || strncasecmp(ct, "application/json", 16) != 0)
                    return send_error(conn, 415, "Content-Type must be application/json", NULL);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) { /* a chunk of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_big || req->len + n > QKV__SRV_MAX_BODY) {
            req->too_big = 1; /* keep reading (discarding) so we can answer 413 */
            return MHD_YES;
        }
        if (req->len + n + 1 > req->cap) {
            size_t cap = req->cap ? req->cap : 1024;
            while (cap < req->len + n + 1) cap *= 2;
            char *b = realloc(req->body, cap);
            if (!b) return MHD_NO;
            req->body = b;
            req->cap = cap;
        }
        memcpy(req->body + req->len, upload_data, n);
        req->len += n;
        req->body[req->len] = '\0';
        return MHD_YES;
    }
    /* the whole request is in */
    if (req->too_big) return send_error(conn, 413, "request body too large (limit 65536 bytes)", NULL);
    if (!strcmp(url, "/api/generate") && !strcmp(method, "POST")) return start_stream(srv, conn, req);
    if (!strncmp(url, "/api/", 5) || !strcmp(url, "/api")) {
        int status;
        char *out;
        size_t out_len;
        const char *allow;
        qkv__api_handle(srv->api, method, url, req->body, req->len, &status, &out, &out_len, &allow);
        return send_json(conn, status, out, out_len, allow);
    }
    const qkv__web_asset *a = find_asset(url);
    if (!a) return send_error(conn, 404, "not found", NULL);
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_error(conn, 405, "static files: use GET", "GET, HEAD");
    return send_asset(conn, a);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    request *req = *con_cls;
    if (req) {
        free(req->body);
        free(req);
        *con_cls = NULL;
    }
}

qkv_status qkv__server_start(qkv_model *model, const qkv__server_opts *opts_in,
                             qkv__server **out) {
    *out = NULL;
    qkv__server_opts o = {0};
    if (opts_in) o = *opts_in;
    if (!o.host) o.host = "127.0.0.1";
    if (o.pool_threads <= 0) o.pool_threads = 4;
    if (o.max_connections <= 0) o.max_connections = 128;
    if (o.max_per_ip <= 0) o.max_per_ip = 64;
    if (o.timeout_s <= 0) o.timeout_s = 15;
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
    qkv_status st = qkv__api_create(model, o.compute_slots, o.queue_wait_s, &srv->api);
    if (st != QKV_OK) {
        freeaddrinfo(ai);
        free(srv);
        return st;
    }
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
        srv->loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;
        srv->loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    }
    /* suspend/resume: the streamed /api/generate waits for tokens without busy polling */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
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
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        qkv__api_free(srv->api);
        free(srv);
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
    /* running generations stop at their next token and finish their streams: MHD must not be
     * stopped with a connection suspended */
    qkv__api_stop_streams(srv->api, 30.0);
    MHD_stop_daemon(srv->daemon);
    qkv__api_free(srv->api);
    free(srv);
}
