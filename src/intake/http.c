/*
 * http.c: the HTTP intake on libmicrohttpd.
 *
 * One callback in: the first call of the access handler routes the request
 * and refuses what it can from the headers alone (404, 405, 413 from
 * Content-Length); later calls collect the body up to max_body; the last
 * call hands it to the route's provider. A rejection is answered at once; an
 * event is queued to the store and the connection SUSPENDED, so no thread
 * waits for the fsync. The store's writer calls http_stored after the commit,
 * which records the answer and resumes the connection; the handler then runs
 * once more and sends it.
 */
#include "intake/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "forward/hooks.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

#define HTTP_ADDR_MAX     64
#define HTTP_XFF_MAX      1024
#define HTTP_IP_BUCKETS   1024
#define HTTP_LOG_EVERY_NS (10ull * 1000000000ull)
#define HTTP_REJECT_LOG_BURST 50 /* rejection lines per HTTP_LOG_EVERY_NS */
/* Per-connection memory of libmicrohttpd (request head, read buffer).
 * 0.9.75 zeroes the whole pool for every request, so a large pool costs a
 * memset per request and keeps every connection's pool resident; 16 KiB
 * holds any real platform request head (bodies are copied out in chunks). */
#define HTTP_CONN_MEMORY (16 * 1024)

enum http_state { REQ_READING, REQ_WAITING, REQ_DONE };
enum http_builtin { BUILTIN_NONE, BUILTIN_HEALTHZ, BUILTIN_READYZ, BUILTIN_METRICS };

/* Open connections of one untrusted address (for the per-address limit). */
struct http_ip {
    struct http_ip *next;
    uint8_t key[16];
    unsigned count;
};

struct http {
    struct MHD_Daemon *mhd;
    struct runtime_cell *cell;
    struct store *store;
    atomic_long in_flight;
    pthread_mutex_t ip_lock;
    struct http_ip *ips[HTTP_IP_BUCKETS];
    struct log_limit refusal_log, rejection_log;
    int route_unmatched, route_builtin[4];
    atomic_int draining; /* SIGTERM: refuse new connections */
    /* The reaper: a request must arrive whole within connection_timeout. */
    pthread_mutex_t conn_lock;
    struct http_conn *conns;
    pthread_t reaper;
    int reaper_started, reaper_stop;
    pthread_cond_t reaper_cond;
    uint64_t deadline_ns;
};

/* Per-connection state: the address key it is counted under, if any. */
struct http_conn {
    struct http_conn *prev, *next; /* in http.conns, for the reaper */
    int fd;
    int counted;
    uint8_t key[16];
    uint64_t phase_start; /* when the request being awaited could start */
    int dispatched;       /* its body is complete: no deadline from us */
};

/* One request from its first header to its answer. */
struct http_req {
    struct http *h;
    struct runtime *rt;
    struct MHD_Connection *conn;
    const struct route *route;
    enum http_builtin builtin;
    enum http_state state;
    int metrics;
    uint64_t t0;
    struct buf body;
    size_t max_body;
    int overflow;
    char remote[HTTP_ADDR_MAX];
    struct arena arena;
    struct provider_reply reply;
    int status;
    int counted; /* in the request metrics already */
    const char *answer;
    const char *answer_type;
};

/* ---- addresses and the per-address limit ----------------------------- */

/* A 16-byte key for an address (IPv4 as IPv4-mapped IPv6); 0 or -1. */
static int http_addr_key(const struct sockaddr *sa, uint8_t key[16])
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        memset(key, 0, 10);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* Text form of an address ("192.0.2.1", "2001:db8::1"). */
static void http_addr_text(const struct sockaddr *sa, char *out, size_t len)
{
    const void *a = NULL;

    if (sa && sa->sa_family == AF_INET)
        a = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa && sa->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!a || !inet_ntop(sa->sa_family, a, out, (socklen_t)len))
        snprintf(out, len, "unknown");
}

/* Bucket index of an address key (FNV-1a). */
static unsigned http_ip_bucket(const uint8_t key[16])
{
    uint32_t h = 2166136261u;
    int i;

    for (i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % HTTP_IP_BUCKETS;
}

/* Open connections of an address (lock held). */
static struct http_ip **http_ip_find(struct http *h, const uint8_t key[16])
{
    struct http_ip **p = &h->ips[http_ip_bucket(key)];

    while (*p && memcmp((*p)->key, key, 16) != 0)
        p = &(*p)->next;
    return p;
}

/* Add delta to an address's count; entries vanish at zero (lock held). */
static void http_ip_add_locked(struct http *h, const uint8_t key[16], int delta)
{
    struct http_ip **p = http_ip_find(h, key), *e = *p;

    if (!e && delta > 0 && (e = calloc(1, sizeof(*e))) != NULL) {
        memcpy(e->key, key, 16);
        *p = e;
    }
    if (e) {
        e->count = delta > 0 ? e->count + 1 : (e->count ? e->count - 1 : 0);
        if (e->count == 0) {
            *p = e->next;
            free(e);
        }
    }
}

static void http_ip_add(struct http *h, const uint8_t key[16], int delta)
{
    pthread_mutex_lock(&h->ip_lock);
    http_ip_add_locked(h, key, delta);
    pthread_mutex_unlock(&h->ip_lock);
}

/* Count one more connection of an address unless it has limit already:
 * the check and the increment under one lock, so connections accepted at
 * once by several HTTP threads cannot all pass. 0, or -1 over the limit. */
static int http_ip_reserve(struct http *h, const uint8_t key[16], unsigned limit)
{
    struct http_ip *e;
    int r = 0;

    pthread_mutex_lock(&h->ip_lock);
    e = *http_ip_find(h, key);
    if (e && e->count >= limit)
        r = -1;
    else
        http_ip_add_locked(h, key, 1);
    pthread_mutex_unlock(&h->ip_lock);
    return r;
}

/* Current open connections of an address. */
static unsigned http_ip_count(struct http *h, const uint8_t key[16])
{
    unsigned n;

    pthread_mutex_lock(&h->ip_lock);
    n = *http_ip_find(h, key) ? (*http_ip_find(h, key))->count : 0;
    pthread_mutex_unlock(&h->ip_lock);
    return n;
}

/* Log a refused connection, at most once every 10 s (floods must not flood the log). */
static void http_log_refusal(struct http *h, const struct sockaddr *sa, unsigned limit)
{
    char addr[HTTP_ADDR_MAX];
    unsigned skipped;

    if (!log_limit_pass(&h->refusal_log, 1, HTTP_LOG_EVERY_NS, &skipped))
        return;
    http_addr_text(sa, addr, sizeof(addr));
    log_msg(LOG_WARNING, (const char *[]){"REMOTE", addr, "REASON", "per_ip_limit", NULL},
            "refused a connection from %s: %u connections open (max_connections_per_ip); "
            "%u more refusals since the last such line",
            addr, limit, skipped);
}

/* MHD accept policy: untrusted addresses get at most max_connections_per_ip. */
static enum MHD_Result http_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    struct http *h = cls;
    struct runtime *rt = runtime_acquire(h->cell);
    unsigned limit = rt->cfg->server.max_connections_per_ip;
    int trusted = config_is_trusted(rt->cfg, sa);
    uint8_t key[16];

    runtime_release(rt);
    if (atomic_load(&h->draining))
        return MHD_NO;
    if (trusted || http_addr_key(sa, key) < 0 || http_ip_count(h, key) < limit)
        return MHD_YES;
    metrics_rejection(metrics_reason("per_ip_limit"));
    http_log_refusal(h, sa, limit);
    return MHD_NO;
}

/* Put a connection on the reaper's list (or take it off). */
static void http_conn_track(struct http *h, struct http_conn *hc, int add)
{
    pthread_mutex_lock(&h->conn_lock);
    if (add) {
        hc->next = h->conns;
        if (h->conns)
            h->conns->prev = hc;
        h->conns = hc;
    } else {
        if (hc->prev)
            hc->prev->next = hc->next;
        else
            h->conns = hc->next;
        if (hc->next)
            hc->next->prev = hc->prev;
    }
    pthread_mutex_unlock(&h->conn_lock);
}

/* A connection begins: count it per address and start its request deadline. */
static struct http_conn *http_conn_new(struct http *h, struct MHD_Connection *c)
{
    struct http_conn *hc = calloc(1, sizeof(*hc));
    const union MHD_ConnectionInfo *ci, *fi;
    struct runtime *rt;
    unsigned limit = 0;
    int over = 0;

    if (!hc)
        return NULL;
    hc->fd = -1;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci) {
        rt = runtime_acquire(h->cell);
        limit = rt->cfg->server.max_connections_per_ip;
        hc->counted = !config_is_trusted(rt->cfg, ci->client_addr) &&
                      http_addr_key(ci->client_addr, hc->key) == 0;
        runtime_release(rt);
    }
    /* http_accept only looked; here the count is taken, atomically. */
    if (hc->counted && http_ip_reserve(h, hc->key, limit) < 0) {
        hc->counted = 0;
        over = 1;
    }
    fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    hc->fd = fi ? fi->connect_fd : -1;
    if (over) { /* MHD reads end of file and closes it; nothing was read */
        if (hc->fd >= 0)
            shutdown(hc->fd, SHUT_RDWR);
        metrics_rejection(metrics_reason("per_ip_limit"));
        http_log_refusal(h, ci->client_addr, limit);
    }
    hc->phase_start = util_now_ns();
    http_conn_track(h, hc, 1);
    return hc;
}

/* MHD connection start/close: per-address counts and the reaper's list. The
 * CLOSED notification comes before MHD closes the socket, so the reaper never
 * touches a descriptor that could have been reused. */
static void http_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                            enum MHD_ConnectionNotificationCode code)
{
    struct http *h = cls;
    struct http_conn *hc = *socket_ctx;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        metrics_add_connections(1);
        *socket_ctx = http_conn_new(h, c);
        return;
    }
    metrics_add_connections(-1);
    if (hc) {
        http_conn_track(h, hc, 0);
        if (hc->counted)
            http_ip_add(h, hc->key, -1);
        free(hc);
    }
    *socket_ctx = NULL;
}

/* The connection's state for the reaper, from a request. */
static struct http_conn *http_conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

/* Mark the awaited request as dispatched (1) or start waiting for the next (0). */
static void http_conn_phase(struct http *h, struct MHD_Connection *c, int dispatched)
{
    struct http_conn *hc = http_conn_of(c);

    if (!hc)
        return;
    pthread_mutex_lock(&h->conn_lock);
    hc->dispatched = dispatched;
    if (!dispatched)
        hc->phase_start = util_now_ns();
    pthread_mutex_unlock(&h->conn_lock);
}

/*
 * The reaper thread. libmicrohttpd's timeout counts inactivity only, so a
 * client trickling a byte a second (slowloris) would hold its connection for
 * ever. Here a request must arrive whole -- headers and body -- within
 * connection_timeout of the moment it could start; otherwise its socket is
 * shut down (MHD then closes it). Nothing was acknowledged, so nothing is lost.
 */
static void *http_reaper(void *arg)
{
    struct http *h = arg;
    struct http_conn *hc;
    struct timespec until;
    unsigned long reaped;
    uint64_t now;

    pthread_mutex_lock(&h->conn_lock);
    while (!h->reaper_stop) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&h->reaper_cond, &h->conn_lock, &until);
        now = util_now_ns();
        reaped = 0;
        for (hc = h->conns; hc; hc = hc->next) {
            if (!hc->dispatched && hc->fd >= 0 &&
                now - hc->phase_start > h->deadline_ns) {
                shutdown(hc->fd, SHUT_RDWR);
                hc->phase_start = now; /* once is enough; MHD closes it */
                reaped++;
            }
        }
        while (reaped--)
            metrics_rejection(metrics_reason("request_too_slow"));
    }
    pthread_mutex_unlock(&h->conn_lock);
    return NULL;
}

/* MHD header iterator: keep the LAST X-Forwarded-For (the one our proxy wrote). */
static enum MHD_Result http_last_xff(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    if (strcasecmp(key, "X-Forwarded-For") == 0)
        *(const char **)cls = value;
    return MHD_YES;
}

/*
 * The client's address: the TCP peer, unless the peer is a trusted proxy;
 * then X-Forwarded-For is read from the right, skipping trusted proxies,
 * and the first untrusted address is the client (entries further left were
 * written by the client itself and prove nothing).
 */
static void http_client_addr(struct http_req *rq, const struct sockaddr *peer)
{
    const char *xff = NULL;
    char list[HTTP_XFF_MAX], *tok;
    uint8_t raw[16];
    size_t n;

    http_addr_text(peer, rq->remote, sizeof(rq->remote));
    if (!config_is_trusted(rq->rt->cfg, peer))
        return;
    MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, http_last_xff, &xff);
    if (!xff)
        return;
    /* Keep the RIGHT end: that is what our proxies appended; a long left
     * part is the client's own writing (a cut token there is just garbage). */
    n = strlen(xff);
    snprintf(list, sizeof(list), "%s",
             n >= sizeof(list) ? xff + n - (sizeof(list) - 1) : xff);
    while ((tok = strrchr(list, ',')) || list[0]) {
        char *a = tok ? tok + 1 : list;
        a += strspn(a, " \t");
        a[strcspn(a, " \t")] = '\0';
        if (inet_pton(AF_INET, a, raw) != 1 && inet_pton(AF_INET6, a, raw) != 1)
            return; /* garbage: keep the last address we could trust */
        snprintf(rq->remote, sizeof(rq->remote), "%s", a);
        if (!config_is_trusted_text(rq->rt->cfg, a) || !tok)
            return;
        *tok = '\0';
    }
}

/* ---- answers ---------------------------------------------------------- */

/* Queue an answer (copied). */
static enum MHD_Result http_send(struct http_req *rq, int status, const char *type,
                                 const char *body, const char *allow)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (atomic_load(&rq->h->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(rq->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    rq->status = status;
    rq->state = REQ_DONE;
    if (!rq->counted && ret == MHD_YES) {
        rq->counted = 1;
        metrics_request(rq->metrics, status, util_now_ns() - rq->t0);
    }
    return ret;
}

#define http_builtin_paths route_builtin_paths /* indexed by enum http_builtin */

/* The route a request is recorded under: its path, or "unmatched". */
static const char *http_route_name(const struct http_req *rq)
{
    if (rq->route)
        return rq->route->path;
    return rq->builtin ? http_builtin_paths[rq->builtin] : "unmatched";
}

/* " (N more rejections not logged since the last one)" into buf. */
static const char *dropped_text(unsigned n, char *buf, size_t size)
{
    snprintf(buf, size, " (%u more rejections not logged since the last one)", n);
    return buf;
}

/* Refuse a request: log it, count it, record it, answer it. */
static enum MHD_Result http_reject(struct http_req *rq, int status, const char *reason,
                                   const char *detail, const char *body, const char *type,
                                   const char *allow)
{
    const char *route = http_route_name(rq);
    char st[8], more[64];
    unsigned dropped;
    struct store_rejection rej = {
        .route = route,
        .remote_addr = rq->remote,
        .status = status,
        .reason = reason,
        .detail = detail,
        .body_prefix = rq->body.data,
        .body_prefix_len = rq->body.len < rq->rt->cfg->store.rejection_body_max
                               ? rq->body.len
                               : rq->rt->cfg->store.rejection_body_max,
    };

    snprintf(st, sizeof(st), "%d", status);
    /* every rejection is counted and (queue room permitting) recorded; the
     * log shows a sample, so a junk flood cannot push out what matters */
    if (log_limit_pass(&rq->h->rejection_log, HTTP_REJECT_LOG_BURST, HTTP_LOG_EVERY_NS,
                       &dropped))
        log_msg(status == 404 ? LOG_INFO : LOG_WARNING,
                (const char *[]){"ROUTE", route, "REMOTE", rq->remote, "STATUS", st, "REASON",
                                 reason, NULL},
                "rejected %s from %s: %d %s: %s%s", route, rq->remote, status, reason, detail,
                dropped ? dropped_text(dropped, more, sizeof(more)) : "");
    metrics_rejection(metrics_reason(reason));
    store_reject(rq->h->store, &rej);
    return http_send(rq, status, type ? type : "text/plain; charset=utf-8", body, allow);
}

/* ---- the store's answer ----------------------------------------------- */

/* Writer thread: the commit is done (or failed); set the answer and resume. */
static void http_stored(void *data, const struct store_result *res)
{
    struct http_req *rq = data;
    struct provider_reply *p = &rq->reply;

    if (res->outcome == STORE_FAILED) {
        log_msg(
            LOG_ERR,
            (const char *[]){"ROUTE", rq->route->path, "REMOTE", rq->remote, "REASON",
                             "store_failed", NULL},
            "could not store a %s event from %s, answered %d so the platform retries: %s",
            p->ev.provider, rq->remote, p->fail_status, res->error);
        rq->status = p->fail_status;
        rq->answer = p->fail_body;
    } else {
        rq->status = 200;
        rq->answer = arena_strdup(&rq->arena, res->answer);
        if (!rq->answer) {
            rq->status = p->fail_status;
            rq->answer = p->fail_body;
        }
        if (res->outcome == STORE_DUPLICATE)
            metrics_duplicate(rq->metrics);
        if ((res->outcome == STORE_NEW || res->outcome == STORE_UNSTORED) && p->ev.note)
            log_msg(LOG_NOTICE,
                    (const char *[]){"ROUTE", rq->route->path, "ORDER",
                                     p->ev.order_id ? p->ev.order_id : "", "DECISION",
                                     p->ev.status ? p->ev.status : "", NULL},
                    "%s %s for order %s: %s (answered %s)", p->ev.kind,
                    p->ev.status ? p->ev.status : "",
                    p->ev.order_id ? p->ev.order_id : "-", p->ev.note, rq->answer);
        log_debug("stored %s %s event %lld (delivery %lld) from %s", p->ev.provider,
                  p->ev.kind, (long long)res->id, (long long)res->deliveries, rq->remote);
    }
    rq->answer_type = p->answer_type;
    rq->state = REQ_DONE;
    MHD_resume_connection(rq->conn);
}

/* ---- request handling ------------------------------------------------- */

/* The body is complete: let the provider decide, then answer or wait for the store. */
static enum MHD_Result http_dispatch(struct http_req *rq)
{
    const struct route *rt = rq->route;
    struct provider_reply *p = &rq->reply;
    struct provider_request prq;
    enum provider_verdict v;
    int r;

    http_conn_phase(rq->h, rq->conn, 1);
    if (rq->overflow)
        return http_reject(rq, 413, "body_too_large", "body exceeds max_body",
                           "body too large\n", NULL, NULL);
    memset(&prq, 0, sizeof(prq));
    prq.path = rt->path;
    prq.content_type = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!rt->ops->accepts(prq.content_type))
        return http_reject(rq, 415, "unsupported_type", prq.content_type,
                           "unsupported Content-Type\n", NULL, NULL);
    if (buf_append(&rq->body, "", 0) < 0)
        return MHD_NO;
    prq.body = rq->body.data;
    prq.body_len = rq->body.len;
    prq.remote_addr = rq->remote;
    prq.cfg = rq->rt->cfg;
    prq.store = rq->h->store;
    p->arena = &rq->arena;
    v = rt->ops->handle(rt->state, &prq, p);
    if (v == PROVIDER_ANSWER && p->status >= 400)
        return http_reject(rq, p->status, p->reason, p->detail, p->body, p->content_type,
                           NULL);
    if (v == PROVIDER_ANSWER)
        return http_send(rq, p->status, p->content_type, p->body, NULL);
    if (p->unverified)
        log_msg(LOG_WARNING,
                (const char *[]){"ROUTE", rt->path, "REMOTE", rq->remote, NULL},
                "storing an UNAUTHENTICATED %s body from %s (verified = 0)",
                rt->ops->kind, rq->remote);
    /* The hooks it goes to are written in its own transaction. */
    if (forward_select(rq->rt->cfg, &p->ev, &rq->arena) < 0)
        return http_reject(rq, p->fail_status, "no_memory", "out of memory selecting hooks",
                           p->fail_body, p->answer_type, NULL);
    /* Suspend first: the writer may finish before store_submit returns. */
    rq->state = REQ_WAITING;
    MHD_suspend_connection(rq->conn);
    if ((r = store_submit(rq->h->store, &p->ev, http_stored, rq)) < 0) {
        const char *reason = r == -ENOMEM ? "no_memory" : "queue_full";
        log_msg(LOG_ERR, (const char *[]){"ROUTE", rt->path, "REASON", reason, NULL},
                "%s: answered %d",
                r == -ENOMEM ? "out of memory queueing the write"
                             : "write queue full or store stopping",
                p->fail_status);
        metrics_rejection(metrics_reason(reason));
        rq->status = p->fail_status;
        rq->answer = p->fail_body;
        rq->answer_type = p->answer_type;
        rq->state = REQ_DONE;
        MHD_resume_connection(rq->conn);
    }
    return MHD_YES;
}

/* Answer a built-in GET endpoint, once the request is read: an answer queued
 * on the first call makes libmicrohttpd close the connection (it cannot know
 * the request is over), and monitoring clients keep their connections. */
static enum MHD_Result http_builtin(struct http_req *rq)
{
    struct buf out = {0};
    enum MHD_Result ret;

    if (rq->builtin == BUILTIN_HEALTHZ)
        return http_send(rq, 200, "text/plain; charset=utf-8", "ok\n", NULL);
    if (rq->builtin == BUILTIN_READYZ)
        return store_ready(rq->h->store)
                   ? http_send(rq, 200, "text/plain; charset=utf-8", "ready\n", NULL)
                   : http_send(rq, 503, "text/plain; charset=utf-8",
                               "store not writable\n", NULL);
    if (metrics_render(&out) < 0) {
        buf_free(&out);
        return MHD_NO;
    }
    ret = http_send(rq, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, NULL);
    buf_free(&out);
    return ret;
}

/* First call: route, check method and announced size. */
static enum MHD_Result http_begin(struct http_req *rq, const char *url,
                                  const char *method)
{
    const char *cl;
    unsigned long long n;
    int i;

    for (i = 1; i < ROUTE_BUILTINS; i++)
        if (strcmp(url, http_builtin_paths[i]) == 0)
            rq->builtin = (enum http_builtin)i;
    if (rq->builtin) {
        rq->metrics = rq->h->route_builtin[rq->builtin];
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return http_reject(rq, 405, "bad_method", method, "method not allowed\n",
                               NULL, "GET, HEAD");
        return MHD_YES;
    }
    rq->route = routes_find(rq->rt->routes, url);
    if (!rq->route) {
        rq->metrics = rq->h->route_unmatched;
        return http_reject(rq, 404, "unknown_path", url, "not found\n", NULL, NULL);
    }
    rq->metrics = rq->route->metrics;
    if (strcmp(method, "POST") != 0)
        return http_reject(rq, 405, "bad_method", method, "method not allowed\n", NULL,
                           "POST");
    cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && sscanf(cl, "%llu", &n) == 1 && n > rq->max_body)
        return http_reject(rq, 413, "body_too_large", "Content-Length exceeds max_body",
                           "body too large\n", NULL, NULL);
    return MHD_YES;
}

/* A new request: take the current runtime, note the client. */
static struct http_req *http_req_new(struct http *h, struct MHD_Connection *c)
{
    struct http_req *rq = calloc(1, sizeof(*rq));
    const union MHD_ConnectionInfo *ci;

    if (!rq)
        return NULL;
    rq->h = h;
    rq->conn = c;
    rq->t0 = util_now_ns();
    rq->rt = runtime_acquire(h->cell);
    rq->max_body = rq->rt->cfg->server.max_body;
    rq->metrics = -1;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    http_client_addr(rq, ci ? ci->client_addr : NULL);
    atomic_fetch_add(&h->in_flight, 1);
    metrics_add_in_flight(1);
    return rq;
}

/* MHD access handler: called for the headers, each body chunk, the end, and after resume.
 */
static enum MHD_Result http_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version,
                                   const char *upload, size_t *upload_size,
                                   void **req_cls)
{
    struct http_req *rq = *req_cls;

    if (!rq) {
        rq = http_req_new(cls, c);
        if (!rq)
            return MHD_NO;
        *req_cls = rq;
        return http_begin(rq, url, method);
    }
    if (rq->state == REQ_DONE && rq->answer)
        return http_send(rq, rq->status, rq->answer_type, rq->answer, NULL);
    if (rq->state != REQ_READING)
        return MHD_YES;
    if (*upload_size) {
        if (!rq->overflow && rq->body.len + *upload_size > rq->max_body)
            rq->overflow = 1;
        if (!rq->overflow && buf_append(&rq->body, upload, *upload_size) < 0)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return rq->builtin ? http_builtin(rq) : http_dispatch(rq);
}

/* MHD: the request is over (answered, or the client went away). */
static void http_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct http_req *rq = *req_cls;

    if (!rq)
        return;
    http_conn_phase(rq->h, c, 0);
    if (!rq->counted) /* the client went away before an answer was queued */
        metrics_request(rq->metrics, 0, util_now_ns() - rq->t0);
    arena_free(&rq->arena);
    buf_free(&rq->body);
    runtime_release(rq->rt);
    atomic_fetch_sub(&rq->h->in_flight, 1);
    metrics_add_in_flight(-1);
    free(rq);
    *req_cls = NULL;
}

/* libmicrohttpd's own messages go to our log. */
static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static struct log_limit limit;
    unsigned dropped;
    char msg[512];
    size_t n;

    (void)cls;
    /* Floods of bad requests make MHD talk a lot: at most 5 lines per 10 s. */
    if (!log_limit_pass(&limit, 5, HTTP_LOG_EVERY_NS, &dropped))
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_msg(LOG_NOTICE, NULL, "libmicrohttpd: %s (%u similar lines dropped before this one)",
            msg, dropped);
}

/* Start the MHD daemon with the fixed settings of the current runtime. */
int http_start(struct runtime_cell *cell, struct store *store, int listen_fd, struct http **out,
               char *err, size_t errlen)
{
    struct http *h = calloc(1, sizeof(*h));
    struct runtime *rt;
    const struct config_server *s;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem opts[16];
    int n = 0, r = 0;

    if (!h)
        return -ENOMEM;
    h->cell = cell;
    h->store = store;
    pthread_mutex_init(&h->ip_lock, NULL);
    pthread_mutex_init(&h->conn_lock, NULL);
    pthread_cond_init(&h->reaper_cond, NULL);
    h->route_unmatched = metrics_route("unmatched");
    h->route_builtin[BUILTIN_HEALTHZ] = metrics_route("/healthz");
    h->route_builtin[BUILTIN_READYZ] = metrics_route("/readyz");
    h->route_builtin[BUILTIN_METRICS] = metrics_route("/metrics");
    rt = runtime_acquire(cell);
    s = &rt->cfg->server;
    h->deadline_ns = (uint64_t)s->connection_timeout * 1000000000ull;
    if (s->listen_addr.ss_family == AF_INET6 && listen_fd < 0)
        flags |= MHD_USE_IPv6;
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)http_mhd_log, NULL};
    if (s->threads > 1)
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, s->threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        s->connection_timeout, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, s->max_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                        HTTP_CONN_MEMORY, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)http_completed, h};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                        (intptr_t)http_connection, h};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
    if (listen_fd >= 0) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
    } else {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)&s->listen_addr};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    h->mhd = MHD_start_daemon(flags, 0, http_accept, h, http_access, h, MHD_OPTION_ARRAY,
                              opts, MHD_OPTION_END);
    if (!h->mhd)
        snprintf(err, errlen, "cannot listen on %s (address in use, or not permitted?)",
                 listen_fd >= 0 ? "the inherited socket" : s->listen);
    runtime_release(rt);
    /* Without the reaper a trickling client holds its connection for ever:
     * not starting it fails the start, it does not run unprotected. */
    if (h->mhd && (r = pthread_create(&h->reaper, NULL, http_reaper, h)) != 0) {
        snprintf(err, errlen, "cannot start the connection reaper thread: %s", strerror(r));
        MHD_stop_daemon(h->mhd);
        h->mhd = NULL;
    }
    if (!h->mhd) {
        pthread_mutex_destroy(&h->ip_lock);
        pthread_mutex_destroy(&h->conn_lock);
        pthread_cond_destroy(&h->reaper_cond);
        free(h);
        return r ? -r : -EADDRINUSE;
    }
    h->reaper_started = 1;
    *out = h;
    return 0;
}

/*
 * Stop accepting. MHD_quiesce_daemon is not used: in libmicrohttpd 0.9.75 it
 * races with the epoll workers of a thread pool (both remove the listening
 * socket from the epoll set; the loser calls MHD_PANIC and aborts the
 * process). The accept policy refuses new connections instead, and answers
 * on open ones say "Connection: close".
 */
void http_quiesce(struct http *h)
{
    atomic_store(&h->draining, 1);
}

long http_in_flight(struct http *h)
{
    return atomic_load(&h->in_flight);
}

/* Stop the server and free the per-address table. */
struct http *http_stop(struct http *h)
{
    struct http_ip *e, *next;
    int i;

    if (!h)
        return NULL;
    if (h->reaper_started) {
        pthread_mutex_lock(&h->conn_lock);
        h->reaper_stop = 1;
        pthread_cond_signal(&h->reaper_cond);
        pthread_mutex_unlock(&h->conn_lock);
        pthread_join(h->reaper, NULL);
    }
    MHD_stop_daemon(h->mhd);
    for (i = 0; i < HTTP_IP_BUCKETS; i++) {
        for (e = h->ips[i]; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&h->ip_lock);
    pthread_mutex_destroy(&h->conn_lock);
    pthread_cond_destroy(&h->reaper_cond);
    free(h);
    return NULL;
}
